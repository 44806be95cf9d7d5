"""Formal proofs of the control core and the soft-reset drain (SymbiYosys).

What each harness proves is in its module docstring (``dispatch_harness.py``,
``reset_guard_harness.py``); ``docs/reliability.md`` §1 has the table with depths and times.

Default tier (unmarked, ≈ 40 s loaded): a bounded check of the ``AxiResetGuard`` drain and
its test of the test (a guard inside the soft-reset domain).  ``-m formal`` (a separate CI
step, see ``.ci/run``): the dispatcher's soft-reset property by k-induction (unbounded) and its
test of the test (a soft reset that reaches the dispatcher a cycle late), the dispatcher's
liveness and illegal-word properties (bounded), their tests of the tests (a NOP that never
retires, a decoder that accepts every word), deeper drains and the covers.
"""

from __future__ import annotations

import pytest

from unified_engine.config import EngineConfig
from unified_engine.formal import prove

from .dispatch_harness import DispatchHarness
from .reset_guard_harness import ResetGuardHarness
from .test_dma_formal import TIMEOUT, failed_on, passed

SMALL = EngineConfig.preset("sim_small")
#: Cycles an instruction may wait in the instruction register, and the register may stay
#: empty, in the bounded environment (units and fetch answer within `patience` = 2 cycles).
#: Covers reach 6 for both within depth 14 (``test_dispatcher_covers``), so 7 is tight.
LIVENESS_BOUND = 7
LIVENESS_DEPTH = 14


# ----- soft reset ------------------------------------------------------------------------------


@pytest.mark.formal
def test_dispatcher_soft_reset_proved():
    """From any reachable state (k-induction), the cycle after SOFT_RESET is idle and quiet."""
    passed(prove(DispatchHarness(SMALL, liveness=False, illegal=False), mode="prove",
                 depth=2, timeout=TIMEOUT))


@pytest.mark.formal
def test_dispatcher_late_soft_reset_is_caught(tmp_path):
    result = prove(DispatchHarness(SMALL, liveness=False, illegal=False, mutant="late_reset"),
                   mode="bmc", depth=4, timeout=TIMEOUT, workdir=tmp_path)
    failed_on(result, "soft reset: idle and quiet")


#: One read and one write burst of up to 2 beats: the drain bound (9) is reachable in depth 18.
GUARD_SMALL = dict(max_reads=1, max_writes=1, max_len=1)


def test_reset_guard_drain_bounded():
    """Every 18-cycle trace: handshakes, W after AW, drain ≤ 8 cycles after the last flush,
    nothing outstanding after it (a bound of 7 fails: the bound is tight)."""
    harness = ResetGuardHarness(**GUARD_SMALL)
    assert harness.drain_bound == 9
    passed(prove(harness, mode="bmc", depth=18, timeout=TIMEOUT))


def test_reset_guard_inside_the_reset_is_caught(tmp_path):
    result = prove(ResetGuardHarness(mutant="reset_guard"), mode="bmc", depth=8,
                   timeout=TIMEOUT, workdir=tmp_path)
    assert result.status == "FAIL", result.summary()


# ----- deeper (-m formal) ----------------------------------------------------------------------


@pytest.mark.formal
def test_reset_guard_drain_two_bursts_each_way():
    """Two read and two write bursts of up to 2 beats outstanding: drain ≤ 12 cycles."""
    harness = ResetGuardHarness(max_len=1)
    assert harness.drain_bound == 13
    passed(prove(harness, mode="bmc", depth=18, timeout=TIMEOUT))


@pytest.mark.formal
def test_reset_guard_drain_bound_is_tight(tmp_path):
    result = prove(ResetGuardHarness(**GUARD_SMALL, drain_bound=7), mode="bmc", depth=18,
                   timeout=TIMEOUT, workdir=tmp_path)
    failed_on(result, "busy ends within the bound")


@pytest.mark.formal
def test_reset_guard_covers():
    """A drain ends, a drained W beat carries strb 0, R beats of two bursts are dropped, a
    drain of ≥ 6 cycles ends: the assumptions leave the interesting drains possible."""
    passed(prove(ResetGuardHarness(), mode="cover", depth=14, timeout=TIMEOUT))


@pytest.mark.formal
def test_dispatcher_never_hangs_and_stops_on_illegal_words():
    passed(prove(DispatchHarness(SMALL, bound=LIVENESS_BOUND), mode="bmc",
                 depth=LIVENESS_DEPTH, timeout=TIMEOUT))


@pytest.mark.formal
def test_dispatcher_nop_that_never_retires_is_caught(tmp_path):
    result = prove(DispatchHarness(SMALL, bound=LIVENESS_BOUND, illegal=False, reset=False,
                                   mutant="nop_hangs"),
                   mode="bmc", depth=LIVENESS_DEPTH, timeout=TIMEOUT, workdir=tmp_path)
    failed_on(result, "never hangs")


@pytest.mark.formal
def test_dispatcher_lax_decoder_is_caught(tmp_path):
    result = prove(DispatchHarness(SMALL, liveness=False, reset=False, mutant="lax_decoder"),
                   mode="bmc", depth=8, timeout=TIMEOUT, workdir=tmp_path)
    failed_on(result, "illegal word")


@pytest.mark.formal
def test_dispatcher_covers():
    """A HALT ends a run, an illegal word stops one, four instructions execute, a soft reset
    after a run, and legal waits of 6 cycles (an instruction in the register; an empty
    register) — so the liveness bound of 7 is tight."""
    harness = DispatchHarness(SMALL, bound=LIVENESS_BOUND, probe_waits=(6,))
    passed(prove(harness, mode="cover", depth=14, timeout=TIMEOUT))
