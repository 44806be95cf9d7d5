# amaranth: UnusedElaboratable=no
"""AxiResetGuard: scripted internal managers are "reset" (abandoned mid-transfer) by a flush
while ``AxiSlaveModel`` serves the external side with stalls. The model asserts that no
VALID is dropped or changed before READY, that WLAST is right and bursts are legal; this bench
tracks the external bus and checks that it is quiet (no read, W beat or B outstanding) when
``busy`` falls, that the internal side sees nothing while busy, that DRAM holds exactly the
beats the internal manager handed over (the padding beats write nothing), and that traffic
after the drain is served correctly (no stale R beat or B response leaks into it)."""

from __future__ import annotations

import numpy as np
import pytest
from axibench import ReadManager, WriteManager
from memmodels import AxiSlaveModel
from simhelpers import run

from unified_engine.rtl.axi_guard import AxiResetGuard

AW, DW = 32, 64
BEAT = DW // 8


class BusTracker:
    """Counts what is outstanding on the external bus from its handshakes."""

    def __init__(self, bus) -> None:
        self.bus = bus
        self.reads = self.writes = self.w_owed = 0
        self.zero_beats = 0
        self.waiting_at_flush: dict[str, bool] = {}

    def signals(self) -> tuple:
        b = self.bus
        return (b.ar.valid, b.ar.ready, b.r.valid, b.r.ready, b.r.payload.last,
                b.aw.valid, b.aw.ready, b.aw.payload.len, b.w.valid, b.w.ready,
                b.w.payload.strb, b.b.valid, b.b.ready)

    def observe(self, ar_v, ar_r, r_v, r_r, r_last, aw_v, aw_r, aw_len, w_v, w_r, w_strb,
                b_v, b_r) -> None:
        self.reads += int(ar_v and ar_r) - int(r_v and r_r and r_last)
        self.writes += int(aw_v and aw_r) - int(b_v and b_r)
        if aw_v and aw_r:
            self.w_owed += aw_len + 1
        if w_v and w_r:
            self.w_owed -= 1
            self.zero_beats += int(w_strb == 0)

    @property
    def quiet(self) -> bool:
        return self.reads == 0 and self.writes == 0 and self.w_owed == 0


