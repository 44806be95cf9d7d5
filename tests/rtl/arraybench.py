"""Stream-level testbench for ``SystolicArray``: feed tiles, collect rows, check everything.

``run_tiles`` drives the ``ops`` (and ``init``) streams with optional random idle gaps,
records every handshake and output row with its cycle number, then checks

* every output value bit-exactly against ``fp.pe_accumulate`` (or ``fp.pe_matmul`` for bf16
  output) of the tile's operands and initial values,
* the ``first``/``last`` row flags,
* the documented timing: row m of a tile leaves in cycle ``t_last + latency + m``, where
  ``t_last`` is the handshake cycle of the tile's last k-step,
* that ``debug_collision`` never rose.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from simhelpers import pack, run, unpack

from unified_engine.config import EngineConfig
from unified_engine.numerics import fp
from unified_engine.rtl.systolic import SystolicArray


def array_config(rows: int, cols: int, interleave: int) -> EngineConfig:
    return dataclasses.replace(
        EngineConfig.preset("sim_small"), rows=rows, cols=cols, pe_interleave=interleave
    )


@dataclass
class Tile:
    a: np.ndarray  # [P·R, K] bf16 bits
    b: np.ndarray  # [K, C] bf16 bits
    init: np.ndarray | None = None  # [P·R, C] fp32 bits, or None to start from +0

    @property
    def k(self) -> int:
        return self.a.shape[1]


@dataclass
class Trace:
    ops_handshakes: list[int] = field(default_factory=list)  # cycle of every accepted beat
    init_handshakes: list[int] = field(default_factory=list)
    rows: list[tuple[int, list[int], int, int]] = field(default_factory=list)  # cycle, data, f, l
    collisions: int = 0
    cycles: int = 0


def golden_rows(tile: Tile, output_bf16: bool) -> np.ndarray:
    acc = None if tile.init is None else fp.f32_from_bits(tile.init)
    out = fp.pe_accumulate(tile.a, tile.b, acc)
    return fp.f32_to_bf16(out).astype(np.uint32) if output_bf16 else fp.f32_to_bits(out)


def run_tiles(dut: SystolicArray, tiles: list[Tile], *, rng=None, gap_prob=0.0,
              init_gap_prob=0.0, max_gap=3, tail=None) -> Trace:  # fmt: skip
    """Simulate ``tiles`` through ``dut``; gaps are random idle cycles before a beat."""
    rng = rng or np.random.default_rng(0)
    r, c, p = dut.rows, dut.cols, dut.interleave
    trace = Trace()
    a_w = 16
    total_k = sum(t.k for t in tiles)
    n_rows = len(tiles) * dut.tile_rows
    budget = (
        sum(max(t.k, r) * p for t in tiles)
        + len(tiles) * (3 * r * p + r + 3 * p)
        + dut.latency
        + dut.tile_rows
        + 50
        + int(gap_prob * total_k * max_gap * p * 2)
    )
    budget += tail or 0

    def beat(tile: Tile, k: int) -> int:
        fields = pack(tile.a[:, k], a_w) | (pack(tile.b[k], 16) << (a_w * p * r))
        flag_at = 16 * (p * r + c)
        fields |= int(k == 0) << flag_at
        fields |= int(k == tile.k - 1) << (flag_at + 1)
        if dut.accumulate:
            fields |= int(k == 0 and tile.init is not None) << (flag_at + 2)
        return fields

    done = {"feed": False}

    async def feeder(ctx):
        cycle = 0
        payload = dut.ops.payload.as_value()
        for tile in tiles:
            for k in range(tile.k):
                if gap_prob and rng.random() < gap_prob:
                    for _ in range(int(rng.integers(1, max_gap + 1))):
                        ctx.set(dut.ops.valid, 0)
                        await ctx.tick()
                        cycle += 1
                ctx.set(payload, beat(tile, k))
                ctx.set(dut.ops.valid, 1)
                while True:
                    accepted = ctx.get(dut.ops.ready)
                    await ctx.tick()
                    cycle += 1
                    if accepted:
                        trace.ops_handshakes.append(cycle - 1)
                        break
        ctx.set(dut.ops.valid, 0)
        done["feed"] = True

    async def init_feeder(ctx):
        cycle = 0
        payload = dut.init.payload.as_value()
        for tile in tiles:
            if tile.init is None:
                continue
            for row in tile.init:
                if init_gap_prob and rng.random() < init_gap_prob:
                    for _ in range(int(rng.integers(1, max_gap + 1))):
                        ctx.set(dut.init.valid, 0)
                        await ctx.tick()
                        cycle += 1
                ctx.set(payload, pack(row, 32))
                ctx.set(dut.init.valid, 1)
                while True:
                    accepted = ctx.get(dut.init.ready)
                    await ctx.tick()
                    cycle += 1
                    if accepted:
                        trace.init_handshakes.append(cycle - 1)
                        break
        ctx.set(dut.init.valid, 0)

    async def collector(ctx):
        width = 16 if dut.output_bf16 else 32
        payload = dut.results.payload
        for cycle in range(budget):
            trace.collisions += ctx.get(dut.debug_collision)
            if ctx.get(dut.results.valid):
                trace.rows.append((cycle, unpack(ctx.get(payload.data.as_value()), width, c),
                                   ctx.get(payload.first), ctx.get(payload.last)))  # fmt: skip
                if len(trace.rows) == n_rows and done["feed"]:
                    trace.cycles = cycle
                    return
            await ctx.tick()
        trace.cycles = budget

    benches = [feeder, collector]
    if dut.accumulate and any(t.init is not None for t in tiles):
        benches.append(init_feeder)
    run(dut, *benches)
    return trace


def check_trace(dut: SystolicArray, tiles: list[Tile], trace: Trace) -> None:
    """Assert values, flags, timing and collision-freedom of a ``run_tiles`` trace."""
    pr = dut.tile_rows
    assert trace.collisions == 0, f"drain-chain collision in {trace.collisions} cycle(s)"
    assert len(trace.rows) == len(tiles) * pr, (
        f"got {len(trace.rows)} result rows, expected {len(tiles) * pr}"
    )
    ends = np.cumsum([t.k for t in tiles]) - 1
    for n, tile in enumerate(tiles):
        rows = trace.rows[n * pr : (n + 1) * pr]
        expected = golden_rows(tile, dut.output_bf16)
        got = np.array([row[1] for row in rows], dtype=np.uint32)
        bad = np.argwhere(got != expected)
        assert not len(bad), (
            f"tile {n} (K={tile.k}, init={tile.init is not None}): {len(bad)} mismatches, "
            + ", ".join(
                f"[{i},{j}] got {got[i, j]:08x} expected {expected[i, j]:08x}" for i, j in bad[:6]
            )
        )
        assert [row[2] for row in rows] == [1] + [0] * (pr - 1), f"tile {n}: first flags"
        assert [row[3] for row in rows] == [0] * (pr - 1) + [1], f"tile {n}: last flags"
        t_last = trace.ops_handshakes[ends[n]]
        cycles = [row[0] for row in rows]
        assert cycles == [t_last + dut.latency + m for m in range(pr)], (
            f"tile {n}: rows at cycles {cycles}, expected from {t_last + dut.latency}"
        )
