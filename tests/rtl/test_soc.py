# amaranth: UnusedElaboratable=no
"""The multi-engine SoC: CSR decode (SoC block, engine blocks, DECERR), the shared sync-flag
word, and the memory interconnect (shared arbiter with ID extension, per-engine ports)."""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from axi_managers import BurstManager, LiteManager
from memmodels import AxiSlaveModel

from unified_engine.config import EngineConfig
from unified_engine.isa import SYNC_FLAGS
from unified_engine.regs import build_id, reg, reset_values
from unified_engine.rtl.axi import AxiResp
from unified_engine.rtl.engine_if import (
    engine_signature,
)
from unified_engine.rtl.soc import (
    ENGINE_CSR_STRIDE,
    SOC_ID_MAGIC,
    AxiArbiter,
    IdleEngine,
    Soc,
    engine_csr_base,
    soc_reg,
)


def small(engines: int) -> EngineConfig:
    return dataclasses.replace(EngineConfig.preset("sim_small"), engines=engines)


class PuppetEngine(wiring.Component):
    """The engine's members with nothing behind them: the testbench drives the engine side."""

    def __init__(self, config: EngineConfig, engine_index: int = 0) -> None:
        self.engine_index = engine_index
        super().__init__(engine_signature(config))

    def elaborate(self, platform):
        return Module()


def build(config, factory, **kwargs):
    made = []

    def make(cfg, index):
        made.append(factory(cfg, index))
        return made[-1]

    soc = Soc(config, dram_size=1 << 20, engine_factory=make, board_code=0x4B37, **kwargs)
    sim = Simulator(soc)
    sim.add_clock(1e-8)
    return soc, sim, made


def test_csr_decode_soc_block_engines_and_decerr():
    cfg = small(3)
    soc, sim, _ = build(cfg, IdleEngine)
    lite = LiteManager(soc.csr)
    seen = {}

    async def bench(ctx):
        ctx.set(soc.status, 0b011)
        for name in ("SOC_ID", "ENGINES", "ENGINE_BASE", "ENGINE_STRIDE", "CLOCK_KHZ",
                     "DRAM_SIZE_LO", "DRAM_SIZE_HI", "MEM_PORTS", "STATUS", "BUILD_ID_LO",
                     "BUILD_ID_HI", "BOARD", "BUSY"):
            seen[name] = await lite.read(ctx, soc_reg(name).offset)
        assert await lite.write(ctx, soc_reg("SCRATCH").offset, 0xDEADBEEF) == AxiResp.OKAY
        assert await lite.write(ctx, soc_reg("SCRATCH").offset, 0x00AA0000, strb=0b0100) == 0
        seen["SCRATCH"] = await lite.read(ctx, soc_reg("SCRATCH").offset)
        for i in range(cfg.engines):
            base = engine_csr_base(i)
            seen[f"e{i}"] = [await lite.read(ctx, base + reg(n).offset)
                             for n in ("ID", "BUILD_ID_LO", "CFG_ENGINE_INDEX", "CFG_ROWS")]
            # a write to an engine block reaches it (IdleEngine ignores it, OKAY)
            assert await lite.write(ctx, base + reg("CONTROL").offset, 1) == AxiResp.OKAY
        past = engine_csr_base(cfg.engines)
        seen["past_read"] = await lite.read(ctx, past + 4)
        seen["past_write"] = await lite.write(ctx, past, 5)
        seen["top_read"] = await lite.read(ctx, (1 << 20) - 4)

    sim.add_testbench(bench)
    sim.run()
    bid = build_id(cfg)
    assert seen["SOC_ID"] == (SOC_ID_MAGIC, 0)
    assert seen["ENGINES"] == (3, 0)
    assert seen["ENGINE_BASE"] == (ENGINE_CSR_STRIDE, 0)
    assert seen["ENGINE_STRIDE"] == (ENGINE_CSR_STRIDE, 0)
    assert seen["CLOCK_KHZ"] == (100_000, 0)
    assert seen["DRAM_SIZE_LO"] == (1 << 20, 0) and seen["DRAM_SIZE_HI"] == (0, 0)
    assert seen["MEM_PORTS"] == (1, 0)
    assert seen["STATUS"] == (0b011, 0)
    assert seen["BUILD_ID_LO"] == (bid & 0xFFFFFFFF, 0)
    assert seen["BUILD_ID_HI"] == (bid >> 32, 0)
    assert seen["BOARD"] == (0x4B37, 0)
    assert seen["BUSY"] == (0, 0)
    assert seen["SCRATCH"] == (0xDEAABEEF, 0)
    for i in range(cfg.engines):
        values = reset_values(cfg, i)
        assert [v for v, _ in seen[f"e{i}"]] == [
            values["ID"], values["BUILD_ID_LO"], i, cfg.rows]
    assert seen["past_read"] == (0, AxiResp.DECERR)
    assert seen["past_write"] == AxiResp.DECERR
    assert seen["top_read"] == (0, AxiResp.DECERR)