def _read_bursts(rng, base: int, count: int) -> list[tuple[int, int]]:
    out = []
    for _ in range(count):
        beats = int(rng.integers(1, 17))
        out.append((base + int(rng.integers(0, 4096 // BEAT - beats + 1)) * BEAT, beats))
    return out


def _write_bursts(rng, base: int, count: int) -> list[tuple[int, bytes]]:
    return [(base + 256 * k, rng.integers(0, 256, int(rng.integers(1, 9)) * BEAT,
                                          dtype=np.uint8).tobytes())
            for k in range(count)]


def simulate(flush_at: int | None, *, seed: int, stall: float = 0.3, aw_delay: int = 0,
             w_stall: float | None = None, reads: bool = True, writes: bool = True,
             latency: int = 3, b_latency: int = 4, max_writes: int = 4,
             bursts: tuple[int, int] = (12, 8)) -> BusTracker:
    rng = np.random.default_rng(seed)
    dram = rng.integers(0, 256, 1 << 16, dtype=np.uint8)
    ref = dram.copy()  # reads come from 0x0000…0x7FFF, never written
    dut = AxiResetGuard(addr_width=AW, data_width=DW, id_width=2, max_reads=4,
                        max_writes=max_writes)
    model = AxiSlaveModel(dut.outer, dram, latency=latency, stall=stall, max_outstanding=4,
                          seed=seed, b_latency=b_latency)
    i = dut.inner

    def agents(phase: int) -> list:
        out = []
        if reads:
            out.append(ReadManager(i, ref, _read_bursts(rng, 0x4000 * phase, bursts[0]),
                                   outstanding=4, stall=stall, seed=seed + phase))
        if writes:
            w = WriteManager(i, _write_bursts(rng, 0x8000 + 0x4000 * phase, bursts[1]),
                             aw_delay=aw_delay, stall=stall if w_stall is None else w_stall,
                             seed=seed + phase)
            out.append(w)
        return out

    tracker = BusTracker(dut.outer)
    first, second = agents(0), agents(1)
    writers = [a for a in first + second if isinstance(a, WriteManager)]
    inner = (i.ar.ready, i.aw.ready, i.w.ready, i.r.valid, i.b.valid)

    async def bench(ctx):
        phase, cycle = 0, 0
        active = first
        while True:
            assert cycle < 5000, "no progress"
            ctx.set(dut.flush, cycle == flush_at)
            if phase == 1:  # the internal managers are in reset: idle, not even ready
                for name in ("ar", "aw", "w"):
                    ctx.set(getattr(i, name).valid, 0)
                ctx.set(i.r.ready, 0)
                ctx.set(i.b.ready, 0)
            else:
                for agent in active:
                    agent.drive(ctx)
            sampled = await ctx.tick().sample(
                dut.busy, *inner, *tracker.signals(),
                *(s for a in active for s in a.signals()))
            busy, *rest = sampled[2:]
            inner_values, rest = rest[:len(inner)], rest[len(inner):]
            bus, rest = rest[:13], rest[13:]
            tracker.observe(*bus)
            if phase != 1:
                for agent in active:
                    count = len(agent.signals())
                    agent.observe(cycle, *rest[:count])
                    rest = rest[count:]
            if cycle == flush_at:
                assert not all(a.done for a in first), "the flush comes after the traffic"
                w_valid, w_ready = bus[8], bus[9]
                tracker.waiting_at_flush = {  # which requests the flush caught waiting
                    "ar": bus[0] and not bus[1], "aw": bus[5] and not bus[6],
                    "w": w_valid and not w_ready}
                for agent in first:
                    if isinstance(agent, WriteManager) and agent.w_on and w_valid:
                        # The bus saw this beat's VALID: it must still go out, as it is.
                        assert not w_ready
                        data, _, _, addr = agent.ws[0]
                        agent.accepted.append((addr, data.to_bytes(BEAT, "little")))
                phase, active = 1, []
            elif phase == 1:
                assert not any(inner_values), f"cycle {cycle}: internal side saw a transfer"
                if cycle == flush_at + 1:
                    assert busy, "busy does not rise after flush"
                if not busy:
                    assert tracker.quiet, f"cycle {cycle}: busy fell with the bus not quiet"
                    phase, active = 2, second
            elif all(a.done for a in active) and (phase == 2 or flush_at is None):
                break  # the traffic after the drain (or, without a flush, all of it) is done
            else:
                assert not busy
            cycle += 1
        assert tracker.quiet

    run(dut, bench, processes=[model.process])
    # DRAM: exactly the beats the internal managers handed over, and the one shown at the
    # flush (the padding beats write nothing).
    for writer in writers:
        for addr, data in writer.accepted:
            ref[addr:addr + len(data)] = np.frombuffer(data, np.uint8)
    assert np.array_equal(dram, ref)
    return tracker


@pytest.mark.parametrize("flush_at", [3, 9, 17, 30, 52])
def test_flush_during_reads_and_writes(flush_at):
    simulate(flush_at, seed=flush_at)


@pytest.mark.parametrize("flush_at", [5, 12, 21])
def test_flush_during_reads(flush_at):
    simulate(flush_at, seed=flush_at, writes=False, stall=0.5, latency=6)


def test_flush_mid_write_burst_pads_with_zero_strobes():
    """W slower than AW: several AW bursts shown, their beats owed; all are sent."""
    totals = 0
    for flush_at in (8, 15, 23):
        tracker = simulate(flush_at, seed=100 + flush_at, reads=False, stall=0.1, w_stall=0.7)
        totals += tracker.zero_beats
    assert totals > 0  # the drain really had to pad


@pytest.mark.parametrize("flush_at", [2, 6, 11, 19])
def test_flush_with_w_ahead_of_aw(flush_at):
    """The manager offers W long before AW: the guard holds W back until its AW shows."""
    simulate(flush_at, seed=200 + flush_at, reads=False, aw_delay=5, stall=0.2)


def test_aw_ahead_of_w_many_outstanding():
    tracker = simulate(25, seed=300, reads=False, stall=0.0, w_stall=0.9, max_writes=8)
    assert tracker.zero_beats > 0


def test_flush_with_request_held_by_stalled_bus():
    """Heavy READY stalls: flushes land while AR, AW and W wait for READY; the model asserts
    they are neither dropped nor changed."""
    caught = {"ar": False, "aw": False, "w": False}
    for flush_at in range(4, 24, 3):
        tracker = simulate(flush_at, seed=400 + flush_at, stall=0.7, latency=2, bursts=(6, 4))
        for name, waiting in tracker.waiting_at_flush.items():
            caught[name] |= bool(waiting)
    assert all(caught.values()), caught


def test_no_flush_passes_everything():
    simulate(None, seed=7)


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="max_reads"):
        AxiResetGuard(addr_width=AW, data_width=DW, id_width=2, max_reads=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_random_flush(seed):
    rng = np.random.default_rng(seed)
    simulate(int(rng.integers(1, 80)), seed=1000 + seed, stall=float(rng.uniform(0, 0.8)),
             aw_delay=int(rng.integers(0, 6)), w_stall=float(rng.uniform(0, 0.9)),
             latency=int(rng.integers(1, 8)), b_latency=int(rng.integers(0, 8)),
             max_writes=int(rng.integers(1, 9)))
