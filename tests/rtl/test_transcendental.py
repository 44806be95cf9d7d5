# amaranth: UnusedElaboratable=no
"""Transcendental RTL units vs the golden models of ``numerics.transcendental``.

Every unit runs as a stream twice: at full throughput (a new input every cycle, ``o.ready``
held high; each result must leave exactly ``latency`` cycles after its input) and with
random input gaps and random back-pressure (results in order, a stalled output must hold
its payload). Vectors are the corner classes of each function plus random fp32 values; the
expected bits come from the golden model only.
"""

from __future__ import annotations

import numpy as np
import pytest
from fpvectors import F32_SPECIALS, f32_make
from simhelpers import assert_bits_equal, run

from unified_engine.numerics import fp
from unified_engine.numerics import transcendental as tr
from unified_engine.rtl.transcendental import (
    Exp,
    Exp2,
    ExpDatapath,
    Reciprocal,
    Rsqrt,
    Sigmoid,
    SigmoidDatapath,
    StreamPipeline,
    reciprocal_delta_widths,
    rsqrt_delta_widths,
)

# ---------------------------------------------------------------------------------------------
# Stream driver


def stream_run(dut, xs, *, rng=None, p_valid: float = 1.0, p_ready: float = 1.0):
    """Push ``xs`` through a stream unit; return (results, input cycles, output cycles).

    With ``p_valid``/``p_ready`` below 1 the producer leaves random gaps and the consumer
    drops ``o.ready`` at random. Checks the stream rules on the way: a result that is not
    taken stays valid with the same payload in the next cycle, and the producer's own offer
    is held until it is accepted.
    """
    xs = [int(v) for v in xs]
    results: list[int] = []
    in_cycles: list[int] = []
    out_cycles: list[int] = []
    limit = 20 * len(xs) + 200

    def chance(p: float) -> bool:
        return p >= 1.0 or rng.random() < p

    async def bench(ctx):
        sent = 0
        offering = False
        held = None  # payload of a valid result that was not taken last cycle
        for cycle in range(limit):
            if len(results) == len(xs):
                return
            offering = sent < len(xs) and (offering or chance(p_valid))
            ctx.set(dut.i.valid, offering)
            if offering:
                ctx.set(dut.i.payload, xs[sent])
            ready = chance(p_ready)
            ctx.set(dut.o.ready, ready)
            valid = ctx.get(dut.o.valid)
            if held is not None:
                assert valid and ctx.get(dut.o.payload) == held, f"stall broke at {cycle}"
            held = None
            if valid:
                if ready:
                    results.append(ctx.get(dut.o.payload))
                    out_cycles.append(cycle)
                else:
                    held = ctx.get(dut.o.payload)
            if offering and ctx.get(dut.i.ready):
                in_cycles.append(cycle)
                sent += 1
                offering = False
            await ctx.tick()
        raise AssertionError(f"only {len(results)} of {len(xs)} results after {limit} cycles")

    run(dut, bench)
    return np.array(results, dtype=np.uint32), np.array(in_cycles), np.array(out_cycles)


def check_stream(dut, xs, expected, *, name, rng=None, p_valid=1.0, p_ready=1.0):
    got, t_in, t_out = stream_run(dut, xs, rng=rng, p_valid=p_valid, p_ready=p_ready)
    assert_bits_equal(got, expected, xs, name=name)
    if p_valid >= 1.0 and p_ready >= 1.0:
        # Full throughput: one input accepted per cycle, each result exactly `latency` later.
        assert np.array_equal(t_in, np.arange(len(xs))), "input was not accepted every cycle"
        assert np.array_equal(t_out, t_in + dut.latency), "latency differs from dut.latency"
    else:
        assert np.all(t_out >= t_in + dut.latency)


def golden(func, xs, **params) -> np.ndarray:
    return fp.f32_to_bits(func(fp.f32_from_bits(np.asarray(xs, dtype=np.uint32)), **params))


