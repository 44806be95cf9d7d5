"""QueueController and TokenCounters on their own, against small Python models.

A cycle-by-cycle testbench plays the dispatcher (pushes entries), the runtime token counters
(``avail``) and the unit (accepts a command when idle, finishes some cycles later), and checks
the order of issue, the depth of the FIFO, the token pops and pushes, the trace events, the
routing to the second unit, the busy / stall counters, ``idle`` and ``flush``.
"""

from __future__ import annotations

import random

from amaranth.hdl import Value
from amaranth.sim import Simulator

from unified_engine import EngineConfig
from unified_engine.host.timing import TimingParams
from unified_engine.isa import Opcode, Queue, VecOp, isa_for
from unified_engine.regs import TraceKind
from unified_engine.rtl.engine_if import TRACE_EVENT
from unified_engine.rtl.queues import (
    QUEUE_DEPTH,
    QUEUE_ENTRY,
    RUNTIME_TOKEN_BITS,
    QueueController,
    TokenCounters,
    vector_move_route,
)

CONFIG = EngineConfig.preset("sim_small")


def entry(word: int, pc: int, wait: int = 0, signal: int = 0) -> int:
    return QUEUE_ENTRY.const({"word": word, "pc": pc, "wait": wait, "signal": signal}) \
        .as_value().value


def event(raw: int) -> tuple[int, int, int]:
    f = {name: (raw >> fld.offset) & ((1 << fld.width) - 1) for name, fld in TRACE_EVENT}
    return f["kind"], f["unit"], f["payload"]


