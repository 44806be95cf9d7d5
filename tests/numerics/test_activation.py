"""The activation block's golden model against float64 and the exact functions it approximates.

Bounds asserted here are the ones docs/numerics.md states; u = 2**-24.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from unified_engine.numerics import activation as act
from unified_engine.numerics.fp import f32_to_bf16

from .f64_ref import F32_MIN_NORMAL, bf16_rne, f32_bits, flush_f32, sigmoid64

U = 2.0**-24
#: Relative error of a preset whose a/c term is exact (gelu, silu, sigmoid), where σ(b·x) and the
#: result are normal: (4.14 + (1 - σ)·|b·x|)·u.  4.14 = sigmoid unit (3.14 relative: 2.14 before
#: and 1 for its final rounding) + the g·s product (1); (1 - σ)·|b·x|·u is the conditioning of σ
#: on the rounding of z = b·x.
PRODUCT_K = 4.14
#: tanh = 2σ(2x) - 1: absolute error <= 2·3.14·u (sigmoid) + u/2 (the subtraction).
TANH_ABS = 6.78 * U

CANON_NAN = 0x7FC00000
BF16_SWEEP = flush_f32(f32_bits(np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)))
FINITE_SWEEP = BF16_SWEEP[np.isfinite(BF16_SWEEP)]


def bits_of(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def formula64(x, params) -> np.ndarray:
    """(a + c·x)·σ(b·x) + d in float64 with the preset's fp32 parameters."""
    a, b, c, d = (float(v) for v in params)
    x = np.asarray(x, dtype=np.float64)
    return (a + c * x) * sigmoid64(b * x) + d


def sample_inputs() -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.concatenate(
        [
            FINITE_SWEEP,
            rng.uniform(-20.0, 20.0, 100_000).astype(np.float32),
            rng.uniform(-100.0, 100.0, 50_000).astype(np.float32),
        ]
    )


def test_presets_are_the_documented_fp32_values():
    assert act.ACTIVATIONS["gelu"] == (0.0, np.float32(1.702), 1.0, 0.0)
    assert float(act.ACTIVATIONS["gelu"].b) == 1.70200002193450927734375
    assert act.ACTIVATIONS["silu"] == (0.0, 1.0, 1.0, 0.0)
    assert act.ACTIVATIONS["sigmoid"] == (1.0, 1.0, 0.0, 0.0)
    assert act.ACTIVATIONS["tanh"] == (2.0, 2.0, 0.0, -1.0)
    for params in act.ACTIVATIONS.values():
        assert all(isinstance(v, np.float32) for v in params)
    assert set(act.MODES) == {*act.ACTIVATIONS, "unified", "identity", "relu", "clamp"}
    with pytest.raises(TypeError):
        act.ACTIVATIONS["gelu"] = act.ACTIVATIONS["silu"]  # read-only mapping


@pytest.mark.parametrize("name", ["gelu", "silu", "sigmoid"])
def test_product_presets_relative_error(name):
    params = act.ACTIVATIONS[name]
    x = sample_inputs()
    y = act.activate(x, name).astype(np.float64)
    ref = formula64(x, params)
    z = float(params.b) * x.astype(np.float64)
    s = sigmoid64(z)
    normal = (s >= F32_MIN_NORMAL) & (np.abs(ref) >= F32_MIN_NORMAL)
    rel = np.abs(y[normal] - ref[normal]) / np.abs(ref[normal])
    assert np.all(rel <= (PRODUCT_K + (1.0 - s[normal]) * np.abs(z[normal])) * U)
    # Where σ(b·x) itself flushes, the error is below |a + c·x|·2**-126 (plus the output flush).
    rest = ~normal
    bound = (np.abs(float(params.a)) + np.abs(float(params.c) * x[rest])) * F32_MIN_NORMAL
    assert np.all(np.abs(y[rest] - ref[rest]) <= bound + F32_MIN_NORMAL)
    bf16_ok = f32_to_bf16(y[normal].astype(np.float32)) == bf16_rne(ref[normal])
    assert bf16_ok.mean() >= 0.9999


