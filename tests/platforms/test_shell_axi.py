# amaranth: UnusedElaboratable=no
"""Shell AXI adapters against the AXI DRAM model: clock crossing (AXI4 and AXI4-Lite),
upsizing and AXI3 burst splitting, with random bursts, strobes, IDs and back-pressure."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from axi_managers import BurstManager, LiteManager
from memmodels import AxiSlaveModel

from unified_engine.config import EngineConfig
from unified_engine.platforms.shell_axi import Axi3Splitter, AxiCdc, AxiUpsizer
from unified_engine.rtl.axi import axi4_signature, axi_lite_signature
from unified_engine.rtl.soc import SOC_ID_MAGIC, SocRegisters, soc_reg


def simulate(dut, benches, processes=(), src_period=None):
    top = Module()
    top.submodules.dut = dut
    if src_period is not None:
        top.domains.src = ClockDomain()
    sim = Simulator(top)
    sim.add_clock(1e-8)
    if src_period is not None:
        sim.add_clock(src_period, domain="src")
    for bench in benches:
        sim.add_testbench(bench)
    for proc in processes:
        sim.add_process(proc)
    sim.run()


def traffic(managers, size):
    def bench_for(k, manager):
        async def bench(ctx):
            await manager.random_traffic(ctx, k * size, size, count=12, max_beats=40)
        return bench
    return [bench_for(k, mgr) for k, mgr in enumerate(managers)]


@pytest.mark.parametrize("src_period", [3.3e-9, pytest.param(2.7e-8, marks=pytest.mark.slow)])
def test_cdc_carries_bursts_between_clocks(src_period):
    sig = axi4_signature(addr_width=16, data_width=64, id_width=3)
    cdc = AxiCdc(sig, s_domain="src", m_domain="sync", depth=4)
    dram = np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8)
    expect = dram.copy()
    manager = BurstManager(cdc.s, expect, domain="src", seed=1, ids=(0, 5, 7), stall=0.2)
    model = AxiSlaveModel(cdc.m, dram, latency=3, stall=0.3, seed=2)
    simulate(cdc, traffic([manager], 8192), [model.process], src_period=src_period)
    assert manager.reads and manager.writes and np.array_equal(dram, expect)


def test_cdc_carries_axi_lite_to_the_soc_registers():
    cfg = EngineConfig.preset("sim_small")
    cdc = AxiCdc(axi_lite_signature(addr_width=12), s_domain="src", m_domain="sync")
    regs = SocRegisters(cfg, dram_size=1 << 20)
    top = Module()
    top.submodules.cdc, top.submodules.regs = cdc, regs
    wiring.connect(top, cdc.m, regs.bus)
    lite = LiteManager(cdc.s, domain="src")
    got = []

    async def bench(ctx):
        got.append(await lite.read(ctx, soc_reg("SOC_ID").offset))
        got.append(await lite.write(ctx, soc_reg("SCRATCH").offset, 0x12345678))
        got.append(await lite.read(ctx, soc_reg("SCRATCH").offset))

    simulate(top, [bench], src_period=4e-9)
    assert got == [(SOC_ID_MAGIC, 0), 0, (0x12345678, 0)]


@pytest.mark.parametrize("narrow,wide", [(64, 256), pytest.param(128, 256, marks=pytest.mark.slow),
                                         (256, 512)])
def test_upsizer_packs_and_unpacks_lanes(narrow, wide):
    up = AxiUpsizer(addr_width=16, narrow_width=narrow, wide_width=wide, id_width=4,
                    outstanding=2)
    dram = np.random.default_rng(3).integers(0, 256, 16384, dtype=np.uint8)
    expect = dram.copy()
    manager = BurstManager(up.s, expect, seed=4, ids=(0, 3, 9, 15), stall=0.25)
    model = AxiSlaveModel(up.m, dram, latency=2, stall=0.3, seed=5)
    simulate(up, traffic([manager], 16384), [model.process])
    assert manager.reads and manager.writes and np.array_equal(dram, expect)
    ratio = wide // narrow
    # a wide burst covers exactly the wide beats its narrow burst touches
    assert all(beats <= 40 // ratio + 2 for _, beats in model.read_bursts + model.write_bursts)


def test_splitter_limits_bursts_to_sixteen_beats():
    split = Axi3Splitter(addr_width=16, data_width=64, id_width=2, outstanding=3)
    dram = np.random.default_rng(6).integers(0, 256, 16384, dtype=np.uint8)
    expect = dram.copy()
    manager = BurstManager(split.s, expect, seed=7, ids=(1, 2, 3), stall=0.2)
    model = AxiSlaveModel(split.m, dram, latency=4, stall=0.3, seed=8)
    simulate(split, traffic([manager], 16384), [model.process])
    assert manager.reads and manager.writes and np.array_equal(dram, expect)
    lengths = [beats for _, beats in model.read_bursts + model.write_bursts]
    assert max(lengths) == 16 and all(n <= 16 for n in lengths)


def test_adapter_parameter_errors():
    with pytest.raises(ValueError, match="depth=3"):
        AxiCdc(axi_lite_signature(addr_width=12), s_domain="a", m_domain="b", depth=3)
    with pytest.raises(ValueError, match="wide_width=96"):
        AxiUpsizer(addr_width=16, narrow_width=32, wide_width=96, id_width=1)
    with pytest.raises(ValueError, match="max_beats=12"):
        Axi3Splitter(addr_width=16, data_width=64, id_width=1, max_beats=12)
