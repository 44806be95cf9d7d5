"""The build flow behind ``python build.py``: configuration → elaborated RTL → output folder.

``build(board, out=..., **overrides)`` is the library entry point; ``main(argv)`` is the thin
command line over it (every flag maps to one keyword argument).

What a build produces today (the Vivado shell and bitstream flow is a later milestone):

* ``config.json`` — the resolved ``EngineConfig`` and its fingerprint;
* ``summary.txt`` — the configuration summary (array, SRAM, peak GFLOP/s);
* ``regmap.json`` / ``regmap.h`` — the CSR map with this build's BUILD_ID (``regs.py``);
* ``<block>.v`` — Verilog of every RTL block of the engine that exists so far, elaborated
  from the configuration (see ``ELABORATED_BLOCKS``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import PRESETS, EngineConfig

__all__ = ["BOARDS", "BuildError", "BuildResult", "build", "main"]

#: Boards ``build.py`` knows; each uses the ``EngineConfig`` preset of the same name.
BOARDS: tuple[str, ...] = ("kintex7", "ku15p", "alveo_u50")


class BuildError(ValueError):
    """A build request that cannot be satisfied (unknown board, invalid parameter)."""


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """What ``build`` wrote: the resolved configuration and the files, with timing."""

    config: EngineConfig
    out: Path
    files: tuple[Path, ...]
    seconds: float


def _elaborated_blocks() -> dict[str, Callable[[EngineConfig], Any]]:
    """RTL blocks written as Verilog by a build, keyed by output name.

    Imported lazily so that ``--help`` and configuration errors do not pay for Amaranth.
    """
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


def build(board: str, *, out: str | Path | None = None, verilog: bool = True,
          **overrides: Any) -> BuildResult:
    """Resolve the configuration for ``board`` and write the build outputs to ``out``.

    Parameters
    ----------
    board:
        One of ``BOARDS``.
    out:
        Output folder (default ``build/<board>``); created if missing.
    verilog:
        Elaborate the RTL blocks and write their Verilog (the slow part, ~seconds per block).
    overrides:
        ``EngineConfig`` fields to change from the preset (``rows=16``, ``engines=4``, ...).

    Raises
    ------
    BuildError
        Unknown board or an invalid configuration value (the message names field and range).
    """
    start = time.monotonic()
    config = resolve_config(board, **overrides)
    out_dir = Path(out) if out is not None else Path("build") / board
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []

    config_path = out_dir / "config.json"
    config_path.write_text(json.dumps(
        {"board": board, "fingerprint": f"{config.fingerprint():016x}",
         "config": config.to_dict()}, indent=2) + "\n")
    files.append(config_path)

    summary_path = out_dir / "summary.txt"
    from .regs import build_id

    summary_path.write_text(f"board           {board}\n{config.summary()}\n"
                            f"build id        {build_id(config):016x}\n")
    files.append(summary_path)

    from .regs import regmap_c_header, regmap_json

    for name, text in (("regmap.json", regmap_json(config)), ("regmap.h", regmap_c_header(config))):
        path = out_dir / name
        path.write_text(text if text.endswith("\n") else text + "\n")
        files.append(path)

    if verilog:
        from amaranth.back import verilog as amaranth_verilog

        for name, block in _elaborated_blocks().items():
            path = out_dir / f"{name}.v"
            component = block(config)
            path.write_text(amaranth_verilog.convert(component, name=name,
                                                     ports=component_ports(component)))
            files.append(path)

    return BuildResult(config, out_dir, tuple(files), time.monotonic() - start)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build.py", description="Generate a Unified Engine build for a board.")
    parser.add_argument("--board", required=True, choices=BOARDS, help="target board")
    parser.add_argument("--out", help="output folder (default build/<board>)")
    engine = parser.add_argument_group("engine (override the board preset)")
    engine.add_argument("--rows", type=int, help="systolic-array rows")
    engine.add_argument("--cols", type=int, help="systolic-array columns")
    engine.add_argument("--lanes", type=int, help="vector-unit lanes")
    engine.add_argument("--engines", type=int, help="engines in the SoC")
    engine.add_argument("--clock", type=float, dest="clock_mhz", help="engine clock in MHz")
    parser.add_argument("--no-verilog", action="store_true",
                        help="only resolve and summarise the configuration")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("rows", "cols", "lanes", "engines", "clock_mhz")}
    try:
        result = build(args.board, out=args.out, verilog=not args.no_verilog, **overrides)
    except BuildError as err:
        print(f"build.py: error: {err}", file=sys.stderr)
        return 2
    print(f"board           {args.board}")
    print(result.config.summary())
    print(f"wrote {len(result.files)} files to {result.out} in {result.seconds:.1f} s:")
    for path in result.files:
        print(f"  {path.name:24s} {path.stat().st_size:>10,d} bytes")
    return 0