def test_tanh_absolute_error():
    params = act.ACTIVATIONS["tanh"]
    x = sample_inputs()
    y = act.activate(x, "tanh").astype(np.float64)
    assert np.all(np.abs(y - formula64(x, params)) <= TANH_ABS)
    assert np.all(np.abs(y - np.tanh(x.astype(np.float64))) <= TANH_ABS)


def test_tanh_cancellation_near_zero():
    # 2σ(2x) - 1 cancels: the absolute error stays ~u, so the relative error near 0 is large;
    # for |x| < 2**-25 the result is exactly 0 (σ(2x) rounds to 1/2).
    mags = f32_bits(np.arange(0x00800000, 0x3F800000, 2003, dtype=np.uint32))
    x = np.concatenate([mags, -mags])
    y = act.activate(x, "tanh").astype(np.float64)
    assert np.abs(y - np.tanh(x.astype(np.float64))).max() <= TANH_ABS
    tiny = np.abs(x) < 2.0**-25
    assert tiny.any() and np.all(y[tiny] == 0)


def test_gelu_sigmoid_approximation_error_vs_erf():
    x = np.linspace(-8.0, 8.0, 200_001, dtype=np.float32)
    x64 = x.astype(np.float64)
    erf_gelu = 0.5 * x64 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in x64]))
    err = np.abs(act.activate(x, "gelu").astype(np.float64) - erf_gelu)
    # Documented: max |x·σ(1.702x) - x·Φ(x)| = 0.0203 on [-8, 8], at |x| ≈ 2.27.
    assert 0.0200 <= err.max() <= 0.0204
    assert abs(abs(float(x[err.argmax()])) - 2.27) < 0.01


@pytest.mark.parametrize(
    ("mode", "at_pos_inf", "at_neg_inf"),
    [
        ("gelu", 0x7F800000, 0x00000000),
        ("silu", 0x7F800000, 0x00000000),
        ("sigmoid", 0x3F800000, 0x00000000),
        ("tanh", 0x3F800000, 0xBF800000),
        ("identity", 0x7F800000, 0xFF800000),
        ("relu", 0x7F800000, 0x00000000),
    ],
)
def test_infinities_give_the_limits(mode, at_pos_inf, at_neg_inf):
    got = bits_of(act.activate(np.float32([np.inf, -np.inf]), mode))
    assert got.tolist() == [at_pos_inf, at_neg_inf]


@pytest.mark.parametrize("mode", [*act.ACTIVATIONS, "identity", "relu"])
def test_nan_in_nan_out(mode):
    x = f32_bits([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF])
    assert np.all(bits_of(act.activate(x, mode)) == CANON_NAN)
    assert np.all(bits_of(act.activate(x, "clamp", (-1.0, 1.0))) == CANON_NAN)
    assert np.all(bits_of(act.activate(x, "unified", (0.5, 0.0, 0.0, 0.0))) == CANON_NAN)


def test_large_arguments_saturate():
    big = np.float32([30.0, 88.0, 1e4, 1e30, 3.4e38])
    assert np.all(act.activate(big, "sigmoid") == 1.0)
    assert np.all(act.activate(-big[1:], "sigmoid") == 0.0)  # σ(-30) = 9.4e-14 is still normal
    assert np.all(act.activate(big, "tanh") == 1.0)
    assert np.all(act.activate(-big, "tanh") == -1.0)
    assert np.array_equal(act.activate(big, "silu"), big)  # x·1
    assert np.array_equal(act.activate(big, "gelu"), big)
    # x·σ(bx) for large negative x: σ flushes, the product is a zero (never NaN).
    for mode in ("gelu", "silu"):
        assert np.all(act.activate(-big[1:], mode) == 0.0)
        assert not np.isnan(act.activate(-big, mode)).any()


