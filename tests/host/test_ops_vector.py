"""Row-wise and data-movement ops on the model backend: softmax, RMSNorm, LayerNorm, eltwise,
activations, transpose, argmax_top4, embedding, rope — bit-exact against compositions of the
numerics golden models and within documented tolerances of float64 / torch."""

import ml_dtypes
import numpy as np
import pytest
import torch

from firmware import golden as G
from unified_engine.host import DeviceTensor, Engine
from unified_engine.numerics import activation as act
from unified_engine.numerics import fp, reduce

SMALL = G.small_config()
BF16_REL = 2.0**-8  # one bf16 rounding, relative to the result's binade


@pytest.fixture(scope="module")
def eng():
    return Engine.open("model", SMALL, dram_bytes=1 << 24)


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


ROWS = [(1, 1), (7, 63), (65, 7), (3, 129), (129, 5)]


@pytest.mark.parametrize(("m", "n"), ROWS)
def test_softmax(eng, m, n):
    rng = np.random.default_rng(m * 131 + n)
    x = rand(rng, m, n, scale=4.0)
    y = eng.softmax(x)
    xb = G.b16(x)
    G.assert_bits_equal(G.b16(y), G.softmax_rows(xb, SMALL))
    ref = G.softmax64(G.w32(xb))
    # bf16 rounding of p + exp (0.57 ulp), sum, reciprocal (0.5 ulp) in fp32 (numerics.md §6)
    assert np.all(np.abs(y - ref) <= (BF16_REL + 2.0**-18) * ref + 1e-30)


@pytest.mark.parametrize(("m", "n"), ROWS)
def test_rmsnorm(eng, m, n):
    rng = np.random.default_rng(m * 7 + n)
    x, g = rand(rng, m, n, scale=3.0), rand(rng, n)
    y = eng.rmsnorm(x, g, eps=1e-5)
    G.assert_bits_equal(G.b16(y), G.rmsnorm_rows(G.b16(x), G.b16(g), 1e-5, SMALL))
    xd, gd = G.w32(G.b16(x)).astype(np.float64), G.w32(G.b16(g)).astype(np.float64)
    ref = xd / np.sqrt((xd * xd).mean(axis=1, keepdims=True) + 1e-5) * gd
    # bf16 rounding + the fp32 sum (≤ n·2^-23 relative, all terms positive) and rsqrt
    assert np.all(np.abs(y - ref) <= (BF16_REL + (n + 4) * 2.0**-24) * np.abs(ref) + 1e-30)
    # without γ, as torch's weightless RMSNorm
    G.assert_bits_equal(G.b16(eng.rmsnorm(x)), G.rmsnorm_rows(G.b16(x), None, 1e-6, SMALL))


@pytest.mark.parametrize(("m", "n"), ROWS)
def test_layernorm(eng, m, n):
    rng = np.random.default_rng(m * 17 + n)
    x, g, b = rand(rng, m, n, scale=2.0) + 1.0, rand(rng, n), rand(rng, n)
    y = eng.layernorm(x, g, b, eps=1e-5)
    G.assert_bits_equal(G.b16(y), G.layernorm_rows(G.b16(x), G.b16(g), G.b16(b), 1e-5, SMALL))
    xt = torch.from_numpy(G.w32(G.b16(x))).double()
    ref = torch.nn.functional.layer_norm(
        xt, (n,), torch.from_numpy(G.w32(G.b16(g))).double(),
        torch.from_numpy(G.w32(G.b16(b))).double(), eps=1e-5).numpy()
    # one bf16 rounding of y, plus fp32 errors of the normalisation (mean, variance, rsqrt:
    # ≲ (n + 8)·2^-24 relative to |γ·x̂|) that the final + β may not cancel
    xhat = ((xt - xt.mean(1, keepdim=True)) /
            torch.sqrt(xt.var(1, unbiased=False, keepdim=True) + 1e-5)).numpy()
    mag = np.abs(G.w32(G.b16(g)) * xhat) + np.abs(G.w32(G.b16(b)))
    assert np.all(np.abs(y - ref) <= BF16_REL * np.abs(ref) + (n + 8) * 2.0**-24 * mag)
    G.assert_bits_equal(G.b16(eng.layernorm(x)), G.layernorm_rows(G.b16(x), None, None, 1e-5,
                                                                   SMALL))


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
def test_eltwise_broadcasting(eng, op):
    rng = np.random.default_rng(len(op))
    x = rand(rng, 2, 9, 33)
    f = {"add": fp.f32_add, "sub": fp.f32_sub, "mul": fp.f32_mul}[op]
    t = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[op]
    xb = G.w32(G.b16(x))
    for y in (rand(rng, 2, 9, 33), rand(rng, 33), rand(rng, 1, 1, 33), rand(rng, 2, 9, 1),
              -0.3125):
        got = getattr(eng, op)(x, y)
        yb = np.float32(y) if np.isscalar(y) else G.w32(G.b16(y))
        G.assert_bits_equal(G.b16(got), fp.f32_to_bf16(f(xb, yb)), f"{op} {np.shape(y)}")
        # one fp32 operation then one bf16 rounding
        ref = t(xb.astype(np.float64), np.asarray(yb, np.float64))
        assert np.all(np.abs(got - ref) <= BF16_REL * np.abs(ref) + 1e-30)


