# amaranth: UnusedElaboratable=no
"""Bf16Multiplier RTL vs the golden model ``fp.bf16_mul``, one operand pair per cycle."""

import numpy as np
import pytest
from fpvectors import BF16_SPECIALS, bf16_values
from simhelpers import assert_bits_equal, drive_pipeline, run

from unified_engine.numerics import fp
from unified_engine.rtl.fp import Bf16Multiplier


def golden(a, b):
    return fp.f32_to_bits(fp.bf16_mul(a, b))


def simulate(latency, a, b):
    dut = Bf16Multiplier(latency=latency)
    out = {}

    async def bench(ctx):
        (out["p"],) = await drive_pipeline(ctx, [(dut.a, a), (dut.b, b)], [dut.result], latency)

    run(dut, bench)
    return np.array(out["p"], dtype=np.uint32)


def operand_pairs(rng, n):
    sa, sb = np.meshgrid(BF16_SPECIALS, BF16_SPECIALS)
    a = np.concatenate([bf16_values(rng, n), sa.ravel()]).astype(np.uint16)
    b = np.concatenate([bf16_values(rng, n), sb.ravel()]).astype(np.uint16)
    return a, b


def test_operands_reach_overflow_underflow_and_specials():
    a, b = operand_pairs(np.random.default_rng(5), 2000)
    p = golden(a, b)
    finite_in = ((a & 0x7F80) != 0x7F80) & ((b & 0x7F80) != 0x7F80)
    nonzero_in = ((a & 0x7F80) != 0) & ((b & 0x7F80) != 0)
    assert (finite_in & ((p & 0x7FFFFFFF) == 0x7F800000)).sum() >= 20  # overflow to Inf
    assert (finite_in & nonzero_in & ((p & 0x7FFFFFFF) == 0)).sum() >= 20  # underflow flush
    assert (p == 0x7FC00000).sum() >= 20


def test_bf16_mul_default_latency_bit_exact():
    a, b = operand_pairs(np.random.default_rng(1), 3000)
    assert_bits_equal(simulate(2, a, b), golden(a, b), a, b, name="bf16_mul")


@pytest.mark.parametrize("latency", [0, 1, 3])
def test_bf16_mul_every_latency_bit_exact(latency):
    a, b = operand_pairs(np.random.default_rng(latency), 200)
    assert_bits_equal(simulate(latency, a, b), golden(a, b), a, b, name="bf16_mul")


@pytest.mark.slow
def test_bf16_mul_every_a_against_sampled_b():
    """All 65,536 bf16 patterns of ``a`` against eight ``b`` (±0, a subnormal, ±Inf, NaN,
    two random normals): every exponent/mantissa/special combination of ``a`` (~3 min)."""
    rng = np.random.default_rng(9)
    b_set = np.array([0x0000, 0x8000, 0x0011, 0x7F80, 0xFF80, 0x7FC1], np.uint16)
    b_set = np.concatenate([b_set, bf16_values(rng, 8)[:2]]).astype(np.uint16)
    a = np.tile(np.arange(65536, dtype=np.uint16), len(b_set))
    b = np.repeat(b_set, 65536)
    assert_bits_equal(simulate(2, a, b), golden(a, b), a, b, name="bf16_mul")


@pytest.mark.parametrize("bad", [-1, 4, "2"])
def test_bf16_mul_rejects_bad_latency(bad):
    with pytest.raises((ValueError, TypeError), match="latency"):
        Bf16Multiplier(latency=bad)
