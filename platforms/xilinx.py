"""The family base of our Xilinx PCIe boards: device capacity, link and memory facts, the
engine defaults, and the pieces of the Vivado flow every board shares.

A board file (``kintex7.py``, ``ku15p.py``, ``alveo_u50.py``) subclasses
:class:`UnifiedXilinxPlatform` with its part, resources (our own: amaranth-boards has no PCIe,
DDR or HBM resources and no KU15P / U50 board), :class:`PcieLink`, :class:`MemorySystem`,
:class:`DeviceCapacity`, bitstream settings and the default engine count and clock; the shell
(``shell.py``) and the build (``unified_engine.build``) read only these attributes.

Two flow details live here:

* Pins an IP core places itself get no LOC from our XDC: PCIe lanes (the XDMA core's GT
  placement, from ``pcie_blk_locn`` / ``select_quad`` or the board's GT channel LOCs) and the
  7-series MIG's DDR3 pins (the MIG project holds them).  Their resources carry
  ``Attrs(UE_PLACED_BY_IP="1")``.  The N side of a differential pair whose N pin is not
  documented is written ``"~<P pin>"``: Vivado places it with its P pin.
* The bitstream step also writes the flash image (``write_cfgmem``) for the board's
  configuration memory.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

from amaranth.build import Attrs, DiffPairs, Pins, Resource, Subsignal
from amaranth.vendor import XilinxPlatform

__all__ = [
    "IP_PLACED",
    "PLACED_BY_IP",
    "DeviceCapacity",
    "FlashSpec",
    "MemorySystem",
    "PcieLink",
    "UnifiedXilinxPlatform",
    "gt_lanes",
    "pcie_resource",
    "spi_bitstream",
]

#: Resource attribute: the pin is placed by an IP core's own constraints, not by our XDC.
PLACED_BY_IP = "UE_PLACED_BY_IP"
#: ``Attrs`` of a resource the IP core places (PCIe lanes, 7-series MIG pins).
IP_PLACED = Attrs(**{PLACED_BY_IP: "1"})


def gt_lanes(prefix: str, lanes: int) -> str:
    """Placeholder pin names ``<prefix>0 … <prefix>{lanes-1}`` for lanes the core places."""
    return " ".join(f"{prefix}{i}" for i in range(lanes))


def pcie_resource(*, refclk: tuple[str, str], perst: str, perst_iostandard: str,
                  tx: tuple[str, str], rx: tuple[str, str]) -> Resource:
    """The ``pcie`` resource of a card edge: the 100 MHz reference clock pair, PERST#
    (pulled up: the slot drives it low in reset) and the TX/RX lane pairs ``(P pins, N
    pins)``, which the XDMA core places (:data:`IP_PLACED`)."""
    return Resource(
        "pcie", 0,
        Subsignal("clk", DiffPairs(*refclk, dir="i")),
        Subsignal("perst", Pins(perst, dir="i"),
                  Attrs(IOSTANDARD=perst_iostandard, PULLUP="TRUE")),
        Subsignal("tx", DiffPairs(*tx, dir="o"), IP_PLACED),
        Subsignal("rx", DiffPairs(*rx, dir="i"), IP_PLACED))


def spi_bitstream(*, buswidth: int, rate: str, **extra: str) -> dict[str, str]:
    """UltraScale+ bitstream settings for a 1.8 V SPI flash of ``buswidth`` bits at ``rate``
    MHz (32-bit addressing, compressed, unused pins pulled up, over-temperature shutdown),
    plus ``extra`` properties (written ``BITSTREAM_CONFIG_X`` for ``BITSTREAM.CONFIG.X``)."""
    settings = {
        "CFGBVS": "GND",
        "CONFIG_VOLTAGE": "1.8",
        "CONFIG_MODE": f"SPIx{buswidth}",
        "BITSTREAM.CONFIG.SPI_BUSWIDTH": str(buswidth),
        "BITSTREAM.CONFIG.SPI_32BIT_ADDR": "YES",
        "BITSTREAM.CONFIG.CONFIGRATE": rate,
    }
    settings.update({k.replace("_", ".", 2): v for k, v in extra.items()})
    settings.update({"BITSTREAM.CONFIG.UNUSEDPIN": "PULLUP",
                     "BITSTREAM.CONFIG.OVERTEMPSHUTDOWN": "ENABLE",
                     "BITSTREAM.GENERAL.COMPRESS": "TRUE"})
    return settings


@dataclasses.dataclass(frozen=True)
class DeviceCapacity:
    """Resources of the FPGA (AMD product tables, see ``docs/boards.md``) and the share of
    each a build may use before routing gets unreliable (``research/boards.md`` §5)."""

    lut: int
    ff: int
    dsp: int
    bram36: int
    uram: int = 0
    lut_budget: float = 0.70
    ff_budget: float = 0.80
    dsp_budget: float = 0.80
    bram_budget: float = 0.80
    uram_budget: float = 0.80

    def as_dict(self) -> dict[str, int]:
        """``{"LUT": …, "FF": …, "DSP": …, "BRAM36": …, "URAM": …}``."""
        return {"LUT": self.lut, "FF": self.ff, "DSP": self.dsp, "BRAM36": self.bram36,
                "URAM": self.uram}

    def budgets(self) -> dict[str, float]:
        """The usable share of each resource."""
        return {"LUT": self.lut_budget, "FF": self.ff_budget, "DSP": self.dsp_budget,
                "BRAM36": self.bram_budget, "URAM": self.uram_budget}


@dataclasses.dataclass(frozen=True)
class PcieLink:
    """The PCIe link as wired and as configured in the XDMA core."""

    lanes: int
    speed: str            # XDMA pl_link_cap_max_link_speed, e.g. "5.0_GT/s"
    data_width: int       # XDMA AXI data width in bits
    axi_mhz: int = 250    # XDMA axi_aclk
    block: str | None = None  # UltraScale+ hard block (pcie_blk_locn)
    quad: str | None = None   # UltraScale+ lane-0 GT quad (select_quad)
    refclk: str = "100 MHz from the slot"
    bar_mb: int = 1       # AXI-Lite BAR (the SoC register window needs 1 MiB)

    @property
    def generation(self) -> int:
        return {"2.5_GT/s": 1, "5.0_GT/s": 2, "8.0_GT/s": 3, "16.0_GT/s": 4}[self.speed]

    @property
    def bandwidth(self) -> float:
        """Raw link bandwidth per direction in bytes/s (after line coding)."""
        per_lane = {1: 2.5e9 * 0.8, 2: 5e9 * 0.8, 3: 8e9 * 128 / 130, 4: 16e9 * 128 / 130}
        return per_lane[self.generation] * self.lanes / 8


@dataclasses.dataclass(frozen=True)
class MemorySystem:
    """Device memory as the SoC sees it."""

    kind: str             # "ddr3", "ddr4" or "hbm"
    size: int             # bytes
    bandwidth: float      # theoretical peak, bytes/s
    description: str
    controller_width: int = 512  # AXI data width of the controller port (bits)
    mode: str = "shared"  # Soc(memory=...): "shared" or "per_engine"


@dataclasses.dataclass(frozen=True)
class FlashSpec:
    """The configuration flash: ``write_cfgmem`` interface and size in MiB."""

    interface: str   # "BPIx16", "SPIx4", "SPIx8"
    size_mb: int
    part: str


class UnifiedXilinxPlatform(XilinxPlatform):
    """Base of every board platform (see the module docstring).

    Class attributes a board defines
    --------------------------------
    board, card:
        Short name (``build.py --board``) and a one-line description of the card.
    board_code:
        Four ASCII characters shown in the SoC BOARD register.
    capacity, pcie, memory, flash:
        :class:`DeviceCapacity`, :class:`PcieLink`, :class:`MemorySystem`, :class:`FlashSpec`.
    engine_refclk:
        ``(resource name, MHz)`` of the free-running board clock the engine clock comes from.
    engines, clock_mhz:
        Default engine count and engine clock target (the ``EngineConfig`` preset of the same
        name holds the same values; a test keeps them equal).
    shell_estimate:
        Rough LUT/FF/BRAM36/DSP/URAM allowance for the vendor IP (XDMA, memory controller), not
        measured: the yosys estimate cannot see inside encrypted IP.  Replace with the
        numbers of the first Vivado report.
    bitstream:
        ``set_property`` settings on ``current_design`` (configuration, unused pins,
        over-temperature shutdown), emitted into the XDC.
    openfpgaloader_board:
        ``openFPGALoader`` arguments that program this card over JTAG, or ``None``.
    """

    board: ClassVar[str]
    card: ClassVar[str]
    board_code: ClassVar[int] = 0
    capacity: ClassVar[DeviceCapacity]
    pcie: ClassVar[PcieLink]
    memory: ClassVar[MemorySystem]
    flash: ClassVar[FlashSpec]
    engine_refclk: ClassVar[tuple[str, float]]
    engines: ClassVar[int]
    clock_mhz: ClassVar[float]
    shell_estimate: ClassVar[dict[str, int]] = {}
    bitstream: ClassVar[dict[str, str]] = {}
    openfpgaloader_board: ClassVar[tuple[str, ...] | None] = None
    connectors: ClassVar[list] = []

    # ----- XDC ----------------------------------------------------------------------------

    def iter_port_constraints_bits(self):
        """Every requested pin with its LOC and attributes, except the ones an IP places and
        the N sides placed with their P pin."""
        for name, pin, attrs in super().iter_port_constraints_bits():
            if PLACED_BY_IP in attrs:
                continue
            if pin.startswith("~"):
                continue  # Vivado places (and standardises) the N side with its P pin
            yield name, pin, attrs

    def board_constraints(self) -> str:
        """Board-specific XDC lines beyond pins and bitstream settings."""
        return ""

    def bitstream_constraints(self) -> str:
        """XDC lines for the configuration settings of this board."""
        return "\n".join(f"set_property {key} {value} [current_design]"
                         for key, value in self.bitstream.items())

    # ----- Vivado products ------------------------------------------------------------------

    def cfgmem_tcl(self, name: str) -> str:
        """Tcl that writes the flash image (``.mcs``) after the bitstream."""
        f = self.flash
        return (f"write_cfgmem -force -format mcs -size {f.size_mb} -interface {f.interface} "
                f"-loadbit {{up 0x00000000 {name}.bit}} -file {name}.mcs")

    def program_tcl(self, bitstream: str) -> str:
        """Vivado hardware-manager Tcl that loads ``bitstream`` over JTAG (hw_server)."""
        part = self.device.lower()
        return "\n".join([
            "# Load the bitstream over JTAG through hw_server (generated by build.py).",
            "open_hw_manager",
            "connect_hw_server -allow_non_jtag",
            "open_hw_target",
            f"set dev [lindex [get_hw_devices {part}*] 0]",
            "current_hw_device $dev",
            f"set_property PROGRAM.FILE {{{bitstream}}} $dev",
            "program_hw_devices $dev",
            "refresh_hw_device $dev",
            "close_hw_manager",
            "",
        ])

    def programmers(self) -> list[str]:
        """The programming tools found on PATH, in order of preference."""
        found = []
        if shutil.which("vivado") or shutil.which("vivado_lab"):
            found.append("vivado")
        if self.openfpgaloader_board is not None and shutil.which("openFPGALoader"):
            found.append("openFPGALoader")
        return found

    def program(self, bitstream: Path, *, tool: str | None = None) -> list[str]:
        """Load ``bitstream`` into the FPGA (volatile); returns the command that ran.

        After loading, the host must re-enumerate the card (``docs/boards.md``).
        """
        tools = self.programmers()
        if tool is not None and tool not in tools:
            raise RuntimeError(f"{tool} is not available for {self.board}; found: "
                               f"{', '.join(tools) or 'none'}")
        tool = tool or (tools[0] if tools else None)
        if tool is None:
            raise RuntimeError(
                "no programmer found: install Vivado (or Vivado Lab) and start hw_server, or "
                + ("openFPGALoader" if self.openfpgaloader_board else
                   "(openFPGALoader does not support this device)"))
        if tool == "vivado":
            script = bitstream.with_name("program.tcl")
            script.write_text(self.program_tcl(bitstream.name))
            exe = shutil.which("vivado") or shutil.which("vivado_lab")
            cmd = [exe, "-mode", "batch", "-nojournal", "-nolog", "-source", script.name]
        else:
            cmd = ["openFPGALoader", *self.openfpgaloader_board, str(bitstream.name)]
        subprocess.run(cmd, cwd=bitstream.parent, check=True)
        return cmd

    def toolchain_program(self, products, name, **kwargs):
        with products.extract(f"{name}.bit") as path:
            self.program(Path(path))
