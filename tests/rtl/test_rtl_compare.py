# amaranth: UnusedElaboratable=no
"""Fp32Compare and MaxTree RTL vs ``fp.f32_max/f32_min/f32_lt/f32_eq`` and a max reduction."""

import functools

import numpy as np
import pytest
from fpvectors import F32_SPECIALS, f32_values
from simhelpers import assert_bits_equal, drive_pipeline, pack, run

from unified_engine.numerics import fp
from unified_engine.rtl.fp import Fp32Compare, MaxTree


def compare_pairs(rng, n):
    a = f32_values(rng, n)
    b = f32_values(rng, n)
    same = rng.random(n) < 0.15  # equal operands, and ±0 / subnormal neighbours
    b = np.where(same, a, b)
    sa, sb = np.meshgrid(F32_SPECIALS, F32_SPECIALS)
    return (np.concatenate([a, sa.ravel()]).astype(np.uint32),
            np.concatenate([b, sb.ravel()]).astype(np.uint32))  # fmt: skip


@pytest.mark.parametrize("latency", [0, 1, 2])
def test_compare_bit_exact(latency):
    a, b = compare_pairs(np.random.default_rng(latency), 800)
    dut = Fp32Compare(latency=latency)
    out = {}

    async def bench(ctx):
        out["max"], out["min"], out["lt"], out["eq"] = await drive_pipeline(
            ctx, [(dut.a, a), (dut.b, b)], [dut.max, dut.min, dut.lt, dut.eq], latency
        )

    run(dut, bench)
    fa, fb = fp.f32_from_bits(a), fp.f32_from_bits(b)
    assert_bits_equal(out["max"], fp.f32_to_bits(fp.f32_max(fa, fb)), a, b, name="max")
    assert_bits_equal(out["min"], fp.f32_to_bits(fp.f32_min(fa, fb)), a, b, name="min")
    assert_bits_equal(out["lt"], fp.f32_lt(fa, fb).astype(int), a, b, name="lt", width=1)
    assert_bits_equal(out["eq"], fp.f32_eq(fa, fb).astype(int), a, b, name="eq", width=1)


def golden_max(rows):
    return [int(fp.f32_to_bits(functools.reduce(fp.f32_max, fp.f32_from_bits(r)))) for r in rows]


@pytest.mark.parametrize("n, levels_per_stage", [(2, 1), (5, 1), (16, 1), (16, 2), (7, 3)])
def test_max_tree_bit_exact(n, levels_per_stage):
    rng = np.random.default_rng(n * 10 + levels_per_stage)
    rows = f32_values(rng, 300 * n).reshape(300, n)
    # Rows without NaN (so the ordering is exercised), rows of ties and of ±0 only.
    rows[:100] = np.where(np.isnan(fp.f32_from_bits(rows[:100])), 0x3F800000, rows[:100])
    rows[100:130] = rng.choice(np.array([0, 0x80000000, 0x00000001, 0x80000001], np.uint32),
                               (30, n))  # fmt: skip
    dut = MaxTree(n, levels_per_stage=levels_per_stage)
    assert dut.latency == -(-((n - 1).bit_length()) // levels_per_stage)
    out = {}

    async def bench(ctx):
        packed = [pack(r, 32) for r in rows]
        (out["max"],) = await drive_pipeline(ctx, [(dut.inputs, packed)], [dut.result],
                                             dut.latency)  # fmt: skip

    run(dut, bench)
    assert_bits_equal(out["max"], golden_max(rows), name=f"max tree n={n}")


@pytest.mark.parametrize("kwargs", [dict(n=1), dict(n=2000), dict(n=4, levels_per_stage=0),
                                    dict(n=3.0)])  # fmt: skip
def test_max_tree_rejects_bad_parameters(kwargs):
    n = kwargs.pop("n")
    with pytest.raises((ValueError, TypeError)):
        MaxTree(n, **kwargs)
