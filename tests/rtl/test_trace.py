# amaranth: UnusedElaboratable=no
"""TraceBuffer: simultaneous events, mode filter, depth limit, clear, count saturation.

The reference is the documented rule (``rtl/trace.py``): the events the mode filter accepts,
in the order (cycle offered, TRACE_SOURCES index), timestamped with the cycle offered
counted from the cycle after ``clear``; the memory keeps the first ``trace_depth``.
The filter itself is the ISA simulator's (``host/isasim.py``, ``Machine._event``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from simhelpers import run

from unified_engine.config import EngineConfig
from unified_engine.regs import TRACE_ENTRY, TraceKind, TraceMode
from unified_engine.rtl.engine_if import TRACE_SOURCES
from unified_engine.rtl.trace import TRACE_COUNT_MAX, TraceBuffer

N = len(TRACE_SOURCES)
_MARKERS = {TraceKind.MARKER.value, TraceKind.HALT.value, TraceKind.ERROR.value}


def small(depth: int = 256) -> EngineConfig:
    return dataclasses.replace(EngineConfig.preset("sim_small"), trace_depth=depth)


def keeps(mode: int, kind: int) -> bool:
    """The ISA simulator's filter (mode 3 is not a TraceMode: the model records nothing)."""
    if mode == TraceMode.ALL.value:
        return True
    return mode == TraceMode.MARKERS.value and kind in _MARKERS


def random_cycles(rng, cycles: int, rate: float, kinds=range(16)) -> list[list[tuple | None]]:
    """Per cycle, per source: None or (kind, unit, payload)."""
    kinds = list(kinds)
    return [[(int(rng.choice(kinds)), int(rng.integers(16)), int(rng.integers(1 << 24)))
             if rng.random() < rate else None for _ in range(N)] for _ in range(cycles)]


def expected(schedule, mode: int, depth: int) -> tuple[list[int], int]:
    """(entries the memory must hold, count) for ``schedule`` offered from the cycle after
    ``clear`` (cycle k has timestamp k)."""
    out = []
    for k, row in enumerate(schedule):
        for ev in row:
            if ev is not None and keeps(mode, ev[0]):
                out.append(entry_word(k, *ev))
    return out[:depth], len(out)


def entry_word(timestamp: int, kind: int, unit: int, payload: int) -> int:
    values = {"timestamp": timestamp & 0xFFFFFFFF, "kind": kind, "unit": unit,
              "payload": payload}
    return sum(values[name] << f.offset for name, f in TRACE_ENTRY)


async def offer(ctx, dut, row) -> None:
    """Drive one cycle of source activity (``row``: per source None or an event) and tick."""
    for name, ev in zip(TRACE_SOURCES, row, strict=True):
        src = getattr(dut.sources, name)
        ctx.set(src.valid, ev is not None)
        if ev is not None:
            kind, unit, payload = ev
            ctx.set(src.event.as_value(), kind | unit << 4 | payload << 8)
    await ctx.tick()
    for name in TRACE_SOURCES:
        ctx.set(getattr(dut.sources, name).valid, 0)


async def clear(ctx, dut, mode: int, row=None) -> None:
    ctx.set(dut.mode.as_value(), mode)
    ctx.set(dut.clear, 1)
    await offer(ctx, dut, row or [None] * N)
    ctx.set(dut.clear, 0)


async def read_all(ctx, dut, count: int) -> list[int]:
    out = []
    for i in range(count):
        ctx.set(dut.read.index, i)
        await ctx.tick()
        out.append(ctx.get(dut.read.entry.as_value()))
    return out


async def settle(ctx, dut, cycles: int) -> None:
    await ctx.tick().repeat(cycles)


def check(schedule, mode: int, depth: int = 256, fifo_depth: int = 16, seed_rows=()):
    dut = TraceBuffer(small(depth), fifo_depth=fifo_depth)
    want, count = expected(schedule, mode, depth)
    got: dict[str, object] = {}

    async def bench(ctx):
        await clear(ctx, dut, mode)
        for row in schedule:
            await offer(ctx, dut, row)
        await settle(ctx, dut, N * len(schedule) + 4)
        got["count"] = ctx.get(dut.read.count)
        got["entries"] = await read_all(ctx, dut, len(want) + 2)

    run(dut, bench)
    assert got["count"] == count
    assert got["entries"][:len(want)] == want
    assert got["entries"][len(want):] == [0, 0]  # past the written entries: 0


def test_burst_of_simultaneous_events():
    rng = np.random.default_rng(1)
    # 12 cycles with every source firing (108 events at one write per cycle: 12 records
    # wait in the FIFO), idle cycles to drain, then random traffic of ~1 event per cycle.
    burst = [[(int(rng.integers(5)), int(rng.integers(16)), int(rng.integers(1 << 24)))
              for _ in range(N)] for _ in range(12)]
    schedule = burst + [[None] * N] * (12 * N) + random_cycles(rng, 30, 1 / N)
    check(schedule, TraceMode.ALL.value)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_mode_filter(mode):
    rng = np.random.default_rng(10 + mode)
    check(random_cycles(rng, 12, 0.4), mode)


