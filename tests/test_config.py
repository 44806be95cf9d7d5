"""EngineConfig: presets, validation messages, derived sizes, (de)serialisation, fingerprint."""

import dataclasses
import hashlib
import json

import pytest

from unified_engine import FORMATS, PRESETS, EngineConfig


@pytest.mark.parametrize("name", ["kintex7", "ku15p", "alveo_u50", "sim_small"])
def test_presets_are_valid_and_round_trip(name):
    config = EngineConfig.preset(name)
    assert EngineConfig.from_dict(config.to_dict()) == config
    assert EngineConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_board_presets_match_anchor_scale():
    k7, u50 = EngineConfig.preset("kintex7"), EngineConfig.preset("alveo_u50")
    assert k7.macs_per_cycle == 64 and k7.axi_data_width == 256
    assert k7.engines == 2 and 190 <= k7.clock_mhz <= 210
    assert u50.engines == 8
    assert EngineConfig.preset("sim_small").macs_per_cycle == 4


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"unknown EngineConfig preset 'zynq'.*kintex7"):
        EngineConfig.preset("zynq")


def test_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        EngineConfig(8, 8)  # type: ignore[misc]
    config = EngineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rows = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rows", 1, r"rows=1 is out of range; allowed 2…32"),
        ("cols", 33, r"cols=33 is out of range; allowed 2…32"),
        ("rows", 4.0, r"rows must be an int"),
        ("rows", True, r"rows must be an int"),
        ("lanes", 12, r"lanes=12 must be a power of two"),
        ("axi_data_width", 96, r"axi_data_width=96 must be a power of two"),
        ("axi_addr_width", 65, r"axi_addr_width=65 is out of range"),
        ("scratchpad_bytes", 3000, r"scratchpad_bytes=3000 is out of range"),
        ("gprs", 48, r"gprs=48 must be a power of two"),
        ("engines", 0, r"engines=0 is out of range; allowed 1…16"),
        ("clock_mhz", 5.0, r"clock_mhz=5.0 is out of range; allowed 10…1000"),
        ("clock_mhz", "fast", r"clock_mhz must be a number"),
        ("quant_block", 48, r"quant_block=48 must be a power of two"),
        ("formats", ("int4",), r"must include 'bf16'"),
        ("formats", ("bf16", "int3"), r"unknown format\(s\) \['int3'\]"),
        ("formats", "bf16", r"must be a collection"),
        ("formats", ("bf16", "if4", "int4"), r"'if4' needs both 'int4' and 'fp4'"),
        ("lanes", 32, r"lanes=32 needs 512-bit beats"),
        ("bias_bytes", 256, r"bias_bytes=256 must hold at least 16 AXI beats"),
    ],
)
def test_invalid_values_name_field_value_and_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig(**{field: value})


def test_replace_validates():
    with pytest.raises(ValueError, match="rows=64"):
        dataclasses.replace(EngineConfig.preset("kintex7"), rows=64)


def test_accumulator_must_hold_a_tile():
    with pytest.raises(ValueError, match="cannot hold one fp32 output tile of 128×32"):
        EngineConfig(rows=32, cols=32, accumulator_bytes=8 * 1024)


def test_formats_are_normalised_to_canonical_order():
    config = EngineConfig(formats=["fp4", "bf16", "int4", "if4"])
    assert config.formats == ("bf16", "int4", "fp4", "if4")
    assert set(config.formats) <= set(FORMATS)


def test_derived_sizes():
    c = EngineConfig(rows=8, cols=4, pe_interleave=4, axi_data_width=256, clock_mhz=250,
                     scratchpad_bytes=512 * 1024, gprs=32, address_registers=16)
    assert c.macs_per_cycle == 32
    assert c.peak_gflops == pytest.approx(2 * 32 * 250 / 1000)
    assert c.tile_rows == 32
    assert c.axi_bytes == 32 and c.bf16_per_beat == 16
    assert c.scratchpad_rows == 512 * 1024 // 32 == 1 << c.scratchpad_addr_bits
    assert c.gpr_index_bits == 5 and c.address_register_index_bits == 4
    assert c.reduce_guard_bits == 3 + 4  # lanes=16 → log2 16 = 4
    assert c.sram_bytes == c.scratchpad_bytes + c.accumulator_bytes + c.bias_bytes + c.scale_bytes
    assert c.soc_peak_gflops == c.peak_gflops * c.engines


def test_from_dict_rejects_unknown_keys():
    data = EngineConfig().to_dict() | {"colums": 8}
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['colums'\]"):
        EngineConfig.from_dict(data)
    with pytest.raises(ValueError, match="needs a mapping"):
        EngineConfig.from_dict([("rows", 8)])  # type: ignore[arg-type]


def test_fingerprint_is_sha256_of_canonical_json_and_sensitive_to_every_field():
    base = EngineConfig()
    text = json.dumps(base.to_dict(), sort_keys=True, separators=(",", ":"))
    expected = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    assert base.fingerprint() == expected
    # Order of the input mapping does not matter.
    reordered = EngineConfig.from_dict(dict(reversed(list(base.to_dict().items()))))
    assert reordered.fingerprint() == base.fingerprint()
    changes = dict(rows=4, cols=4, pe_interleave=2, lanes=8, axi_data_width=512,
                   axi_addr_width=40, scratchpad_bytes=1 << 20, accumulator_bytes=1 << 17,
                   bias_bytes=1 << 15, scale_bytes=1 << 15, icache_instructions=512, gprs=64,
                   address_registers=8, trace_depth=4096, engines=3, clock_mhz=250.0,
                   quant_block=32, formats=("bf16", "int8"))
    assert set(changes) == {f.name for f in dataclasses.fields(EngineConfig)}
    prints = {dataclasses.replace(base, **{k: v}).fingerprint() for k, v in changes.items()}
    assert len(prints) == len(changes) and base.fingerprint() not in prints


def test_summary_mentions_key_figures():
    text = EngineConfig.preset("kintex7").summary()
    assert "8×8 PEs" in text and "64 MAC/cycle" in text and "25.6 GFLOP/s" in text


def test_every_preset_key_is_a_field():
    fields = {f.name for f in dataclasses.fields(EngineConfig)}
    for name, overrides in PRESETS.items():
        assert set(overrides) <= fields, name
