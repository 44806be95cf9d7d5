"""Engine.attention (flash-style, online softmax, GQA) on the model backend."""

import numpy as np
import pytest
import torch

from firmware import golden as G
from unified_engine.host import Engine

SMALL = G.small_config()


@pytest.fixture(scope="module")
def eng():
    return Engine.open("model", SMALL, dram_bytes=1 << 24)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def sdpa64(q, k, v, mask=None, causal=False, scale=None):
    qt, kt, vt = (torch.from_numpy(G.w32(G.b16(a))).double() for a in (q, k, v))
    rep = qt.shape[-3] // kt.shape[-3]
    kt, vt = kt.repeat_interleave(rep, dim=-3), vt.repeat_interleave(rep, dim=-3)
    m = None if mask is None else torch.from_numpy(mask)
    return torch.nn.functional.scaled_dot_product_attention(
        qt, kt, vt, attn_mask=m, is_causal=causal, scale=scale).numpy()


def kernel_blocks(eng):
    """(MB, NBk) of the attention kernel that ran last."""
    spec = eng._kernel_cache._kernels[next(k for k in reversed(eng.kernel_cache.keys())
                                           if k[0] == "attention")].meta["spec"]
    return spec.mt * SMALL.tile_rows, spec.ntk * SMALL.cols


CASES = [  # (B, Hq, Hkv, Sq, Sk, D, causal)
    (1, 1, 1, 5, 7, 16, False),
    (1, 4, 2, 9, 20, 16, True),     # GQA, causal, ragged key tail
    (2, 2, 1, 1, 13, 32, False),    # decode: one query per head, MQA
    (1, 2, 2, 33, 33, 8, True),
    (1, 1, 1, 40, 65, 16, False),   # several key blocks
]


@pytest.mark.parametrize("case", CASES)
def test_attention_bit_exact_and_close_to_sdpa(eng, case):
    b, hq, hkv, sq, sk, d, causal = case
    rng = np.random.default_rng(sum(case))
    q, k, v = rand(rng, b, hq, sq, d), rand(rng, b, hkv, sk, d), rand(rng, b, hkv, sk, d)
    y = eng.attention(q, k, v, causal=causal)
    assert y.shape == q.shape
    mb, nbk = kernel_blocks(eng)
    scale = np.float32(1 / np.sqrt(d))
    g = hq // hkv
    mask = None
    if causal:
        mask = np.where(np.tril(np.ones((sq, sk), bool)), 0, -np.inf).astype(np.float32)
    for bi in range(b):
        for h in range(hkv):
            qs = G.b16(q[bi, h * g:(h + 1) * g].reshape(g * sq, d))
            mk = None if mask is None else G.b16(np.tile(mask, (g, 1)))
            want = G.flash_attention(qs, G.b16(k[bi, h]), G.b16(v[bi, h]), mk, scale, mb, nbk,
                                     SMALL)
            G.assert_bits_equal(G.b16(y[bi, h * g:(h + 1) * g].reshape(g * sq, d)), want,
                                f"group {bi},{h}")
    ref = sdpa64(q, k, v, causal=causal)
    # bf16 rounding of P (2^-8 relative per weight) and of the output dominate:
    # |Σ p̃v − Σ pv| ≤ 2^-8·Σ p|v| ≤ 2^-8·max|v|, plus the output rounding
    vmax = np.abs(G.w32(G.b16(v))).max()
    assert np.all(np.abs(y - ref) <= 2.0**-8 * np.abs(ref) + 2.0**-7 * vmax)


def test_attention_masks(eng):
    rng = np.random.default_rng(3)
    q, k, v = rand(rng, 2, 6, 16), rand(rng, 2, 10, 16), rand(rng, 2, 10, 16)
    keep = rng.random((6, 10)) > 0.3
    keep[:, 0] = True
    add = np.where(keep, rng.standard_normal((6, 10)), -np.inf).astype(np.float32)
    for mask in (keep, add, torch.from_numpy(keep)):
        y = eng.attention(q, k, v, mask=mask, scale=0.3)
        m64 = np.where(keep, 0.0, -np.inf) if mask is not add else G.w32(G.b16(add))
        ref = sdpa64(q, k, v, mask=m64, scale=float(np.float32(0.3)))
        assert np.all(np.abs(y - ref) <= 2.0**-8 * np.abs(ref) + 2.0**-7 * np.abs(v).max())
    # a fully masked row gives NaN, as torch SDPA
    keep[2] = False
    y = eng.attention(q, k, v, mask=keep)
    assert np.isnan(y[:, 2]).all() and not np.isnan(np.delete(y, 2, axis=1)).any()


def test_attention_torch_io_and_last_run(eng):
    rng = np.random.default_rng(4)
    q, k, v = (torch.from_numpy(rand(rng, 1, 2, 12, 16)).bfloat16() for _ in range(3))
    y = eng.attention(q, k, v)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.bfloat16 and y.shape == q.shape
    lr = eng.last_run
    assert lr.op == "attention" and len(lr.runs) == 2       # key packing + attention
    assert lr.ideal_cycles == 2 * 2 * 12 * 12 * 16 / SMALL.macs_per_cycle
    assert lr.cycles == sum(r.cycles for r in lr.runs)


@pytest.mark.slow
def test_attention_utilization_default_engine():
    eng = Engine.open("model", dram_bytes=1 << 26)
    rng = np.random.default_rng(5)
    q, k, v = (rand(rng, 1, 1, 1024, 64) for _ in range(3))
    y = eng.attention(q, k, v)
    assert eng.last_run.utilization > 0.95
    ref = sdpa64(q, k, v)
    assert np.all(np.abs(y - ref) <= 2.0**-8 * np.abs(ref) + 2.0**-7 * np.abs(v).max())
