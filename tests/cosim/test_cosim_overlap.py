"""The operand-overlap rule on the RTL (docs/isa.md, "Operand overlap"), small configuration.

Each program loads random data into the scratchpad, runs one MATMUL or VECTOR and stores the
scratchpad back.  Refused instructions must stop the RTL with the ISA simulator's error code
(ILLEGAL_OPERAND, or SRAM_OUT_OF_RANGE where a range check comes first) at the same pc; the
allowed neighbours — operands that touch without overlapping, exact in-place element-wise ops —
must leave byte-identical scratchpads on both.  The engine runs the next program afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

from firmware import golden as G
from unified_engine.asm import Program
from unified_engine.host import Engine
from unified_engine.host.errors import DeviceError
from unified_engine.regs import ErrorCode

ROWS = 64  # scratchpad rows loaded, operated on and stored back
BAD, RANGE = ErrorCode.ILLEGAL_OPERAND, ErrorCode.SRAM_OUT_OF_RANGE
PC = 2  # nop, load, <the instruction>


@pytest.fixture(scope="module")
def engines():
    config = G.small_config()
    model = Engine.open("model", config, dram_bytes=1 << 22)
    rtl = Engine.open("verilator", config, dram_bytes=1 << 22)
    yield model, rtl
    model.close()
    rtl.close()


def mm(**kw):
    def emit(p, wait, signal):
        args = {"a": 0, "b": 8, "dst": 16, "k": 4, "rmax": 24} | kw
        p.matmul(args.pop("a"), args.pop("b"), args.pop("dst"), wait=wait, signal=signal,
                 **args)
    return "array", emit


def vec(op="add", **kw):
    def emit(p, wait, signal):
        args = {"dst": 0, "src0": 0, "src1": 8, "rows": 3, "length": 4} | kw
        p.vector(op, wait=wait, signal=signal, **args)
    return "vector", emit


# (name, (queue, emit), expected error or None); sim_small geometry as in
# tests/host/test_overlap.py: A = rows 0-3, B = rows 8-9, dst = 2 rows, rmax = 2 rows.
CASES = [
    ("matmul dst on A", mm(dst=3), BAD),
    ("matmul dst after A", mm(dst=4), None),
    ("matmul dst on B", mm(dst=7), BAD),
    ("matmul rmax on dst", mm(rowmax="init", rmax=17), BAD),
    ("matmul rmax after dst", mm(rowmax="init", rmax=18), None),
    ("matmul pitch below a row", mm(dst_pitch=3), BAD),
    ("matmul pitch of a row", mm(dst_pitch=4), None),
    ("matmul out of range first", mm(dst=2047, a=2044), RANGE),
    ("add in place on src0", vec(), None),
    ("add in place on src1", vec(dst=8), None),
    ("add one row into src0", vec(dst=1), BAD),
    ("add after src0", vec(dst=3, src1=16), None),
    ("add in place, other format", vec(dst_fmt="fp32", src1=16), BAD),
    ("add in place, other stride", vec(dst_stride=2, src1=16), BAD),
    ("add ROW src1 on dst", vec(bcast="row", src1=4, dst=4, src0=8), BAD),
    ("exp in place", vec(op="exp"), None),
    ("rsum onto src0", vec(op="rsum", dst=2, dst_fmt="fp32"), BAD),
    ("rsum after src0", vec(op="rsum", dst=3, dst_fmt="fp32"), None),
    ("transpose in place", vec(op="transpose", rows=4, length=4), BAD),
    ("transpose after src0", vec(op="transpose", rows=4, length=4, dst=4), None),
    ("transpose dst rows overlap", vec(op="transpose", rows=8, length=4, dst=8, dst_stride=1),
     BAD),
    ("quantize in place", vec(op="quantize", rows=1, length=64, qfmt="int8"), BAD),
    ("quantize elsewhere", vec(op="quantize", rows=1, length=64, qfmt="int8", dst=16), None),
]


def _program(eng: Engine, queue: str, emit, src: int, dst: int) -> Program:
    beat = eng.config.axi_bytes
    p = Program(eng.config)
    p.nop()
    p.load(src, 0, row_bytes=ROWS * beat, signal=queue)
    emit(p, wait="load", signal="store")
    p.store(dst, 0, row_bytes=ROWS * beat, wait=queue)
    p.halt()
    return p


def _outcome(eng: Engine, program: Program, src, dst, data: bytes):
    """(error code, pc) of a refused run, else the scratchpad bytes it stored."""
    eng.write(src.addr, data)
    eng.write(dst.addr, bytes(len(data)))
    try:
        eng.run(program)
    except DeviceError as exc:
        eng.soft_reset()
        return exc.code, exc.pc
    return eng.read(dst.addr, len(data))


@pytest.mark.parametrize(("name", "case", "want"), CASES, ids=[c[0] for c in CASES])
def test_overlap_same_on_rtl_and_model(engines, name, case, want):
    model, rtl = engines
    queue, emit = case
    beat = model.config.axi_bytes
    rng = np.random.default_rng(len(name))
    raw = rng.integers(0, 256, ROWS * beat, np.uint8)
    raw[1::2] &= 0x3F  # finite bf16 / fp32 values of moderate size
    results = []
    for eng in (model, rtl):
        src, dst = eng.alloc(ROWS * beat), eng.alloc(ROWS * beat)
        results.append(_outcome(eng, _program(eng, queue, emit, src.addr, dst.addr), src, dst,
                                raw.tobytes()))
        eng.free(src)
        eng.free(dst)
    want_model, got_rtl = results
    if want is None:
        assert isinstance(want_model, bytes), f"the simulator refused it: {want_model}"
        assert got_rtl == want_model, f"{name}: RTL scratchpad differs from the simulator's"
    else:
        assert want_model == (want, PC)
        assert got_rtl == want_model, f"{name}: RTL {got_rtl}, simulator {want_model}"
    assert not rtl.busy
