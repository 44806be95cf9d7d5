# amaranth: UnusedElaboratable=no
"""The IP stand-ins behave like their cores at the ports the shell uses: the clocking wizard
passes its clock and locks, a memory controller answers AXI bursts in its own clock."""

from amaranth.sim import Simulator

from unified_engine.platforms.ip import clk_wiz_ip, ddr4_ip
from unified_engine.platforms.stand_ins import IpStandIn, stand_ins_verilog


def test_clock_wizard_stand_in():
    stand_in = IpStandIn(clk_wiz_ip("clk_engine", in_mhz=100, out_mhz=250))
    s = stand_in.signals
    sim = Simulator(stand_in)
    seen = []

    async def bench(ctx):
        for level in (1, 0, 1):
            ctx.set(s["clk_in1"], level)
            await ctx.delay(1e-9)
            seen.append((ctx.get(s["clk_out1"]), ctx.get(s["locked"])))

    sim.add_testbench(bench)
    sim.run()
    assert seen == [(1, 1), (0, 1), (1, 1)]


def test_ddr4_stand_in_answers_bursts_in_its_ui_clock():
    ip = ddr4_ip("ddr4_0", part="MT40A1G16WBU-083E", period_ps=1428, ref_period_ps=9996, dq=64,
                 addr=17, ba=2, bg=1, axi_data_width=512, axi_addr_width=33)
    stand_in = IpStandIn(ip)
    s = stand_in.signals
    p = "c0_ddr4_s_axi_"
    sim = Simulator(stand_in)
    log = []

    async def tick(ctx):
        ctx.set(s["c0_sys_clk_p"], 1)
        await ctx.delay(1e-9)
        ctx.set(s["c0_sys_clk_p"], 0)
        await ctx.delay(1e-9)

    async def bench(ctx):
        ctx.set(s["c0_ddr4_aresetn"], 1)
        await tick(ctx)
        assert ctx.get(s["c0_init_calib_complete"]) == 1
        ctx.set(s[p + "awvalid"], 1)
        ctx.set(s[p + "awid"], 3)
        assert ctx.get(s[p + "awready"])
        await tick(ctx)
        ctx.set(s[p + "awvalid"], 0)
        ctx.set(s[p + "wvalid"], 1)
        for last in (0, 1):
            ctx.set(s[p + "wlast"], last)
            assert ctx.get(s[p + "wready"])
            await tick(ctx)
        ctx.set(s[p + "wvalid"], 0)
        ctx.set(s[p + "bready"], 1)
        log.append(("b", ctx.get(s[p + "bvalid"]), ctx.get(s[p + "bid"])))
        await tick(ctx)
        ctx.set(s[p + "arvalid"], 1)
        ctx.set(s[p + "arid"], 5)
        ctx.set(s[p + "arlen"], 2)
        await tick(ctx)
        ctx.set(s[p + "arvalid"], 0)
        ctx.set(s[p + "rready"], 1)
        for _ in range(3):
            log.append(("r", ctx.get(s[p + "rvalid"]), ctx.get(s[p + "rid"]),
                        ctx.get(s[p + "rlast"])))
            await tick(ctx)
        log.append(("idle", ctx.get(s[p + "rvalid"])))

    sim.add_testbench(bench)
    sim.run()
    assert log == [("b", 1, 3), ("r", 1, 5, 0), ("r", 1, 5, 0), ("r", 1, 5, 1), ("idle", 0)]
    text = stand_ins_verilog([ip])
    assert "module ddr4_0(" in text and "module IBUFDS_GTE4" in text
