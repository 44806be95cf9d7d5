"""Sharded ops (host.ops_shard) on E = 1…4 model engines against the single-engine ops:
bit-exact for M/N matmul splits, row-wise ops and attention by heads; within the derived
bound (ksplit_bound) for the K split, whose summation order differs."""

import dataclasses

import ml_dtypes
import numpy as np
import pytest

from firmware import golden as G
from unified_engine.host import Engine
from unified_engine.host.multi import MultiEngine
from unified_engine.host.ops_shard import (
    ksplit_bound,
    shard_attention,
    shard_matmul,
    shard_rowwise,
)
from unified_engine.numerics import fp

DRAM = 1 << 23
CFG = dataclasses.replace(G.small_config(), engines=4)


@pytest.fixture(scope="module")
def single():
    return Engine.open("model", CFG, dram_bytes=DRAM)


_MULTI: dict[int, MultiEngine] = {}


def multi(e: int) -> MultiEngine:
    if e not in _MULTI:
        _MULTI[e] = MultiEngine.open("model", CFG, engines=e, dram_bytes=DRAM)
    return _MULTI[e]


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("e", [1, 2, 3, 4])
@pytest.mark.parametrize("split_dim", ["m", "n"])
@pytest.mark.parametrize("shape", [(37, 45, 29), (3, 8, 5), (16, 1, 17)])
def test_matmul_m_and_n_splits_are_bit_exact(single, e, split_dim, shape):
    m, k, n = shape
    rng = np.random.default_rng(m * 100 + n)
    a, b = rand(rng, m, k), rand(rng, k, n)
    ref = single.matmul(a, b)
    c, run = shard_matmul(multi(e), a, b, split_dim)
    np.testing.assert_array_equal(c, ref)
    assert c.dtype == np.float32
    assert run.engines == e and run.split == split_dim
    assert sum(s for _, s in run.shares) == (m if split_dim == "m" else n)
    assert run.cycles == max(r.cycles for r in run.rounds[0]) > 0 and len(run.rounds) == 1


def test_matmul_keeps_bf16_inputs_bf16(single):
    rng = np.random.default_rng(5)
    a = rand(rng, 9, 12).astype(ml_dtypes.bfloat16)
    b = rand(rng, 12, 7).astype(ml_dtypes.bfloat16)
    c, _ = shard_matmul(multi(2), a, b, "m")
    assert c.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(c.view(np.uint16), single.matmul(a, b).view(np.uint16))


@pytest.mark.parametrize("e", [2, 3, 4])
def test_matmul_k_split_is_within_the_derived_bound(single, e):
    """Random draws with a long K whose second half nearly cancels the first (large partial
    sums, small results: where fp32 rounding shows through bf16): the K split changes the
    summation order, so outputs differ from the single engine's — each by at most
    ksplit_bound, computed from the data (the derivation is in its docstring)."""
    worst, differs = 0.0, 0
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        x, y = rand(rng, 11, 150), rand(rng, 150, 13)
        a = np.concatenate([x, x], axis=1)
        b = np.concatenate([y, -y + np.float32(0.002) * rand(rng, 150, 13)], axis=0)
        ref = single.matmul(a, b)
        c, run = shard_matmul(multi(e), a, b, "k")
        assert run.split == "k" and len(run.rounds) == 1 and run.engines == e
        bound = ksplit_bound(fp.f32_to_bf16(a), fp.f32_to_bf16(b), fp.f32_to_bf16(c),
                             fp.f32_to_bf16(ref))
        diff = np.abs(c.astype(np.float64) - ref.astype(np.float64))
        assert (diff <= bound).all(), f"seed {seed}: {(diff / bound).max():.3f}× the bound"
        worst = max(worst, float((diff / bound).max()))
        differs += int((diff > 0).sum())
        # and both are close to the exact float64 product (sanity of the partials + reduce)
        exact = fp.bf16_to_f32(fp.f32_to_bf16(a)).astype(np.float64) @ \
            fp.bf16_to_f32(fp.f32_to_bf16(b)).astype(np.float64)
        assert (np.abs(c - exact) <= bound).all()
    assert differs > 0, "the K split never changed a result: the test would not see a bound"
    assert worst < 1.0


def test_matmul_k_split_with_more_engines_than_k_chunks(single):
    rng = np.random.default_rng(7)
    a, b = rand(rng, 5, 3), rand(rng, 3, 6)  # K = 3 < 4 engines × one beat of K
    c, run = shard_matmul(multi(4), a, b, "k")
    assert sum(1 for _, s in run.shares if s) < 4
    bound = ksplit_bound(fp.f32_to_bf16(a), fp.f32_to_bf16(b), fp.f32_to_bf16(c),
                         fp.f32_to_bf16(single.matmul(a, b)))
    assert (np.abs(c - single.matmul(a, b)) <= bound).all()


@pytest.mark.parametrize("e", [1, 2, 3, 4])
@pytest.mark.parametrize("op", ["rmsnorm", "layernorm", "softmax"])
def test_rowwise_ops_by_rows_are_bit_exact(single, e, op):
    rng = np.random.default_rng(11)
    x = rand(rng, 2, 7, 40)  # 14 rows over e engines
    kwargs = {}
    if op == "rmsnorm":
        kwargs = {"gamma": rand(rng, 40), "eps": 1e-5}
    elif op == "layernorm":
        kwargs = {"gamma": rand(rng, 40), "beta": rand(rng, 40)}
    y, run = shard_rowwise(multi(e), op, x, **kwargs)
    np.testing.assert_array_equal(y, getattr(single, op)(x, **kwargs))
    assert y.shape == x.shape and run.split == "rows"


@pytest.mark.parametrize("e", [1, 2, 3])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_by_heads_is_bit_exact(single, e, causal):
    rng = np.random.default_rng(13)
    q = rand(rng, 1, 4, 5, 16)   # 4 query heads, 2 KV heads (grouped)
    k = rand(rng, 1, 2, 7 if not causal else 5, 16)
    v = rand(rng, *k.shape)
    o, run = shard_attention(multi(e), q, k, v, causal=causal)
    np.testing.assert_array_equal(o, single.attention(q, k, v, causal=causal))
    assert o.shape == q.shape and run.split == "heads"
    assert sum(s for _, s in run.shares) == 2


def test_bad_arguments_are_rejected():
    m = multi(2)
    a = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="allowed: m, n, k"):
        shard_matmul(m, a, a, "x")
    with pytest.raises(TypeError, match="needs a MultiEngine"):
        shard_matmul(Engine.open("model", CFG, dram_bytes=DRAM), a, a)
    with pytest.raises(ValueError, match="K=4 ≠ b's K=3"):
        shard_matmul(m, a, np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="allowed: rmsnorm, layernorm, softmax"):
        shard_rowwise(m, "gelu", a)
    with pytest.raises(ValueError, match="multiple of KV heads"):
        shard_attention(m, np.ones((3, 2, 4), np.float32), np.ones((2, 2, 4), np.float32),
                        np.ones((2, 2, 4), np.float32))
    with pytest.raises(TypeError, match="unsupported dtype"):
        shard_matmul(m, a.astype(np.float64), a)
