# amaranth: UnusedElaboratable=no
"""The open-toolchain board: the self-test program (ISA simulator), its block-RAM AXI port and
boot sequencer (Amaranth simulation), the whole self-test image (slow), and the real ECP5
bitstream with nextpnr's Fmax (``synth`` + ``slow``)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from amaranth.sim import Simulator
from axi_managers import BurstManager, receive, send

from unified_engine.host import Engine
from unified_engine.platforms.axi_ram import AxiRam
from unified_engine.platforms.ecp5_flow import (
    DEFAULT_DSP_MIN_WIDTH,
    DSP_FULL,
    DSP_SOFT,
    build_ecp5,
    dsp_prepass,
    parse_nextpnr_log,
)
from unified_engine.platforms.selftest import (
    BLOCK,
    DST,
    RAM_BYTES,
    SELFTEST_HALT_CODE,
    SRC,
    BootSequencer,
    SelfTest,
    selftest_image,
    selftest_program,
)
from unified_engine.platforms.ulx3s import ULX3S_FIT, Ulx3sPlatform, ulx3s_config
from unified_engine.regs import ErrorCode, reg
from unified_engine.rtl.axi import AxiResp


def test_selftest_program_copies_the_block_and_halts_on_the_isa_simulator():
    cfg = ulx3s_config()
    image = selftest_image(cfg)
    code = selftest_program(cfg).encode()
    assert image[:len(code)] == code and not any(image[len(code):SRC])
    eng = Engine.open("model", cfg, dram_bytes=1 << 16)
    eng.write(SRC, image[SRC:SRC + BLOCK])
    result = eng.run(selftest_program(cfg))
    assert result.halt_code == SELFTEST_HALT_CODE
    assert eng.read(DST, BLOCK) == image[SRC:SRC + BLOCK] != bytes(BLOCK)


def test_axi_ram_serves_random_bursts_and_its_initial_contents():
    init = list(range(1, 513))  # 512 words of 64 bits = 4 KiB
    ram = AxiRam(depth=512, addr_width=32, data_width=64, id_width=3, init=init)
    expect = np.frombuffer(b"".join(w.to_bytes(8, "little") for w in init), np.uint8).copy()
    manager = BurstManager(ram.axi, expect, seed=3, ids=(0, 5, 7), stall=0.3)
    sim = Simulator(ram)
    sim.add_clock(1e-8)

    async def bench(ctx):
        await manager.read(ctx, 0, 16)  # the initial contents
        await manager.random_traffic(ctx, 0, 4096, 60)

    sim.add_testbench(bench)
    sim.run()
    assert manager.reads > 5 and manager.writes > 5


def test_axi_ram_rejects_bad_sizes():
    with pytest.raises(ValueError, match="power of two"):
        AxiRam(depth=100, addr_width=32, data_width=64, id_width=1)
    with pytest.raises(ValueError, match="do not fit"):
        AxiRam(depth=2, addr_width=32, data_width=64, id_width=1, init=[1, 2, 3])


@pytest.mark.parametrize("error", [False, True])
def test_boot_sequencer_starts_the_engine_and_shows_the_outcome(error):
    boot = BootSequencer()
    sim = Simulator(boot)
    sim.add_clock(1e-8)
    writes: list[tuple[int, int]] = []
    seen: dict[str, int] = {}
    status = reg("STATUS")
    final = status.pack(HALTED=1) if not error else \
        status.pack(ERROR=1, ERROR_CODE=ErrorCode.SYNC_TIMEOUT.value)

    async def engine(ctx):
        polls = 0
        while not ctx.get(boot.done):
            if ctx.get(boot.csr.aw.valid):
                aw = await receive(ctx, boot.csr.aw)
                w = await receive(ctx, boot.csr.w)
                writes.append((aw["addr"], w["data"]))
                await send(ctx, boot.csr.b, resp=AxiResp.OKAY)
            elif ctx.get(boot.csr.ar.valid):
                ar = await receive(ctx, boot.csr.ar)
                if ar["addr"] == reg("STATUS").offset:
                    polls += 1  # busy for three polls, then the outcome
                    data = final if polls > 3 else status.pack(BUSY=1)
                else:
                    assert ar["addr"] == reg("HALT_CODE").offset
                    data = 0x1234A5
                await send(ctx, boot.csr.r, data=data, resp=AxiResp.OKAY)
            else:
                await ctx.tick()
        seen["polls"], seen["leds"] = polls, ctx.get(boot.leds)

    sim.add_testbench(engine)
    sim.run()

    def off(name):
        return reg(name).offset

    assert writes == [(off("WINDOW_BASE_LO"), 0), (off("WINDOW_BASE_HI"), 0),
                      (off("WINDOW_LIMIT_LO"), RAM_BYTES), (off("WINDOW_LIMIT_HI"), 0),
                      (off("PROGRAM_ADDR_LO"), 0), (off("PROGRAM_ADDR_HI"), 0),
                      (off("CONTROL"), reg("CONTROL").pack(START=1))]
    assert seen["polls"] == 4
    assert seen["leds"] == (0x80 | ErrorCode.SYNC_TIMEOUT.value if error else 0xA5)


def test_nextpnr_log_parsing():
    log = """Info: Max frequency for clock '$glbnet$clk': 20.01 MHz (FAIL at 25.00 MHz)
