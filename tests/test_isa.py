"""The ISA definition: layouts, widths from the config, codec round trips, decode errors."""

import dataclasses
import random
import struct

import numpy as np
import pytest
from amaranth.hdl import Shape

from unified_engine import EngineConfig
from unified_engine.isa import (
    INSTRUCTION_BITS,
    IllegalInstruction,
    Isa,
    MemTarget,
    Opcode,
    Queue,
    VecOp,
    f32_bits,
    isa_for,
)

PRESETS = ["kintex7", "ku15p", "alveo_u50", "sim_small"]


def random_instruction(isa: Isa, opcode: Opcode, rng: random.Random):
    """A random valid instruction of ``opcode``: every field random within its range."""
    values = {}
    for info in isa.fields(opcode):
        if info.path in ("opcode", "wait", "signal", "ovr_field", "ovr_gpr"):
            continue
        if info.kind == "enum":
            values[info.path] = rng.choice(list(info.enum))
        else:
            values[info.path] = rng.randint(info.low, info.high)
    queue = {Opcode.LOAD: Queue.LOAD, Opcode.MATMUL: Queue.ARRAY, Opcode.VECTOR: Queue.VECTOR,
             Opcode.STORE: Queue.STORE}.get(opcode)
    if queue is not None:
        others = 0xF & ~(1 << queue.value)
        values["wait"] = rng.randint(0, 15) & others
        values["signal"] = rng.randint(0, 15) & others
    over = isa.overridable(opcode)
    if over and rng.random() < 0.5:
        values["ovr_field"] = rng.randint(1, len(over))
        values["ovr_gpr"] = rng.randint(1, isa.config.gprs - 1)
    if opcode in (Opcode.LOAD, Opcode.STORE):
        limit = {MemTarget.SCRATCHPAD: isa.widths.spad_rows, MemTarget.BIAS:
                 isa.widths.bias_entries, MemTarget.SCALE: isa.widths.scale_entries}
        values["sram.imm"] = rng.randrange(limit[values["mem"]])
    return isa.make(opcode, **values)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_layout_is_one_256_bit_word_with_the_opcode_first(preset):
    isa = isa_for(EngineConfig.preset(preset))
    assert isa.instruction.size == INSTRUCTION_BITS
    for opcode in Opcode:
        layout = isa.layout(opcode)
        assert layout.size == INSTRUCTION_BITS
        header = dict(layout)["header"]
        assert header.offset == 0
        assert dict(header.shape)["opcode"].offset == 0
        assert Shape.cast(dict(header.shape)["opcode"].shape).width == 6


@pytest.mark.parametrize("preset", PRESETS)
def test_fields_do_not_overlap_and_fit(preset):
    isa = isa_for(EngineConfig.preset(preset))
    for opcode in Opcode:
        used = 0
        for info in isa.fields(opcode):
            mask = ((1 << info.width) - 1) << info.offset
            assert used & mask == 0, info.path
            used |= mask
        assert used < 1 << INSTRUCTION_BITS


def test_widths_follow_the_config():
    base = EngineConfig()
    isa = isa_for(base)
    assert isa.field_info(Opcode.MATMUL, "a.imm").width == base.scratchpad_addr_bits
    assert isa.field_info(Opcode.ALU, "rd").width == base.gpr_index_bits
    assert isa.field_info(Opcode.LOAD, "dram.imm").width == base.axi_addr_width
    assert isa.field_info(Opcode.LOAD, "dram.ar").width == base.address_register_index_bits
    big = dataclasses.replace(base, scratchpad_bytes=base.scratchpad_bytes * 4, gprs=64,
                              axi_addr_width=40)
    isa_big = isa_for(big)
    assert isa_big.field_info(Opcode.MATMUL, "a.imm").width == base.scratchpad_addr_bits + 2
    assert isa_big.field_info(Opcode.ALU, "rd").width == 6
    assert isa_big.field_info(Opcode.LOAD, "dram.imm").width == 40
    assert isa.digest() != isa_big.digest()
    assert isa.digest() == Isa(EngineConfig()).digest()  # deterministic, not cached state


def test_generous_field_sizes():
    isa = isa_for(EngineConfig())
    assert isa.field_info(Opcode.LOAD, "dram_stride").width == 32
    assert isa.field_info(Opcode.LOAD, "rows").width >= 20
    assert isa.field_info(Opcode.LOAD, "row_bytes").width >= 20
    assert isa.field_info(Opcode.MATMUL, "k").width >= 20
    assert isa.field_info(Opcode.VECTOR, "length").width >= 20


def test_config_that_cannot_fit_raises_clearly():
    huge = EngineConfig(scratchpad_bytes=64 * 1024 * 1024, axi_data_width=64, lanes=4,
                        gprs=256, address_registers=64, axi_addr_width=64,
                        accumulator_bytes=16 * 1024 * 1024)
    with pytest.raises(ValueError, match=r"needs \d+ bits .* 256 bits; reduce"):
        Isa(huge)


