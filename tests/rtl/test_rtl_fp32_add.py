# amaranth: UnusedElaboratable=no
"""Fp32Adder RTL vs the golden model ``fp.f32_add``, one operand pair per cycle."""

import numpy as np
import pytest
from fpvectors import adder_pairs
from simhelpers import assert_bits_equal, drive_pipeline, run

from unified_engine.numerics import fp
from unified_engine.rtl.fp import Fp32Adder


def golden_add(a, b):
    return fp.f32_to_bits(fp.f32_add(fp.f32_from_bits(a), fp.f32_from_bits(b)))


def simulate_adder(latency, a, b):
    dut = Fp32Adder(latency=latency)
    assert dut.latency == latency
    out = {}

    async def bench(ctx):
        (out["sum"],) = await drive_pipeline(ctx, [(dut.a, a), (dut.b, b)], [dut.result], latency)

    run(dut, bench)
    return np.array(out["sum"], dtype=np.uint32)


def test_vectors_reach_every_corner_class():
    """The generator must actually produce the classes the adder tests claim to cover."""
    a, b = adder_pairs(np.random.default_rng(1), 4000)
    fa = fp.ftz32(fp.f32_from_bits(a)).astype(np.float64)
    fb = fp.ftz32(fp.f32_from_bits(b)).astype(np.float64)
    with np.errstate(all="ignore"):
        exact = fa + fb  # exact whenever a tie is possible (exponent gap < 29)
        s = fp.f32_from_bits(golden_add(a, b))
        mant, _ = np.frexp(exact)
        scaled = np.abs(mant) * 2.0**24  # 24 significant bits left of the point
        tie = np.isfinite(exact) & (scaled - np.floor(scaled) == 0.5)
        overflow = np.isinf(s) & np.isfinite(fa) & np.isfinite(fb)
    assert tie.sum() >= 100
    assert (fp.f32_to_bits(s) == 0x7FC00000).sum() >= 50  # NaN
    assert overflow.sum() >= 20
    assert ((exact != 0) & (s == 0)).sum() >= 50  # flushed tiny sums
    assert ((exact == 0) & np.isfinite(exact) & (fa != 0)).sum() >= 50  # exact cancellation
    sub_in = ((a & 0x7F800000) == 0) & ((a & 0x7FFFFF) != 0)
    assert sub_in.sum() >= 20


@pytest.mark.parametrize("latency", [4])
def test_adder_default_latency_bit_exact(latency):
    a, b = adder_pairs(np.random.default_rng(latency), 3000)
    assert_bits_equal(simulate_adder(latency, a, b), golden_add(a, b), a, b, name="f32_add")


@pytest.mark.parametrize("latency", [0, 1, 2, 3, 5, 6, 7, 8])
def test_adder_every_latency_bit_exact(latency):
    a, b = adder_pairs(np.random.default_rng(100 + latency), 400, specials=100)
    assert_bits_equal(simulate_adder(latency, a, b), golden_add(a, b), a, b, name="f32_add")


def test_adder_signed_zero_rules():
    """-0 + -0 = -0, x + (-x) = +0, x + (-0) = x (the PE's identity for idle cycles)."""
    a = np.array([0x80000000, 0x3F800000, 0xC0490FDB, 0x80000000, 0x00000001], np.uint32)
    b = np.array([0x80000000, 0xBF800000, 0x80000000, 0x00000000, 0x80000000], np.uint32)
    expected = [0x80000000, 0x00000000, 0xC0490FDB, 0x00000000, 0x00000000]
    assert_bits_equal(simulate_adder(4, a, b), expected, a, b, name="signed zeros")


@pytest.mark.slow
def test_adder_large_random_sweep():
    a, b = adder_pairs(np.random.default_rng(7), 60000)
    assert_bits_equal(simulate_adder(4, a, b), golden_add(a, b), a, b, name="f32_add")


@pytest.mark.parametrize("bad", [-1, 9, 2.0, True, "4"])
def test_adder_rejects_bad_latency(bad):
    with pytest.raises((ValueError, TypeError), match="latency"):
        Fp32Adder(latency=bad)
