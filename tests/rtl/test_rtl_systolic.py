# amaranth: UnusedElaboratable=no
"""SystolicArray RTL: bit-exact tiles vs ``fp.pe_accumulate``, timing, back-pressure, K split.

Default configurations stay tiny (the Python simulator needs ~1 s to build a 2×2 array and
~6 s for 4×4 P=4); bigger runs are marked ``slow``.
"""

import numpy as np
import pytest
from arraybench import Tile, array_config, check_trace, run_tiles
from fpvectors import F32_SPECIALS, matmul_operands

from unified_engine.config import EngineConfig
from unified_engine.numerics import fp
from unified_engine.rtl.systolic import SystolicArray

# (rows, cols, P): square power-of-two, non-square with P = 3, P = 1 (combinational adder).
SMALL = [(2, 2, 2), (2, 3, 3), (3, 2, 1)]
KINDS = ["normal", "ties", "cancel", "wide", "specials"]


def _shape_id(shape):
    return "x".join(map(str, shape))


def make_tiles(rng, dut, ks, kinds=KINDS, init_every=0):
    tiles = []
    for n, k in enumerate(ks):
        a, b = matmul_operands(rng, dut.tile_rows, k, dut.cols, kinds[n % len(kinds)])
        init = None
        if init_every and n % init_every == init_every - 1:
            init = init_values(rng, dut.tile_rows, dut.cols)
        tiles.append(Tile(a, b, init))
    return tiles


def init_values(rng, rows, cols):
    """fp32 initial values: previous partial sums plus ±0, ±Inf, NaN, subnormals, huge."""
    a, b = matmul_operands(rng, rows, 3, cols, "normal")
    vals = fp.f32_to_bits(fp.pe_accumulate(a, b))
    hit = rng.random(vals.shape) < 0.25
    vals[hit] = rng.choice(F32_SPECIALS, hit.sum())
    return vals.astype(np.uint32)


@pytest.mark.parametrize("shape", [*SMALL, (4, 4, 4)], ids=_shape_id)
def test_back_to_back_tiles_have_no_idle_cycle(shape):
    """K >= R tiles streamed with valid always high: one beat every P cycles, no gap at all
    between tiles, and every row at exactly t_last + latency + m."""
    rows, cols, p = shape
    dut = SystolicArray(array_config(rows, cols, p))
    rng = np.random.default_rng(sum(shape))
    ks = [rows, rows + 1, 2 * rows] if shape != (4, 4, 4) else [4, 5]
    tiles = make_tiles(rng, dut, ks, kinds=["normal", "ties", "specials"])
    trace = run_tiles(dut, tiles)
    check_trace(dut, tiles, trace)
    hs = np.array(trace.ops_handshakes)
    assert hs[0] == p - 1  # the first beat starts in cycle 0
    assert (np.diff(hs) == p).all(), f"idle cycles between beats: {np.diff(hs)}"
    # Consecutive tiles' result blocks are exactly P·K cycles apart.
    starts = [trace.rows[n * dut.tile_rows][0] for n in range(len(tiles))]
    assert np.diff(starts).tolist() == [p * t.k for t in tiles[1:]]


@pytest.mark.parametrize("shape", SMALL, ids=_shape_id)
def test_mixed_stream_with_gaps_short_k_and_accumulate(shape):
    """Random idle gaps on ``ops`` (a late beat waits for phase 0) and on ``init``; every
    operand class; K < R tiles that the array must throttle so the drain chains never
    collide; ``acc`` tiles (one right after reset) starting from init rows with specials."""
    rows, cols, p = shape
    dut = SystolicArray(array_config(rows, cols, p))
    rng = np.random.default_rng(10 + sum(shape))
    tiles = make_tiles(rng, dut, [1, rows + 2, 2, 1, rows, 3, 2], init_every=3)
    tiles[0].init = init_values(rng, dut.tile_rows, cols)
    trace = run_tiles(dut, tiles, rng=rng, gap_prob=0.25, init_gap_prob=0.3)
    check_trace(dut, tiles, trace)
    assert len(trace.init_handshakes) == 3 * dut.tile_rows


