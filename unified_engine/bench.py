"""Op benchmarks against the anchor's published table: ``python -m unified_engine.bench``.

Runs each op of the anchor's datasheet table (M = K = N = 1024 by default) through the op API
on a backend (``model``: the ISA simulator's timing model) and prints, per op, the measured
cycles (program start to HALT, DMA in and out included, summed over the op's programs), the
rate at the preset's clock, the utilization (``Engine.last_run``: MACs / (R·C) ÷ cycles for
array ops, the DRAM bound ÷ cycles for memory ops), the anchor's published figure and the
speed-up over it (anchor cycles ÷ ours).  Output is Markdown, and JSON with ``--json``.

The model backend computes every result bit-exactly, so a 1024³ matmul takes a few seconds of
host time; ``--size 256`` gives a quick run.  The anchor's figures are for M = K = N = 1024 on a
64 MAC/cycle engine at 333 MHz (``research/apex-unified-engine.md`` §5.1); its cycle counts are
only comparable at ``--size 1024``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .config import PRESETS, EngineConfig

__all__ = ["ANCHOR", "BenchRow", "main", "run_benchmarks"]

#: The anchor's published cycles at M = K = N = 1024 (None: published as a graph only).
ANCHOR: dict[str, tuple[int | None, str]] = {
    "A·Bᵀ": (17_820_455, "94.1 % of peak"),
    "A·Bᵀ + C": (17_858_564, "94.0 %"),
    "GELU(A·Bᵀ)": (17_923_045, "93.8 %"),
    "GELU(A·Bᵀ + C)": (17_927_850, "93.8 %"),
    "SiLU(A·Bᵀ)": (17_921_594, "93.8 %"),
    "SiLU(A·Bᵀ + C)": (17_926_623, "93.8 %"),
    "softmax(A·Bᵀ)": (19_004_997, "88.5 %"),
    "softmax(A·Bᵀ + C)": (19_051_310, "88.3 %"),
    "A·Bᵀ, B int4": (22_849_177, "73.4 %"),
    "A·Bᵀ, B if4": (22_849_177, "73.4 % (int4/fp4)"),
    "attention": (None, "~90 % (graph)"),
    "attention, causal": (None, "–"),
    "Aᵀ": (1_648_647, "0.64 elem/cycle"),
    "A·scalar": (180_500, "5.8 elem/cycle"),
    "A + scalar": (181_005, "5.8 elem/cycle"),
    "A ⊙ B": (263_580, "4.0 elem/cycle"),
    "A + B": (263_871, "4.0 elem/cycle"),
    "RMSNorm·γ": (290_945, "3.6 elem/cycle"),
    "LayerNorm·γ + β": (414_679, "2.5 elem/cycle"),
    "softmax(A)": (None, "–"),
}


@dataclasses.dataclass
class BenchRow:
    """One measured op."""

    op: str
    shape: str
    cycles: int
    ideal_cycles: float
    utilization: float
    rate: str
    anchor_cycles: int | None
    anchor_figure: str
    speedup: float | None
    counters: dict[str, int]
    seconds: float


def _ops(eng, n: int, rng: np.random.Generator, heads: int) -> list[tuple[str, str, Callable,
                                                                          float, bool]]:
    """(name, shape, call, flops, is_array_op)."""
    f32 = np.float32
    a = rng.standard_normal((n, n)).astype(f32)
    bt = rng.standard_normal((n, n)).astype(f32)          # B as [N, K]: A·Bᵀ = linear
    c = rng.standard_normal((n, n)).astype(f32)
    g = rng.standard_normal(n).astype(f32)
    w = eng.pack_weight(bt)
    b_kn = np.ascontiguousarray(bt.T)
    mm = 2.0 * n ** 3
    out: list[tuple[str, str, Callable, float, bool]] = [
        ("A·Bᵀ", f"{n}³", lambda: eng.linear(a, w), mm, True),
        ("A·Bᵀ + C", f"{n}³", lambda: eng.matmul(a, b_kn, bias=c), mm, True),
        ("GELU(A·Bᵀ)", f"{n}³", lambda: eng.linear(a, w, activation="gelu"), mm, True),
        ("GELU(A·Bᵀ + C)", f"{n}³", lambda: eng.matmul(a, b_kn, bias=c, activation="gelu"),
         mm, True),
        ("SiLU(A·Bᵀ)", f"{n}³", lambda: eng.linear(a, w, activation="silu"), mm, True),
        ("SiLU(A·Bᵀ + C)", f"{n}³", lambda: eng.matmul(a, b_kn, bias=c, activation="silu"),
         mm, True),
        ("softmax(A·Bᵀ)", f"{n}³", lambda: eng.matmul(a, b_kn, softmax=True), mm, True),
        ("softmax(A·Bᵀ + C)", f"{n}³", lambda: eng.matmul(a, b_kn, bias=c, softmax=True), mm,
         True),
    ]
    for fmt in ("int4", "if4"):
        if fmt in eng.config.formats and n % eng.config.quant_block == 0:
            q = eng.quantize(bt, fmt)
            out.append((f"A·Bᵀ, B {fmt}", f"{n}³", lambda q=q: eng.linear(a, q), mm, True))
    s, d = n, 64
    qkv = [rng.standard_normal((1, heads, s, d)).astype(f32) for _ in range(3)]
    att = 4.0 * heads * s * s * d
    out += [
        ("attention", f"{heads}×{s}×{s}, d={d}", lambda: eng.attention(*qkv), att, True),
        ("attention, causal", f"{heads}×{s}×{s}, d={d}",
         lambda: eng.attention(*qkv, causal=True), att / 2, True),
        ("Aᵀ", f"{n}²", lambda: eng.transpose(a), 0, False),
        ("A·scalar", f"{n}²", lambda: eng.mul(a, 1.5), n * n, False),
        ("A + scalar", f"{n}²", lambda: eng.add(a, 1.5), n * n, False),
        ("A ⊙ B", f"{n}²", lambda: eng.mul(a, c), n * n, False),
        ("A + B", f"{n}²", lambda: eng.add(a, c), n * n, False),
        ("RMSNorm·γ", f"{n}²", lambda: eng.rmsnorm(a, g), 4 * n * n, False),
        ("LayerNorm·γ + β", f"{n}²", lambda: eng.layernorm(a, g, g), 7 * n * n, False),
        ("softmax(A)", f"{n}²", lambda: eng.softmax(a), 4 * n * n, False),
    ]
    return out


def run_benchmarks(backend: str = "model", preset: str = "ku15p", size: int = 1024,
                   heads: int = 4, only: list[str] | None = None, seed: int = 0,
                   progress: Callable[[str], Any] | None = None) -> tuple[EngineConfig,
                                                                           list[BenchRow]]:
    """Measure the ops; returns the configuration and one :class:`BenchRow` per op."""
    from .host import Engine

    config = EngineConfig.preset(preset)
    eng = Engine.open(backend, config, **({"dram_bytes": 1 << 30} if backend == "model"
                                          else {}))
    rng = np.random.default_rng(seed)
    rows = []
    for name, shape, call, flops, array in _ops(eng, size, rng, heads):
        if only and name not in only:
            continue
        if progress:
            progress(name)
        t0 = time.perf_counter()
        call()
        seconds = time.perf_counter() - t0
        lr = eng.last_run
        sec = lr.cycles / (config.clock_mhz * 1e6)
        elems = size * size
        if array:
            rate = f"{flops / sec / 1e9:.2f} GFLOP/s"
        else:
            rate = f"{elems / lr.cycles:.2f} elem/cycle"
            if flops:
                rate += f", {flops / sec / 1e9:.2f} GFLOP/s"
        anchor_cycles, figure = ANCHOR.get(name, (None, "–"))
        if size != 1024:
            anchor_cycles = None
        rows.append(BenchRow(name, shape, lr.cycles, lr.ideal_cycles, lr.utilization, rate,
                             anchor_cycles, figure,
                             anchor_cycles / lr.cycles if anchor_cycles else None,
                             lr.counters, seconds))
    return config, rows


def markdown(config: EngineConfig, rows: list[BenchRow], backend: str, preset: str) -> str:
    """The table as Markdown."""
    head = (f"Backend `{backend}`, preset `{preset}`: {config.rows}×{config.cols} array "
            f"(P={config.pe_interleave}), {config.lanes} lanes, {config.axi_data_width}-bit "
            f"AXI, {config.clock_mhz:g} MHz, peak {config.peak_gflops:.2f} GFLOP/s.\n\n")
    lines = ["| op | shape | cycles | rate | utilization | anchor | speed-up |",
             "|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        anchor = (f"{r.anchor_cycles:,} cycles, {r.anchor_figure}" if r.anchor_cycles
                  else r.anchor_figure)
        speed = f"{r.speedup:.2f}×" if r.speedup else "–"
        lines.append(f"| {r.op} | {r.shape} | {r.cycles:,} | {r.rate} | "
                     f"{100 * r.utilization:.1f} % | {anchor} | {speed} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m unified_engine.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="model", help="engine backend (default: model)")
    ap.add_argument("--preset", default="ku15p", choices=sorted(PRESETS),
                    help="engine preset (default ku15p: 333 MHz like the anchor's KU+ build)")
    ap.add_argument("--size", type=int, default=1024, help="M = K = N (default 1024)")
    ap.add_argument("--heads", type=int, default=4, help="attention heads (S = size, d = 64)")
    ap.add_argument("--only", nargs="*", help="op names to run (default: all)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    if args.size < 16:
        ap.error("--size must be ≥ 16")

    def progress(name: str) -> None:
        print(f"running {name} …", file=sys.stderr, flush=True)

    config, rows = run_benchmarks(args.backend, args.preset, args.size, args.heads, args.only,
                                  progress=progress)
    print(markdown(config, rows, args.backend, args.preset))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"backend": args.backend, "preset": args.preset,
                       "config": config.to_dict(), "size": args.size,
                       "rows": [dataclasses.asdict(r) for r in rows]}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
