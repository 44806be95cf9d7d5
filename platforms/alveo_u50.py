"""``alveo_u50``: AMD Alveo U50 — XCU50-FSVH2104-2-E, PCIe Gen3, 8 GiB HBM2.

The anchor runs 8 engines here (280–367 MHz, HBM AXI at 450 MHz); our default is 8 engines at
300 MHz, each on its own HBM AXI port (one pseudo-channel each, port i = engine i) with the
HBM switch on, so every engine still reaches all 8 GiB; the host's DMA uses port 16 (the other
stack).  The XDMA is configured Gen3 x8 with a 256-bit AXI bus (the engines' width; 7.9 GB/s
is plenty for loading weights) on the card's x16 edge (lanes 0–7).

Card facts (pins, clocks, HBM_CATTRIP, configuration): the XilinxBoardStore ``au50`` board
files as vendored in Xilinx/open-nic-shell, corundum ``fpga/mqnic/Alveo/fpga_100g/fpga_au50.xdc``
(see ``docs/boards.md``).  HBM_CATTRIP (J18) must be driven: the satellite controller cuts card
power when it is high; the shell drives it from the HBM core's CATTRIP outputs.  The card is
passively cooled and limited to 75 W; over-temperature shutdown is on.

Run ``python -m unified_engine.platforms.alveo_u50`` to print the board summary.
"""

from __future__ import annotations

from typing import ClassVar

from amaranth.build import Attrs, Clock, DiffPairs, Pins, Resource

from .xilinx import (
    DeviceCapacity,
    FlashSpec,
    MemorySystem,
    PcieLink,
    UnifiedXilinxPlatform,
    gt_lanes,
    pcie_resource,
    spi_bitstream,
)

__all__ = ["HBM_HOST_PORT", "AlveoU50Platform"]

#: HBM AXI port of the host's DMA (first port of the second stack).
HBM_HOST_PORT = 16


class AlveoU50Platform(UnifiedXilinxPlatform):
    """Alveo U50 (XCU50-2FSVH2104E), HBM2 8 GiB, one HBM port per engine."""

    board = "alveo_u50"
    card = "AMD Alveo U50 (A-U50-P00G-PQ-G), XCU50-2FSVH2104E, PCIe Gen3 x16 edge, 8 GiB HBM2"
    board_code = int.from_bytes(b"AU50", "little")
    device, package, speed = "xcu50", "fsvh2104", "2-e"
    capacity = DeviceCapacity(lut=871_680, ff=1_743_360, dsp=5_952, bram36=1_344, uram=640)
    pcie = PcieLink(lanes=8, speed="8.0_GT/s", data_width=256, axi_mhz=250,
                    block="PCIE4C_X1Y0", quad="GTY_Quad_227")
    hbm_tck_mhz = 900
    memory = MemorySystem(kind="hbm", size=8 << 30, bandwidth=316e9,
                          description="HBM2 8 GiB, 2 stacks, 32 pseudo-channels; AXI3 256-bit "
                                      "ports at the engine clock, switch on",
                          controller_width=256, mode="per_engine")
    flash = FlashSpec(interface="SPIx4", size_mb=128, part="MT25QU01G")
    engine_refclk = ("sysclk", 100.0)
    engines, clock_mhz = 8, 300.0
    shell_estimate: ClassVar[dict[str, int]] = {
        "LUT": 45_000, "FF": 60_000, "BRAM36": 60, "DSP": 0, "URAM": 0}
    bitstream: ClassVar[dict[str, str]] = spi_bitstream(
        buswidth=4, rate="63.8", BITSTREAM_CONFIG_CONFIGFALLBACK="ENABLE")
    resources: ClassVar[list[Resource]] = [
        # SYSCLK2 ("cmc_clk"): free-running 100 MHz, the engine clock's reference
        Resource("sysclk", 0, DiffPairs("G17", "G16", dir="i"), Clock(100e6),
                 Attrs(IOSTANDARD="LVDS")),
        # SYSCLK3 ("hbm_clk"): the HBM reference
        Resource("hbm_refclk", 0, DiffPairs("BB18", "BC18", dir="i"), Clock(100e6),
                 Attrs(IOSTANDARD="LVDS")),
        Resource("hbm_cattrip", 0, Pins("J18", dir="o"),
                 Attrs(IOSTANDARD="LVCMOS18", PULLDOWN="TRUE")),
        # QSFP activity LEDs, used as status LEDs
        Resource("led", 0, Pins("E18", dir="o"), Attrs(IOSTANDARD="LVCMOS18")),
        Resource("led", 1, Pins("E16", dir="o"), Attrs(IOSTANDARD="LVCMOS18")),
        Resource("led", 2, Pins("F17", dir="o"), Attrs(IOSTANDARD="LVCMOS18")),
        pcie_resource(refclk=("AF9", "AF8"), perst="AW27", perst_iostandard="LVCMOS18",
                      tx=(gt_lanes("GTTX", 8), gt_lanes("~GTTX", 8)),
                      rx=(gt_lanes("GTRX", 8), gt_lanes("~GTRX", 8))),
    ]

    def board_constraints(self) -> str:
        """The card's power budget (the satellite controller trips above 75 W)."""
        return "set_operating_conditions -design_power_budget 63"


if __name__ == "__main__":
    from .boards import describe

    print(describe("alveo_u50"))