def test_shared_sync_flags_set_clear_and_status_bits():
    cfg = small(3)
    soc, sim, engines = build(cfg, PuppetEngine)
    lite = LiteManager(soc.csr)
    mask = (1 << SYNC_FLAGS) - 1
    log = []

    async def bench(ctx):
        def flags():
            values = {ctx.get(e.sync.flags) for e in engines}
            assert len(values) == 1, "engines see different flag words"
            return values.pop()

        async def request(sets, clears):
            for e, s, c in zip(engines, sets, clears, strict=True):
                ctx.set(e.sync.set, s)
                ctx.set(e.sync.clear, c)
            await ctx.tick()
            for e in engines:
                ctx.set(e.sync.set, 0)
                ctx.set(e.sync.clear, 0)
            log.append(flags())

        await ctx.tick()
        assert flags() == 0
        await request([0b0001, 0b0100, 0], [0, 0, 0])            # two engines set
        await request([0, 0, 1 << (SYNC_FLAGS - 1)], [0, 0, 0])  # the top flag
        await request([0b0010, 0, 0], [0, 0b0001, 0])             # set and clear together
        await request([0, 0b1000, 0], [0b1000, 0, 0])             # clear wins over set
        await request([0, 0, 0], [0, 0, 0])                       # nothing: holds
        log.append((await lite.read(ctx, soc_reg("SYNC_FLAGS").offset))[0])
        await request([0, 0, 0], [mask, 0, 0])
        for i, e in enumerate(engines):
            ctx.set(e.busy, i != 1)
            ctx.set(e.irq, i == 1)
        await ctx.tick()
        log.append(ctx.get(soc.busy))
        log.append((await lite.read(ctx, soc_reg("BUSY").offset))[0])
        log.append((await lite.read(ctx, soc_reg("IRQ").offset))[0])

    sim.add_testbench(bench)
    sim.run()
    top = 1 << (SYNC_FLAGS - 1)
    assert log == [0b0101, 0b0101 | top, 0b0110 | top, 0b0110 | top, 0b0110 | top,
                   0b0110 | top, 0, 0b101, 0b101, 0b010]


@pytest.mark.parametrize("memory", ["shared", "per_engine"])
def test_memory_traffic_from_every_manager(memory):
    """Engines and the host issue random bursts at once (random IDs, strobes, back-pressure);
    every write lands, every read returns what was written, IDs come back unchanged."""
    cfg = small(2)
    soc, sim, engines = build(cfg, PuppetEngine, memory=memory)
    region = 8192
    dram = np.zeros((cfg.engines + 1) * region, np.uint8)
    expect = dram.copy()
    rng = np.random.default_rng(7)
    dram[:] = expect[:] = rng.integers(0, 256, dram.size, dtype=np.uint8)
    ports = [e.axi for e in engines] + [soc.host]
    managers = [BurstManager(p, expect, seed=k, stall=0.2,
                             ids=tuple(range(1 << len(p.ar.payload.id))))
                for k, p in enumerate(ports)]
    if memory == "shared":
        models = [AxiSlaveModel(soc.mem[0], dram, latency=3, stall=0.2, seed=1)]
    else:
        models = [AxiSlaveModel(soc.mem[k], dram, latency=2 + k, stall=0.2, seed=k)
                  for k in range(cfg.engines + 1)]
    for model in models:
        sim.add_process(model.process)

    def bench_for(k, manager):
        async def bench(ctx):
            await manager.random_traffic(ctx, k * region, region, count=14, max_beats=9)
        return bench

    for k, manager in enumerate(managers):
        sim.add_testbench(bench_for(k, manager))
    sim.run()
    assert all(m.reads and m.writes for m in managers)
    assert np.array_equal(dram, expect)
    if memory == "per_engine":
        for k, model in enumerate(models):  # each manager's traffic on its own port only
            addrs = [a for a, _ in model.read_bursts + model.write_bursts]
            assert addrs and all(k * region <= a < (k + 1) * region for a in addrs)


