"""The operand-overlap rule of MATMUL and VECTOR on the ISA simulator (docs/isa.md, "Operand
overlap"): refused instructions stop with ILLEGAL_OPERAND at their pc and write nothing;
disjoint, adjacent and exactly in-place operands run.

Geometry (sim_small: TR = 4, C = 2, 8-byte scratchpad rows): a one-tile MATMUL with k = 4 has
an A panel of 4 rows, a B panel of 2 rows, a ROW_MAJOR bf16 output of 4 rows × 4 bytes
(2 scratchpad rows) and 16 bytes of row maxima (2 rows).  A 3 × 4 bf16 VECTOR operand is
3 rows.  The expectations below follow from that geometry, not from the simulator.
"""

import numpy as np
import pytest

from unified_engine import EngineConfig
from unified_engine.asm import Program
from unified_engine.host import DeviceError, Engine
from unified_engine.numerics import fp
from unified_engine.regs import ErrorCode

CFG = EngineConfig.preset("sim_small")
BEAT = CFG.axi_bytes
ROWS = CFG.scratchpad_bytes // BEAT
OK, BAD = None, ErrorCode.ILLEGAL_OPERAND


@pytest.fixture(scope="module")
def eng():
    return Engine.open("model", CFG, dram_bytes=1 << 22)


def spad(eng) -> np.ndarray:
    return eng.device.machine.spad


def outcome(eng, emit) -> ErrorCode | None:
    """Run ``nop; <instruction>; halt`` on a scratchpad of random bytes; None if it ran.
    A refused instruction must stop at pc 1 and leave the scratchpad as it was."""
    spad(eng)[:] = np.random.default_rng(0).integers(0, 256, spad(eng).size, np.uint8)
    # keep the bytes finite bf16/fp32 values so no NaN path hides anything
    spad(eng)[1::2] &= 0x3F
    before = spad(eng).copy()
    p = Program(CFG)
    p.nop()
    emit(p)
    p.halt()
    try:
        eng.run(p)
    except DeviceError as exc:
        assert exc.pc == 1, exc
        np.testing.assert_array_equal(spad(eng), before)
        return exc.code
    return None


def mm(a=0, b=8, dst=16, rmax=24, **kw):
    def emit(p):
        p.matmul(a, b, dst, k=4, rmax=rmax, **kw)
    return emit


MATMUL_CASES = [
    ("disjoint", mm(), OK),
    ("dst on A's last row", mm(dst=3), BAD),
    ("dst right after A", mm(dst=4), OK),
    ("dst on B", mm(dst=7), BAD),
    ("dst right before B", mm(dst=6), OK),
    ("dst is A", mm(dst=0), BAD),
    ("no write-back: dst is free", mm(dst=0, wb=False), OK),
    ("rmax on dst", mm(rmax=17, rowmax="init"), BAD),
    ("rmax right after dst", mm(rmax=18, rowmax="init"), OK),
    ("rmax on B", mm(rmax=9, rowmax="update"), BAD),
    ("rmax unused", mm(rmax=0), OK),
    ("pitch below a row", mm(dst_pitch=3), BAD),
    ("pitch of a row", mm(dst_pitch=4), OK),
    ("pitch above a row", mm(dst_pitch=12), OK),
    ("pitch ignored by A_PANEL", mm(dst_pitch=3, out_layout="a_panel"), OK),
    ("fp32 pitch below a row", mm(dst_pitch=4, out_fmt="fp32"), BAD),
    ("A_PANEL dst on A", mm(dst=2, out_layout="a_panel"), BAD),
    # the range checks come first: a dst past the end that also overlaps A is out of range
    ("out of range wins", mm(a=ROWS - 4, dst=ROWS - 1), ErrorCode.SRAM_OUT_OF_RANGE),
]


@pytest.mark.parametrize(("name", "emit", "want"), MATMUL_CASES, ids=[c[0] for c in MATMUL_CASES])
def test_matmul_overlap(eng, name, emit, want):
    assert outcome(eng, emit) is want


def vec(op="add", dst=0, src0=0, src1=8, rows=3, length=4, **kw):
    def emit(p):
        p.vector(op, dst=dst, src0=src0, src1=src1, rows=rows, length=length, **kw)
    return emit


