"""Board files, the IP descriptions and the MIG project: facts, consistency, error messages."""

import xml.etree.ElementTree as ET

import pytest
from amaranth.hdl import Signal

from unified_engine.config import EngineConfig
from unified_engine.platforms.boards import BOARDS, board_class, describe
from unified_engine.platforms.estimate import check_fit, quick_problems, yosys_family
from unified_engine.platforms.ip import clk_wiz_ip, hbm_ip, tcl_for, xdma_ip
from unified_engine.platforms.kintex7 import DDR3_CH0_PINS, Kintex7Platform
from unified_engine.platforms.mig_prj import MigDdr3, mig_prj
from unified_engine.platforms.shell import shell_ips


@pytest.mark.parametrize("name", list(BOARDS))
def test_board_defaults_match_the_engine_presets(name):
    cls = board_class(name)
    preset = EngineConfig.preset(name)
    assert (cls.engines, cls.clock_mhz) == (preset.engines, preset.clock_mhz)
    assert cls.board == name and cls.memory.size > 0 and cls.pcie.lanes in (4, 8, 16)
    assert name in describe(name) and f"{cls.engines} at" in describe(name)
    ips = shell_ips(cls, preset)  # the default configuration fits the shell
    assert {"xdma", "clk_engine"} <= set(ips)
    assert not quick_problems(cls, preset)


def test_board_facts_anchor_the_research_table():
    k7, ku, u50 = (board_class(n) for n in ("kintex7", "ku15p", "alveo_u50"))
    assert (k7.device, k7.package, k7.speed) == ("xc7k480t", "ffg1156", "2")
    assert (k7.capacity.lut, k7.capacity.dsp, k7.capacity.bram36) == (298_600, 1_920, 955)
    assert (ku.device, ku.speed, ku.capacity.lut, ku.capacity.uram) == \
        ("xcku15p", "2-i", 522_720, 128)
    assert (u50.device, u50.speed, u50.capacity.dsp, u50.capacity.uram) == \
        ("xcu50", "2-e", 5_952, 640)
    assert u50.memory.mode == "per_engine" and k7.memory.mode == ku.memory.mode == "shared"
    assert yosys_family(k7) == "xc7" and yosys_family(u50) == "xcup"
    assert k7.pcie.generation == 2 and ku.pcie.generation == u50.pcie.generation == 3
    assert round(k7.memory.bandwidth / 1e9, 1) == 6.4  # DDR3-800 × 64 payload bits
    with pytest.raises(ValueError, match="unknown board 'zcu102'"):
        board_class("zcu102")


def test_quick_check_and_fit_rows():
    k7 = board_class("kintex7")
    big = EngineConfig(rows=32, cols=32, engines=4)
    (problem,) = quick_problems(k7, big)
    assert "4096 DSPs" in problem and "1920" in problem
    fat = EngineConfig(engines=16, scratchpad_bytes=4 << 20)
    assert any("MiB of on-chip SRAM" in p for p in quick_problems(k7, fat))
    fit = check_fit(k7.capacity, {"LUT": 209_020, "DSP": 10})
    assert fit["LUT"].ok and not check_fit(k7.capacity, {"LUT": 209_021})["LUT"].ok
    assert fit["URAM"].ok and fit["URAM"].share == 0.0


def test_shell_refuses_what_it_cannot_host():
    u50, k7 = board_class("alveo_u50"), board_class("kintex7")
    hbm = shell_ips(u50, EngineConfig(engines=16))["hbm"]  # ports 0…15, the host on 16
    assert all(hbm.config[f"USER_SAXI_{p:02d}"] for p in range(17))
    with pytest.raises(ValueError, match="axi_addr_width=32 cannot address 8192 MiB"):
        shell_ips(u50, EngineConfig(axi_addr_width=32))
    with pytest.raises(ValueError, match="memory controller's 512-bit port is narrower"):
        shell_ips(k7, EngineConfig(axi_data_width=1024))


def test_mig_project_holds_every_ddr3_pin():
    ddr = Kintex7Platform.ddr3
    text = mig_prj("mig_0", "xc7k480t-ffg1156/-2", ddr, Kintex7Platform.mig_pins())
    root = ET.fromstring(text)
    ctrl = root.find("Controller")
    assert root.findtext("TargetFPGA") == "xc7k480t-ffg1156/-2"
    assert ctrl.findtext("DataWidth") == "72" and ctrl.findtext("ECC") == "Enabled"
    assert ctrl.findtext("TimePeriod") == "2500"
    assert ctrl.find("AXIParameters").findtext("C0_S_AXI_DATA_WIDTH") == "512"
    pins = {p.get("name"): (p.get("PADName"), p.get("IOSTANDARD"))
            for p in ctrl.find("PinSelection")}
    expected = sum(len(pads.split()) for pads, _ in DDR3_CH0_PINS.values())
    assert len(pins) == expected == 72 + 18 + 15 + 3 + 2 + 6 + 1
    assert pins["ddr3_dq[0]"] == ("AG17", "SSTL15")
    assert pins["ddr3_dqs_p[8]"] == ("AN32", "DIFF_SSTL15")
    assert pins["ddr3_reset_n"] == ("AD31", "SSTL15")
    assert len(set(p for p, _ in pins.values())) == len(pins)  # no pin used twice
    with pytest.raises(ValueError, match="rate=1600 MT/s is not supported"):
        MigDdr3(part="x", rate=1600, data_width=64, ecc=False, row_bits=15, col_bits=10,
                bank_bits=3, size=1 << 30, axi_data_width=512, axi_addr_width=30)


def test_ip_tcl_and_instances_check_their_ports():
    xdma = xdma_ip("xdma_0", family="ultrascaleplus", lanes=8, speed="8.0_GT/s",
                   data_width=256, block="X0Y2", quad="GTY_Quad_127")
    tcl = xdma.tcl()
    assert "create_ip -name xdma -vendor xilinx.com -library ip -module_name xdma_0" in tcl
    assert "CONFIG.pcie_blk_locn {X0Y2}" in tcl and "CONFIG.axilite_master_en {true}" in tcl
    assert xdma.port("m_axi_wdata").width == 256 and xdma.port("sys_clk_gt").direction == "i"
    with pytest.raises(ValueError, match="UltraScale\\+ needs block= and quad="):
        xdma_ip(family="ultrascaleplus", lanes=8, speed="8.0_GT/s", data_width=256)
    clk = clk_wiz_ip("clk_engine", in_mhz=100, out_mhz=333)
    inst = clk.instance(clk_in1=Signal(), clk_out1=Signal())
    assert {"reset", "locked"} <= set(inst.ports)  # input tied to 0, output to a wire
    with pytest.raises(KeyError, match="no port 'clk_in2'"):
        clk.instance(clk_in2=Signal())
    with pytest.raises(ValueError, match=r"clk_engine\.clk_in1 is 1 bits wide, connected to 2"):
        clk.instance(clk_in1=Signal(2))
    hbm = hbm_ip("hbm_0", ports=(0, 1, 16), axi_mhz=300)
    assert hbm.config["USER_SAXI_16"] and not hbm.config["USER_SAXI_02"]
    assert hbm.port("AXI_16_ARLEN").width == 4 and hbm.port("AXI_01_WDATA").width == 256
    assert hbm.config["USER_CLK_SEL_LIST1"] == "AXI_16_ACLK"
    assert "synth_ip $ue_ips" in tcl_for([xdma, clk, hbm])