# ---------------------------------------------------------------------------------------------
# Vectors: corner classes of each function plus random values.


def _bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.uint64).astype(np.uint32)


def _f32(values) -> np.ndarray:
    return fp.f32_to_bits(np.asarray(values, dtype=np.float32))


def _random(rng, n: int, low: float, high: float) -> np.ndarray:
    return _f32(rng.uniform(low, high, n))


def _random_bits(rng, n: int) -> np.ndarray:
    return _bits(rng.integers(0, 2**32, n))


def _neighbours(*patterns: int) -> np.ndarray:
    return _bits([p + d for p in patterns for d in (-1, 0, 1)])


def exp_significand(xs: np.ndarray, base2: bool) -> np.ndarray:
    """The unrounded Q1.32 significand ``y`` of exp/exp2 (default tables) for normal inputs
    with |x| < 128, recomputed from the steps in docs/numerics.md §6.

    Used only to *find* inputs whose rounding is an exact tie (low 9 bits 0x100); the
    expected results always come from the golden model.
    """
    sign, biased, man = xs >> 31, (xs >> 23) & 0xFF, xs & 0x7FFFFF
    e = biased.astype(np.int64) - 127
    m = (man | 0x800000).astype(np.uint64)
    if base2:
        u = (m << np.uint64(16)) >> np.minimum(7 - e, 63).astype(np.uint64)
    else:
        prod = m * np.uint64(tr.log2e_fixed())
        u = prod >> np.minimum(30 - e, 63).astype(np.uint64)
    t = np.where(sign == 1, -u.astype(np.int64), u.astype(np.int64))
    f = t & 0xFFFFFFFF
    i, r = f >> 24, f & 0xFFFFFF
    c1, c2 = tr.exp2_poly_coefficients(2)
    e_r = (r * (c1 + ((c2 * r) >> 32))) >> 32
    table = np.array(tr.exp2_table(8), dtype=np.int64)[i]
    return table + ((table * e_r) >> 32)