def test_k_split_equals_one_long_accumulation():
    """Splitting K over two tiles (second with acc = first's fp32 output) is bit-identical
    to accumulating all of K in one tile — the point of the accumulate option."""
    dut = SystolicArray(array_config(2, 2, 2))
    rng = np.random.default_rng(5)
    a, b = matmul_operands(rng, dut.tile_rows, 6, 2, "ties")
    whole = Tile(a, b)
    first = Tile(a[:, :2], b[:2])
    first_out = fp.f32_to_bits(fp.pe_accumulate(first.a, first.b))
    second = Tile(a[:, 2:], b[2:], init=first_out)
    tiles = [whole, first, second]
    trace = run_tiles(dut, tiles)
    check_trace(dut, tiles, trace)
    pr = dut.tile_rows
    whole_rows = [row[1] for row in trace.rows[:pr]]
    split_rows = [row[1] for row in trace.rows[2 * pr : 3 * pr]]
    assert whole_rows == split_rows


def test_back_to_back_accumulate_tiles_and_bubble():
    """acc tiles in a row; each starts R·P + R + P + 1 cycles (+ phase alignment) after the
    previous tile's last k-step instead of right after it."""
    rows, cols, p = 2, 2, 2
    dut = SystolicArray(array_config(rows, cols, p))
    rng = np.random.default_rng(8)
    tiles = make_tiles(rng, dut, [2, 3, 2], init_every=1)
    trace = run_tiles(dut, tiles)
    check_trace(dut, tiles, trace)
    hs = trace.ops_handshakes
    ends = np.cumsum([t.k for t in tiles]) - 1
    for n in range(1, len(tiles)):
        gap = hs[ends[n - 1] + 1] - hs[ends[n - 1]]
        bubble = rows * p + rows + p + 1
        assert p + bubble <= gap < p + bubble + p, f"tile {n}: {gap} cycles between k-steps"


def test_signed_zeros_survive_idle_gaps():
    """Sums of signed zeros: +0 start, -0 initial values parked through idle cycles (the
    idle product is -0, the add identity), gaps in both streams."""
    rows, cols, p = 2, 2, 2
    dut = SystolicArray(array_config(rows, cols, p))
    rng = np.random.default_rng(50)
    plain = make_tiles(rng, dut, [3], kinds=["zeros"])
    a = np.zeros((dut.tile_rows, 3), np.uint16)  # +0: every product is ±0 by B's sign
    b = np.array([[0xBF80, 0x3F80], [0xC000, 0xC000], [0xBF00, 0x4000]], np.uint16)
    init = np.full((dut.tile_rows, cols), 0x80000000, np.uint32)
    init[::3, 1] = 0
    tiles = [*plain, Tile(a, b, init), Tile(a, b, init)]
    trace = run_tiles(dut, tiles, rng=rng, gap_prob=0.5, init_gap_prob=0.5, max_gap=5)
    check_trace(dut, tiles, trace)
    assert {row[1][0] for row in trace.rows[dut.tile_rows :]} == {0x80000000}


def test_bf16_output_without_accumulate():
    rows, cols, p = 2, 3, 3
    dut = SystolicArray(array_config(rows, cols, p), output_bf16=True, accumulate=False)
    assert dut.latency == cols + 5
    assert not hasattr(dut, "init")
    rng = np.random.default_rng(30)
    tiles = make_tiles(rng, dut, [rows, 1, rows + 1])
    trace = run_tiles(dut, tiles, rng=rng, gap_prob=0.2)
    check_trace(dut, tiles, trace)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(4, 4, 4), (3, 5, 2), (2, 2, 8)], ids=_shape_id)
def test_large_random_run(shape):
    rows, cols, p = shape
    dut = SystolicArray(array_config(rows, cols, p))
    rng = np.random.default_rng(40)
    ks = list(rng.integers(1, 3 * rows, 16))
    tiles = make_tiles(rng, dut, ks, init_every=3)
    trace = run_tiles(dut, tiles, rng=rng, gap_prob=0.1, init_gap_prob=0.1)
    check_trace(dut, tiles, trace)


def test_bad_arguments():
    cfg = EngineConfig.preset("sim_small")
    with pytest.raises(TypeError, match="EngineConfig"):
        SystolicArray({"rows": 2})
    with pytest.raises(TypeError, match="output_bf16"):
        SystolicArray(cfg, output_bf16=1)
    with pytest.raises(TypeError, match="accumulate"):
        SystolicArray(cfg, accumulate="yes")
