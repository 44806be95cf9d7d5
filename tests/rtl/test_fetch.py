# amaranth: UnusedElaboratable=no
"""InstructionFetch against the ISA simulator's fetch rule (``Machine._fetch``: the word at
``PROGRAM_ADDR + 32·pc`` or FETCH_OUT_OF_WINDOW) with ``AxiSlaveModel`` as DRAM (window
enforced, random stalls): sequential code, loops and jumps with cache conflicts, window edges
at odd byte positions, invalidate (also during a fill), hit throughput, and every AXI width
64…1024."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable

import numpy as np
import pytest
from amaranth.hdl import Value
from memmodels import AxiSlaveModel
from simhelpers import run

from unified_engine.config import EngineConfig
from unified_engine.host.isasim import Machine
from unified_engine.host.units import Stop
from unified_engine.isa import IllegalInstruction
from unified_engine.rtl.fetch import InstructionFetch

SMALL = EngineConfig.preset("sim_small")  # 64-bit AXI, 64-instruction cache
DEFAULT = EngineConfig()  # 256-bit AXI, 1024-instruction cache
DRAM_BYTES = 1 << 16


class Reference:
    """What the ISA simulator fetches: ``None`` for FETCH_OUT_OF_WINDOW, else the word."""

    def __init__(self, config: EngineConfig, dram: np.ndarray, program_addr: int,
                 window: tuple[int, int]) -> None:
        self.dram = dram
        self.machine = Machine(config, dram)
        # The CSR block ignores PROGRAM_ADDR bits 4:0 (docs/isa.md); so does the host model.
        self.base = program_addr & ~0x1F
        self.machine.start(self.base, window)

    def __call__(self, pc: int) -> int | None:
        st = self.machine.state
        st.pc = pc
        self.machine._decoded.clear()  # the run-time decode cache would skip the check
        try:
            self.machine._fetch(st)
        except Stop:
            return None
        except IllegalInstruction:
            pass  # random words need not decode; the fetch itself succeeded
        addr = self.base + 32 * pc
        return int.from_bytes(self.dram[addr:addr + 32].tobytes(), "little")


@dataclasses.dataclass
class Run:
    """Results of one simulation: per request the accept and answer cycles."""

    accepted: list[int]
    answered: list[int]
    model: AxiSlaveModel


def simulate(config: EngineConfig, pcs: list[int], *, program_addr: int = 0x1000,
             window: tuple[int, int] = (0x1000, 0x9000), stall: float = 0.0,
             gap: float = 0.0, latency: int = 4, seed: int = 0,
             events: dict[int, tuple[int, Callable]] | None = None) -> Run:
    """Request ``pcs`` in order (a request every cycle unless ``gap``), take answers (``stall``
    = chance of ``resp.ready`` low), check each against :class:`Reference`.

    ``events[k] = (delay, f)``: request ``k`` is offered ``delay`` idle cycles after request
    ``k - 1`` was accepted, and ``f(ctx, dut, dram, pending)`` runs just before (to change
    DRAM and pulse ``invalidate``); ``pending`` are the requests accepted and not answered
    yet, as ``[pc, expected]`` lists the event may update.
    """
    rng = np.random.default_rng(seed)
    dram = rng.integers(0, 256, DRAM_BYTES, dtype=np.uint8)
    dut = InstructionFetch(config)
    model = AxiSlaveModel(dut.axi, dram, latency=latency, stall=stall, window=window,
                          max_outstanding=2, seed=seed)
    events = events or {}
    accepted: list[int] = []
    answered: list[int] = []
    req_payload = Value.cast(dut.fetch.req.payload)
    resp_payload = dut.fetch.resp.payload

    async def bench(ctx):
        ctx.set(dut.program_addr, program_addr)
        ctx.set(dut.window_base, window[0])
        ctx.set(dut.window_limit, window[1])
        ref = Reference(config, dram, program_addr, window)
        expect: deque[list] = deque()  # [pc, expected answer]
        todo = deque(enumerate(pcs))
        current = None
        held = None  # answer shown with ready low: must stay
        wait = 0
        cycle = 0
        while todo or current is not None or expect:
            assert cycle < 200 * len(pcs) + 500, "fetch does not finish"
            ctx.set(dut.invalidate, 0)
            if current is None and todo and not rng.random() < gap:
                k, pc = todo[0]
                if k in events and wait < events[k][0]:
                    wait += 1
                else:
                    todo.popleft()
                    wait = 0
                    if k in events:
                        events[k][1](ctx, dut, dram, expect)
                    current = pc
            ctx.set(dut.fetch.req.valid, current is not None)
            if current is not None:
                ctx.set(req_payload, current)
            ready = not rng.random() < stall
            ctx.set(dut.fetch.resp.ready, ready)
            _, _, req_ready, valid, word, error = await ctx.tick().sample(
                dut.fetch.req.ready, dut.fetch.resp.valid, resp_payload.word,
                resp_payload.error)
            if held is not None:
                assert valid and (word, error) == held, f"cycle {cycle}: answer changed"
            held = (word, error) if valid and not ready else None
            if current is not None and req_ready:
                expect.append([current, ref(current)])
                accepted.append(cycle)
                current = None
            if valid and ready:
                assert expect, f"cycle {cycle}: an answer without a request"
                _, want = expect.popleft()
                n = len(answered)
                if want is None:
                    assert error == 1, f"request {n} (pc {pcs[n]}): no error"
                else:
                    assert error == 0, f"request {n} (pc {pcs[n]}): unexpected error"
                    assert word == want, f"request {n} (pc {pcs[n]}): {word:#x} != {want:#x}"
                answered.append(cycle)
            cycle += 1

    run(dut, bench, processes=[model.process])
    return Run(accepted, answered, model)


def _loops(rng, length: int, span: int) -> list[int]:
    """A pc trace of straight code, short loops and jumps anywhere in ``[0, span)``."""
    pcs, pc = [], 0
    while len(pcs) < length:
        r = rng.random()
        if r < 0.1:  # a loop: run a short body a few times
            body = list(range(pc, min(pc + int(rng.integers(2, 12)), span)))
            pcs += body * int(rng.integers(2, 4))
            pc = body[-1] + 1 if body else pc
        elif r < 0.2:
            pc = int(rng.integers(0, span))
        pcs.append(pc % span)
        pc = (pc + 1) % span
    return pcs[:length]


@pytest.mark.parametrize("config", [SMALL, DEFAULT], ids=["axi64", "axi256"])
def test_sequential(config):
    pcs = list(range(200))
    r = simulate(config, pcs, stall=0.2, gap=0.1, seed=1)
    assert len(r.answered) == len(pcs)
    # Straight code: each line (256 bytes) is read once, as one burst.
    assert len(r.model.read_bursts) == -(-200 // 8)
    assert all(beats * config.axi_bytes == 256 for _, beats in r.model.read_bursts)


@pytest.mark.parametrize("config", [SMALL, DEFAULT], ids=["axi64", "axi256"])
def test_loops_and_jumps(config):
    """Random control flow over more code than the 64-word cache of SMALL holds, so lines
    evict each other (and for DEFAULT, code that stays cached)."""
    rng = np.random.default_rng(2)
    pcs = _loops(rng, 300, 160)
    simulate(config, pcs, program_addr=0x1000 + 0x60, stall=0.3, gap=0.2, seed=2)


def test_hit_throughput():
    """Cached code answers one word per cycle; misses cost latency + beats."""
    pcs = list(range(16)) * 3
    r = simulate(DEFAULT, pcs, seed=3)
    assert len(r.model.read_bursts) == 2
    hits = r.accepted[16:]
    assert hits == list(range(hits[0], hits[0] + len(hits)))  # a request every cycle
    assert r.answered[16:] == [c + 1 for c in hits]  # answered the next cycle


@pytest.mark.parametrize("window", [
    (0x1000 + 32 * 5, 0x1000 + 32 * 21),          # word aligned, not line aligned
    (0x1000 + 32 * 5 + 4, 0x1000 + 32 * 21 - 12),  # inside words: the edge words fail
    (0x1000 + 8, 0x1000 + 32 * 3 + 8),            # one full word in the window
    (0x1000 + 32 * 3 + 8, 0x1000 + 32 * 4 + 4),   # no full word at all
])
@pytest.mark.parametrize("config", [SMALL, DEFAULT], ids=["axi64", "axi256"])
def test_window_edges(config, window):
    """pcs on both sides of the window edges: words not fully inside answer error and are
    not read; fills stay inside (the memory model asserts it)."""
    pcs = [*range(0, 26), *range(25, -1, -1), 40, 2, 1000, 7, 6, 2**32 - 1, 5]
    r = simulate(config, pcs, window=window, stall=0.2, seed=4)
    lo = window[0] - window[0] % config.axi_bytes
    for addr, beats in r.model.read_bursts:
        assert addr >= lo and addr + beats * config.axi_bytes <= window[1] + config.axi_bytes


def test_program_addr_low_bits_ignored_and_top_of_window():
    """PROGRAM_ADDR bits 4:0 are ignored; a window ending at the top of DRAM still fetches
    its last word."""
    pcs = [0, 1, 2, 3, 100, 101, 102, 103]
    top = DRAM_BYTES
    simulate(SMALL, pcs, program_addr=top - 32 * 104 + 0x13, window=(top - 32 * 104, top),
             stall=0.2, seed=5)


def _rewrite(start: int, count: int, value: int | None, *, in_flight: bool = False):
    """Event: overwrite ``count`` words from byte ``start`` (unless ``value`` is None) and
    pulse ``invalidate``. ``in_flight``: a miss is being filled right now; that request must
    then be answered with the new words (its fill is dropped and redone)."""

    def event(ctx, dut, dram, pending):
        if value is not None:
            dram[start:start + 32 * count] = value
        ctx.set(dut.invalidate, 1)
        if in_flight:
            assert len(pending) == 1 and not ctx.get(dut.fetch.resp.valid)
            pc = pending[0][0]
            addr = start + 32 * pc
            pending[0][1] = int.from_bytes(dram[addr:addr + 32].tobytes(), "little")

    return event


@pytest.mark.parametrize("config", [SMALL, DEFAULT], ids=["axi64", "axi256"])
def test_invalidate(config):
    """New DRAM contents + invalidate (as at START): the next fetches return the new words;
    an invalidate in the middle of a line fill drops the fill (no line of mixed contents)."""
    pcs = [*range(16), *range(16), *range(16)]
    events = {
        16: (0, _rewrite(0x1000, 16, 0xA5)),  # program rewritten between two passes
        32: (0, _rewrite(0x1000, 16, None)),  # invalidate only: request 32 misses
        # rewritten while request 32 (pc 0) is half filled
        33: (256 // config.axi_bytes // 2 + 2, _rewrite(0x1000, 16, 0x3C, in_flight=True)),
    }
    r = simulate(config, pcs, events=events, seed=6, latency=1)
    assert len(r.model.read_bursts) == 7  # 2 lines per pass, line 0 twice in the last


WIDTHS = [
    pytest.param(SMALL, id="axi64"),
    pytest.param(dataclasses.replace(SMALL, axi_data_width=128), id="axi128"),
    pytest.param(DEFAULT, id="axi256"),
    pytest.param(dataclasses.replace(DEFAULT, axi_data_width=512), id="axi512"),
    pytest.param(dataclasses.replace(DEFAULT, axi_data_width=1024), id="axi1024"),
]


@pytest.mark.parametrize("config", WIDTHS)
def test_axi_widths(config):
    """Each AXI width: a beat is 1/4 or 1/2 word, one word, or 2 or 4 words."""
    rng = np.random.default_rng(7)
    pcs = _loops(rng, 120, 100)
    window = (0x1000 + 40, 0x1000 + 32 * 90 + 16)
    simulate(config, pcs, program_addr=0x1000 + 0x20, window=window, stall=0.25, gap=0.1,
             seed=7)



@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("config", WIDTHS)
def test_random_programs(config, seed):
    """Random PROGRAM_ADDR (with ignored low bits), random windows, random control flow."""
    rng = np.random.default_rng(1000 + seed)
    program_addr = int(rng.integers(0x800, 0x3000))
    lo = program_addr - program_addr % 32 + int(rng.integers(-64, 512))
    hi = lo + int(rng.integers(32, 32 * 200))
    pcs = _loops(rng, 400, 220)
    simulate(config, pcs, program_addr=program_addr, window=(lo, hi), stall=0.3, gap=0.2,
             latency=int(rng.integers(1, 12)), seed=seed)


def test_word_past_the_address_space_is_refused_not_wrapped():
    """A window limit above 2**axi_addr_width must not let a fetch wrap to address 0: the
    words that end past the top answer FETCH_OUT_OF_WINDOW and no burst is issued."""
    top = 1 << SMALL.axi_addr_width
    dram = np.zeros(DRAM_BYTES, dtype=np.uint8)
    dut = InstructionFetch(SMALL)
    model = AxiSlaveModel(dut.axi, dram, latency=2, window=(0, DRAM_BYTES), max_outstanding=2)
    req_payload = Value.cast(dut.fetch.req.payload)
    answers: list[int] = []

    async def bench(ctx):
        ctx.set(dut.program_addr, top - 64)
        ctx.set(dut.window_base, top - 4096)
        ctx.set(dut.window_limit, top + 4096)
        ctx.set(dut.fetch.resp.ready, 1)
        for pc in (2, 3, 1000):  # addresses top, top + 32, top + 31,936: all past the top
            ctx.set(dut.fetch.req.valid, 1)
            ctx.set(req_payload, pc)
            await ctx.tick().until(dut.fetch.req.ready)
            ctx.set(dut.fetch.req.valid, 0)
            (error,) = await ctx.tick().sample(dut.fetch.resp.payload.error).until(
                dut.fetch.resp.valid)
            answers.append(error)

    run(dut, bench, processes=[model.process])
    assert answers == [1, 1, 1]
    assert model.read_bursts == []