def test_realistic_large_config_fits():
    # 16 MiB scratchpad at 512-bit AXI, 64 GPRs, 32 address registers, 48-bit DRAM addresses.
    Isa(EngineConfig(scratchpad_bytes=16 * 1024 * 1024, axi_data_width=512, gprs=64,
                     address_registers=32, axi_addr_width=48, rows=16, cols=16,
                     accumulator_bytes=1024 * 1024, bias_bytes=64 * 1024, scale_bytes=64 * 1024))


@pytest.mark.parametrize("preset", PRESETS)
def test_random_round_trip_every_class(preset):
    isa = isa_for(EngineConfig.preset(preset))
    rng = random.Random(preset)
    for opcode in Opcode:
        for _ in range(40):
            ins = random_instruction(isa, opcode, rng)
            word = isa.encode(ins)
            assert 0 <= word < 1 << INSTRUCTION_BITS
            assert word & 0x3F == opcode.value
            back = isa.decode(word)
            assert back == ins
            assert isa.encode(back) == word


@pytest.mark.parametrize("preset", ["kintex7", "sim_small"])
def test_packer_matches_amaranth_layout_const(preset):
    """The fast packer and amaranth's own ``Layout.const`` give the same word."""
    isa = isa_for(EngineConfig.preset(preset))
    rng = random.Random(1)
    for opcode in Opcode:
        for _ in range(5):
            ins = random_instruction(isa, opcode, rng)
            const = isa.layout(opcode).const(isa.nested(ins))
            assert const.as_bits() == isa.encode(ins)
            # and the union layout the RTL views sees the same opcode
            assert isa.instruction.const({isa.body(opcode): isa.nested(ins)}).as_bits() == \
                isa.encode(ins)


def test_field_values_land_where_the_layout_says():
    isa = isa_for(EngineConfig())
    ins = isa.make(Opcode.LOAD, rows=0x12345, dram_stride=0xDEADBEEF, **{"dram.imm": 0x3_0000_0001})
    word = isa.encode(ins)
    for path, value in (("rows", 0x12345), ("dram_stride", 0xDEADBEEF),
                        ("dram.imm", 0x3_0000_0001)):
        info = isa.field_info(Opcode.LOAD, path)
        assert (word >> info.offset) & ((1 << info.width) - 1) == value


def test_every_field_range_checked():
    isa = isa_for(EngineConfig.preset("sim_small"))
    for opcode in Opcode:
        for info in isa.fields(opcode):
            if info.path == "opcode" or info.kind == "enum":
                continue
            with pytest.raises(ValueError, match=rf"{opcode.name}\.{info.path}=.*allowed"):
                isa.make(opcode, **{info.path: info.high + 1})
            with pytest.raises(ValueError, match=rf"{opcode.name}\.{info.path}="):
                isa.make(opcode, **{info.path: info.low - 1})


def test_range_error_message_names_width_unit_and_range():
    isa = isa_for(EngineConfig())
    with pytest.raises(ValueError) as err:
        isa.make(Opcode.MATMUL, k=1 << 20)
    assert str(err.value) == (
        "MATMUL.k=1048576 is out of range; allowed 0…1048575 (20-bit elements field)"
    )
    with pytest.raises(ValueError, match=r"MATMUL\.acc=64 .* allowed 0…63"):
        isa.make(Opcode.MATMUL, acc=64)  # 64 KiB / (32×8×4 B) = 64 tiles


def test_bad_types_and_enum_names_raise():
    isa = isa_for(EngineConfig())
    with pytest.raises(TypeError, match=r"MATMUL\.k must be an int"):
        isa.make(Opcode.MATMUL, k=1.5)
    with pytest.raises(TypeError, match=r"MATMUL\.k must be an int"):
        isa.make(Opcode.MATMUL, k=True)
    assert isa.make(Opcode.MATMUL, wb=True)["wb"] == 1
    with pytest.raises(ValueError, match="allowed: BF16, INT4"):
        isa.make(Opcode.MATMUL, b_fmt="int3")
    assert isa.make(Opcode.MATMUL, b_fmt="int4")["b_fmt"].name == "INT4"
    with pytest.raises(ValueError, match="has no field"):
        isa.make(Opcode.NOP, k=1)


def test_dma_sram_limit_depends_on_target():
    isa = isa_for(EngineConfig())
    isa.make(Opcode.LOAD, mem=MemTarget.SCRATCHPAD, **{"sram.imm": 16383})
    with pytest.raises(ValueError, match="mem=BIAS; allowed 0…8191"):
        isa.make(Opcode.LOAD, mem=MemTarget.BIAS, **{"sram.imm": 8192})


