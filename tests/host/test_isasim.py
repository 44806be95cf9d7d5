"""The simulator's dispatcher: ALU semantics, address registers, overrides, race detector."""

import random

import numpy as np
import pytest

from unified_engine import EngineConfig
from unified_engine.asm import Addr, Program, gpr
from unified_engine.host import Engine, RaceError
from unified_engine.host.units import Span
from unified_engine.isa import AluOp

CFG = EngineConfig.preset("sim_small")
M32 = 0xFFFFFFFF


def s32(v):
    return v - (1 << 32) if v >> 31 else v


def reference_alu(op, a, b):
    """Independent statement of the ALU table in docs/isa.md."""
    table = {
        "ADD": lambda: a + b, "SUB": lambda: a - b, "AND": lambda: a & b,
        "OR": lambda: a | b, "XOR": lambda: a ^ b, "SHL": lambda: a << (b % 32),
        "SHR": lambda: a >> (b % 32), "SRA": lambda: s32(a) >> (b % 32),
        "MUL": lambda: a * b, "MULHU": lambda: (a * b) >> 32,
        "DIVU": lambda: a // b if b else M32, "REMU": lambda: a % b if b else a,
        "MIN": lambda: min(s32(a), s32(b)), "MAX": lambda: max(s32(a), s32(b)),
        "MINU": lambda: min(a, b), "MAXU": lambda: max(a, b),
        "SLT": lambda: int(s32(a) < s32(b)), "SLTU": lambda: int(a < b),
        "SEQ": lambda: int(a == b),
    }
    return table[op.name]() & M32


@pytest.fixture(scope="module")
def eng():
    return Engine.open("model", CFG, dram_bytes=1 << 22)


def test_alu_matches_reference(eng):
    rng = random.Random(5)
    values = [0, 1, 2, 31, 32, 0x7FFFFFFF, 0x80000000, M32, 12345, 0xDEADBEEF]
    cases = [(op, a, b) for op in AluOp for a, b in
             [(rng.choice(values), rng.choice(values)) for _ in range(6)]
             + [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(4)]]
    # one case per program: the immediate form, then the register form
    for op, a, b in cases[::7]:
        q = Program(CFG)
        q.li(gpr(1), a)
        q.alu(op, gpr(3), gpr(1), b)
        q.halt()
        eng.run(q)
        assert eng.gpr(3) == reference_alu(op, a, b), (op, a, b)
    for op, a, b in cases[3::7]:
        q = Program(CFG)
        q.li(gpr(1), a)
        q.li(gpr(2), b)
        q.alu(op, gpr(3), gpr(1), gpr(2))
        q.halt()
        eng.run(q)
        assert eng.gpr(3) == reference_alu(op, a, b), (op, a, b)


def test_r0_is_zero_and_link_register(eng):
    p = Program(CFG)
    p.li(gpr(0), 99)
    p.add(gpr(1), gpr(0), 0)
    p.call("sub", link=gpr(5))      # index 2
    p.halt(1)                       # index 3: returned here
    p.label("sub")
    p.li(gpr(6), 7)
    p.ret(gpr(5))
    assert eng.run(p).halt_code == 1
    assert eng.gpr(1) == 0 and eng.gpr(5) == 3 and eng.gpr(6) == 7


def test_address_registers_post_increment_once_and_gpr_forms(eng):
    m = eng.device.machine
    p = Program(CFG)
    p.ar_set(1, value=100, inc=-3)
    p.li(gpr(2), 7)
    p.ar_set_gpr(2, gpr(2), offset=5)      # AR2 = 12
    p.ar_add_gpr(2, gpr(2), offset=1)      # AR2 = 20
    p.ar_inc_gpr(2, gpr(2), offset=-10)    # inc2 = -3
    # both operands name AR1 with inc: it steps once
    p.vector("fill", dst=Addr(0, ar=1, inc=True), length=0, src0=Addr(0, ar=1, inc=True))
    p.vector("fill", dst=Addr(0, ar=2, inc=True), length=0)
    p.halt()
    eng.run(p)
    mask = (1 << CFG.axi_addr_width) - 1
    assert m.ar[1] == 97 and m.ar[2] == 17 and m.ar_inc[2] == (-3) & mask


def test_gpr_override_sets_runtime_size(eng):
    src = eng.tensor(np.arange(64, dtype=np.uint8))
    dst = eng.tensor(np.zeros(64, np.uint8))
    p = Program(CFG)
    p.load(dram=src.addr, sram=0, row_bytes=8, rows=1, override=("rows", gpr(4)),
           signal="store")
    p.store(dram=dst.addr, sram=0, row_bytes=8, rows=1, override=("rows", gpr(4)),
            wait="load")
    p.halt()
    eng.run(p, args={4: 5})
    out = dst.numpy()
    np.testing.assert_array_equal(out[:40], np.arange(40))
    assert not out[40:].any()


def test_tokens_and_fences_order_conflicting_accesses(eng):
    base = eng.tensor(np.zeros(256, np.uint8)).addr
    p = Program(CFG)
    p.load(dram=base, sram=0, row_bytes=32)
    p.fence()                                     # orders the load before the vector op
    p.vector("copy", dst=8, src0=0, length=16, signal="store")
    p.store(dram=base + 64, sram=8, row_bytes=32, wait="vector")
    p.halt()
    eng.run(p)  # strict: would raise on a hazard
    assert eng.device.last_hazards == []
    q = Program(CFG)
    q.load(dram=base, sram=0, row_bytes=32)
    q.vector("copy", dst=8, src0=0, length=16)
    q.store(dram=base + 64, sram=8, row_bytes=32)
    q.halt()
    with pytest.raises(RaceError) as err:
        eng.run(q)
    pairs = {(h.first_pc, h.second_pc) for h in err.value.hazards}
    assert pairs == {(0, 1), (1, 2)}
    assert err.value.result.halt_code == 0


def test_span_overlap_is_exact_for_interleaved_rows():
    even = Span("dram", 0, 8, 16, 10)       # bytes 0-7, 16-23, …
    odd = Span("dram", 8, 8, 16, 10)        # bytes 8-15, 24-31, …
    assert not even.overlaps(odd) and not odd.overlaps(even)
    assert even.overlaps(Span("dram", 20, 1, 1, 1))
    assert not even.overlaps(Span("spad", 0, 8, 16, 10))
    assert not even.overlaps(Span("dram", 160, 8, 8, 1))


def test_assembler_docstring_example_runs_race_free(eng):
    """The example at the top of unified_engine/asm.py copies 4 × 64 bytes."""
    import unified_engine.asm as asm

    text = asm.__doc__.split("::")[1].split("Every field")[0]
    code = "\n".join(line[4:] for line in text.splitlines())
    src = np.arange(256, dtype=np.uint8)
    eng.write(0x1000, src.tobytes())
    scope = {"config": CFG, "Program": Program, "Addr": Addr, "gpr": gpr,
             "disassemble": asm.disassemble, "print": lambda *a: None}
    exec(code, scope)
    eng.run(scope["blob"])
    assert eng.read(0x8000, 256) == src.tobytes()