Info: Device utilisation:
Info: \t          TRELLIS_IO:       9/    365     2%
Info: \t        TRELLIS_COMB:   41234/  83640    49%
Info: Max frequency for clock '$glbnet$clk': 31.47 MHz (PASS at 25.00 MHz)
"""
    fmax, util = parse_nextpnr_log(log)
    assert fmax == {"$glbnet$clk": 31.47}
    assert util["TRELLIS_COMB"] == (41234, 83640) and util["TRELLIS_IO"] == (9, 365)


def test_ulx3s_platform_facts():
    assert (Ulx3sPlatform.device, Ulx3sPlatform.package, Ulx3sPlatform.speed) == \
        ("LFE5U-85F", "BG381", "6")
    cfg = ulx3s_config()
    assert cfg.clock_mhz == 25.0
    # the fit reductions are applied, and overrides still win over them
    assert (cfg.formats, cfg.lanes, cfg.rows, cfg.cols) == (("bf16",), 2, 2, 2)
    assert ULX3S_FIT == {"formats": ("bf16",), "lanes": 2}
    assert ulx3s_config(lanes=4).lanes == 4
    with pytest.raises(ValueError, match="lanes"):
        ulx3s_config(lanes=3)


@pytest.mark.parametrize("bad", [1, 19, True, 7.0, "7"])
def test_dsp_prepass_rejects_bad_widths(bad):
    with pytest.raises(ValueError, match=r"dsp_min_width must be an int in 2…18"):
        dsp_prepass(bad)


def test_build_ecp5_validates_before_running_any_tool(tmp_path):
    with pytest.raises(ValueError, match="dsp_min_width"):
        build_ecp5(tmp_path, dsp_min_width=40)
    with pytest.raises(ValueError, match="seed"):
        build_ecp5(tmp_path, seed=-1)
    with pytest.raises(TypeError, match="EngineConfig"):
        build_ecp5(tmp_path, {"lanes": 2})
    assert not any(tmp_path.iterdir())


def _prepass_stat(tmp_path, script: str) -> dict[str, int]:
    """Three 24×17 products in blocks ``reciprocal``, ``array`` and ``exp`` plus a 16×3
    one at the top, through ``script`` (a :func:`dsp_prepass`); {cell type: count}."""
    import subprocess

    from amaranth.back import rtlil
    from amaranth.hdl import Elaboratable, Module, Signal

    from unified_engine.platforms.ecp5_flow import yowasp_tools

    try:
        yosys = yowasp_tools()["YOSYS"]
    except RuntimeError as exc:
        pytest.skip(str(exc))

    class Product(Elaboratable):
        def __init__(self, wa: int, wb: int) -> None:
            self.a, self.b, self.y = Signal(wa), Signal(wb), Signal(wa + wb)

        def elaborate(self, platform) -> Module:
            m = Module()
            m.d.comb += self.y.eq(self.a * self.b)
            return m

    m = Module()
    blocks = {"reciprocal": Product(24, 17), "array": Product(24, 17), "exp": Product(24, 17)}
    for name, block in blocks.items():
        m.submodules[name] = block
    c, d, z = Signal(16), Signal(3), Signal(19)
    m.d.comb += z.eq(c * d)
    ports = [c, d, z, *(s for b in blocks.values() for s in (b.a, b.b, b.y))]
    (tmp_path / "top.il").write_text(rtlil.convert(m, name="top", ports=ports))
    (tmp_path / "pre.ys").write_text(f"read_rtlil top.il\n{script}\ntee -o stat.txt stat\n")
    done = subprocess.run([yosys, "-q", "-s", "pre.ys"], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    stat = (tmp_path / "stat.txt").read_text()
    return {cell: int(n) for n, cell in re.findall(r"^\s*(\d+)\s+(\S+)\s*$", stat, re.MULTILINE)
            if cell in ("MULT18X18D", "$mul")}


@pytest.mark.synth
@pytest.mark.parametrize(("args", "expect"), [
    # Yosys' own minimum: each 24×17 takes 2 blocks (18+6 slices), the 16×3 one more
    ((2,), {"MULT18X18D": 7}),
    # default width: one block per 24×17 (its 6×17 slice in LUTs), 16×3 in LUTs
    ((DEFAULT_DSP_MIN_WIDTH,), {"MULT18X18D": 3, "$mul": 4}),
    # reciprocal keeps both slices on blocks, array goes all-LUT, exp as the default
    ((DEFAULT_DSP_MIN_WIDTH, ("reciprocal",), ("array",)), {"MULT18X18D": 3, "$mul": 3}),
])
def test_dsp_prepass_puts_the_chosen_products_on_mult18x18d(tmp_path, args, expect):
    assert _prepass_stat(tmp_path, dsp_prepass(*args)) == expect


def test_dsp_prepass_rejects_bad_block_names():
    with pytest.raises(ValueError, match="dsp_full must be a tuple of block names"):
        dsp_prepass(7, "reciprocal")
    with pytest.raises(ValueError, match="dsp_soft must be a tuple of block names"):
        dsp_prepass(7, (), ("a*b",))


@pytest.mark.slow
def test_whole_selftest_image_halts_with_the_code_on_the_leds():
    """EngineTop + AxiRam + BootSequencer in Amaranth's simulator (minutes)."""
    cfg = ulx3s_config()
    top = SelfTest(cfg)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    seen = {}

    async def bench(ctx):
        for _ in range(400):
            await ctx.tick().repeat(50)
            if ctx.get(top.done):
                break
        seen["done"], seen["leds"] = ctx.get(top.done), ctx.get(top.leds)

    sim.add_testbench(bench)
    sim.run()
    assert seen == {"done": 1, "leds": SELFTEST_HALT_CODE}