def test_zero_dominant_multiply_only_changes_zero_times_inf():
    # c = 0 with x = ±Inf: IEEE would give NaN; the block gives the sigmoid's limits.
    x = np.float32([np.inf, -np.inf, 3.0])
    y = act.unified_activation(x, 1.0, 1.0, 0.0, 0.0)
    assert y[0] == 1.0 and y[1] == 0.0
    # Finite x: identical to the plain IEEE order of operations (b = 0 makes σ = 1/2 exactly).
    y = act.unified_activation(np.float32([3.0, -5.0]), 1.0, 0.0, 2.0, 0.25)
    assert y.tolist() == [(1.0 + 6.0) * 0.5 + 0.25, (1.0 - 10.0) * 0.5 + 0.25]


def test_identity_is_a_bypass():
    x = f32_bits([0x7F7FFFFF, 0xFF7FFFFF, 0x00000001, 0x80000001, 0x3F800001, 0x80000000])
    # Even FLT_MAX passes unchanged (the block with b = 0, c = 2 would overflow on 2x);
    # subnormals follow the storage rule.
    expected = [0x7F7FFFFF, 0xFF7FFFFF, 0x00000000, 0x80000000, 0x3F800001, 0x80000000]
    assert bits_of(act.activate(x, "identity")).tolist() == expected


def test_relu():
    x = np.float32([-3.0, -0.0, 0.0, 2.5, -1e-45, 1e30])
    assert bits_of(act.relu(x)).tolist() == [0, 0, 0, 0x40200000, 0, bits_of(np.float32(1e30))]


def test_clamp():
    x = np.float32([-5.0, -1.0, -0.0, 0.0, 0.5, 7.0, np.inf, -np.inf])
    got = act.clamp(x, -1.0, 2.0)
    assert got.tolist() == [-1.0, -1.0, 0.0, 0.0, 0.5, 2.0, 2.0, -1.0]
    assert bits_of(act.clamp(np.float32([-0.0]), 0.0, 1.0))[0] == 0  # -0 < +0 = lo → +0
    assert np.array_equal(act.clamp(x, -np.inf, np.inf), x)
    with pytest.raises(ValueError, match="lo <= hi"):
        act.clamp(x, 1.0, -1.0)
    with pytest.raises(ValueError, match="NaN"):
        act.clamp(x, float("nan"), 1.0)


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        (("softplus",), ValueError, "allowed: gelu, silu"),
        ((3,), ValueError, "unknown activation mode"),
        (("gelu", (0, 1, 1, 0)), ValueError, "takes no params"),
        (("relu", (0.0,)), ValueError, "takes no params"),
        (("unified",), ValueError, r"\(a, b, c, d\)"),
        (("unified", (1.0, 2.0)), ValueError, r"\(a, b, c, d\)"),
        (("clamp", "ab"), ValueError, r"\(lo, hi\)"),
        (("unified", (0.1, 1.0, 1.0, 0.0)), ValueError, "not exactly representable"),
        (("unified", (0.0, float("inf"), 1.0, 0.0)), ValueError, "finite"),
        (("unified", (0.0, "1", 1.0, 0.0)), TypeError, "real number"),
    ],
)
def test_activate_validation(args, exc, match):
    with pytest.raises(exc, match=match):
        act.activate(np.float32([1.0]), *args)


def test_activate_x_validation_and_shapes():
    with pytest.raises(ValueError, match="not exactly representable"):
        act.activate(np.array([0.1]), "gelu")
    with pytest.raises(TypeError, match="fp32 values"):
        act.activate(np.array(["x"]), "relu")
    x = np.float32([[1.0, -2.0], [0.5, 3.0]])
    for mode in (*act.ACTIVATIONS, "identity", "relu"):
        assert act.activate(x, mode).shape == (2, 2)
    assert act.activate(x, "clamp", (0.0, 1.0)).shape == (2, 2)
    assert act.activate(np.float32(1.0), "gelu").shape == ()