def test_token_rules():
    isa = isa_for(EngineConfig())
    with pytest.raises(IllegalInstruction, match="cannot wait on or signal its own"):
        isa.make(Opcode.LOAD, wait=1 << Queue.LOAD.value)
    with pytest.raises(IllegalInstruction, match="cannot wait on or signal its own"):
        isa.make(Opcode.MATMUL, signal=1 << Queue.ARRAY.value)
    with pytest.raises(IllegalInstruction, match="takes no dependency tokens"):
        isa.make(Opcode.ALU, wait=1)
    isa.make(Opcode.VECTOR, wait=0b1011, signal=0b1011)


def test_override_rules():
    isa = isa_for(EngineConfig())
    with pytest.raises(IllegalInstruction, match="both be 0 or both be set"):
        isa.make(Opcode.LOAD, ovr_field=1)
    n = len(isa.overridable(Opcode.LOAD))
    with pytest.raises(IllegalInstruction, match="names no overridable field"):
        isa.make(Opcode.LOAD, ovr_field=n + 1, ovr_gpr=3)
    with pytest.raises(IllegalInstruction, match="allowed: none"):
        isa.make(Opcode.ALU, ovr_field=1, ovr_gpr=3)
    assert [f.path for f in isa.overridable(Opcode.LOAD)] == [
        "dram.imm", "sram.imm", "rows", "row_bytes", "dram_stride", "sram_stride"]


def test_decode_rejects_malformed_words():
    isa = isa_for(EngineConfig())
    for bad in (0, 0x3F, 0x0A, 0x14):
        with pytest.raises(IllegalInstruction, match=r"opcode .* is not defined"):
            isa.decode(bad)
    # an undefined VecOp value
    op = isa.field_info(Opcode.VECTOR, "op")
    assert 31 not in {m.value for m in VecOp}
    with pytest.raises(IllegalInstruction, match=r"VECTOR\.op=31 is not a valid VecOp"):
        isa.decode(Opcode.VECTOR.value | (31 << op.offset))
    # reserved bits
    with pytest.raises(IllegalInstruction, match="reserved bits are not zero"):
        isa.decode(Opcode.NOP.value | (1 << 255))
    # a queue waiting on itself
    wait = isa.field_info(Opcode.LOAD, "wait")
    with pytest.raises(IllegalInstruction, match="own queue"):
        isa.decode(Opcode.LOAD.value | (1 << wait.offset))
    # a limit the configuration imposes (64 accumulator tiles, 6-bit field holds 63) is fine,
    # but a DMA bias address beyond the bias memory is not
    sram = isa.field_info(Opcode.LOAD, "sram.imm")
    mem = isa.field_info(Opcode.LOAD, "mem")
    with pytest.raises(IllegalInstruction, match="out of range for mem=BIAS"):
        isa.decode(Opcode.LOAD.value | (1 << mem.offset) | (9000 << sram.offset))
    with pytest.raises(ValueError, match="256-bit int"):
        isa.decode(1 << 256)


def test_decode_bytes_reports_the_index():
    isa = isa_for(EngineConfig())
    good = isa.encode(isa.make(Opcode.NOP)).to_bytes(32, "little")
    with pytest.raises(IllegalInstruction, match="instruction 2: opcode 0x00"):
        isa.decode_bytes(good * 2 + bytes(32))
    with pytest.raises(ValueError, match="multiple of 32 bytes"):
        isa.decode_bytes(good[:31])


def test_signed_fields_round_trip():
    isa = isa_for(EngineConfig())
    for offset in (-(1 << 31), -1, 0, 5, (1 << 31) - 1):
        ins = isa.make(Opcode.LOOP, rc=3, offset=offset)
        assert isa.decode(isa.encode(ins))["offset"] == offset


def test_f32_bits_matches_numpy():
    for value in (0.0, -0.0, 1.0, -2.5, 1e-40, 3.4e38, float("inf"), 1.702):
        assert f32_bits(value) == int(np.array(value, np.float32).view(np.uint32))
    assert f32_bits(0x7FC00000) == 0x7FC00000
    nan_bits = f32_bits(float("nan"))
    assert struct.unpack("<f", struct.pack("<I", nan_bits))[0] != 0  # a NaN pattern
    with pytest.raises(ValueError, match="overflows fp32"):
        f32_bits(1e39)
    with pytest.raises(TypeError):
        f32_bits(True)
    with pytest.raises(ValueError):
        f32_bits(1 << 32)


def test_isa_needs_a_config():
    with pytest.raises(TypeError, match="EngineConfig"):
        Isa({"rows": 8})


def test_generated_docs_are_up_to_date():
    """docs/isa.md and docs/registers.md tables match isa.py / regs.py (tools/gen_docs.py)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "tools" / "gen_docs.py"
    spec = importlib.util.spec_from_file_location("gen_docs", path)
    gen_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_docs)
    for doc, sections in gen_docs.documents().items():
        text = doc.read_text()
        assert gen_docs.render(text, sections, doc) == text, (
            f"{doc.name} is stale: run python tools/gen_docs.py")