def test_arbiter_tags_ids_with_the_manager_index():
    arb = AxiArbiter(3, addr_width=16, data_width=64, id_width=2)
    assert len(arb.bus.ar.payload.id) == 4
    sim = Simulator(arb)
    sim.add_clock(1e-8)
    dram = np.zeros(3 * 4096, np.uint8)
    expect = dram.copy()
    model = AxiSlaveModel(arb.bus, dram, latency=1, stall=0.3, seed=3)
    sim.add_process(model.process)
    ids_seen = []

    async def watch(ctx):
        while True:
            _, _, valid, ready, ident = await ctx.tick().sample(
                arb.bus.ar.valid, arb.bus.ar.ready, arb.bus.ar.payload.id)
            if valid and ready:
                ids_seen.append(ident)

    sim.add_process(watch)
    for k in range(3):
        manager = BurstManager(arb.m[k], expect, seed=10 + k, ids=(1, 2), stall=0.1)

        async def bench(ctx, manager=manager, k=k):
            await manager.random_traffic(ctx, k * 4096, 4096, count=10, max_beats=6)
        sim.add_testbench(bench)
    sim.run()
    assert np.array_equal(dram, expect)
    assert {i >> 2 for i in ids_seen} == {0, 1, 2}
    assert {i & 3 for i in ids_seen} <= {1, 2}


def test_soc_parameter_errors():
    cfg = small(2)
    with pytest.raises(ValueError, match="memory='hbm'"):
        Soc(cfg, dram_size=1 << 20, memory="hbm")
    with pytest.raises(ValueError, match="dram_size=0"):
        Soc(cfg, dram_size=0)
    with pytest.raises(ValueError, match="host_id_width=0"):
        Soc(cfg, dram_size=1 << 20, host_id_width=0)
    with pytest.raises(ValueError, match="engine index 255"):
        engine_csr_base(255)
    per = Soc(cfg, dram_size=1 << 20, memory="per_engine", engine_factory=IdleEngine)
    assert len(per.mem) == 3 and per.mem_id_width == 4
    shared = Soc(cfg, dram_size=1 << 20, engine_factory=IdleEngine)
    assert len(shared.mem) == 1 and shared.mem_id_width == 4 + 2


@pytest.mark.slow
def test_real_engines_share_the_sync_flags_through_their_csrs():
    """Two real engines behind the decoder: identity per block, and a flag set through
    engine 0's SYNC_SET is read back through engine 1's SYNC_FLAGS and the SoC block."""
    cfg = small(2)
    soc = Soc(cfg, dram_size=1 << 20)  # the default factory: rtl.engine.Engine
    sim = Simulator(soc)
    sim.add_clock(1e-8)
    lite = LiteManager(soc.csr)
    seen = {}

    async def bench(ctx):
        for i in range(2):
            base = engine_csr_base(i)
            seen[i] = [(await lite.read(ctx, base + reg(n).offset))[0]
                       for n in ("ID", "BUILD_ID_LO", "CFG_ENGINE_INDEX")]
        await lite.write(ctx, engine_csr_base(0) + reg("SYNC_SET").offset, 0b1010)
        seen["e1"] = (await lite.read(ctx, engine_csr_base(1) + reg("SYNC_FLAGS").offset))[0]
        seen["soc"] = (await lite.read(ctx, soc_reg("SYNC_FLAGS").offset))[0]
        await lite.write(ctx, engine_csr_base(1) + reg("SYNC_CLEAR").offset, 0b0010)
        seen["e0"] = (await lite.read(ctx, engine_csr_base(0) + reg("SYNC_FLAGS").offset))[0]

    sim.add_testbench(bench)
    sim.run()
    for i in range(2):
        values = reset_values(cfg, i)
        assert seen[i] == [values["ID"], values["BUILD_ID_LO"], i]
    assert (seen["e1"], seen["soc"], seen["e0"]) == (0b1010, 0b1010, 0b1000)
