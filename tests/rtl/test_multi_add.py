# amaranth: UnusedElaboratable=no
"""MultiInputAdder RTL vs the golden model ``reduce.multi_add``, bit for bit, through its stream
ports: at full throughput (one input per cycle, checking the stated latency) and under random
input gaps and output back-pressure."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Fragment
from streamsim import pack, simulate_stream

from unified_engine.config import EngineConfig
from unified_engine.numerics.reduce import multi_add
from unified_engine.rtl.multi_add import MAX_INPUTS, MultiInputAdder

F32_SPECIALS = np.array(
    [
        0x00000000, 0x80000000,  # ±0
        0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF,  # subnormals (flushed)
        0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF,  # smallest / largest normals
        0x7F800000, 0xFF800000,  # ±Inf
        0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF,  # NaNs (quiet, signalling, payloads)
    ],
    dtype=np.uint32,
)  # fmt: skip


def _f32(sign, exp, man) -> np.ndarray:
    sign, exp, man = (np.asarray(v, np.uint64) for v in (sign, exp, man))
    return ((sign << 31) | (exp << 23) | man).astype(np.uint32)


def _random_normals(rng, shape, exp_low=1, exp_high=254) -> np.ndarray:
    return _f32(
        rng.integers(0, 2, shape),
        rng.integers(exp_low, exp_high + 1, shape),
        rng.integers(0, 1 << 23, shape),
    )


def _row(rng, cls: str, n: int, guard_bits: int) -> np.ndarray:
    """One input row of the named corner class (see ``CLASSES``)."""
    if cls == "random_bits":  # any pattern: exponents over the whole range, some specials
        return rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    if cls == "spread":  # one sign, exponents spread uniformly over the whole normal range
        return _f32(rng.integers(0, 2), rng.integers(1, 255, n), rng.integers(0, 1 << 23, n))
    if cls == "narrow":  # mixed signs within a few binades: carries, cancellation, rounding
        base = int(rng.integers(4, 251))
        return _random_normals(rng, n, base - 3, base + 3)
    if cls == "window_edge":  # alignment distances around 0…G and around the window width
        base = int(rng.integers(60, 200))
        w = 24 + guard_bits
        dist = rng.choice(np.r_[0 : guard_bits + 2, w - 2 : w + 3], n)
        row = _f32(rng.integers(0, 2, n), base - dist, rng.integers(0, 1 << 23, n))
        row[0] = _f32(rng.integers(0, 2), base, rng.integers(0, 1 << 23))
        return row
    if cls == "tie":  # exact RNE ties: A + (1 or 3) half-ulps of A, padded with ±0 / ±c pairs
        e = int(rng.integers(30, 220))
        a = _f32(0, e, rng.integers(0, 1 << 23))
        # Half an ulp of A is 2**(e - 151): biased exponent e - 24; 1.5 ulp is e - 23, 1.5.
        half = _f32(0, e - 24, 0) if rng.random() < 0.5 else _f32(0, e - 23, 1 << 22)
        sign = int(rng.integers(0, 2)) << 31
        row = np.array([a | sign, half | sign], np.uint32)
        # Pairs no larger than A: they cancel exactly even if they lose bits to the jam.
        return _pad_with_cancelling_pairs(rng, row, n, exp_high=e)
    if cls == "cancel":  # x, -x pairs (massive cancellation) plus maybe one small survivor
        row = np.empty(0, np.uint32)
        if rng.random() < 0.7:
            row = _random_normals(rng, 1, 1, 120)
        return _pad_with_cancelling_pairs(rng, row, n)
    if cls == "overflow":  # one sign near the top of the range: ±Inf or the largest finite
        row = _f32(rng.integers(0, 2), rng.integers(250, 255, n), rng.integers(0, 1 << 23, n))
        row &= 0x7FFFFFFF
        sign = np.uint32(rng.integers(0, 2) << 31)
        if rng.random() < 0.4:  # max finite + a tie / just-below-tie: rounds to Inf / stays
            row[:] = 0
            row[0] = 0x7F7FFFFF
            row[-1] = 0x73000000 if rng.random() < 0.5 else 0x72FFFFFF
        return row | sign
    if cls == "underflow":  # sums in (or just above) the subnormal range: flush to ±0
        row = _random_normals(rng, n, 1, 3)
        if rng.random() < 0.5:
            row[:] = 0
            row[0] = 0x00C00000 | (rng.integers(0, 2) << 31)  # ±1.5·2**-126
            row[-1] = row[0] ^ 0x80400000  # ∓1.0·2**-126: the sum is ±2**-127
        return row
    if cls == "zeros":  # signed zeros and flushed subnormals only
        return F32_SPECIALS[rng.integers(0, 6, n)]
    if cls == "specials":  # normal values with a few corner patterns dropped in
        row = _random_normals(rng, n, 100, 150)
        pos = rng.choice(n, int(rng.integers(1, min(n, 3) + 1)), replace=False)
        row[pos] = F32_SPECIALS[rng.integers(0, len(F32_SPECIALS), len(pos))]
        return row
    if cls == "equal":  # all inputs the same value (any pattern, specials included)
        pool = np.r_[F32_SPECIALS, _random_normals(rng, 8)]
        return np.full(n, pool[rng.integers(0, len(pool))], np.uint32)
    raise AssertionError(cls)


def _pad_with_cancelling_pairs(rng, row: np.ndarray, n: int, exp_high: int = 254) -> np.ndarray:
    """Fill ``row`` up to ``n`` inputs with (c, -c) pairs and ±0, then shuffle it."""
    row = list(row[:n])
    while len(row) < n:
        if n - len(row) >= 2 and rng.random() < 0.8:
            c = int(_random_normals(rng, 1, 1, exp_high)[0])
            row += [c, c ^ 0x80000000]
        else:
            row.append(int(rng.integers(0, 2)) << 31)
    out = np.array(row, np.uint32)
    rng.shuffle(out)
    return out


CLASSES = (
    "random_bits", "spread", "narrow", "window_edge", "tie", "cancel",
    "overflow", "underflow", "zeros", "specials", "equal",
)  # fmt: skip


def corner_rows(rng, rows: int, n: int, guard_bits: int) -> np.ndarray:
    """``rows`` input rows cycling through every corner class."""
    return np.stack([_row(rng, CLASSES[r % len(CLASSES)], n, guard_bits) for r in range(rows)])


def golden(rows: np.ndarray, guard_bits: int) -> np.ndarray:
    return multi_add(rows.view(np.float32), guard_bits=guard_bits).view(np.uint32)


def run_adder(n, guard_bits, rows, **flow):
    dut = MultiInputAdder(n, guard_bits)
    log = simulate_stream(dut, [pack(r, 32) for r in rows], len(rows), **flow)
    return dut, log, np.array(log.outputs, np.uint32)


def assert_bit_exact(rows, got, want):
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{bad.size} mismatches; first: " + "; ".join(
        f"{[hex(v) for v in rows[k]]}: got {got[k]:#010x}, want {want[k]:#010x}" for k in bad[:3]
    )


# --------------------------------------------------------------------------- vectors


def _exact_sum(row: np.ndarray) -> int | None:
    """Exact sum of the FTZ'd finite inputs in units of 2**-149 (None if any Inf/NaN)."""
    total = 0
    for v in map(int, row):
        exp, man = (v >> 23) & 0xFF, v & 0x7FFFFF
        if exp == 0xFF:
            return None
        if exp:
            total += (-1 if v >> 31 else 1) * ((man | 1 << 23) << (exp - 1))
    return total


