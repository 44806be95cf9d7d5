"""``kintex7``: the YPCB-00338-1P1 card — XC7K480T-FFG1156-2, PCIe Gen2 x8, 2 × 72-bit DDR3.

Why this card and part: it is the Kintex-7 card of the anchor design (2 engines at ~194–198
MHz, BPI-x16 MT28GU512 flash), it is sold cheaply as surplus, and the XC7K480T has room for two
default engines inside the 70 % LUT routing budget (2 × ≤ 60 K LUT + shell ≈ 150 K of 298.6 K),
where an XC7K325T (203.8 K LUT) would be at ~75 %.  Costs: Vivado's free edition does not
cover the 480T, the DDR3 sits on HR banks (DDR3-1066 at most; 800 by default here, the rate
public designs calibrate reliably) and has no DM pins, so the MIG runs with ECC and
read-modify-writes partial writes.

Pins and quirks: litex-hub/litex-boards ``platforms/ypcb_00338_1p1.py``,
sirmick/ypcb-00338-1p1 ``board/ypcb-00338-1p1/{README.md,pcie_port.xdc}``, FeSens/openTPU
``docs/board.md`` (see ``docs/boards.md``).  Pin AC24 resets the card unless pulled up, hence
``UNUSEDPIN PULLUP``; the PCIe lanes run in reverse order (lane i on ``GTXE2_CHANNEL_X0Y(23−i)``).

Run ``python -m unified_engine.platforms.kintex7`` to print the board summary.
"""

from __future__ import annotations

from typing import ClassVar

from amaranth.build import Attrs, Clock, DiffPairs, Pins, Resource, Subsignal

from .mig_prj import MigDdr3
from .xilinx import (
    IP_PLACED,
    DeviceCapacity,
    FlashSpec,
    MemorySystem,
    PcieLink,
    UnifiedXilinxPlatform,
    pcie_resource,
)

__all__ = ["DDR3_CH0_PINS", "Kintex7Platform"]

_TX_P = "F2 H2 K2 M2 N4 P2 T2 U4"
_TX_N = "F1 H1 K1 M1 N3 P1 T1 U3"
_RX_P = "H6 J4 K6 L4 M6 P6 R4 T6"
# LiteX lists RX lane 6 N as E3, which is not an MGT pin next to R4; the pins are placed by
# the GT channel LOCs (lane order reversed), so the N names here are only port names.
_RX_N = "H5 J3 K5 L3 M5 P5 ~R4 T5"

#: DDR3 channel 0: MIG signal → package pins (MSB last) and I/O standard.
DDR3_CH0_PINS: dict[str, tuple[str, str]] = {
    "ddr3_addr": ("AK27 AN23 AL24 AK26 AH24 AH25 AL26 AJ24 AJ25 AM23 AL28 AL25 AM25 AK24 AM27",
                  "SSTL15"),
    "ddr3_ba": ("AM26 AP24 AN28", "SSTL15"),
    "ddr3_ras_n": ("AJ29", "SSTL15"),
    "ddr3_cas_n": ("AP26", "SSTL15"),
    "ddr3_we_n": ("AN27", "SSTL15"),
    "ddr3_cs_n": ("AK28", "SSTL15"),
    "ddr3_cke": ("AP27", "SSTL15"),
    "ddr3_odt": ("AK29", "SSTL15"),
    "ddr3_reset_n": ("AD31", "SSTL15"),
    "ddr3_dq": ("AG17 AG16 AH17 AJ19 AH18 AH19 AJ16 AJ17 AL20 AN17 AL19 AM16 AL18 AL16 AM20 "
                "AN18 AL23 AN20 AK23 AP19 AN22 AN19 AM22 AP20 AJ21 AH22 AK21 AG21 AG22 AG20 "
                "AH23 AG23 AJ32 AK32 AK31 AL30 AL34 AL31 AK34 AL29 AJ34 AH32 AJ30 AH34 AF31 "
                "AG30 AG31 AF30 AE32 AC33 AF33 AC32 AD34 AC34 AE33 AE31 AE26 AF29 AE24 AF28 "
                "AF24 AG25 AF26 AF25 AN34 AP30 AM33 AN29 AP32 AP29 AM31 AP31", "SSTL15"),
    "ddr3_dqs_p": ("AK16 AM17 AP21 AH20 AK33 AG33 AE34 AE27 AN32", "DIFF_SSTL15"),
    "ddr3_dqs_n": ("AK17 AM18 AP22 AJ20 AL33 AH33 AF34 AE28 AP33", "DIFF_SSTL15"),
    "ddr3_ck_p": ("AN25", "DIFF_SSTL15"),
    "ddr3_ck_n": ("AP25", "DIFF_SSTL15"),
}


def _ddr3_resource() -> Resource:
    subs = []
    for name, (pins, _std) in DDR3_CH0_PINS.items():
        direction = "io" if name.startswith(("ddr3_dq",)) else "o"
        subs.append(Subsignal(name.removeprefix("ddr3_"), Pins(pins, dir=direction)))
    # The MIG's own constraints place these pins (from the project file built from the same
    # table), so the XDC must not.
    return Resource("ddr3", 0, *subs, IP_PLACED)


