"""Formal proofs of the DMA units' window, 4 KB and AXI handshake properties (SymbiYosys).

What each harness proves is in its module docstring (``dma_command_harness.py``,
``dma_unit_harness.py``); ``docs/reliability.md`` has the table with depths and run times.

Default tier (unmarked, ≈ 1 min on one core): the full k-induction proof of ``DmaCommand``
(the window decision), bounded checks of both units on single-row jobs, and the tests of the
tests (a perturbed window comparison, a 4 KB split moved to 8 KB, both must fail).
``-m formal``: deeper bounds, multi-row jobs, the default engine's widths, the default unit
parameters and the cover (vacuity) runs.
"""

from __future__ import annotations

import dataclasses

import pytest

from unified_engine.config import EngineConfig
from unified_engine.formal import FormalResult, prove

from .dma_command_harness import CommandHarness
from .dma_unit_harness import LoadHarness, StoreHarness

SMALL = EngineConfig.preset("sim_small")
#: 32-byte beats: with max_burst ≥ 128 the 4 KB cut (128 beats) is what limits a burst.
WIDE_BEAT = dataclasses.replace(SMALL, axi_data_width=256)
DEFAULT = EngineConfig()

# Small unit parameters keep the solver's state small; the properties hold per parameter set.
LOAD_SMALL = dict(max_burst=4, read_buffer=8)
STORE_SMALL = dict(max_burst=4, sram_buffer=2, max_outstanding=2)

TIMEOUT = 900  # seconds; a proof that needs more is a failure to investigate, not a pass


def passed(result: FormalResult) -> None:
    assert result.status == "PASS", f"{result.summary()}\n{result.log[-3000:]}"


def failed_on(result: FormalResult, message: str) -> None:
    """A run that must fail, on an assertion whose message contains ``message``."""
    assert result.status == "FAIL", f"expected a counterexample: {result.summary()}"
    assert any(message in f for f in result.failed), result.summary()


# ----- DmaCommand: the window decision, unbounded -------------------------------------------


def test_command_window_decision_proved():
    """Any word, any window (also a limit past the address space: F1): unbounded."""
    passed(prove(CommandHarness(SMALL), mode="prove", depth=4, timeout=TIMEOUT))


def test_command_off_by_one_limit_is_caught(tmp_path):
    result = prove(CommandHarness(SMALL, limit_slack=1), mode="bmc", depth=3, timeout=TIMEOUT,
                   workdir=tmp_path)
    failed_on(result, "in-window command")


# ----- LoadUnit / StoreUnit: bounded ---------------------------------------------------------


def test_load_unit_single_row_bounded():
    passed(prove(LoadHarness(SMALL, max_rows=1, **LOAD_SMALL), mode="bmc", depth=7,
                 timeout=TIMEOUT))


def test_store_unit_single_row_bounded():
    passed(prove(StoreHarness(SMALL, max_rows=1, **STORE_SMALL), mode="bmc", depth=7,
                 timeout=TIMEOUT))


def test_load_window_violation_is_caught(tmp_path):
    result = prove(LoadHarness(SMALL, max_rows=1, limit_slack=1, **LOAD_SMALL), mode="bmc",
                   depth=6, timeout=TIMEOUT, workdir=tmp_path)
    failed_on(result, "every beat meets the window")


def test_store_4k_split_moved_is_caught(tmp_path):
    # chunk 128 beats × 32 bytes = 4 KB; doubled, a burst may cross a 4 KB boundary.
    result = prove(StoreHarness(WIDE_BEAT, max_rows=1, chunk_scale=2, max_burst=128,
                                sram_buffer=2, max_outstanding=2),
                    mode="bmc", depth=4, timeout=TIMEOUT, workdir=tmp_path)
    failed_on(result, "no 4 KB crossing")


# ----- deeper (-m formal) --------------------------------------------------------------------


@pytest.mark.formal
def test_command_window_decision_default_engine():
    passed(prove(CommandHarness(DEFAULT), mode="prove", depth=5, timeout=TIMEOUT))


@pytest.mark.formal
@pytest.mark.parametrize("harness, args", [
    (CommandHarness, {}),
    (LoadHarness, LOAD_SMALL),
    (StoreHarness, STORE_SMALL),
])
def test_covers_reached(harness, args):
    """Every Cover of the harness is reachable: the assumptions leave the interesting
    traces (a full chunk, a burst ending on a 4 KB boundary, a second row, an in-window
    command that starts, refused and empty commands) possible."""
    result = prove(harness(SMALL, **args), mode="cover", depth=12, timeout=TIMEOUT)
    passed(result)


@pytest.mark.formal
def test_load_unit_single_row_deeper():
    passed(prove(LoadHarness(SMALL, max_rows=1, **LOAD_SMALL), mode="bmc", depth=10,
                 timeout=TIMEOUT))


@pytest.mark.formal
def test_store_unit_single_row_deeper():
    passed(prove(StoreHarness(SMALL, max_rows=1, **STORE_SMALL), mode="bmc", depth=10,
                 timeout=TIMEOUT))


@pytest.mark.formal
def test_load_unit_multi_row():
    passed(prove(LoadHarness(SMALL, **LOAD_SMALL), mode="bmc", depth=6, timeout=TIMEOUT))


@pytest.mark.formal
def test_store_unit_multi_row():
    passed(prove(StoreHarness(SMALL, **STORE_SMALL), mode="bmc", depth=7, timeout=TIMEOUT))


@pytest.mark.formal
def test_store_unit_4k_cut_wide_beats():
    """32-byte beats and 128-beat bursts: the 4 KB cut, not max_burst, bounds the bursts."""
    passed(prove(StoreHarness(WIDE_BEAT, max_rows=1, max_burst=128, sram_buffer=2,
                              max_outstanding=2), mode="bmc", depth=6, timeout=TIMEOUT))


@pytest.mark.formal
@pytest.mark.slow
def test_units_default_parameters():
    """The parameters the engine instantiates (max_burst 64, read buffer 256, 8 on-chip
    reads and 16 write bursts in flight), single-row jobs."""
    passed(prove(LoadHarness(SMALL, max_rows=1), mode="bmc", depth=8, timeout=TIMEOUT))
    passed(prove(StoreHarness(SMALL, max_rows=1), mode="bmc", depth=8, timeout=TIMEOUT))
