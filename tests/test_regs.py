"""The CSR map: layout sanity, config descriptor round trip, BUILD_ID, JSON / C export."""

import dataclasses
import json
import shutil
import subprocess

import pytest

from unified_engine import EngineConfig, regs
from unified_engine.regs import (
    ERROR_DOCS,
    ID_MAGIC,
    REGISTERS,
    TRACE_ENTRY,
    Access,
    ErrorCode,
    build_id,
    config_descriptor,
    config_from_descriptor,
    reg,
    regmap_c_header,
    regmap_json,
)

PRESETS = ["kintex7", "ku15p", "alveo_u50", "sim_small"]


def test_offsets_unique_aligned_sorted_and_small():
    offsets = [r.offset for r in REGISTERS]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == len(offsets)
    assert all(o % 4 == 0 for o in offsets)
    assert offsets[-1] < 0x1000  # the whole map fits 4 KiB of AXI-Lite space
    assert len({r.name for r in REGISTERS}) == len(REGISTERS)


def test_fields_fit_and_do_not_overlap():
    for r in REGISTERS:
        used = 0
        for f in r.fields:
            assert f.lsb + f.width <= 32, (r.name, f.name)
            assert used & f.mask == 0, (r.name, f.name)
            used |= f.mask
            if f.enum is not None:
                assert max(m.value for m in f.enum) < 1 << f.width


def test_64_bit_pairs_are_adjacent():
    for r in REGISTERS:
        if r.name.endswith("_LO"):
            hi = reg(r.name[:-3] + "_HI")
            assert hi.offset == r.offset + 4 and hi.access == r.access


def test_required_registers_exist():
    for name in ("ID", "BUILD_ID_LO", "BUILD_ID_HI", "CONTROL", "STATUS", "ERROR_PC",
                 "PROGRAM_ADDR_LO", "WINDOW_BASE_LO", "WINDOW_LIMIT_LO", "CYCLES_LO",
                 "ARRAY_BUSY_LO", "STORE_STALL_HI", "TRACE_INDEX", "TRACE_DATA_LO",
                 "SYNC_FLAGS", "CFG_ROWS", "CFG_LANES", "CFG_SCRATCHPAD_BYTES"):
        reg(name)
    status = reg("STATUS")
    assert {f.name for f in status.fields} >= {"BUSY", "HALTED", "ERROR", "ERROR_CODE"}
    assert status.field("ERROR_CODE").enum is ErrorCode
    assert reg("CONTROL").field("START").access is Access.W1
    with pytest.raises(KeyError, match="no register 'NOPE'"):
        reg("NOPE")
    with pytest.raises(KeyError, match="fields: BUSY"):
        status.field("NOPE")


def test_pack_and_get():
    status = reg("STATUS")
    word = status.pack(ERROR=1, ERROR_CODE=ErrorCode.DMA_OUT_OF_WINDOW)
    assert word == (1 << 2) | (4 << 8)
    assert status.field("ERROR_CODE").get(word) == 4
    with pytest.raises(ValueError, match="does not fit 8 bits"):
        status.pack(ERROR_CODE=256)


def test_error_codes_documented_and_fit():
    assert set(ERROR_DOCS) == set(ErrorCode)
    assert len({e.value for e in ErrorCode}) == len(ErrorCode)
    assert ErrorCode.NONE.value == 0
    for name in ("ILLEGAL_INSTRUCTION", "DMA_OUT_OF_WINDOW", "SYNC_TIMEOUT", "CYCLE_BUDGET"):
        assert name in ErrorCode.__members__


def test_trace_entry_is_64_bits():
    assert TRACE_ENTRY.size == 64


@pytest.mark.parametrize("preset", PRESETS)
def test_config_descriptor_round_trip(preset):
    config = EngineConfig.preset(preset)
    words = config_descriptor(config)
    for name, value in words.items():
        assert 0 <= value < 1 << 32, name
        reg(name)  # every value has a register
    assert config_from_descriptor(words) == config
    assert words["CFG_ROWS"] == config.rows and words["CFG_LANES"] == config.lanes


def test_descriptor_keeps_an_inexact_clock_exactly():
    config = EngineConfig(clock_mhz=1000 / 3, formats=("bf16", "int4"))
    back = config_from_descriptor(config_descriptor(config))
    assert back.clock_mhz == config.clock_mhz and back.formats == ("bf16", "int4")
    assert back.fingerprint() == config.fingerprint()
    assert config_descriptor(config)["CFG_FORMATS"] == 0b11


def test_descriptor_errors():
    with pytest.raises(ValueError, match="missing CFG_ROWS"):
        config_from_descriptor({})
    with pytest.raises(ValueError, match="engine_index=2 is out of range"):
        config_descriptor(EngineConfig(), engine_index=2)
    with pytest.raises(TypeError):
        config_descriptor({"rows": 8})


def test_build_id_depends_on_config_isa_and_regmap(monkeypatch):
    base = EngineConfig()
    bid = build_id(base)
    assert bid == build_id(EngineConfig())  # deterministic
    assert 0 < bid < 1 << 64
    assert build_id(dataclasses.replace(base, clock_mhz=201.0)) != bid  # config value
    assert build_id(dataclasses.replace(base, gprs=64)) != bid  # config + ISA widths
    monkeypatch.setattr(regs, "regmap_digest", lambda: b"\0" * 32)
    assert build_id(base) != bid  # register map


def test_regmap_json():
    config = EngineConfig.preset("sim_small")
    doc = json.loads(regmap_json(config))
    assert int(doc["build_id"], 16) == build_id(config)
    names = [r["name"] for r in doc["registers"]]
    assert names == [r.name for r in REGISTERS]
    assert doc["values"]["ID"] == ID_MAGIC
    assert doc["values"]["CFG_GPRS"] == 16
    assert doc["error_codes"]["SYNC_TIMEOUT"]["value"] == ErrorCode.SYNC_TIMEOUT.value
    assert doc["config"] == config.to_dict()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to compile the header")
def test_c_header_compiles_with_the_right_values(tmp_path):
    config = EngineConfig()
    (tmp_path / "ue.h").write_text(regmap_c_header(config))
    status = reg("STATUS")
    checks = [
        f"_Static_assert(UE_REG_STATUS == {status.offset}, \"status\");",
        f"_Static_assert(UE_STATUS_ERROR_CODE_MASK == {status.field('ERROR_CODE').mask}u, \"m\");",
        f"_Static_assert(UE_ERR_CYCLE_BUDGET == {ErrorCode.CYCLE_BUDGET.value}, \"e\");",
        f"_Static_assert(UE_BUILD_ID == {build_id(config)}ull, \"b\");",
        f"_Static_assert(UE_CFG_ROWS_VALUE == {config.rows}, \"r\");",
    ]
    (tmp_path / "t.c").write_text('#include "ue.h"\n' + "\n".join(checks) + "\n")
    result = subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "-fsyntax-only", "t.c"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cli(capsys, tmp_path):
    assert regs.main(["--json", "--preset", "sim_small"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert int(doc["build_id"], 16) == build_id(EngineConfig.preset("sim_small"))
    out = tmp_path / "r.h"
    assert regs.main(["--header", "-o", str(out)]) == 0
    assert "#define UE_REG_STATUS 0x014u" in out.read_text()
    with pytest.raises(SystemExit):
        regs.main(["--json", "--preset", "nope"])
    capsys.readouterr()
