# amaranth: UnusedElaboratable=no
"""Fp32Multiplier RTL vs the golden model ``fp.f32_mul``, one operand pair per cycle."""

import numpy as np
import pytest
from fpvectors import multiplier_pairs, near_underflow_products
from simhelpers import assert_bits_equal, drive_pipeline, run

from unified_engine.numerics import fp
from unified_engine.rtl.fp import Fp32Multiplier


def golden_mul(a, b):
    return fp.f32_to_bits(fp.f32_mul(fp.f32_from_bits(a), fp.f32_from_bits(b)))


def simulate_mul(latency, a, b):
    dut = Fp32Multiplier(latency=latency)
    out = {}

    async def bench(ctx):
        (out["p"],) = await drive_pipeline(ctx, [(dut.a, a), (dut.b, b)], [dut.result], latency)

    run(dut, bench)
    return np.array(out["p"], dtype=np.uint32)


def test_near_underflow_class_hits_the_round_up_case():
    """Some products just below 2**-126 must round up to exactly ±2**-126, others flush."""
    a, b = near_underflow_products(np.random.default_rng(3), 400)
    exact = np.abs(fp.f32_from_bits(a).astype(np.float64) * fp.f32_from_bits(b).astype(np.float64))
    assert (exact < 2.0**-126).all()
    out = golden_mul(a, b) & 0x7FFFFFFF
    assert (out == 0x00800000).sum() >= 20  # rounded up to the smallest normal
    assert (out == 0).sum() >= 20  # flushed


def test_mul_default_latency_bit_exact():
    a, b = multiplier_pairs(np.random.default_rng(11), 2400)
    assert_bits_equal(simulate_mul(3, a, b), golden_mul(a, b), a, b, name="f32_mul")


@pytest.mark.parametrize("latency", [0, 1, 2, 4])
def test_mul_every_latency_bit_exact(latency):
    a, b = multiplier_pairs(np.random.default_rng(20 + latency), 400, specials=100)
    assert_bits_equal(simulate_mul(latency, a, b), golden_mul(a, b), a, b, name="f32_mul")


@pytest.mark.slow
def test_mul_large_random_sweep():
    a, b = multiplier_pairs(np.random.default_rng(12), 60000)
    assert_bits_equal(simulate_mul(3, a, b), golden_mul(a, b), a, b, name="f32_mul")


@pytest.mark.parametrize("bad", [-1, 5, 1.5, None])
def test_mul_rejects_bad_latency(bad):
    with pytest.raises((ValueError, TypeError), match="latency"):
        Fp32Multiplier(latency=bad)
