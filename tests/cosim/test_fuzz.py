"""Program fuzzing (issue 11): random, mutated and garbage programs on the ISA simulator and
on the Verilated RTL must end the same way (HALT code or error code and pc; CYCLE_BUDGET: the
code only) with the same GPRs and every DRAM byte equal.  See ``unified_engine/fuzz.py`` (and the
``fuzz_*`` modules it names) for the generator, the shared starting state and the discard
rules (races, unsupported operand overlaps, the NVFP4 tensor-scale check, self-modifying
stores, one-sided CYCLE_BUDGET).

A write outside the DRAM window raises ``VerilatorError`` in the Verilator harness; the fuzzer
does not catch it, so such a write fails the test.
"""

from __future__ import annotations

import numpy as np
import pytest

from firmware import golden as G
from unified_engine import fuzz
from unified_engine.asm import decode
from unified_engine.host.verilator import VerilatorError
from unified_engine.isa import Opcode, VecOp
from unified_engine.regs import ErrorCode

DEFAULT_SEEDS = range(12)  # 36 programs
SLOW_SEEDS = range(1000, 1200)  # 600 programs
MAX_DISCARD = 0.35


def _summary(fz: fuzz.Fuzzer) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(fz.tally.items()))


def _report(fz: fuzz.Fuzzer) -> str:
    lines = []
    for case, diff in fz.disagreements:
        lines.append(f"seed {case.seed} {case.kind}: {diff}")
        try:
            lines.append(fuzz.disassemble_case(case, fz.config))
        except ValueError:
            lines.append(case.blob.hex())
    return "\n".join(lines)


def _fuzz(fz: fuzz.Fuzzer, seeds) -> None:
    for case in fuzz.cases(fz.config, fz.layout, seeds):
        fz.check(case)
    assert not fz.disagreements, _report(fz)
    programs = sum(v for k, v in fz.tally.items() if k == "agree" or k.startswith("discard:"))
    discarded = programs - fz.tally["agree"]
    assert discarded <= MAX_DISCARD * programs, _summary(fz)


# ----- the generator and the checker, on the model alone (fast) --------------------------------


def test_generator_is_reproducible_and_valid_programs_decode():
    config = G.small_config()
    layout = fuzz.layout_for(1 << 22)
    a = list(fuzz.cases(config, layout, range(5)))
    b = list(fuzz.cases(config, layout, range(5)))
    assert [c.blob for c in a] == [c.blob for c in b]
    for case in a:
        if case.kind == "valid":
            decode(case.blob, config)  # every instruction is well formed
        assert case.data[-fuzz.ZERO_BYTES:].sum() == 0


def test_model_against_itself_agrees_and_races_are_rare():
    with fuzz.Fuzzer(G.small_config(), "model") as fz:
        _fuzz(fz, range(30))
        assert fz.tally["discard:race"] <= 3, _summary(fz)
        valid_halts = fz.tally["valid:halt:NONE"]
        assert valid_halts >= 8, f"too few valid programs run to HALT: {_summary(fz)}"


def test_compare_reports_every_difference():
    base = fuzz.Outcome("halt", halt_code=3, gprs=(0, 1, 2), dram=bytes(8))
    assert fuzz.compare(base, base) == ""
    for other, text in [
        (fuzz.Outcome("error", ErrorCode.TOKEN_UNDERFLOW, 2, gprs=base.gprs, dram=base.dram),
         "TOKEN_UNDERFLOW"),
        (fuzz.Outcome("halt", halt_code=4, gprs=base.gprs, dram=base.dram), "halt code"),
        (fuzz.Outcome("halt", halt_code=3, gprs=(0, 1, 5), dram=base.dram), "r2"),
        (fuzz.Outcome("halt", halt_code=3, gprs=base.gprs, dram=bytes(7) + b"\1"), "offset 0x7"),
    ]:
        assert text in fuzz.compare(base, other)
    err = fuzz.Outcome("error", ErrorCode.ILLEGAL_OPERAND, 5)
    assert "pc 5" in fuzz.compare(err, fuzz.Outcome("error", ErrorCode.ILLEGAL_OPERAND, 6))
    # CYCLE_BUDGET: the pc and the state depend on timing
    b1 = fuzz.Outcome("error", ErrorCode.CYCLE_BUDGET, 7, gprs=(1,), dram=b"a")
    b2 = fuzz.Outcome("error", ErrorCode.CYCLE_BUDGET, 9, gprs=(2,), dram=b"b")
    assert fuzz.compare(b1, b2) == ""


def test_operand_overlap_predicate():
    from unified_engine.host.units import Span

    a = Span("spad", 0, 64, 64, 2)
    assert fuzz.operand_overlap(Opcode.MATMUL, {}, [a], [Span("spad", 64, 8, 8, 1)])
    assert fuzz.operand_overlap(Opcode.MATMUL, {}, [a], [Span("spad", 128, 8, 4, 2)])  # self
    assert not fuzz.operand_overlap(Opcode.MATMUL, {}, [a], [Span("spad", 128, 8, 8, 2)])
    inplace = {"op": VecOp.ADD}
    assert not fuzz.operand_overlap(Opcode.VECTOR, inplace, [a], [a])
    assert fuzz.operand_overlap(Opcode.VECTOR, {"op": VecOp.TRANSPOSE}, [a], [a])
    assert fuzz.operand_overlap(Opcode.VECTOR, {"op": VecOp.ADD}, [a],
                                [a, Span("spad", 96, 8, 8, 1)])  # two outputs overlap


def test_discard_reason_order():
    none, budget = ErrorCode.NONE, ErrorCode.CYCLE_BUDGET
    assert fuzz.discard_reason([], [], none, none) == ""
    assert fuzz.discard_reason([], [], budget, budget) == ""  # compared (code only)
    assert fuzz.discard_reason([], [], budget, none) == "budget"
    assert fuzz.discard_reason([], [], none, budget) == "budget"
    assert fuzz.discard_reason([], ["overlap: pc 3: x", "tensor_scale: y"], none, budget) \
        == "overlap"
    assert fuzz.discard_reason(["race"], ["overlap: pc 3: x"], none, none) == "race"


# ----- model vs Verilator ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzer():
    fz = fuzz.Fuzzer(G.small_config(), "verilator")
    yield fz
    fz.close()


def test_fuzz_model_vs_verilator(fuzzer):
    _fuzz(fuzzer, DEFAULT_SEEDS)


def test_write_outside_the_window_fails_the_fuzzer(fuzzer, monkeypatch):
    """The harness's window check is not swallowed: it fails the case."""
    def refuse(*args, **kw):
        raise VerilatorError("write of DRAM byte outside the window")

    case = next(fuzz.cases(fuzzer.config, fuzzer.layout, [0]))
    monkeypatch.setattr(fuzzer.dut, "run", refuse)
    with pytest.raises(VerilatorError):
        fuzzer.check(case)


@pytest.mark.slow
def test_fuzz_model_vs_verilator_many_seeds(fuzzer):
    _fuzz(fuzzer, SLOW_SEEDS)
    print(_summary(fuzzer))


def test_data_image_has_specials():
    config = G.small_config()
    gen = fuzz.Generator(config, fuzz.layout_for(1 << 22), np.random.default_rng(0))
    img = gen.data_image().view(np.uint16)
    assert (img == 0x7F80).any() and (img == 0x7FC0).any()
