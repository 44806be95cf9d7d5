# amaranth: UnusedElaboratable=no
"""VectorExec RTL vs the ISA simulator (``host.units.vector``), every scratchpad byte after
every instruction, with the scratchpad served by ``SramModel`` (random stalls, latency,
jitter).

Each test builds one DUT and runs one program (instructions back to back), because compiling
the simulation dominates: the engine's configurations differ in how lane beats map onto
scratchpad rows (B = bytes per row, L = lanes):

* ``sim_small`` (L = 4, B = 8): a bf16 beat is one row, an fp32 beat two rows;
* ``WIDE_ROWS`` (L = 2, B = 16): a row holds four bf16 or two fp32 beats, and an ARGMAX4
  result (8 words) is four beats;
* the default engine (L = 16, B = 32): ARGMAX4 results pack two per beat.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Fragment
from vecexec_bench import (
    BF16_SPECIALS,
    BINARY_OPS,
    ELEMENT_OPS,
    REDUCE_OPS,
    epi_entry,
    random_vector,
    run_program,
    scratchpad_image,
    vector_instruction,
)

from unified_engine.config import EngineConfig
from unified_engine.isa import ActKind, ElemFormat, VecBcast, VecOp
from unified_engine.numerics.activation import ACTIVATIONS
from unified_engine.rtl.vector_exec import VectorExec

SMALL = EngineConfig.preset("sim_small")
WIDE_ROWS = dataclasses.replace(SMALL, lanes=2, axi_data_width=128)
BF16, FP32 = ElemFormat.BF16, ElemFormat.FP32


def _special_rows(image: np.ndarray, config, first: int, count: int, rng) -> None:
    """Fill scratchpad rows with corner patterns only (``BF16_SPECIALS``)."""
    beat = config.axi_bytes
    n = count * beat // 2
    values = BF16_SPECIALS[rng.integers(0, len(BF16_SPECIALS), n)]
    image[first * beat:(first + count) * beat] = values.view(np.uint8)


def _tie_rows(image: np.ndarray, config, first: int, count: int, rng) -> None:
    """Fill scratchpad rows with a few values (±1, 2, ±0, +Inf): ties everywhere."""
    beat = config.axi_bytes
    pool = np.array([0x3F80, 0xBF80, 0x4000, 0x0000, 0x8000, 0x7F80], np.uint16)
    values = pool[rng.integers(0, len(pool), count * beat // 2)]
    image[first * beat:(first + count) * beat] = values.view(np.uint8)


def element_and_reduce_program(rng, config, *, per_op: int = 1, max_len: int = 24,
                               max_rows: int = 4):
    """Every element-wise op (binary ones with every broadcast), every reduction with and
    without accumulate, ARGMAX4; random formats, lengths, strides, operands."""
    program = []
    for op in ELEMENT_OPS + REDUCE_OPS:
        for _ in range(per_op):
            if op in BINARY_OPS:
                program += [random_vector(rng, config, op, bcast=b, max_len=max_len,
                                          max_rows=max_rows) for b in VecBcast]
            elif op in (VecOp.RSUM, VecOp.RMAX, VecOp.RSUMSQ):
                program += [random_vector(rng, config, op, accumulate=a, max_len=max_len,
                                          max_rows=max_rows) for a in (0, 1)]
            else:
                program.append(random_vector(rng, config, op, max_len=max_len,
                                             max_rows=max_rows))
    order = rng.permutation(len(program))
    return [program[k] for k in order]


def corner_program(config, special_row: int, tie_row: int):
    """Corner patterns through each path, ties for ARGMAX4, in-place and overlapping rows."""
    lanes, third = config.lanes, config.scratchpad_rows // 3
    dst = 2 * third
    ins = vector_instruction
    return [
        # specials through every path
        ins(config, op=VecOp.ADD, src0=special_row, src1=special_row + 7, dst=dst, length=23,
            rows=3, bcast=VecBcast.TENSOR),
        ins(config, op=VecOp.MIN, src0=special_row, src1=special_row + 3, dst=dst, length=13,
            rows=2, bcast=VecBcast.ROW, dst_fmt=FP32),
        ins(config, op=VecOp.RSUM, src0=special_row, dst=dst, length=4 * lanes + 1, rows=5,
            accumulate=1),
        ins(config, op=VecOp.RMAX, src0=special_row, dst=dst + 5, length=9, rows=6,
            src0_fmt=FP32, dst_fmt=FP32, accumulate=1),
        ins(config, op=VecOp.ARGMAX4, src0=special_row, dst=dst + 20, length=11, rows=3),
        # ties: ARGMAX4 by lower index, RMAX of -0 / +0
        ins(config, op=VecOp.ARGMAX4, src0=tie_row, dst=dst + 40, length=3 * lanes + 2, rows=4),
        ins(config, op=VecOp.ARGMAX4, src0=tie_row, dst=dst + 60, length=2, rows=2),
        ins(config, op=VecOp.RMAX, src0=tie_row, dst=dst + 80, length=5, rows=4),
        # in place: dst = src0 with the same layout
        ins(config, op=VecOp.MUL, src0=tie_row, dst=tie_row, length=2 * lanes + 3, rows=3,
            bcast=VecBcast.SCALAR, imm=0x3FC00000),
        ins(config, op=VecOp.COPY, src0=special_row + 40, dst=special_row + 40, length=7,
            rows=3, src0_fmt=FP32, dst_fmt=FP32, src0_stride=5, dst_stride=5),
        # overlapping destination rows (stride smaller than a row): later rows win
        ins(config, op=VecOp.FILL, dst=dst + 100, length=3 * lanes + 1, rows=4, dst_stride=1,
            imm=0x7FC00001),
        ins(config, op=VecOp.COPY, src0=special_row, dst=dst + 110, length=2 * lanes + 1,
            rows=3, dst_stride=1, dst_fmt=FP32),
        # a row-scalar vector spanning several rows, the COL vector re-read per row
        ins(config, op=VecOp.SUB, src0=0, src1=third, dst=dst + 120, length=3, rows=11,
            bcast=VecBcast.ROW, src1_fmt=FP32),
        ins(config, op=VecOp.MAX, src0=0, src1=third + 9, dst=dst + 140, length=lanes + 1,
            rows=4, bcast=VecBcast.COL, src0_stride=1),
        # nothing to do; an operation of VectorMove
        ins(config, op=VecOp.ADD, src0=0, src1=third, dst=dst, length=0, rows=3),
        ins(config, op=VecOp.RSUM, src0=0, dst=dst, length=5, rows=0, accumulate=1),
        ins(config, op=VecOp.TRANSPOSE, src0=0, dst=dst, length=4, rows=4),
    ]


def _image(config, rng, special_row: int, tie_row: int) -> np.ndarray:
    image = scratchpad_image(rng, config.scratchpad_bytes)
    _special_rows(image, config, special_row, 64, rng)
    _tie_rows(image, config, tie_row, 32, rng)
    return image


def test_sim_small_every_path():
    """sim_small: every element-wise op × broadcast, the reductions (± accumulate), ARGMAX4
    with random formats, shapes and strides; corner patterns, ties, in place, overlapping
    destination rows, empty instructions; random port stalls, latency and jitter."""
    config = SMALL
    rng = np.random.default_rng(1)
    special_row, tie_row = 400, 500
    program = element_and_reduce_program(rng, config) + corner_program(config, special_row,
                                                                       tie_row)
    dut = VectorExec(config, functions=(), act_lanes=0)
    run_program(dut, config, program, seed=1, image=_image(config, rng, special_row, tie_row),
                stall=0.2, latency=2, jitter=2)


def test_wide_rows_every_path():
    """L = 2 with 16-byte rows: several beats per row on both sides, fp32 beats inside a row,
    ARGMAX4 results split over four beats."""
    config = WIDE_ROWS
    rng = np.random.default_rng(2)
    special_row, tie_row = 200, 260
    program = element_and_reduce_program(rng, config, max_len=20)
    program += corner_program(config, special_row, tie_row)[:9]
    dut = VectorExec(config, functions=(), act_lanes=0)
    run_program(dut, config, program, seed=2, image=_image(config, rng, special_row, tie_row),
                stall=0.1, latency=1, jitter=3)


def _epi_table():
    gelu = ACTIVATIONS["gelu"]
    silu = ACTIVATIONS["silu"]
    return {
        0: epi_entry(ActKind.IDENTITY, scale=0.5),
        1: epi_entry(ActKind.UNIFIED, 1.0, *(float(v) for v in gelu)),
        2: epi_entry(ActKind.CLAMP, scale=1.5, a=-1.0, b=2.0),
        3: epi_entry(ActKind.UNIFIED, -2.0, *(float(v) for v in silu)),
    }


def test_functions_and_activation_narrow():
    """EXP on every lane; RECIP on 1 lane and RSQRT on 2 (each beat runs as 4 or 2
    sub-beats); ACTIVATE (IDENTITY, GELU, CLAMP, SiLU entries) on 2 lanes."""
    config = SMALL
    rng = np.random.default_rng(3)
    program = []
    for op in (VecOp.EXP, VecOp.RECIP, VecOp.RSQRT):
        program += [random_vector(rng, config, op, max_len=14, max_rows=3) for _ in range(2)]
    program += [random_vector(rng, config, VecOp.ACTIVATE, max_len=14, max_rows=3, epi=e)
                for e in range(4)]
    program.append(vector_instruction(config, op=VecOp.RECIP, src0=400, dst=1400, length=5,
                                      rows=2, src0_fmt=FP32))  # specials
    dut = VectorExec(config, functions={"exp": 4, "reciprocal": 1, "rsqrt": 2}, act_lanes=2)
    image = scratchpad_image(rng, config.scratchpad_bytes, special=0.05)
    _special_rows(image, config, 400, 8, rng)
    run_program(dut, config, program, seed=3, image=image, epi=_epi_table(), stall=0.1,
                latency=1)


def test_default_config():
    """The default engine (16 lanes, 32-byte rows): odd lengths, an fp32 reduction over all
    four slots with the old value, ARGMAX4 results two per beat, strided fp32 → bf16."""
    config = EngineConfig()
    ins = vector_instruction
    program = [
        ins(config, op=VecOp.ADD, src0=10, src1=200, dst=9000, length=37, rows=2,
            bcast=VecBcast.TENSOR, src1_fmt=FP32),
        ins(config, op=VecOp.RSUM, src0=20, dst=9100, length=16 * 5 + 3, rows=2,
            src0_fmt=FP32, dst_fmt=FP32, accumulate=1),
        ins(config, op=VecOp.ARGMAX4, src0=30, dst=9200, length=21, rows=3),
        ins(config, op=VecOp.COPY, src0=40, dst=9300, length=17, rows=2, src0_fmt=FP32,
            src0_stride=5, dst_stride=3),
    ]
    dut = VectorExec(config, functions=(), act_lanes=0)
    run_program(dut, config, program, seed=4, stall=0.1, latency=2)


def test_throughput_one_port_and_write_port():
    """The port is the only limit: between a 40-beat and an 80-beat instruction the extra
    cycles are exactly the extra row requests (one per cycle, never idle in between). So a
    bf16 unary op costs 2 cycles per beat (read + write), a TENSOR binary op 3, an fp32 copy
    4, a reduction 1 plus its few result rows; a COL vector is read once (then cached), so
    COL costs what ROW does. A separate write port leaves the reads alone on the first."""
    config = SMALL
    lanes, beats = config.lanes, 10
    all_cases = [  # (fields, cycles per beat on one port, with a write port)
        (dict(op=VecOp.COPY), 2, 1),
        (dict(op=VecOp.ADD, src1=400, bcast=VecBcast.TENSOR), 3, 2),
        (dict(op=VecOp.MUL, src1=400, bcast=VecBcast.COL), 2, 1),
        (dict(op=VecOp.COPY, src0_fmt=FP32, dst_fmt=FP32), 4, 2),
        (dict(op=VecOp.MUL, src1=400, bcast=VecBcast.ROW), 2, 1),
        (dict(op=VecOp.RSUM), 1, 1),
        (dict(op=VecOp.ARGMAX4), 1, 1),
    ]
    short, long = 2, 4  # rows of 10 beats
    for write_port in (False, True):
        cases = all_cases[:3] if write_port else all_cases
        program = [vector_instruction(config, src0=0, dst=1000, length=beats * lanes, rows=n,
                                      **f) for f, _, _ in cases for n in (short, long)]
        program.append(vector_instruction(config, op=VecOp.COPY, src0=0, dst=1000, rows=1,
                                          length=lanes))
        dut = VectorExec(config, functions=(), act_lanes=0, write_port=write_port)
        res = run_program(dut, config, program)
        assert res.cycles[-1] == dut.latency  # one beat: the documented latency
        for k, (fields, one, two) in enumerate(cases):
            s, t = 2 * k, 2 * k + 1
            extra_cycles = res.cycles[t] - res.cycles[s]
            extra_reads = res.reads[t] - res.reads[s]
            extra_writes = res.writes[t] - res.writes[s]
            port_ops = extra_reads + (0 if write_port else extra_writes)
            where = (fields, write_port, extra_cycles, extra_reads, extra_writes)
            assert abs(extra_cycles - port_ops) <= 1, where
            per_beat = extra_cycles / ((long - short) * beats)
            assert round(per_beat) == (two if write_port else one), where


def test_defaults():
    """Lean defaults: EXP on every lane, RECIP and RSQRT on one, the activation on L / 8."""
    dut = VectorExec(SMALL)
    Fragment.get(dut, None)  # elaborates (and so uses) every sub-block
    assert dut.function_lanes == {"exp": 4, "reciprocal": 1, "rsqrt": 1}
    assert dut.act_lanes == 1 and dut.widths == (4, 1)
    assert dut.col_cache == 64 and not dut.write_port


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(act_lanes=3), "act_lanes"),
        (dict(act_lanes=8), "act_lanes"),
        (dict(functions={"exp": 3}), "power of two"),
        (dict(read_ahead=1), "read_ahead"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VectorExec(SMALL, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("config", [SMALL, WIDE_ROWS], ids=["sim_small", "wide_rows"])
def test_long_random_programs(config):
    rng = np.random.default_rng(10 + config.lanes)
    program = element_and_reduce_program(rng, config, per_op=4, max_len=64, max_rows=6)
    dut = VectorExec(config, functions=(), act_lanes=0)
    run_program(dut, config, program, seed=5, stall=0.3, latency=3, jitter=3)


@pytest.mark.slow
def test_default_config_full_functions():
    config = EngineConfig()
    rng = np.random.default_rng(6)
    program = [random_vector(rng, config, op, max_len=40, max_rows=2)
               for op in (VecOp.EXP, VecOp.RECIP, VecOp.RSQRT, VecOp.ACTIVATE, VecOp.RSUMSQ,
                          VecOp.MUL)]
    dut = VectorExec(config, functions={"exp": 16, "reciprocal": 1, "rsqrt": 1}, act_lanes=4)
    run_program(dut, config, program, seed=6, epi=_epi_table(), stall=0.1)


@pytest.mark.synth
def test_synth_estimate_reader_and_writer():
    """The port-side blocks on the default engine (Yosys 0.70, xc7): OperandReader with the
    64-row COL cache 1005 LUT, 129 LUTRAM, 925 FF; RowWriter 666 LUT, 655 FF (each ~15-25 s).
    Bounds +25 %. The other glue blocks measured: reader without cache 734 LUT, feeder (widths
    16, 4, 1) 1109, framer 878, packer 551, converter 1105, serializer 236, finisher 2156
    (its 5-input adder tree); ``Activation(1)`` 2740 LUT, 24 DSP."""
    from amaranth.hdl import Const, Value

    from unified_engine.rtl.synth import synth_estimate
    from unified_engine.rtl.vector_exec_read import OperandReader
    from unified_engine.rtl.vector_exec_write import RowWriter

    config = EngineConfig()
    for dut, top, lut, ff in ((OperandReader(config, cache_rows=64), "reader", 1005, 925),
                              (RowWriter(config), "writer", 666, 655)):
        ports = [Value.cast(v) for _, _, v in dut.signature.flatten(dut)
                 if not isinstance(v, Const)]
        res = synth_estimate(dut, top, "xc7", ports=ports)
        assert res["LUT"] <= 1.25 * lut and res["FF"] <= 1.25 * ff, res
