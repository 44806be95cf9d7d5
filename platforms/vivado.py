"""Running Vivado on a build plan and reading its reports back.

* :func:`find_vivado` — the ``vivado`` executable (``$VIVADO``, ``$AMARANTH_ENV_VIVADO`` sourcing
  is left to Amaranth's ``build_top.sh``) or ``None``;
* :func:`run_plan` — run the plan's ``build_top.sh`` (synthesis → bitstream → flash image),
  reporting progress as Vivado's phases go by;
* :func:`parse_utilization`, :func:`parse_timing` — the numbers of ``report_utilization`` and
  ``report_timing_summary`` that the build summary shows (LUT/FF/DSP/BRAM/URAM used and
  available; WNS/WHS and the achieved frequency of every clock).

The parsers read tables by their column headers, so the 7-series ("Slice LUTs") and
UltraScale+ ("CLB LUTs") layouts and the newer reports with a "Prohibited" column all work.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["find_vivado", "parse_timing", "parse_utilization", "run_plan"]

#: report_utilization row names → our resource keys (first match wins).
_UTIL_ROWS = {
    "LUT": ("Slice LUTs", "CLB LUTs"),
    "FF": ("Slice Registers", "CLB Registers"),
    "BRAM36": ("Block RAM Tile",),
    "URAM": ("URAM",),
    "DSP": ("DSPs",),
}


def find_vivado() -> str | None:
    """Path of the ``vivado`` executable, or ``None`` (``$VIVADO`` wins over ``PATH``)."""
    env = os.environ.get("VIVADO")
    if env and Path(env).exists():
        return env
    return shutil.which("vivado")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_utilization(text: str) -> dict[str, dict[str, float]]:
    """``{"LUT": {"used": …, "available": …, "percent": …}, …}`` from a utilization report.

    Missing resources (URAM on 7-series) are left out.  Raises ``ValueError`` if no
    resource row is found (not a utilization report).
    """
    out: dict[str, dict[str, float]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        cells = _cells(line)
        if cells and cells[0] == "Site Type":
            header = cells
            continue
        if header is None or len(cells) != len(header):
            continue
        name = re.sub(r"\*+$", "", cells[0]).strip()
        for key, names in _UTIL_ROWS.items():
            if key in out or name not in names:
                continue
            row = dict(zip(header, cells, strict=True))
            try:
                used = float(row["Used"])
                avail = float(row["Available"])
            except (KeyError, ValueError):
                continue
            pct = row.get("Util%", "")
            out[key] = {"used": used, "available": avail,
                        "percent": float(pct) if re.fullmatch(r"[\d.]+", pct or "") else
                        (100.0 * used / avail if avail else 0.0)}
    if not out:
        raise ValueError("no resource rows found: not a Vivado utilization report")
    return out


def parse_timing(text: str) -> dict:
    """WNS/TNS/WHS and the clocks of a ``report_timing_summary``.

    Returns ``{"wns": ns, "tns": ns, "whs": ns, "met": bool, "clocks": {name: {"period": ns,
    "target_mhz": …, "wns": ns | None, "achieved_mhz": … | None}}}``.  ``achieved_mhz`` is
    ``1000 / (period − WNS)``, the frequency the clock's worst path would allow.
    """
    lines = text.splitlines()
    summary = None
    for i, line in enumerate(lines):
        if "WNS(ns)" in line and "TNS(ns)" in line and "WHS(ns)" in line:
            for follow in lines[i + 1:i + 4]:
                nums = follow.split()
                if nums and re.fullmatch(r"-?[\d.]+", nums[0]):
                    head = re.split(r"\s{2,}", line.strip())  # names contain single spaces
                    summary = dict(zip(head, nums, strict=False))
                    break
            if summary:
                break
    if summary is None:
        raise ValueError("no Design Timing Summary found: not a timing summary report")
    clocks: dict[str, dict] = {}
    in_clocks = in_intra = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("Clock") and "Period(ns)" in stripped and \
                "Frequency(MHz)" in stripped:
            in_clocks, in_intra = True, False
            continue
        if stripped.startswith("Clock") and "WNS(ns)" in stripped:
            in_intra, in_clocks = True, False
            continue
        if not stripped or stripped.startswith(("---", "|", "-----")):
            if not stripped and (in_clocks or in_intra) and clocks:
                in_clocks = in_intra = False
            continue
        if in_clocks:
            m = re.match(r"(\S+)\s+\{[^}]*\}\s+([\d.]+)\s+([\d.]+)", stripped)
            if m:
                name = m.group(1).lstrip()
                clocks[name] = {"period": float(m.group(2)), "target_mhz": float(m.group(3)),
                                "wns": None, "achieved_mhz": None}
        elif in_intra:
            parts = stripped.split()
            name = parts[0]
            if name in clocks and len(parts) > 1 and re.fullmatch(r"-?[\d.]+", parts[1]):
                wns = float(parts[1])
                c = clocks[name]
                c["wns"] = wns
                c["achieved_mhz"] = round(1000.0 / (c["period"] - wns), 1)
    wns = float(summary["WNS(ns)"])
    whs = float(summary["WHS(ns)"])
    return {"wns": wns, "tns": float(summary["TNS(ns)"]), "whs": whs,
            "met": wns >= 0 and whs >= 0, "clocks": clocks}


_PHASES = re.compile(r"^(Starting|Finished|Phase \d+ |write_bitstream|Writing bitstream|"
                     r"INFO: \[Common 17-83\]|Command: |ERROR|CRITICAL WARNING)")


def run_plan(plan_dir: Path, *, vivado: str, progress: Callable[[str], None] = print,
             log_name: str = "vivado_run.log") -> int:
    """Run ``build_top.sh`` in ``plan_dir`` with Vivado; returns its exit code.

    The whole output goes to ``plan_dir/log_name``; Vivado's step lines (commands, phases,
    errors) are passed to ``progress`` with the elapsed time.
    """
    env = dict(os.environ)
    env.setdefault("VIVADO", vivado)
    start = time.monotonic()
    with open(plan_dir / log_name, "w") as log, subprocess.Popen(
            ["sh", "build_top.sh"], cwd=plan_dir, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if _PHASES.match(line):
                progress(f"[vivado {time.monotonic() - start:6.0f} s] {line.rstrip()[:120]}")
        return proc.wait()
