"""``ku15p``: NVIDIA/Mellanox Innova-2 Flex (MNV303212A-ADLT) — XCKU15P-FFVE1517-2-I,
PCIe Gen3 x8, 8 GiB DDR4.

Why this card: it is the Kintex UltraScale+ XCKU15P card with a complete public pin-out
(PCIe, DDR4, clocks: mwrnd/innova2_8gb_adlt_xdma_ddr4_demo ``innova2_constraints.xdc``) and a
working XDMA + DDR4 reference design, and it is cheap as surplus.  The anchor's KU15P board
(a BittWare card) has no public pin-out.  Costs: the FPGA's PCIe link goes to a switch inside
the ConnectX-5 (Gen3 x8), JTAG must be enabled through the ConnectX-5 first, the card needs
forced air, and the reference design runs the DDR4 at 1400 MT/s (11.2 GB/s) to close timing —
raise ``DDR4_PERIOD_PS`` once a faster rate calibrates.

Only the 64 data bits of the 72-bit DDR4 bus are used (data mask on, no ECC): the engines write
partial beats.  Engine defaults: 2 engines at 333 MHz (anchor: 333–400 MHz on KU+).

Run ``python -m unified_engine.platforms.ku15p`` to print the board summary.
"""

from __future__ import annotations

from typing import ClassVar

from amaranth.build import Attrs, Clock, DiffPairs, Pins, Resource, Subsignal

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

__all__ = ["DDR4_PERIOD_PS", "Ku15pPlatform"]

#: DDR4 clock period in ps (1428 = DDR4-1400, the rate the public reference design closes).
DDR4_PERIOD_PS = 1428

# Lane i RX P pins (quads 127/128, CHANNEL_X0Y0…X0Y7); the XDMA core places the lanes from
# pcie_blk_locn / select_quad, the names only label the ports.
_RX_P = "AH36 AG38 AF36 AE38 AD36 AC38 AB36 AA38"

_DQ = ("AJ26 AK28 AJ28 AK27 AN27 AN26 AL27 AK26 AM33 AK32 AM32 AJ30 AH31 AJ29 AL32 AH32 "
       "AN33 AN32 AM30 AP29 AL29 AP28 AM29 AL30 AP38 AV37 AR39 AT39 AP39 AU37 AR38 AU39 "
       "AR33 AP36 AT31 AR31 AT32 AP33 AR32 AR36 AU33 AU35 AU32 AW34 AT35 AW35 AU34 AT36 "
       "AW29 AW31 AV31 AU29 AU30 AT29 AW28 AT30 AM39 AJ39 AM38 AL39 AL36 AK39 AN38 AL37")
_DQS_T = "AH26 AK31 AN30 AU38 AP34 AV32 AV30 AK37"
_DQS_C = "AH27 AL31 AN31 AV38 AP35 AV33 AW30 AK38"
_DM = "AL25 AH30 AM28 AR37 AR34 AV35 AU28 AM37"
_ADR = "AN23 AM24 AK22 AU24 AR26 AM23 AP26 AT26 AN25 AP23 AW23 AJ24 AT25 AL24 AW25 AR27 AV26"


def _ddr4_resource() -> Resource:
    cmd = Attrs(IOSTANDARD="SSTL12_DCI")
    return Resource(
        "ddr4", 0,
        Subsignal("act_n", Pins("AM25", dir="o"), cmd),
        Subsignal("adr", Pins(_ADR, dir="o"), cmd),
        Subsignal("ba", Pins("AT24 AU23", dir="o"), cmd),
        Subsignal("bg", Pins("AV23", dir="o"), cmd),  # x16 parts: one bank-group bit
        Subsignal("cke", Pins("AW26", dir="o"), cmd),
        Subsignal("odt", Pins("AV27", dir="o"), cmd),
        Subsignal("cs_n", Pins("AW24", dir="o"), cmd),
        Subsignal("ck", DiffPairs("AU25", "AV25", dir="o"), Attrs(IOSTANDARD="DIFF_SSTL12_DCI")),
        Subsignal("reset_n", Pins("AR24", dir="o"), Attrs(IOSTANDARD="LVCMOS12")),
        Subsignal("dm_n", Pins(_DM, dir="io"), Attrs(IOSTANDARD="POD12_DCI")),
        Subsignal("dq", Pins(_DQ, dir="io"), Attrs(IOSTANDARD="POD12_DCI")),
        Subsignal("dqs", DiffPairs(_DQS_T, _DQS_C, dir="io"),
                  Attrs(IOSTANDARD="DIFF_POD12_DCI")),
    )


class Ku15pPlatform(UnifiedXilinxPlatform):
    """Innova-2 Flex MNV303212A-ADLT (XCKU15P-2FFVE1517I) with its 8 GiB DDR4."""

    board = "ku15p"
    card = "NVIDIA Innova-2 Flex MNV303212A-ADLT, XCKU15P-2FFVE1517I, PCIe Gen3 x8, DDR4"
    board_code = int.from_bytes(b"KUI2", "little")
    device, package, speed = "xcku15p", "ffve1517", "2-i"
    capacity = DeviceCapacity(lut=522_720, ff=1_045_440, dsp=1_968, bram36=984, uram=128)
    pcie = PcieLink(lanes=8, speed="8.0_GT/s", data_width=256, axi_mhz=250, block="X0Y2",
                    quad="GTY_Quad_127")
    ddr4_part = "MT40A1G16WBU-083E"
    ddr4_period_ps = DDR4_PERIOD_PS
    memory = MemorySystem(kind="ddr4", size=8 << 30,
                          bandwidth=2e12 / DDR4_PERIOD_PS * 64 / 8,
                          description=f"DDR4-{round(2e6 / DDR4_PERIOD_PS)} 64-bit (4 × "
                                      "MT40A1G16), 512-bit AXI at memory clock / 4",
                          controller_width=512)
    flash = FlashSpec(interface="SPIx8", size_mb=128, part="2 × MT25QU512")
    engine_refclk = ("sysclk", 100.0)
    engines, clock_mhz = 2, 333.0
    shell_estimate: ClassVar[dict[str, int]] = {
        "LUT": 40_000, "FF": 50_000, "BRAM36": 50, "DSP": 0, "URAM": 0}
    bitstream: ClassVar[dict[str, str]] = spi_bitstream(buswidth=8, rate="127.5")
    resources: ClassVar[list[Resource]] = [
        Resource("sysclk", 0, DiffPairs("AR14", "~AR14", dir="i"), Clock(100e6),
                 Attrs(IOSTANDARD="DIFF_SSTL12")),
        Resource("ddr4_refclk", 0, DiffPairs("AP24", "~AP24", dir="i"), Clock(100e6),
                 Attrs(IOSTANDARD="DIFF_SSTL12")),
        Resource("led", 0, Pins("A6", dir="o"), Attrs(IOSTANDARD="LVCMOS33")),
        Resource("led", 1, Pins("B6", dir="o"), Attrs(IOSTANDARD="LVCMOS33")),
        pcie_resource(refclk=("AB27", "~AB27"), perst="F2", perst_iostandard="LVCMOS33",
                      tx=(gt_lanes("GTTX", 8), gt_lanes("~GTTX", 8)),
                      rx=(_RX_P, " ".join(f"~{p}" for p in _RX_P.split()))),
        _ddr4_resource(),
    ]

    def board_constraints(self) -> str:
        return ""


if __name__ == "__main__":
    from .boards import describe

    print(describe("ku15p"))