@pytest.mark.parametrize("name", ["gelu", "silu", "sigmoid", "tanh", "relu"])
def test_standalone_activation(eng, name):
    rng = np.random.default_rng(len(name))
    x = rand(rng, 5, 40, scale=3.0)
    y = eng.activation(x, name)
    xb = G.w32(G.b16(x))
    want = act.clamp(xb, np.float32(0), np.float32(np.inf)) if name == "relu" else \
        act.unified_activation(xb, *act.ACTIVATIONS[name])
    G.assert_bits_equal(G.b16(y), fp.f32_to_bf16(want), name)
    ref = {"gelu": lambda v: v / (1 + np.exp(-1.702 * v)), "silu": lambda v: v / (1 + np.exp(-v)),
           "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh,
           "relu": lambda v: np.maximum(v, 0)}[name](xb.astype(np.float64))
    assert np.all(np.abs(y - ref) <= BF16_REL * np.abs(ref) + 1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (37, 23), (3, 20, 9)])
def test_transpose_keeps_bits(eng, shape):
    rng = np.random.default_rng(sum(shape))
    x = rand(rng, *shape)
    x.reshape(-1)[0] = np.nan
    y = eng.transpose(x.astype(ml_dtypes.bfloat16))
    G.assert_bits_equal(y.view(np.uint16), np.swapaxes(G.b16(x), -1, -2))


def test_argmax_top4_matches_torch_topk(eng):
    rng = np.random.default_rng(8)
    x = np.round(rand(rng, 6, 50) * 4) / 4          # many ties
    x[2, 7] = np.inf
    x[3, 11] = np.nan                                # NaN ranks first, as torch.topk
    values, indices = eng.argmax_top4(x)
    rv, ri = reduce.argmax_top4(G.w32(G.b16(x)))
    np.testing.assert_array_equal(indices, ri)
    G.assert_bits_equal(values.view(np.uint32), rv.view(np.uint32))
    tv, _ = torch.topk(torch.from_numpy(G.w32(G.b16(x))), 4, dim=-1)
    finite = ~np.isnan(x).any(axis=1)
    np.testing.assert_array_equal(values[finite], tv.numpy()[finite])
    # ties: torch does not promise an order; the engine takes the lower index first
    xb = G.w32(G.b16(x))
    for r in np.flatnonzero(finite):
        want = sorted(range(x.shape[1]), key=lambda i, r=r: (-xb[r, i], i))[:4]
        assert list(indices[r]) == want
    # short rows fill with −Inf / −1; torch input gives torch output
    v, i = eng.argmax_top4(torch.tensor([[1.0, 3.0]]))
    assert isinstance(v, torch.Tensor) and v.tolist() == [[3.0, 1.0, -np.inf, -np.inf]]
    assert i.tolist() == [[1, 0, -1, -1]]


def test_embedding_gathers_rows(eng):
    rng = np.random.default_rng(9)
    table = rand(rng, 40, 12)
    ids = np.array([[3, 4, 5, 39], [0, 0, 7, 2]])
    y = eng.embedding(ids, table)
    assert y.shape == (2, 4, 12)
    G.assert_bits_equal(G.b16(y), G.b16(table)[ids])
    td = eng.tensor(table, dtype="bf16")
    yd = eng.embedding(torch.tensor(ids), td)
    assert isinstance(yd, DeviceTensor)
    G.assert_bits_equal(yd.bits(), G.b16(table)[ids])
    ref = torch.nn.functional.embedding(torch.tensor(ids), torch.from_numpy(G.w32(G.b16(table))))
    np.testing.assert_array_equal(y, ref.numpy())
    yd.free()
    td.free()


def _rope_tables(s, d):
    inv = 1.0 / 10000 ** (np.arange(0, d, 2) / d)
    ang = np.arange(s)[:, None] * inv[None, :]
    emb = np.concatenate([ang, ang], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 8), (2, 3, 9, 16), (5, 70, 8)])
def test_rope_hf_rotate_half(eng, shape):
    rng = np.random.default_rng(shape[-2])
    x = rand(rng, *shape)
    s, d = shape[-2], shape[-1]
    cos, sin = _rope_tables(s, d)
    y = eng.rope(x, cos, sin)
    xb, cb, sb = (G.w32(G.b16(v)) for v in (x, cos, sin))
    h = d // 2
    golden = np.concatenate([
        fp.f32_sub(fp.f32_mul(xb[..., :h], cb[:, :h]), fp.f32_mul(xb[..., h:], sb[:, :h])),
        fp.f32_add(fp.f32_mul(xb[..., h:], cb[:, h:]), fp.f32_mul(xb[..., :h], sb[:, h:]))],
        axis=-1)
    G.assert_bits_equal(G.b16(y), fp.f32_to_bf16(golden))
    # Hugging Face apply_rotary_pos_emb in float64
    xt = torch.from_numpy(xb).double()
    rot = torch.cat([-xt[..., h:], xt[..., :h]], dim=-1)
    ref = (xt * torch.from_numpy(cb).double() + rot * torch.from_numpy(sb).double()).numpy()
    assert np.all(np.abs(y - ref) <= BF16_REL * np.abs(ref) + 2.0**-24 * 4)


def test_last_run_of_vector_ops_counts_dram_bound(eng):
    x = np.ones((16, 64), np.float32)
    eng.add(x, x)
    lr = eng.last_run
    # two bf16 tensors in (4 bytes/element), one out: the read side bounds the model
    assert lr.ideal_cycles == 16 * 64 * 4 / SMALL.axi_bytes
    assert 0 < lr.utilization <= 1