VECTOR_CASES = [
    ("in place on src0", vec(), OK),
    ("in place on src1", vec(dst=8), OK),
    ("in place on both", vec(src1=0), OK),
    ("in place, explicit stride equal to packed", vec(dst_stride=1), OK),
    ("one row in place, strides differ", vec(rows=1, dst_stride=3), OK),
    ("dst one row into src0", vec(dst=1), BAD),
    ("dst on src0's last row", vec(dst=2), BAD),
    ("dst right after src0", vec(dst=3, src1=16), OK),
    ("dst right before src1", vec(dst=5, src0=0, src1=8), OK),
    ("dst one row before src1", vec(dst=6), BAD),
    ("in place but fp32 dst", vec(dst_fmt="fp32", src1=16), BAD),
    ("in place but other stride", vec(dst_stride=2, src1=16), BAD),
    ("in place with rows overlapping each other", vec(dst_stride=1, src0_stride=1, length=8),
     BAD),
    ("dst interleaved with src0 rows", vec(dst=1, src0_stride=2, dst_stride=2, src1=16), BAD),
    ("ROW src1 at dst", vec(bcast="row", src1=4, dst=4, src0=8), BAD),
    ("COL src1 on dst", vec(bcast="col", src1=5, dst=4, src0=8), BAD),
    ("SCALAR: src1 unused", vec(bcast="scalar", src1=0, src0=8, dst=0), OK),
    ("FILL has no source", vec(op="fill", src0=0, dst=0), OK),
    ("EXP in place", vec(op="exp"), OK),
    ("RSUM onto src0", vec(op="rsum", dst=2, dst_fmt="fp32"), BAD),
    ("RSUM right after src0", vec(op="rsum", dst=3, dst_fmt="fp32"), OK),
    ("RSUM in place is not exact", vec(op="rsum", dst=0, dst_fmt="fp32"), BAD),
    ("RSUM accumulating into its own dst", vec(op="rsum", dst=3, dst_fmt="fp32",
                                               accumulate=True), OK),
    ("ARGMAX4 onto src0", vec(op="argmax4", dst=1), BAD),
    ("TRANSPOSE in place", vec(op="transpose", rows=4, length=4), BAD),
    ("TRANSPOSE disjoint", vec(op="transpose", rows=4, length=4, dst=4), OK),
    # 8 bf16 per destination row = 16 bytes on a 1-row (8-byte) stride
    ("TRANSPOSE dst rows overlap", vec(op="transpose", rows=8, length=4, dst=8, dst_stride=1),
     BAD),
    ("TRANSPOSE dst rows touch", vec(op="transpose", rows=8, length=4, dst=8, dst_stride=2), OK),
    ("TRANSPOSE one dst row", vec(op="transpose", rows=8, length=1, dst=8, dst_stride=1), OK),
    ("QUANTIZE in place", vec(op="quantize", rows=1, length=64, qfmt="int8"), BAD),
    ("QUANTIZE disjoint", vec(op="quantize", rows=1, length=64, qfmt="int8", dst=16), OK),
    ("DEQUANTIZE onto codes", vec(op="dequantize", rows=1, length=64, qfmt="int8", src0=4,
                                  dst=0), BAD),
]


@pytest.mark.parametrize(("name", "emit", "want"), VECTOR_CASES, ids=[c[0] for c in VECTOR_CASES])
def test_vector_overlap(eng, name, emit, want):
    assert outcome(eng, emit) is want


def test_refusal_message_names_the_operands(eng):
    p = Program(CFG)
    p.vector("add", dst=1, src0=0, src1=8, rows=3, length=4)
    p.halt()
    with pytest.raises(DeviceError, match=r"ILLEGAL_OPERAND.*overlap src0") as info:
        eng.run(p)
    assert info.value.pc == 0


def test_in_place_add_is_exact(eng):
    """dst = src0 (same layout): the result is src0 + src1, as if read before written."""
    rng = np.random.default_rng(3)
    x = fp.f32_to_bf16(rng.standard_normal((3, 4)).astype(np.float32))
    y = fp.f32_to_bf16(rng.standard_normal((3, 4)).astype(np.float32))
    spad(eng)[0:24] = x.view(np.uint8).reshape(-1)
    spad(eng)[64:88] = y.view(np.uint8).reshape(-1)
    p = Program(CFG)
    p.vector("add", dst=0, src0=0, src1=8, rows=3, length=4)
    p.halt()
    eng.run(p)
    got = spad(eng)[0:24].view(np.uint16).reshape(3, 4)
    want = fp.f32_to_bf16(fp.f32_add(fp.bf16_to_f32(x), fp.bf16_to_f32(y)))
    np.testing.assert_array_equal(got, want)