def test_vectors_reach_every_corner_class():
    """The generator must actually produce the situations the bit-exact tests claim to cover
    (judged from the inputs' exact sums and the golden results, not from the RTL)."""
    n, g = 8, 6
    rows = corner_rows(np.random.default_rng(7), 2200, n, g)
    res = golden(rows, g)
    finite_in = ((rows >> 23) & 0xFF != 0xFF).all(axis=1)
    sums = [_exact_sum(r) for r in rows]
    exps = (rows >> 23) & 0xFF
    seen = {
        "Inf from finite inputs (overflow)": (finite_in & ((res & 0x7FFFFFFF) == 0x7F800000)),
        "NaN from +Inf and -Inf": (res == 0x7FC00000)
        & ~np.isnan(rows.view(np.float32)).any(axis=1),
        "-0 result": res == 0x80000000,
        "nonzero sum flushed to zero": np.array([s not in (None, 0) for s in sums])
        & ((res & 0x7FFFFFFF) == 0),
        "exact cancellation to +0": np.array([s == 0 for s in sums]) & (rows != 0).any(axis=1),
        "exponents spread over > 200 binades": (
            np.where(exps > 0, exps, 255).min(axis=1) + 200 < np.where(exps < 255, exps, 0).max(1)
        ),
    }
    ties = {0: 0, 1: 0}  # exact RNE ties by the parity of the kept LSB
    for s in sums:
        if s:
            m = abs(s)
            drop = m.bit_length() - 24
            if drop > 0 and m & ((1 << drop) - 1) == 1 << (drop - 1):
                ties[(m >> drop) & 1] += 1
    missing = [name for name, hit in seen.items() if not np.any(hit)]
    assert not missing, f"generator misses: {missing}"
    assert min(ties.values()) >= 20, f"too few RNE ties (by kept-LSB parity): {ties}"


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((0, 3), ValueError),
        ((MAX_INPUTS + 1, 3), ValueError),
        ((4, -1), ValueError),
        ((4, 25), ValueError),
        ((4.0, 3), TypeError),
        ((True, 3), TypeError),
        ((4, "3"), TypeError),
    ],
)
def test_rejects_bad_parameters(args, error):
    with pytest.raises(error, match="MultiInputAdder"):
        MultiInputAdder(*args)


