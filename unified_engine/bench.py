"""Op benchmarks against the anchor's published table: ``python -m unified_engine.bench``.

Runs each op of the anchor's datasheet table (M = K = N = 1024 by default) through the op API
on a backend — ``model`` (the ISA simulator's timing model) or ``verilator`` (the generated
RTL, cycle by cycle) — and prints, per op, the measured cycles (program start to HALT, DMA in
and out included, summed over the op's programs), the rate at the configuration's clock, the
utilization (``Engine.last_run``: MACs / (R·C) ÷ cycles for array ops, the DRAM bound ÷ cycles
for memory ops), the anchor's published figure, the speed-up over it (anchor cycles ÷ ours),
and the host wall time (with the simulated cycles per second).  Output is a Markdown table,
JSON with ``--json`` and a utilization plot with ``--png``.

Both backends use the same DRAM model: ``latency`` cycles from a read request to its first
beat and one AXI beat per cycle per direction (``TimingParams.for_config``: 64 cycles, 32 B per
cycle at 256-bit AXI); the header line prints the values used.

The model backend computes every result bit-exactly, so a 1024³ matmul takes a few seconds of
host time; the Verilator backend simulates the default engine at roughly 20 k cycles/s, so a
1024³ matmul (~17 M cycles) takes ≈ 15 min on an idle core: pick rows with ``--ops`` and a
``--size``.  The anchor's figures are for M = K = N = 1024 on a 64 MAC/cycle engine
(``research/apex-unified-engine.md`` §5.1); its cycle counts are only compared at
``--size 1024``.  ``--scaling`` prints the array-size and small-M sweep instead
(:mod:`.bench_scaling`).

    python -m unified_engine.bench --backend model                    # the table, 1024³
    python -m unified_engine.bench --backend verilator --size 256     # every row on the RTL
    python -m unified_engine.bench --backend verilator --ops mm       # 1024³ matmul on the RTL
    python -m unified_engine.bench --scaling
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

__all__ = ["ANCHOR", "BenchRow", "config_for", "dram_model", "main", "markdown",
           "op_keys", "run_benchmarks"]

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
    "A·Bᵀ, B fp4": (22_849_177, "73.4 % (int4/fp4)"),
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

#: Short names for ``--ops`` (the table's op names are not easy to type).
OP_KEYS: dict[str, str] = {
    "mm": "A·Bᵀ", "mm_bias": "A·Bᵀ + C", "gelu": "GELU(A·Bᵀ)", "gelu_bias": "GELU(A·Bᵀ + C)",
    "silu": "SiLU(A·Bᵀ)", "silu_bias": "SiLU(A·Bᵀ + C)", "softmax_mm": "softmax(A·Bᵀ)",
    "softmax_mm_bias": "softmax(A·Bᵀ + C)", "int4": "A·Bᵀ, B int4", "fp4": "A·Bᵀ, B fp4",
    "if4": "A·Bᵀ, B if4", "if4_matvec": "a·Bᵀ, B if4 (M = 1)", "attention": "attention",
    "attention_causal": "attention, causal", "transpose": "Aᵀ", "mul_scalar": "A·scalar",
    "add_scalar": "A + scalar", "mul": "A ⊙ B", "add": "A + B", "add_row": "A + b (row)",
    "rmsnorm": "RMSNorm·γ", "layernorm": "LayerNorm·γ + β", "softmax": "softmax(A)",
}


def op_keys() -> list[str]:
    """The ``--ops`` keys in table order."""
    return list(OP_KEYS)


@dataclasses.dataclass
class BenchRow:
    """One measured op."""

    key: str
    op: str
    shape: str
    cycles: int
    ideal_cycles: float
    utilization: float
    array_op: bool
    rate: str
    anchor_cycles: int | None
    anchor_figure: str
    speedup: float | None
    counters: dict[str, int]
    seconds: float  #: host wall time of the op (uploads, runs, downloads)
    backend: str

    @property
    def cycles_per_second(self) -> float:
        """Simulated cycles per host second (wall time of the whole op)."""
        return self.cycles / self.seconds if self.seconds else 0.0


def config_for(preset: str) -> EngineConfig:
    """``"default"`` → ``EngineConfig()`` (the configuration issue 8 measures); else a preset."""
    if preset == "default":
        return EngineConfig()
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: default, "
                         f"{', '.join(sorted(PRESETS))}")
    return EngineConfig.preset(preset)


def dram_model(eng: Any) -> dict[str, float]:
    """The DRAM model an open engine runs with: first-beat latency (cycles) and bytes per cycle
    per direction (model: its ``TimingParams``; verilator: the harness's memory)."""
    dev = eng.device
    timing = getattr(getattr(dev, "machine", None), "timing", None)
    if timing is not None:
        return {"latency": timing.dram_latency, "bytes_per_cycle": timing.dram_bytes_per_cycle}
    return {"latency": getattr(dev, "latency", float("nan")),
            "bytes_per_cycle": getattr(dev, "bytes_per_cycle", float("nan"))}


def _ops(eng: Any, n: int, rng: np.random.Generator, heads: int
         ) -> list[tuple[str, str, Callable[[], Any], float, bool]]:
    """(key, shape, call, flops, is_array_op) of every row."""
    f32 = np.float32
    a = rng.standard_normal((n, n)).astype(f32)
    bt = rng.standard_normal((n, n)).astype(f32)          # B as [N, K]: A·Bᵀ = linear
    c = rng.standard_normal((n, n)).astype(f32)
    g = rng.standard_normal(n).astype(f32)
    row = rng.standard_normal(n).astype(f32)
    w = eng.pack_weight(bt)
    b_kn = np.ascontiguousarray(bt.T)
    mm = 2.0 * n ** 3
    cube = f"{n}³"
    out: list[tuple[str, str, Callable[[], Any], float, bool]] = [
        ("mm", cube, lambda: eng.linear(a, w), mm, True),
        ("mm_bias", cube, lambda: eng.matmul(a, b_kn, bias=c), mm, True),
        ("gelu", cube, lambda: eng.linear(a, w, activation="gelu"), mm, True),
        ("gelu_bias", cube, lambda: eng.matmul(a, b_kn, bias=c, activation="gelu"), mm, True),
        ("silu", cube, lambda: eng.linear(a, w, activation="silu"), mm, True),
        ("silu_bias", cube, lambda: eng.matmul(a, b_kn, bias=c, activation="silu"), mm, True),
        ("softmax_mm", cube, lambda: eng.matmul(a, b_kn, softmax=True), mm, True),
        ("softmax_mm_bias", cube, lambda: eng.matmul(a, b_kn, bias=c, softmax=True), mm, True),
    ]
    for fmt in ("int4", "fp4", "if4"):
        if fmt in eng.config.formats and n % eng.config.quant_block == 0:
            q = eng.quantize(bt, fmt)
            out.append((fmt, cube, lambda q=q: eng.linear(a, q), mm, True))
            if fmt == "if4":
                out.append(("if4_matvec", f"1×{n}·{n}×{n}", lambda q=q: eng.linear(a[:1], q),
                            2.0 * n * n, True))
    s, d = n, 64
    qkv = [rng.standard_normal((1, heads, s, d)).astype(f32) for _ in range(3)]
    att = 4.0 * heads * s * s * d
    sq = f"{n}²"
    out += [
        ("attention", f"{heads}×{s}×{s}, d={d}", lambda: eng.attention(*qkv), att, True),
        ("attention_causal", f"{heads}×{s}×{s}, d={d}",
         lambda: eng.attention(*qkv, causal=True), att / 2, True),
        ("transpose", sq, lambda: eng.transpose(a), 0, False),
        ("mul_scalar", sq, lambda: eng.mul(a, 1.5), n * n, False),
        ("add_scalar", sq, lambda: eng.add(a, 1.5), n * n, False),
        ("mul", sq, lambda: eng.mul(a, c), n * n, False),
        ("add", sq, lambda: eng.add(a, c), n * n, False),
        ("add_row", sq, lambda: eng.add(a, row), n * n, False),
        ("rmsnorm", sq, lambda: eng.rmsnorm(a, g), 4 * n * n, False),
        ("layernorm", sq, lambda: eng.layernorm(a, g, g), 7 * n * n, False),
        ("softmax", sq, lambda: eng.softmax(a), 4 * n * n, False),
    ]
    return out


def _check_ops(ops: list[str] | None) -> list[str] | None:
    if ops is None:
        return None
    if isinstance(ops, str) or not all(isinstance(o, str) for o in ops):
        raise TypeError(f"ops must be a list of op keys, not {ops!r}")
    bad = [o for o in ops if o not in OP_KEYS]
    if bad:
        raise ValueError(f"unknown op key(s) {', '.join(bad)}; allowed: {', '.join(OP_KEYS)}")
    return list(ops)


def open_engine(backend: str, config: EngineConfig) -> Any:
    """An engine for benchmarking: 1 GiB of DRAM, no host timeout that a slow simulation
    could hit (a 1024³ matmul on Verilator runs for many minutes)."""
    from .host import BACKENDS, Engine

    if backend not in ("model", "verilator"):
        raise ValueError(f"backend {backend!r} cannot be benchmarked here; allowed: model, "
                         f"verilator (of {', '.join(BACKENDS)})")
    return Engine.open(backend, config, dram_bytes=1 << 30, run_timeout=7 * 24 * 3600.0)


def run_benchmarks(backend: str = "model", preset: str = "default", size: int = 1024,
                   heads: int = 4, ops: list[str] | None = None, seed: int = 0,
                   progress: Callable[[str], Any] | None = None
                   ) -> tuple[EngineConfig, dict[str, float], list[BenchRow]]:
    """Measure the ops; returns the configuration, the DRAM model used and one
    :class:`BenchRow` per op."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int ≥ 16 (M = K = N), not {size!r}")
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise ValueError(f"heads must be a positive int, not {heads!r}")
    ops = _check_ops(ops)
    config = config_for(preset)
    rows = []
    with open_engine(backend, config) as eng:
        dram = dram_model(eng)
        rng = np.random.default_rng(seed)
        for key, shape, call, flops, array in _ops(eng, size, rng, heads):
            if ops is not None and key not in ops:
                continue
            name = OP_KEYS[key]
            if progress:
                progress(name)
            t0 = time.perf_counter()
            call()
            seconds = time.perf_counter() - t0
            lr = eng.last_run
            sec = lr.cycles / (config.clock_mhz * 1e6)
            if array:
                rate = f"{flops / sec / 1e9:.2f} GFLOP/s"
            else:
                rate = f"{size * size / lr.cycles:.2f} elem/cycle"
                if flops:
                    rate += f", {flops / sec / 1e9:.2f} GFLOP/s"
            anchor_cycles, figure = ANCHOR.get(name, (None, "–"))
            if size != 1024:
                anchor_cycles = None
            rows.append(BenchRow(key, name, shape, lr.cycles, lr.ideal_cycles, lr.utilization,
                                 array, rate, anchor_cycles, figure,
                                 anchor_cycles / lr.cycles if anchor_cycles else None,
                                 lr.counters, seconds, backend))
    return config, dram, rows


def header(config: EngineConfig, dram: dict[str, float], backend: str, preset: str) -> str:
    """The line above the table: backend, configuration, clock, DRAM model."""
    return (f"Backend `{backend}`, preset `{preset}`: {config.rows}×{config.cols} array "
            f"(P={config.pe_interleave}), {config.lanes} lanes, {config.axi_data_width}-bit "
            f"AXI, {config.scratchpad_bytes // 1024} KiB scratchpad, {config.clock_mhz:g} MHz, "
            f"peak {config.peak_gflops:.2f} GFLOP/s; DRAM model {dram['latency']:g} cycles "
            f"latency, {dram['bytes_per_cycle']:g} B/cycle per direction.\n\n")


def markdown(config: EngineConfig, rows: list[BenchRow], backend: str, preset: str,
             dram: dict[str, float]) -> str:
    """The table as Markdown."""
    lines = ["| op | shape | cycles | rate | utilization | ÷ bound | anchor | speed-up | "
             "backend | wall s (cycles/s) |",
             "|---|---|---:|---:|---:|---:|---|---:|---|---:|"]
    for r in rows:
        anchor = (f"{r.anchor_cycles:,} cycles, {r.anchor_figure}" if r.anchor_cycles
                  else r.anchor_figure)
        speed = f"{r.speedup:.2f}×" if r.speedup else "–"
        bound = f"{1 / r.utilization:.2f}×" if r.utilization else "–"
        lines.append(f"| {r.op} | {r.shape} | {r.cycles:,} | {r.rate} | "
                     f"{100 * r.utilization:.1f} % | {bound} | {anchor} | {speed} | "
                     f"{r.backend} | {r.seconds:.1f} ({r.cycles_per_second / 1e3:.1f} k) |")
    return header(config, dram, backend, preset) + "\n".join(lines) + "\n"


def to_json(config: EngineConfig, rows: list[BenchRow], backend: str, preset: str,
            dram: dict[str, float], size: int) -> dict:
    """The JSON document of ``--json``."""
    return {"backend": backend, "preset": preset, "config": config.to_dict(), "size": size,
            "dram_model": dram,
            "rows": [dataclasses.asdict(r) | {"cycles_per_second": r.cycles_per_second}
                     for r in rows]}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m unified_engine.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="model", choices=("model", "verilator"),
                    help="engine backend (default: model)")
    ap.add_argument("--preset", default="default", choices=["default", *sorted(PRESETS)],
                    help="engine configuration (default: EngineConfig(), the 8×8 engine at "
                         "200 MHz; ku15p: 1 MiB scratchpad at the anchor's 333 MHz)")
    ap.add_argument("--size", type=int, default=1024, help="M = K = N (default 1024)")
    ap.add_argument("--heads", type=int, default=4, help="attention heads (S = size, d = 64)")
    ap.add_argument("--ops", nargs="+", metavar="KEY",
                    help="rows to run (default: all): " + ", ".join(OP_KEYS))
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--png", metavar="FILE", help="also plot utilization vs the anchor")
    ap.add_argument("--scaling", action="store_true",
                    help="run the array-size and small-M sweep (model backend) instead")
    args = ap.parse_args(argv)
    if args.size < 16:
        ap.error("--size must be ≥ 16")
    if args.heads < 1:
        ap.error("--heads must be ≥ 1")
    if args.ops:
        bad = [o for o in args.ops if o not in OP_KEYS]
        if bad:
            ap.error(f"unknown --ops {', '.join(bad)}; allowed: {', '.join(OP_KEYS)}")
    if args.scaling:
        from .bench_scaling import main as scaling_main

        return scaling_main(args.backend, args.json)

    def progress(name: str) -> None:
        print(f"running {name} …", file=sys.stderr, flush=True)

    config, dram, rows = run_benchmarks(args.backend, args.preset, args.size, args.heads,
                                        args.ops, progress=progress)
    print(markdown(config, rows, args.backend, args.preset, dram))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(to_json(config, rows, args.backend, args.preset, dram, args.size), fh,
                      indent=1)
    if args.png:
        from .bench_plot import utilization_png

        utilization_png(rows, args.png, title=f"{args.backend}, {config.rows}×{config.cols}, "
                                              f"size {args.size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
