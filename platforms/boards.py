"""The board registry: ``build.py --board NAME`` → platform class."""

from __future__ import annotations

from .alveo_u50 import AlveoU50Platform
from .kintex7 import Kintex7Platform
from .ku15p import Ku15pPlatform
from .xilinx import UnifiedXilinxPlatform

__all__ = ["BOARDS", "board_class", "describe"]

#: Every board ``build.py`` can target, by name.
BOARDS: dict[str, type[UnifiedXilinxPlatform]] = {
    cls.board: cls for cls in (Kintex7Platform, Ku15pPlatform, AlveoU50Platform)
}


def board_class(name: str) -> type[UnifiedXilinxPlatform]:
    """The platform class of board ``name``; ``ValueError`` lists the boards."""
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown board {name!r}; allowed: {', '.join(BOARDS)}") from None


def describe(name: str) -> str:
    """A human-readable summary of a board (what ``python -m …platforms.<board>`` prints)."""
    cls = board_class(name)
    cap = cls.capacity
    gib = cls.memory.size / (1 << 30)
    lines = [
        f"{cls.board}: {cls.card}",
        f"  part            {cls.device}-{cls.package}-{cls.speed}",
        f"  capacity        {cap.lut:,} LUT, {cap.ff:,} FF, {cap.dsp:,} DSP, "
        f"{cap.bram36:,} BRAM36, {cap.uram:,} URAM",
        f"  PCIe            Gen{cls.pcie.generation} x{cls.pcie.lanes}, XDMA "
        f"{cls.pcie.data_width}-bit AXI at {cls.pcie.axi_mhz} MHz "
        f"({cls.pcie.bandwidth / 1e9:.1f} GB/s per direction)",
        f"  memory          {gib:g} GiB {cls.memory.kind.upper()}, "
        f"{cls.memory.bandwidth / 1e9:.1f} GB/s: {cls.memory.description}",
        f"  flash           {cls.flash.part} ({cls.flash.interface}, {cls.flash.size_mb} MiB)",
        f"  engines         {cls.engines} at {cls.clock_mhz:g} MHz (default)",
    ]
    return "\n".join(lines)
