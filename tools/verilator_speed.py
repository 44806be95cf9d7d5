"""Benchmark of the Verilator backend: build time and simulation speed (cycles/s).

Prints a Markdown table (config, kernel, cycles, wall s, cycles/s, build s) and the load
average, which matters on a shared machine.  ``cycles`` is the engine clock cycles the op ran
(``VerilatorDevice.cycles`` before/after, CSR transactions included); ``wall s`` is the
wall-clock time of the whole op (uploads, program load, run, download); ``sim cycles/s``
is the rate of the clock alone (``ue_run`` calls in ``wait_done``); ``cycles/CPU s`` divides by
the process's CPU time instead of wall time, which depends much less on the machine's load.

    python tools/verilator_speed.py                 # small config only (fast build)
    python tools/verilator_speed.py --config default --matmul 256,256,256 --rows 256

A cold build is timed when the model is not in the cache (``--cache DIR`` selects an empty
one for a cold build; the Verilator runtime library is cached separately under it).  This is
a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

from unified_engine.config import EngineConfig
from unified_engine.host import Engine


def _config(name: str) -> EngineConfig:
    if name == "default":
        return EngineConfig()
    if name == "small":
        # the cosim tests' configuration (tests/firmware/golden.small_config)
        return dataclasses.replace(EngineConfig.preset("sim_small"), address_registers=16)
    return EngineConfig.preset(name)


def _timed(eng: Engine, op) -> tuple[int, float, float, float]:
    """(cycles, wall seconds, CPU seconds of this process, clock-only cycles/s) of one op."""
    dev = eng.device
    c0 = dev.cycles
    sim_cycles = sim_seconds = 0.0
    orig = dev.wait_done

    def wait_done(timeout: float) -> bool:  # accumulate the clock-only rate of every run
        nonlocal sim_cycles, sim_seconds
        t = time.perf_counter()
        c = dev.cycles
        done = orig(timeout)
        sim_seconds += time.perf_counter() - t
        sim_cycles += dev.cycles - c
        return done

    dev.wait_done = wait_done
    try:
        t0, p0 = time.perf_counter(), time.process_time()
        op(eng)
        wall, cpu = time.perf_counter() - t0, time.process_time() - p0
    finally:
        del dev.wait_done
    return dev.cycles - c0, wall, cpu, (sim_cycles / sim_seconds if sim_seconds else 0.0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="small", help="small (cosim config), default, or a preset")
    p.add_argument("--matmul", default="64,64,64", help="M,K,N of the matmul ('' to skip)")
    p.add_argument("--rows", type=int, default=128, help="rows of softmax / rmsnorm (0: skip)")
    p.add_argument("--cols", type=int, default=256, help="columns of softmax / rmsnorm")
    p.add_argument("--cache", default=None, help="build cache directory (default: the usual)")
    p.add_argument("--dram-mib", type=int, default=256)
    args = p.parse_args(argv)
    config = _config(args.config)

    t0 = time.perf_counter()
    eng = Engine.open("verilator", config, dram_bytes=args.dram_mib << 20, cache_dir=args.cache,
                      run_timeout=24 * 3600.0)  # a shared machine can be very slow
    info = eng.device.build_info
    build_s = f"{info.total_seconds:.1f}" + (" (cached)" if info.cached else
                                             f" (verilog {info.verilog_seconds:.0f}, verilate "
                                             f"{info.verilate_seconds:.0f}, C++ "
                                             f"{info.compile_seconds:.0f})")
    verilog = info.path.parent / "top.v"
    lines = verilog.read_text().count("\n") if verilog.is_file() else 0
    print(f"model {info.key[:12]}: open {time.perf_counter() - t0:.1f} s, "
          f"Verilog {lines} lines", file=sys.stderr)

    rng = np.random.default_rng(0)
    cases = []
    if args.matmul:
        m, k, n = (int(v) for v in args.matmul.split(","))
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        cases.append((f"matmul {m}x{k}x{n}", lambda e: e.matmul(a, b)))
    if args.rows:
        x = rng.standard_normal((args.rows, args.cols)).astype(np.float32)
        cases.append((f"softmax {args.rows}x{args.cols}", lambda e: e.softmax(x)))
        cases.append((f"rmsnorm {args.rows}x{args.cols}", lambda e: e.rmsnorm(x)))

    print("| config | kernel | cycles | wall s | cycles/s | sim cycles/s | cycles/CPU s "
          "| build s |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for name, op in cases:
        op(eng)  # warm-up: compiles the kernel, fills the program cache
        cycles, wall, cpu, sim_rate = _timed(eng, op)
        print(f"| {args.config} | {name} | {cycles} | {wall:.2f} | {cycles / wall:,.0f} | "
              f"{sim_rate:,.0f} | {cycles / cpu:,.0f} | {build_s} |", flush=True)
    eng.close()
    print(f"\nload average: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