def test_from_config_uses_lanes_and_reduce_guard_bits():
    for preset in ("sim_small", "kintex7"):
        config = EngineConfig.preset(preset)
        dut = MultiInputAdder.from_config(config)
        assert (dut.n, dut.guard_bits) == (config.lanes, config.reduce_guard_bits)
        Fragment.get(dut, None)  # it elaborates (and is not reported as an unused elaboratable)
    with pytest.raises(TypeError, match="EngineConfig"):
        MultiInputAdder.from_config({"lanes": 16})


def test_documented_latencies():
    assert [MultiInputAdder(n).latency for n in (1, 2, 4, 8, 16, 32)] == [5, 6, 6, 8, 8, 10]


# --------------------------------------------------------------------------- bit-exactness

# (n, guard_bits): the engine's lane reductions (G = 3 + log2 n) plus odd fan-ins, the default
# G = 3, no guard bits at all, and the single-input case (the result is ftz32(x)).
SIZES = [(4, 5), (8, 6), (16, 7), (5, 3), (3, 0), (1, 3)]


@pytest.mark.parametrize(("n", "guard_bits"), SIZES)
def test_bit_exact_at_full_throughput(n, guard_bits):
    rows = corner_rows(np.random.default_rng(n * 100 + guard_bits), 330, n, guard_bits)
    dut, log, got = run_adder(n, guard_bits, rows)
    assert log.accepted == list(range(len(rows))), "an input was refused without back-pressure"
    assert [c for c, _ in log.delivered] == [c + dut.latency for c in log.accepted]
    assert_bit_exact(rows, got, golden(rows, guard_bits))


@pytest.mark.parametrize(("n", "guard_bits"), [(4, 5), (8, 6)])
def test_bit_exact_with_gaps_and_backpressure(n, guard_bits):
    rows = corner_rows(np.random.default_rng(n + 17), 220, n, guard_bits)
    _, log, got = run_adder(n, guard_bits, rows, seed=n, gap_probability=0.3, stall_probability=0.4)
    stalled = np.diff([c for c, _ in log.delivered]).max()
    assert stalled > 1, "the flow-control test never actually stalled"
    assert_bit_exact(rows, got, golden(rows, guard_bits))


@pytest.mark.slow
@pytest.mark.parametrize(("n", "guard_bits"), [(16, 7), (16, 3), (32, 8), (7, 24), (2, 3)])
def test_bit_exact_sweep(n, guard_bits):
    rows = corner_rows(np.random.default_rng(n * 7 + guard_bits), 3000, n, guard_bits)
    _, _, got = run_adder(n, guard_bits, rows, seed=1, gap_probability=0.1, stall_probability=0.1)
    assert_bit_exact(rows, got, golden(rows, guard_bits))


@pytest.mark.synth
def test_synth_estimate_engine_lanes():
    """Yosys estimate (xc7) of the engine's 16-input adder (G = 7). Measured with Yosys 0.70
    (yowasp): 4251 LUT (369 of them INV), 1933 FF, 365 CARRY4, no DSP; ~35 s. The bounds are
    a regression guard (±25 %)."""
    from unified_engine.rtl.synth import synth_estimate

    dut = MultiInputAdder.from_config(EngineConfig.preset("kintex7"))
    assert (dut.n, dut.guard_bits) == (16, 7)
    res = synth_estimate(dut, "multi_add", "xc7")
    print({k: res[k] for k in ("LUT", "FF", "CARRY", "DSP", "seconds")})
    assert res["DSP"] == 0 and res["BRAM36"] == res["BRAM18"] == 0
    assert 0.75 * 4251 <= res["LUT"] <= 1.25 * 4251, res
    assert 0.75 * 1933 <= res["FF"] <= 1.25 * 1933, res