def exp_ties(rng, n: int, base2: bool) -> np.ndarray:
    """Up to ``n`` inputs whose exp (exp2) significand is an exact rounding tie, half of
    them with an even and half with an odd kept LSB."""
    xs = _random(rng, 200_000, -80.0, 80.0)
    y = exp_significand(xs, base2)
    tie = (y & 0x1FF) == 0x100
    even, odd = xs[tie & ((y & 0x200) == 0)], xs[tie & ((y & 0x200) != 0)]
    return np.concatenate([even[: n // 2], odd[: n - n // 2]])


EXP_OVERFLOW = 0x42B17217  # largest input with a finite exp (88.72283)
EXP_FLUSH = 0xC2AEAC4F  # most negative input with a nonzero exp (-87.33654)
SIGMOID_ONE = 0x41851592  # smallest input whose sigmoid is exactly 1.0 (16.635532)


def exp_vectors(rng, n_random: int) -> np.ndarray:
    k = n_random // 4
    corners = [
        F32_SPECIALS,
        _neighbours(EXP_OVERFLOW, EXP_FLUSH, 0x43000000, 0xC3000000, 0x43800000, 0xC3800000),
        _neighbours(0x42B00000, 0xC2B17218, 0x42FE0000, 0xC2FC0000),
        # tiny |x|: the shift-amount clamp (E = 70) and results next to 1.0 (round carry)
        f32_make([0, 1] * 8, [68, 69, 70, 71, 72, 102, 103, 104] * 2, [0, 0x7FFFFF] * 8),
        exp_ties(rng, 16, base2=False),
    ]
    randoms = [
        _random(rng, k, -90.0, 90.0),
        _random(rng, k // 2, -88.8, -86.0),  # results near and below 2**-126
        _random(rng, k // 2, 86.0, 89.0),  # results near overflow
        f32_make(rng.integers(0, 2, k), rng.integers(1, 127, k), rng.integers(0, 2**23, k)),
        _random_bits(rng, k),
    ]
    return np.concatenate(corners + randoms).astype(np.uint32)


def exp2_vectors(rng, n_random: int) -> np.ndarray:
    k = n_random // 3
    corners = [
        F32_SPECIALS,
        _f32(np.arange(-130, 131, 4)),  # integers: exact powers of two, then Inf / flush
        _f32([-126, -127, 127, 128, -126.5, -149.5, 127.99999, -127.5]),
        _neighbours(0x43800000, 0xC3800000, 0x43000000),
        exp_ties(rng, 16, base2=True),
    ]
    randoms = [
        _random(rng, k, -130.0, 130.0),
        f32_make(rng.integers(0, 2, k), rng.integers(1, 127, k), rng.integers(0, 2**23, k)),
        _random_bits(rng, k),
    ]
    return np.concatenate(corners + randoms).astype(np.uint32)


def reciprocal_vectors(rng, n_random: int) -> np.ndarray:
    k = n_random // 3
    sign = rng.integers(0, 2, 24)
    corners = [
        F32_SPECIALS,
        _neighbours(0x7E800000, 0xFE800000, 0x00800001, 0x3F800001, 0x7F7FFFFF - 1),
        # seed-table interval edges (top 7 mantissa bits change) and all-ones mantissas
        f32_make(
            sign, rng.integers(1, 255, 24), ((rng.integers(0, 128, 24) << 16) - sign) & 0x7FFFFF
        ),
        f32_make(sign, rng.integers(1, 255, 24), 0x7FFFFF),
    ]
    randoms = [
        _random_bits(rng, k),
        f32_make(rng.integers(0, 2, k), rng.integers(100, 156, k), rng.integers(0, 2**23, k)),
        f32_make(rng.integers(0, 2, k), rng.integers(250, 255, k), rng.integers(0, 2**23, k)),
    ]
    return np.concatenate(corners + randoms).astype(np.uint32)


def rsqrt_vectors(rng, n_random: int) -> np.ndarray:
    k = n_random // 3
    corners = [
        F32_SPECIALS,
        _f32([1.0, 2.0, 4.0, 0.5, 0.25, 3.0, 9.0, -1.0, -4.0]),
        _neighbours(0x00800001, 0x7F7FFFFF - 1, 0x3F800001, 0x40000001, 0xBF800001),
        # both parities, both ends of the mantissa range
        f32_make(0, [1, 2, 125, 126, 127, 128, 253, 254] * 2, [0] * 8 + [0x7FFFFF] * 8),
    ]
    randoms = [
        _random_bits(rng, k) & np.uint32(0x7FFFFFFF),
        _random_bits(rng, k),  # half of them negative: NaN
        _random(rng, k, 0.0, 100.0),
    ]
    return np.concatenate(corners + randoms).astype(np.uint32)


def sigmoid_vectors(rng, n_random: int) -> np.ndarray:
    k = n_random // 4
    corners = [
        F32_SPECIALS,
        _neighbours(SIGMOID_ONE, EXP_FLUSH, 0xC2AEAC50, 0xC2B17217, 0xC2B17218),
        _neighbours(0xC1851592, 0xC1851000, 0x33800000, 0xB3800000),  # e**-x near 2**24
    ]
    randoms = [
        _random(rng, k, -100.0, 100.0),
        _random(rng, k, -20.0, 20.0),
        _random(rng, k, -1.0, 1.0),
        _random_bits(rng, k),
    ]
    return np.concatenate(corners + randoms).astype(np.uint32)


# unit name -> (stream unit factory, golden model, vector generator)
UNITS = {
    "exp": (Exp, tr.exp, exp_vectors),
    "exp2": (Exp2, tr.exp2, exp2_vectors),
    "reciprocal": (Reciprocal, tr.reciprocal, reciprocal_vectors),
    "rsqrt": (Rsqrt, tr.rsqrt, rsqrt_vectors),
    "sigmoid": (Sigmoid, tr.sigmoid, sigmoid_vectors),
}


def test_vectors_reach_the_corner_classes():
    """The vector sets must produce the result classes the tests claim to cover."""
    rng = np.random.default_rng(0)

    def classes(name):
        xs = UNITS[name][2](rng, 300)
        return xs, golden(UNITS[name][1], xs)

    xs, y = classes("exp")
    finite_in = (xs & 0x7F800000) != 0x7F800000
    assert np.any(finite_in & (y == 0x7F800000)) and np.any(finite_in & (y == 0))
    assert np.any((y >> 23) == 1)  # smallest normal results
    assert np.any((y == 0x3F800000) & ((xs & 0x7F800000) != 0))  # rounds to exactly 1
    for base2 in (False, True):
        xs = exp_ties(rng, 16, base2)
        y = exp_significand(xs, base2)
        assert len(xs) == 16 and np.all((y & 0x1FF) == 0x100)
        assert np.sum((y & 0x200) == 0) == 8  # ties that RNE rounds down
        # the tie finder agrees with the model: RNE of y is the model's significand
        rounded = ((y >> 9) + ((y >> 9) & 1)) & 0x7FFFFF
        model = golden(tr.exp2 if base2 else tr.exp, xs)
        assert np.array_equal(rounded, model & 0x7FFFFF)
    xs, y = classes("exp2")
    biased = (y >> 23) & 0xFF
    assert np.sum(((y & 0x7FFFFF) == 0) & (biased != 0) & (biased != 0xFF)) >= 60  # powers of 2
    xs, y = classes("reciprocal")
    assert np.any(((xs & 0x7F800000) == 0x7E800000) & ((y & 0x7FFFFFFF) == 0))  # flush
    assert np.any((y & 0x7FFFFFFF) == 0x00800000)  # 1/2**126
    assert np.any((y & 0x7F800000) == 0x7E800000)  # 1/min normal
    xs, y = classes("rsqrt")
    negative_normal = ((xs >> 31) == 1) & ((xs & 0x7F800000) != 0)
    assert np.all(y[negative_normal] == 0x7FC00000) and negative_normal.sum() >= 20
    assert np.any(y == 0xFF800000) and np.any(y == 0x7F800000)
    xs, y = classes("sigmoid")
    finite_in = (xs & 0x7F800000) != 0x7F800000
    assert np.any(finite_in & (y == 0x3F800000)) and np.any(finite_in & (y == 0))
    assert np.any((y >> 23) == 1)


# ---------------------------------------------------------------------------------------------
# Bit-exactness, default parameters


@pytest.mark.parametrize("name", list(UNITS))
def test_full_throughput_bit_exact(name):
    factory, model, vectors = UNITS[name]
    xs = vectors(np.random.default_rng(1), 600)
    dut = factory()
    check_stream(dut, xs, golden(model, xs), name=name)


@pytest.mark.parametrize("name", list(UNITS))
def test_back_pressure_and_gaps_bit_exact(name):
    factory, model, vectors = UNITS[name]
    rng = np.random.default_rng(2)
    xs = vectors(rng, 200)
    dut = factory()
    check_stream(dut, xs, golden(model, xs), name=name, rng=rng, p_valid=0.7, p_ready=0.6)


def test_stall_freezes_the_pipe():
    """With o.ready low the unit accepts exactly `latency` inputs (one per stage) and then
    holds the oldest result; releasing o.ready delivers every result in order."""
    dut = Reciprocal()
    xs = _f32(np.arange(1, 41))
    seen = {"results": []}

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        sent = 0
        for cycle in range(3 * dut.latency + 2 * len(xs)):
            stalled = cycle < 3 * dut.latency
            ctx.set(dut.o.ready, not stalled)
            ctx.set(dut.i.valid, sent < len(xs))
            ctx.set(dut.i.payload, int(xs[min(sent, len(xs) - 1)]))
            if ctx.get(dut.o.valid) and not stalled:
                seen["results"].append(ctx.get(dut.o.payload))
            if sent < len(xs) and ctx.get(dut.i.ready):
                sent += 1
            if cycle == 3 * dut.latency - 1:
                seen["accepted while stalled"] = sent
                seen["head"] = ctx.get(dut.o.payload) if ctx.get(dut.o.valid) else None
            await ctx.tick()

    run(dut, bench)
    expected = golden(tr.reciprocal, xs)
    assert seen["accepted while stalled"] == dut.latency
    assert seen["head"] == int(expected[0])
    assert_bits_equal(seen["results"], expected, xs, name="after the stall")


# ---------------------------------------------------------------------------------------------
# Other table sizes (the golden model takes them as keyword arguments)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("exp", {"table_bits": 6, "degree": 3}),
        ("exp2", {"table_bits": 7, "degree": 2}),
        ("reciprocal", {"table_bits": 6}),
        ("rsqrt", {"table_bits": 6}),
    ],
)
def test_other_table_sizes_bit_exact(name, params):
    factory, model, vectors = UNITS[name]
    xs = vectors(np.random.default_rng(3), 160)
    dut = factory(**params)
    check_stream(dut, xs, golden(model, xs, **params), name=f"{name}{params}")


def test_sigmoid_other_parameters_bit_exact():
    params = {"exp_table_bits": 6, "exp_degree": 3, "reciprocal_table_bits": 6}
    xs = sigmoid_vectors(np.random.default_rng(4), 120)
    dut = Sigmoid(adder_latency=3, **params)
    check_stream(dut, xs, golden(tr.sigmoid, xs, **params), name="sigmoid(p=6)")


# ---------------------------------------------------------------------------------------------
# Structure: latencies, widths, validation


def test_latencies():
    assert Exp().latency == 11 and Exp(degree=3).latency == 13
    assert Exp2().latency == 9
    assert Reciprocal().latency == 11
    assert Rsqrt().latency == 16
    assert Sigmoid().latency == 11 + 6 + 11
    assert Sigmoid(adder_latency=4).latency == 26
    assert SigmoidDatapath().latency == Sigmoid().latency


def _reciprocal_residuals(p: int):
    """(δ0, δ1) over all 2**23 mantissas, following docs/numerics.md step by step."""
    man = np.arange(1 << 23, dtype=np.int64)
    m = man | (1 << 23)
    y = np.array(tr.reciprocal_seed_table(p))[man >> (23 - p)] << (32 - tr.seed_frac_bits(p))
    deltas = []
    for _ in range(2):
        delta = (1 << 32) - ((m * y) >> 23)
        deltas.append(delta)
        y = y + ((y * delta) >> 32)
    return deltas


def _rsqrt_residuals(p: int):
    """(δ0, δ1) over both parities and all 2**23 mantissas (docs/numerics.md)."""
    man = np.arange(1 << 23, dtype=np.int64)
    out = [[], []]
    for parity in (0, 1):
        a = (man | (1 << 23)) << parity
        seed = np.array(tr.rsqrt_seed_table(p))[(parity << p) | (man >> (23 - p))]
        y = seed << (31 - tr.seed_frac_bits(p))
        for step in range(2):
            delta = (1 << 31) - ((a * ((y * y) >> 31)) >> 23)
            out[step].append(delta)
            y = y + ((y * delta) >> 32)
    return [np.concatenate(d) for d in out]


def _check_widths(deltas, widths):
    (d0, d1), (w0, w1) = deltas, widths
    assert -(1 << (w0 - 1)) <= d0.min() and d0.max() < 1 << (w0 - 1), "δ0 overflows"
    assert d1.min() >= 0 and d1.max() < 1 << w1, "δ1 overflows"


def test_newton_residual_widths_default():
    """The RTL keeps only the low bits of the Newton residuals: they must fit, for every
    mantissa (this is what makes the truncation exact)."""
    p = tr.DEFAULT_RECIPROCAL_TABLE_BITS
    _check_widths(_reciprocal_residuals(p), reciprocal_delta_widths(p))
    p = tr.DEFAULT_RSQRT_TABLE_BITS
    _check_widths(_rsqrt_residuals(p), rsqrt_delta_widths(p))


@pytest.mark.slow
@pytest.mark.parametrize("p", [6, 8, 9, 10, 11, 12])
def test_newton_residual_widths_all_table_sizes(p):
    _check_widths(_reciprocal_residuals(p), reciprocal_delta_widths(p))
    _check_widths(_rsqrt_residuals(p), rsqrt_delta_widths(p))


@pytest.mark.parametrize(
    ("factory", "kwargs", "exc", "message"),
    [
        (Exp, {"table_bits": 1}, ValueError, "ExpDatapath: table_bits=1 is out of range"),
        (Exp, {"table_bits": 11}, ValueError, "table_bits=11"),
        (Exp, {"degree": 0}, ValueError, "degree=0 is out of range"),
        (Exp, {"degree": 2.0}, TypeError, "degree must be an int"),
        (Exp2, {"table_bits": "8"}, TypeError, "table_bits must be an int"),
        (ExpDatapath, {"base2": 1}, TypeError, "base2 must be a bool"),
        (Reciprocal, {"table_bits": 5}, ValueError, "ReciprocalDatapath: table_bits=5"),
        (Reciprocal, {"table_bits": 13}, ValueError, "table_bits=13"),
        (Rsqrt, {"table_bits": True}, TypeError, "RsqrtDatapath: table_bits must be an int"),
        (Sigmoid, {"adder_latency": 9}, ValueError, "adder_latency=9 is not supported"),
        (Sigmoid, {"adder_latency": 2.5}, TypeError, "adder_latency must be an int"),
        (Sigmoid, {"reciprocal_table_bits": 20}, ValueError, "table_bits=20"),
        (Sigmoid, {"exp_degree": 5}, ValueError, "degree=5"),
    ],
)
def test_parameter_validation(factory, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        factory(**kwargs)


def test_stream_pipeline_rejects_bad_datapath():
    with pytest.raises(TypeError, match="check_params"):
        StreamPipeline(int)
    with pytest.raises(TypeError, match="unexpected keyword"):
        StreamPipeline(ExpDatapath, table_size=8)


# ---------------------------------------------------------------------------------------------
# Resource estimates (yosys synth_xilinx; run with -m synth)

# unit -> (DSP pieces claimed in the docstrings, LUT budget: the xc7 estimate + ~25 %)
SYNTH_EXPECTED = {
    "exp": (9, 720),
    "exp2": (6, 630),
    "reciprocal": (9, 350),
    "rsqrt": (17, 460),
    "sigmoid": (18, 1700),
}


@pytest.mark.synth
@pytest.mark.parametrize("family", ["xc7", "xcup"])
@pytest.mark.parametrize("name", list(SYNTH_EXPECTED))
def test_synth_estimate(name, family, record_property):
    from unified_engine.rtl.synth import synth_estimate

    result = synth_estimate(UNITS[name][0](), name, family)
    summary = {k: result[k] for k in ("LUT", "LUTRAM", "FF", "CARRY", "DSP", "BRAM18", "BRAM36")}
    record_property("resources", summary)
    print(f"{name} {family}: {summary}")
    dsp, lut_budget = SYNTH_EXPECTED[name]
    assert result["DSP"] == dsp, "every partial product should map to one DSP"
    assert result["LUT"] <= lut_budget


# ---------------------------------------------------------------------------------------------
# Larger sweeps


@pytest.mark.slow
@pytest.mark.parametrize("name", list(UNITS))
def test_large_sweep_bit_exact(name):
    factory, model, vectors = UNITS[name]
    rng = np.random.default_rng(10)
    xs = vectors(rng, 100_000)
    check_stream(factory(), xs, golden(model, xs), name=name)
    xs = vectors(rng, 20_000)
    check_stream(factory(), xs, golden(model, xs), name=name, rng=rng, p_valid=0.8, p_ready=0.5)