def test_depth_limit():
    rng = np.random.default_rng(3)
    schedule = random_cycles(rng, 12, 0.6, kinds=range(5))
    assert expected(schedule, TraceMode.ALL.value, 10 ** 6)[1] > 40
    check(schedule, TraceMode.ALL.value, depth=16)


def test_clear_restarts_and_samples_mode():
    rng = np.random.default_rng(4)
    cfg = small(64)
    dut = TraceBuffer(cfg)
    first = [[(0, 1, 7)] * N] * 6  # leaves records queued when clear comes
    second = random_cycles(rng, 10, 0.5, kinds=range(5))
    want, count = expected(second, TraceMode.MARKERS.value, cfg.trace_depth)
    got = {}

    async def bench(ctx):
        await clear(ctx, dut, TraceMode.ALL.value)
        for row in first:
            await offer(ctx, dut, row)
        # events offered in the clear cycle belong to the old run
        await clear(ctx, dut, TraceMode.MARKERS.value, row=[(0, 2, 9)] * N)
        ctx.set(dut.mode, TraceMode.ALL)  # changing mode mid-run has no effect
        for row in second:
            await offer(ctx, dut, row)
        await settle(ctx, dut, 4 * N)
        got["count"] = ctx.get(dut.read.count)
        got["entries"] = await read_all(ctx, dut, len(want) + 1)

    run(dut, bench)
    assert got["count"] == count
    assert got["entries"] == [*want, 0]


def test_first_timestamp_is_zero_and_entry_lags_index_by_one_cycle():
    dut = TraceBuffer(small(16))

    async def bench(ctx):
        await clear(ctx, dut, TraceMode.ALL.value)
        await offer(ctx, dut, [(TraceKind.START.value, 2, 0xABCDEF)] + [None] * (N - 1))
        ctx.set(dut.read.index, 0)
        await ctx.tick()  # event written in this cycle
        assert ctx.get(dut.read.entry.as_value()) == 0
        await ctx.tick()
        assert ctx.get(dut.read.entry.as_value()) == entry_word(0, 1, 2, 0xABCDEF)
        ctx.set(dut.read.index, 1 << 20)  # far past the end
        await ctx.tick()
        assert ctx.get(dut.read.entry.as_value()) == 0

    run(dut, bench)


def test_count_saturates():
    dut = TraceBuffer(small(16))

    async def bench(ctx):
        await clear(ctx, dut, TraceMode.ALL.value)
        ctx.set(dut._count, TRACE_COUNT_MAX - 3)  # fast-forward 4 G events
        await offer(ctx, dut, [(0, 0, 0)] * N)
        assert ctx.get(dut.read.count) == TRACE_COUNT_MAX
        await offer(ctx, dut, [(0, 0, 0)] * 2 + [None] * (N - 2))
        assert ctx.get(dut.read.count) == TRACE_COUNT_MAX

    run(dut, bench)


def test_sustained_overload_loses_whole_cycles_but_counts_them():
    rng = np.random.default_rng(5)
    schedule = [[(0, int(rng.integers(16)), int(rng.integers(1 << 24)))] * N
                for _ in range(12)]
    dut = TraceBuffer(small(256), fifo_depth=2)
    want, count = expected(schedule, TraceMode.ALL.value, 256)
    got = {}

    async def bench(ctx):
        await clear(ctx, dut, TraceMode.ALL.value)
        for row in schedule:
            await offer(ctx, dut, row)
        await settle(ctx, dut, N * 4)
        got["count"] = ctx.get(dut.read.count)
        got["entries"] = await read_all(ctx, dut, count)

    run(dut, bench)
    assert got["count"] == count
    kept = [e for e in got["entries"] if e]
    # whole cycles survive, in order: the kept entries are a union of complete cycles of
    # ``want`` (each cycle is N entries with one timestamp)
    cycles = [want[i:i + N] for i in range(0, len(want), N)]
    kept_cycles = [kept[i:i + N] for i in range(0, len(kept), N)]
    assert len(kept) % N == 0 and 2 <= len(kept_cycles) < len(cycles)
    it = iter(cycles)
    assert all(any(c == k for c in it) for k in kept_cycles)  # an ordered subsequence


def test_bad_parameters():
    with pytest.raises(ValueError, match="fifo_depth=1 is out of range"):
        TraceBuffer(small(), fifo_depth=1)
    with pytest.raises(TypeError, match="EngineConfig"):
        TraceBuffer(None)
