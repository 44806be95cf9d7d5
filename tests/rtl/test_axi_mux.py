# amaranth: UnusedElaboratable=no
"""AxiReadMux: several scripted read managers and one writer against ``AxiSlaveModel`` (with
stalls): every manager gets exactly its own bursts' data, in order, with its index as R id;
AR payloads stay stable while waiting (the model asserts it); round-robin order on AR; the
writer's bursts land in DRAM; R beats of interleaved IDs are routed beat by beat."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module, Value
from axibench import ReadManager, WriteManager, pack, unpack
from memmodels import AxiSlaveModel
from simhelpers import run

from unified_engine.rtl.axi_mux import AxiReadMux
from unified_engine.rtl.engine_if import ENGINE_AXI_ID_WIDTH

AW = 32


def _bursts(rng, region: int, count: int, beat: int) -> list[tuple[int, int]]:
    """Random beat-aligned bursts inside the 16 KB region ``region``, none crossing 4 KB."""
    out = []
    for _ in range(count):
        beats = int(rng.integers(1, 17))
        page = region * 0x4000 + int(rng.integers(0, 4)) * 4096
        start = int(rng.integers(0, 4096 // beat - beats + 1)) * beat
        out.append((page + start, beats))
    return out


def _simulate(n: int, data_width: int, *, writer: int | None, reads: int, stall: float,
              seed: int = 0, outstanding: int = 3, gap: float = 0.0):
    rng = np.random.default_rng(seed)
    beat = data_width // 8
    dram = rng.integers(0, 256, 0x4000 * (n + 1), dtype=np.uint8)
    ref = dram.copy()
    dut = AxiReadMux(n, addr_width=AW, data_width=data_width, id_width=ENGINE_AXI_ID_WIDTH,
                     writer=writer)
    model = AxiSlaveModel(dut.bus, dram, latency=3, stall=stall, max_outstanding=6, seed=seed)
    readers = [ReadManager(man, ref, _bursts(rng, k, reads, beat), outstanding=outstanding,
                           stall=stall, gap=gap, seed=seed + k, expect_id=k)
               for k, man in enumerate(dut.managers)]
    written = []
    writers = []
    if writer is not None:
        base = n * 0x4000  # the writer's own region, which nobody reads
        for k in range(4):
            data = rng.integers(0, 256, (k + 1) * beat, dtype=np.uint8).tobytes()
            written.append((base + k * 512, data))
        writers = [WriteManager(dut.managers[writer], written, aw_delay=2, stall=stall,
                                seed=seed)]

    async def bench(ctx):
        cycle = 0
        while not all(r.done for r in readers) or not all(w.done for w in writers):
            assert cycle < 5000, "the mux does not finish"
            for agent in (*readers, *writers):
                agent.drive(ctx)
            sampled = await ctx.tick().sample(*(s for a in (*readers, *writers)
                                                for s in a.signals()))
            values = list(sampled[2:])
            for agent in (*readers, *writers):
                count = len(agent.signals())
                agent.observe(cycle, *values[:count])
                values = values[count:]
            cycle += 1

    top = Module()  # a clock domain even when the mux has no registers (n = 1)
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    run(top, bench, processes=[model.process])
    for addr, data in written:
        assert dram[addr:addr + len(data)].tobytes() == data
    return readers, model


@pytest.mark.parametrize("n, data_width, writer, stall, gap", [
    (3, 64, 2, 0.3, 0.0),
    (3, 64, None, 0.5, 0.5),  # managers come and go while a grant waits for AR ready
    (4, 256, 1, 0.2, 0.3),
    (3, 128, None, 0.0, 0.0),
    (1, 64, 0, 0.3, 0.2),
])
def test_reads_and_writer(n, data_width, writer, stall, gap):
    readers, model = _simulate(n, data_width, writer=writer, reads=12, stall=stall, seed=n,
                               gap=gap)
    assert all(r.beats > 0 for r in readers)
    assert len(model.read_bursts) == 12 * n


def test_round_robin_on_ar():
    """Three managers that always ask (AR stalls, so grants wait): bursts go out 0, 1, 2, …"""
    _, model = _simulate(3, 64, writer=None, reads=10, stall=0.5, seed=7, outstanding=10)
    owners = [addr // 0x4000 for addr, _ in model.read_bursts]
    assert owners[:24] == [0, 1, 2] * 8


def test_r_routing_interleaved_ids():
    """Beats with any ID in any order: each goes to its manager, with that manager's ready;
    an ID that names no manager is dropped (ready high)."""
    n = 3
    dut = AxiReadMux(n, addr_width=AW, data_width=64, id_width=2, writer=None)
    rng = np.random.default_rng(5)

    async def bench(ctx):
        for _ in range(200):
            ident = int(rng.integers(0, 4))
            data = int(rng.integers(0, 1 << 62))
            readies = [bool(rng.random() < 0.5) for _ in range(n)]
            ctx.set(dut.bus.r.valid, 1)
            ctx.set(Value.cast(dut.bus.r.payload), pack(dut.bus.r, id=ident, data=data, last=1))
            for k, man in enumerate(dut.managers):
                ctx.set(man.r.ready, readies[k])
            for k, man in enumerate(dut.managers):
                assert ctx.get(man.r.valid) == (ident == k)
                if ident == k:
                    assert unpack(man.r, ctx.get(Value.cast(man.r.payload)))["data"] == data
            assert ctx.get(dut.bus.r.ready) == (readies[ident] if ident < n else 1)
            await ctx.tick()

    run(dut, bench)


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="id_width"):
        AxiReadMux(3, addr_width=AW, data_width=64, id_width=1)
    with pytest.raises(ValueError, match="writer"):
        AxiReadMux(2, addr_width=AW, data_width=64, id_width=2, writer=2)
    with pytest.raises(ValueError, match="n must be"):
        AxiReadMux(0, addr_width=AW, data_width=64, id_width=2)