def simulate(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


class Harness:
    """Drives one QueueController for ``cycles`` cycles.

    ``entries``: (word, pc, wait, signal) pushed as fast as accepted; ``avail(cycle)`` gives
    the token mask; ``duration(i)`` the cycles unit execution of instruction i takes (0 =
    ``done`` in the issue cycle); ``unit_ready(cycle)`` gates the unit's ``ready``.
    """

    def __init__(self, dut, entries, *, avail=lambda c: 0xF, duration=lambda i: 3,
                 unit_ready=lambda c: True, flush_at=None) -> None:
        self.dut, self.entries = dut, list(entries)
        self.avail, self.duration, self.unit_ready = avail, duration, unit_ready
        self.flush_at = flush_at
        self.issued: list[tuple[int, int, str]] = []  # (cycle, word, unit port)
        self.finished: list[int] = []  # cycles of done
        self.pops: list[tuple[int, int]] = []
        self.pushes: list[tuple[int, int]] = []
        self.starts: list[tuple[int, tuple]] = []
        self.ends: list[tuple[int, tuple]] = []
        self.accepted = 0
        self.cycle = 0  # across calls of run()
        self.running = None  # [cycles left, index] of the unit's instruction

    async def run(self, ctx, cycles: int) -> None:
        dut = self.dut
        units = [("unit", dut.unit)] + ([("unit_alt", dut.unit_alt)]
                                         if hasattr(dut, "unit_alt") else [])
        running = self.running
        pending = 0
        for _ in range(cycles):
            cycle = self.cycle
            self.cycle += 1
            flush = self.flush_at is not None and cycle == self.flush_at
            flushed = self.flush_at is not None and cycle >= self.flush_at
            ctx.set(dut.flush, flush)
            if pending < len(self.entries) and not flushed:  # nothing more after a flush
                ctx.set(dut.push.valid, 1)
                ctx.set(Value.cast(dut.push.payload), entry(*self.entries[pending]))
            else:
                ctx.set(dut.push.valid, 0)
            ctx.set(dut.avail, self.avail(cycle))
            done_now = running is not None and running[0] == 0
            idle_unit = running is None or done_now
            ready = idle_unit and self.unit_ready(cycle)
            for _, port in units:
                ctx.set(port.cmd.ready, ready)
                ctx.set(port.done, done_now)
            # ---- observe this cycle's transfers ----
            if ctx.get(dut.push.ready) and pending < len(self.entries) and not flushed:
                pending += 1
            if done_now:
                self.finished.append(cycle)
                running = None
            if running is not None:
                running[0] -= 1
            for name, port in units:
                if ctx.get(port.cmd.valid) and ready and not flush:
                    self.issued.append((cycle, ctx.get(port.cmd.payload), name))
                    n = len(self.issued) - 1
                    running = [self.duration(n) - 1, n]
                    # finish in the issue cycle as well (unless done is already taken by the
                    # previous instruction in this cycle: one pulse per instruction)
                    if self.duration(n) == 0 and done_now:
                        running[0] = 0
                    elif self.duration(n) == 0:
                        for _, p in units:
                            ctx.set(p.done, 1)
                        self.finished.append(cycle)
                        running = None
            pop, push = ctx.get(dut.token_pop), ctx.get(dut.token_push)
            if pop:
                self.pops.append((cycle, pop))
            if push:
                self.pushes.append((cycle, push))
            if ctx.get(dut.trace_start.valid):
                self.starts.append((cycle, event(ctx.get(Value.cast(dut.trace_start.event)))))
            if ctx.get(dut.trace_end.valid):
                self.ends.append((cycle, event(ctx.get(Value.cast(dut.trace_end.event)))))
            if flush:  # the unit is reset together with the queue
                running = None
            await ctx.tick()
        self.accepted = pending
        self.running = running


def test_order_depth_tokens_trace_and_counters():
    rng = random.Random(1)
    entries = [(rng.getrandbits(256) & ~0x3F | Opcode.LOAD.value, 100 + i,
                rng.choice([0, 0b0010, 0b1100]), rng.getrandbits(4) & 0b1110)
               for i in range(20)]
    durations = [rng.randint(1, 5) for _ in entries]
    dut = QueueController(Queue.LOAD)
    h = Harness(dut, entries, duration=lambda i: durations[i],
                unit_ready=lambda c: c >= 40)  # the unit starts late: the FIFO fills
    result = {}

    async def bench(ctx):
        await h.run(ctx, 40)
        result["accepted_while_blocked"] = h.accepted
        result["free"] = ctx.get(dut.free)
        h.entries = entries[h.accepted:]  # keep pushing the rest
        await h.run(ctx, 200)
        result["idle"] = ctx.get(dut.idle)
        result["busy"] = ctx.get(dut.busy_cycles)
        result["stall"] = ctx.get(dut.stall_cycles)

    simulate(dut, bench)
    assert result["accepted_while_blocked"] == QUEUE_DEPTH and not result["free"]
    assert [w for _, w, _ in h.issued] == [e[0] for e in entries]
    assert result["idle"]
    # pops at issue with the entry's wait mask, pushes at done with its signal mask
    issue_cycles = [c for c, _, _ in h.issued]
    assert [p for _, p in h.pops] == [e[2] for e in entries if e[2]]
    assert all(c in issue_cycles for c, _ in h.pops)
    assert [p for _, p in h.pushes] == [e[3] for e in entries if e[3]]
    assert all(c in h.finished for c, _ in h.pushes)
    assert [ev for _, ev in h.starts] == [(TraceKind.START.value, 0, e[1]) for e in entries]
    assert [ev for _, ev in h.ends] == [(TraceKind.END.value, 0, e[1]) for e in entries]
    # one at a time: each issue at or after the previous done; busy = Σ (done − issue)
    assert all(i >= d for i, d in zip(issue_cycles[1:], h.finished, strict=False))
    assert result["busy"] == sum(d - i for i, d in zip(issue_cycles, h.finished, strict=True))
    assert result["stall"] == 0


def test_waits_for_tokens_and_counts_stalls():
    word = Opcode.STORE.value
    entries = [(word, 1, 0b0011, 0), (word, 2, 0b0100, 0b0001), (word, 3, 0, 0)]
    dut = QueueController(Queue.STORE)
    # token LOAD arrives at cycle 10, ARRAY at 20, VECTOR at 30
    h = Harness(dut, entries, avail=lambda c: (c >= 10) | (c >= 20) << 1 | (c >= 30) << 2,
                duration=lambda i: 2)
    result = {}

    async def bench(ctx):
        await h.run(ctx, 50)
        result["stall"] = ctx.get(dut.stall_cycles)
        result["busy"] = ctx.get(dut.busy_cycles)

    simulate(dut, bench)
    issue = [c for c, _, _ in h.issued]
    assert issue[0] == 20 and issue[1] == 30 and issue[2] == 32
    # a head waits for tokens from when it is visible (FIFO latency 2) or the unit has
    # finished the previous instruction (done at 22, idle from 23) until its tokens come
    assert result["stall"] == (20 - 2) + (30 - 23)
    assert result["busy"] == 6
    assert h.pops == [(20, 0b0011), (30, 0b0100)]
    assert h.pushes == [(32, 0b0001)]


def test_vector_queue_routes_data_movement_to_the_second_unit():
    isa = isa_for(CONFIG)
    ops = [VecOp.ADD, VecOp.QUANTIZE, VecOp.EXP, VecOp.TRANSPOSE, VecOp.DEQUANTIZE,
           VecOp.COPY, VecOp.ARGMAX4]
    entries = [(isa.encode(isa.make(Opcode.VECTOR, op=op)), i, 0, 0)
               for i, op in enumerate(ops)]
    dut = QueueController(Queue.VECTOR, route=vector_move_route(CONFIG))
    h = Harness(dut, entries, duration=lambda i: 1 + i % 3)

    async def bench(ctx):
        await h.run(ctx, 60)

    simulate(dut, bench)
    moves = {VecOp.QUANTIZE, VecOp.TRANSPOSE, VecOp.DEQUANTIZE}
    assert [w for _, w, _ in h.issued] == [e[0] for e in entries]
    assert [name for _, _, name in h.issued] == \
        ["unit_alt" if op in moves else "unit" for op in ops]


def test_done_in_the_issue_cycle_and_flush():
    entries = [(Opcode.MATMUL.value, 10 + i, 0, 0b0100) for i in range(12)]
    dut = QueueController(Queue.ARRAY)
    h = Harness(dut, entries, duration=lambda i: 0 if i % 2 else 2, flush_at=9)
    result = {}

    async def bench(ctx):
        await h.run(ctx, 25)
        result["idle"] = ctx.get(dut.idle)

    simulate(dut, bench)
    # instant instructions push their tokens and END in their issue cycle
    assert len(h.pushes) == len(h.finished) >= 2
    for c, push in h.pushes:
        assert push == 0b0100 and c in h.finished
    # the flush dropped the rest of the queue
    assert 2 <= len(h.issued) < h.accepted and result["idle"]
    assert all(c < 9 for c, _, _ in h.issued)


def test_token_counters_match_a_model():
    rng = random.Random(4)
    width = RUNTIME_TOKEN_BITS
    dut = TokenCounters(width)
    model = [[0] * 4 for _ in range(4)]

    async def bench(ctx):
        for cycle in range(300):
            push = [rng.getrandbits(4) & ~(1 << q) for q in range(4)]
            pop = [rng.getrandbits(4) & ~(1 << q) for q in range(4)]
            # never pop an empty channel (the dispatcher guarantees it)
            pop = [sum(1 << s for s in range(4) if p >> s & 1 and model[s][d] > 0)
                   for d, p in enumerate(pop)]
            clear = cycle in (150, 151)
            for q in range(4):
                ctx.set(dut.push[q], push[q])
                ctx.set(dut.pop[q], pop[q])
            ctx.set(dut.clear, clear)
            await ctx.tick()
            for s in range(4):
                for d in range(4):
                    if clear:
                        model[s][d] = 0
                    elif s != d:
                        model[s][d] += (push[s] >> d & 1) - (pop[d] >> s & 1)
                    assert ctx.get(dut.count[s][d]) == model[s][d] % (1 << width)
        assert max(max(row) for row in model) > 3

    simulate(dut, bench)


def test_depth_is_the_simulators():
    assert TimingParams.for_config(CONFIG).queue_depth == QUEUE_DEPTH
