"""The Vivado build plan of a board: Verilog, XDC, project Tcl, IP Tcl, build script, and the
Verilator lint of the whole top against the IP stand-ins.

:func:`write_plan` elaborates :class:`~.shell.BoardShell` through Amaranth's Vivado template
(``platform.build(do_build=False)``) and extracts it into ``<out>/vivado``:

========================  ============================================================
``top.v``                 the whole design (shell, SoC, engines), ``top`` module
``top.xdc``               pins, clocks, board and bitstream settings
``top.tcl``               project flow: read sources → create the IP → synth → place →
                          route → reports → ``top.bit`` / ``top.bin`` → ``top.mcs``
``build_top.sh``          ``vivado -mode batch -source top.tcl`` (honours ``$VIVADO``)
``ip/<core>.tcl``         ``create_ip`` + ``CONFIG.*`` of each core (``ip.py``)
``ip/create_ips.tcl``     sources them, ``generate_target``, ``synth_ip``
``ip/mig_0.prj``          the 7-series MIG project (DDR3 boards)
========================  ============================================================

and ``<out>/sim/stand_ins.v`` (IP and primitive models, never for Vivado).  The IP scripts are
pulled in through Amaranth's ``script_after_read`` hook; the clock-domain crossings are declared
asynchronous in ``script_after_synth``; the flash image is written in ``script_after_bitstream``.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path

from unified_engine.config import EngineConfig

from .ip import VivadoIp, tcl_for
from .shell import BoardShell, shell_ips
from .stand_ins import stand_ins_verilog
from .xilinx import UnifiedXilinxPlatform

__all__ = ["LINT_FLAGS", "LintResult", "Plan", "lint", "write_plan"]

#: Verilator warnings that flag Yosys' Verilog idioms in Amaranth output, not design errors:
#: WIDTH (``!state`` for a multi-bit compare, shifts for variable part-selects), CASEINCOMPLETE
#: and CASEOVERLAP (a default assignment before a ``casez``; ``If``/``Elif`` priority chains as
#: overlapping ``casez`` patterns), UNSIGNED / CMPCONST (comparisons a generic block makes
#: constant for one parameter set), ASCRANGE (``wire [-1:0]`` for zero-width values) and
#: ALWNEVER (an ``always @*`` of constants).  Every other check — missing or unknown pins,
#: multiple drivers, latches, implicit nets, bad selects — must pass.
LINT_FLAGS = ("-Wno-WIDTH", "-Wno-CASEINCOMPLETE", "-Wno-CASEOVERLAP", "-Wno-UNSIGNED",
              "-Wno-CMPCONST", "-Wno-ASCRANGE", "-Wno-ALWNEVER")

#: Clock pins of the shell's cores (instance/pin), for the asynchronous clock groups.
_CLOCK_PINS = ("clk_engine/clk_out1", "xdma/axi_aclk", "mig/ui_clk", "ddr4/c0_ddr4_ui_clk")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What :func:`write_plan` wrote."""

    directory: Path          # <out>/vivado
    stand_ins: Path          # <out>/sim/stand_ins.v
    files: tuple[Path, ...]
    ips: dict[str, VivadoIp]
    seconds: float


def _clock_groups(ips: dict[str, VivadoIp]) -> str:
    modules = {ip.module for ip in ips.values()}
    instance_of = {"clk_engine": "clk_engine", "xdma": "xdma_0", "mig": "mig_0",
                   "ddr4": "ddr4_0"}
    pins = [p for p in _CLOCK_PINS if instance_of[p.split("/")[0]] in modules]
    groups = " \\\n    ".join(f"-group [get_clocks -of_objects [get_pins {p}]]" for p in pins)
    return ("# The clock domains meet only in asynchronous FIFOs and reset synchronisers.\n"
            f"set_clock_groups -name ue_async -asynchronous \\\n    {groups}\n")


def write_plan(board: type[UnifiedXilinxPlatform], config: EngineConfig, out: Path, *,
               engine_factory: Callable | None = None) -> Plan:
    """Elaborate the board top for ``config`` and write the Vivado plan under ``out``.

    Raises ``ValueError`` when the shell cannot host ``config`` (bus widths, engine count).
    """
    import time

    start = time.monotonic()
    shell_ips(board, config)  # refuse an unfit configuration before any component exists
    shell = BoardShell(config, board, engine_factory=engine_factory)
    platform = board()
    for ip in shell.ips.values():
        platform.add_file(f"ip/{ip.module}.tcl", ip.tcl())
        for name, text in ip.files.items():
            platform.add_file(name, text)
    platform.add_file("ip/create_ips.tcl", tcl_for(shell.ips))
    constraints = "\n".join(filter(None, [
        "# PCIe reference clock (100 MHz from the slot) and PERST#",
        "create_clock -name pcie_refclk -period 10.000 [get_ports pcie_0__clk__p]",
        "set_false_path -from [get_ports pcie_0__perst__io]",
        "# board",
        platform.board_constraints(),
        "# configuration and bitstream",
        platform.bitstream_constraints(),
    ]))
    plan = platform.build(
        shell, name="top", do_build=False,
        script_after_read="source [file join [pwd] ip create_ips.tcl]",
        script_after_synth=_clock_groups(shell.ips),
        script_after_bitstream=platform.cfgmem_tcl("top"),
        add_constraints=constraints)
    directory = Path(out) / "vivado"
    plan.extract(directory)
    sim = Path(out) / "sim"
    sim.mkdir(parents=True, exist_ok=True)
    stand_ins = sim / "stand_ins.v"
    stand_ins.write_text(stand_ins_verilog(shell.ips.values()))
    files = (*sorted(p for p in directory.rglob("*") if p.is_file()), stand_ins)
    return Plan(directory, stand_ins, files, shell.ips, time.monotonic() - start)


@dataclasses.dataclass(frozen=True)
class LintResult:
    """Outcome of :func:`lint`: ``ok`` is Verilator's verdict, ``log`` its output."""

    ok: bool
    command: tuple[str, ...]
    log: str


def lint(plan: Plan, *, verilator_root: str | None = None) -> LintResult:
    """``verilator --lint-only`` of ``top.v`` with the stand-ins (``LINT_FLAGS``).

    Raises ``unified_engine.host.verilator_build.VerilatorNotFound`` without Verilator.
    """
    from unified_engine.host.verilator_build import find_toolchain

    tc = find_toolchain(verilator_root)
    cmd = (str(tc.verilator), "--lint-only", *LINT_FLAGS, "--top-module", "top",
           str(plan.directory / "top.v"), str(plan.stand_ins))
    result = subprocess.run(cmd, capture_output=True, text=True, env=tc.env(), check=False)
    return LintResult(result.returncode == 0, cmd, result.stdout + result.stderr)
