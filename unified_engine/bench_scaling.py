"""Scaling sweep of the matmul (``python -m unified_engine.bench --scaling``, model backend).

Two tables:

* **Array size**: M = K = N = 1024 bf16 ``linear`` on R×C = 4×4, 8×8 and 16×16 arrays with the
  AXI width (and the vector lanes, one bf16 per lane per beat) scaled with C — 128, 256 and
  512 bits — and the accumulator scaled with R·C so every array holds the same number of
  output tiles; the other fields are ``EngineConfig()``'s.  The DRAM model keeps one AXI beat
  per cycle, so bandwidth per MAC stays constant.
* **Small M** (decode-like): ``x[M, 1024] · W[1024, 1024]ᵀ`` on the default engine for
  M = 1, 2, 4, 8, 16 (and 32, one full row tile), with W in bf16 and in IF4.  Two bounds are
  printed next to the measured utilization: the *row-tile bound* M / TR (the array computes
  TR = R·P output rows per pass over the weights, so a pass with M < TR rows does TR rows'
  work) and the *weight-stream bound*: ideal cycles ÷ the cycles the weight bytes take at the
  DRAM model's bytes per cycle.

Utilization = MACs / (R·C) ÷ measured cycles, end to end (``Engine.last_run``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

import numpy as np

from .config import EngineConfig

__all__ = ["ARRAYS", "SMALL_M", "array_config", "array_sweep", "main", "small_m_sweep"]

#: (R = C, AXI data width in bits) of the array-size sweep.
ARRAYS: tuple[tuple[int, int], ...] = ((4, 128), (8, 256), (16, 512))
#: M of the small-M sweep.
SMALL_M: tuple[int, ...] = (1, 2, 4, 8, 16, 32)


def array_config(side: int, axi_bits: int) -> EngineConfig:
    """``EngineConfig()`` with a ``side``×``side`` array, ``axi_bits`` AXI, lanes = one bf16
    per lane per beat, and the accumulator scaled by (side/8)² (same tile count)."""
    base = EngineConfig()
    acc = base.accumulator_bytes * side * side // (base.rows * base.cols)
    return dataclasses.replace(base, rows=side, cols=side, axi_data_width=axi_bits,
                               lanes=axi_bits // 16, accumulator_bytes=acc)


def _open(config: EngineConfig) -> Any:
    from .host import Engine

    return Engine.open("model", config, dram_bytes=1 << 30)


def array_sweep(size: int = 1024, seed: int = 0) -> list[dict[str, Any]]:
    """One row per array size: cycles and utilization of a ``size``³ bf16 linear."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size)).astype(np.float32)
    w = rng.standard_normal((size, size)).astype(np.float32)
    out = []
    for side, axi in ARRAYS:
        config = array_config(side, axi)
        with _open(config) as eng:
            t0 = time.perf_counter()
            eng.linear(a, eng.pack_weight(w))
            lr = eng.last_run
            out.append({"array": f"{side}×{side}", "axi_bits": axi, "lanes": config.lanes,
                        "macs_per_cycle": config.macs_per_cycle, "size": size,
                        "cycles": lr.cycles, "ideal_cycles": lr.ideal_cycles,
                        "utilization": lr.utilization,
                        "array_busy": lr.counters["array_busy"],
                        "gflops": 2.0 * size ** 3 / (lr.cycles / (config.clock_mhz * 1e6))
                        / 1e9, "seconds": time.perf_counter() - t0})
    return out


def small_m_sweep(k: int = 1024, n: int = 1024, ms: tuple[int, ...] = SMALL_M,
                  seed: int = 0) -> list[dict[str, Any]]:
    """One row per (M, weight format) on the default engine, with the two bounds."""
    from .host.timing import TimingParams

    config = EngineConfig()
    bpc = TimingParams.for_config(config).dram_bytes_per_cycle
    tr = config.tile_rows
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((max(ms), k)).astype(np.float32)
    out = []
    with _open(config) as eng:
        weights = {"bf16": eng.pack_weight(w), "if4": eng.quantize(w, "if4")}
        for fmt, wt in weights.items():
            weight_bytes = sum(t.nbytes for t in (wt.codes, wt.scales) if t is not None)
            for m in ms:
                eng.linear(x[:m], wt)
                lr = eng.last_run
                out.append({"m": m, "k": k, "n": n, "format": fmt, "cycles": lr.cycles,
                            "ideal_cycles": lr.ideal_cycles, "utilization": lr.utilization,
                            "array_busy": lr.counters["array_busy"],
                            "load_busy": lr.counters["load_busy"],
                            "row_tile_bound": min(1.0, m / tr),
                            "weight_bytes": weight_bytes,
                            "weight_stream_bound": min(1.0, lr.ideal_cycles
                                                       / (weight_bytes / bpc))})
    return out


def markdown(arrays: list[dict[str, Any]], small: list[dict[str, Any]]) -> str:
    """Both tables as Markdown."""
    lines = ["Array size (model backend, M = K = N = "
             f"{arrays[0]['size'] if arrays else '–'}, bf16):", "",
             "| array | AXI bits | lanes | MAC/cycle | cycles | utilization | array busy | "
             "GFLOP/s at 200 MHz |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in arrays:
        lines.append(f"| {r['array']} | {r['axi_bits']} | {r['lanes']} | "
                     f"{r['macs_per_cycle']} | {r['cycles']:,} | {100 * r['utilization']:.1f} % "
                     f"| {100 * r['array_busy'] / r['cycles']:.1f} % | {r['gflops']:.1f} |")
    lines += ["", "Small M (model backend, default 8×8 engine, x[M, K]·W[N, K]ᵀ, K = N = "
              f"{small[0]['k'] if small else '–'}):", "",
              "| M | W | cycles | utilization | row-tile bound M/TR | weight-stream bound | "
              "array busy | load busy |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in small:
        lines.append(f"| {r['m']} | {r['format']} | {r['cycles']:,} | "
                     f"{100 * r['utilization']:.1f} % | {100 * r['row_tile_bound']:.1f} % | "
                     f"{100 * r['weight_stream_bound']:.1f} % | "
                     f"{100 * r['array_busy'] / r['cycles']:.0f} % | "
                     f"{100 * r['load_busy'] / r['cycles']:.0f} % |")
    return "\n".join(lines) + "\n"


def main(backend: str = "model", json_path: str | None = None) -> int:
    """``bench --scaling``: print both tables (and write them as JSON)."""
    if backend != "model":
        raise ValueError(f"the scaling sweep runs on the model backend only (the 4×4 and "
                         f"16×16 engines have no Verilator build), not {backend!r}")
    print("running the array-size sweep …", file=sys.stderr, flush=True)
    arrays = array_sweep()
    print("running the small-M sweep …", file=sys.stderr, flush=True)
    small = small_m_sweep()
    print(markdown(arrays, small))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump({"arrays": arrays, "small_m": small}, fh, indent=1)
    return 0