@pytest.mark.synth
@pytest.mark.slow
def test_ecp5_bitstream_with_the_yowasp_wheels(tmp_path):
    """yosys → nextpnr-ecp5 → ecppack: a real bitstream and nextpnr's Fmax (tens of
    minutes on 2 cores)."""
    from unified_engine.platforms.ecp5_flow import build_ecp5, yowasp_tools

    try:
        yowasp_tools()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    result = build_ecp5(tmp_path)
    bit = result.bitstream.read_bytes()
    assert len(bit) > 100_000 and len(set(bit)) > 2
    assert result.fmax_mhz is not None and result.fmax_mhz > 0
    used, available = result.utilisation["TRELLIS_COMB"]
    assert 0 < used <= available == 83640
    assert 0 < result.utilisation["MULT18X18D"][0] <= result.utilisation["MULT18X18D"][1] == 156
    over = {k: v for k, v in result.utilisation.items() if v[0] > v[1]}
    assert not over, f"over 100 % of the LFE5U-85F: {over}"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["fmax_mhz"] == result.fmax_mhz
    assert (summary["dsp_min_width"], summary["dsp_full"], summary["dsp_soft"]) == \
        (DEFAULT_DSP_MIN_WIDTH, list(DSP_FULL), list(DSP_SOFT))