class Kintex7Platform(UnifiedXilinxPlatform):
    """YPCB-00338-1P1 (XC7K480T-2FFG1156) PCIe card; DDR3 channel 0 (2 GiB) is used."""

    board = "kintex7"
    card = "YPCB-00338-1P1 (Inspur/Baidu surplus), XC7K480T-2FFG1156, PCIe Gen2 x8, DDR3"
    board_code = int.from_bytes(b"K7YP", "little")
    device, package, speed = "xc7k480t", "ffg1156", "2"
    capacity = DeviceCapacity(lut=298_600, ff=597_200, dsp=1_920, bram36=955, uram=0)
    # Gen2 x8 = 128-bit at 250 MHz; openTPU saw the core's own paths miss by ~0.1 ns on this
    # card and fell back to Gen1 ("2.5_GT/s", axi_mhz=125) — the knob if timing fails.
    pcie = PcieLink(lanes=8, speed="5.0_GT/s", data_width=128, axi_mhz=250)
    ddr3 = MigDdr3(part="DDR3_SDRAM/Components/MT41K256M8XX-125", rate=800, data_width=72,
                   ecc=True, row_bits=15, col_bits=10, bank_bits=3, size=2 << 30,
                   axi_data_width=512, axi_addr_width=31)
    memory = MemorySystem(kind="ddr3", size=2 << 30, bandwidth=ddr3.bandwidth,
                          description="DDR3-800 72-bit (64 + ECC), channel 0 of 2, MIG 4:1 "
                                      "at 100 MHz, 512-bit AXI",
                          controller_width=512)
    flash = FlashSpec(interface="BPIx16", size_mb=64, part="MT28GU512")
    engine_refclk = ("clk200", 200.0)
    engines, clock_mhz = 2, 200.0
    shell_estimate: ClassVar[dict[str, int]] = {
        "LUT": 30_000, "FF": 35_000, "BRAM36": 40, "DSP": 0, "URAM": 0}
    bitstream: ClassVar[dict[str, str]] = {
        "CFGBVS": "GND",
        "CONFIG_VOLTAGE": "1.8",
        "CONFIG_MODE": "BPI16",
        "BITSTREAM.CONFIG.UNUSEDPIN": "PULLUP",  # pin AC24 resets the card when pulled down
        "BITSTREAM.GENERAL.COMPRESS": "TRUE",
        "BITSTREAM.CONFIG.OVERTEMPPOWERDOWN": "ENABLE",
    }
    openfpgaloader_board = ("-c", "digilent_hs2", "--fpga-part", "xc7k480tffg1156")
    resources: ClassVar[list[Resource]] = [
        Resource("clk200", 0, DiffPairs("AH27", "AH28", dir="i"), Clock(200e6),
                 Attrs(IOSTANDARD="LVDS_25", DIFF_TERM="TRUE")),
        Resource("clk50", 0, Pins("AA28", dir="i"), Clock(50e6), Attrs(IOSTANDARD="LVCMOS18")),
        Resource("led", 0, Pins("P30", dir="o"), Attrs(IOSTANDARD="LVCMOS18")),  # red
        Resource("led", 1, Pins("M30", dir="o"), Attrs(IOSTANDARD="LVCMOS18")),  # green
        Resource("led", 2, Pins("N30", dir="o"), Attrs(IOSTANDARD="LVCMOS18")),  # yellow
        pcie_resource(refclk=("J8", "J7"), perst="Y26", perst_iostandard="LVCMOS18",
                      tx=(_TX_P, _TX_N), rx=(_RX_P, _RX_N)),
        _ddr3_resource(),
    ]

    def board_constraints(self) -> str:
        """Board XDC beyond the pins: HR-bank DDR3 internal VREF, lane placement."""
        lines = [f"set_property INTERNAL_VREF 0.750 [get_iobanks {bank}]" for bank in
                 range(11, 19)]
        tx = _TX_P.split()
        for lane in range(self.pcie.lanes):
            # the core's GT wrapper for lane i (PG195 7-series); lanes are wired in reverse
            cell = (f"[get_cells -hierarchical -filter {{NAME =~ "
                    f"*pipe_lane?{lane}?.gt_wrapper_i/gtx_channel.gtxe2_channel_i}}]")
            lines.append(f"set_property LOC GTXE2_CHANNEL_X0Y{23 - lane} {cell}")
            port = f"pcie_0__tx__p[{lane}]"
            lines.append(f"set_property PACKAGE_PIN {tx[lane]} [get_ports {{{port}}}]")
        return "\n".join(lines)

    @classmethod
    def mig_pins(cls) -> list[tuple[str, str, str]]:
        """``(MIG signal, pin, I/O standard)`` for the MIG project file."""
        out = []
        for name, (pins, std) in DDR3_CH0_PINS.items():
            names = pins.split()
            single = name in ("ddr3_ras_n", "ddr3_cas_n", "ddr3_we_n", "ddr3_reset_n")
            for i, pin in enumerate(names):
                out.append((name if single else f"{name}[{i}]", pin, std))
        return out


if __name__ == "__main__":
    from .boards import describe

    print(describe("kintex7"))
