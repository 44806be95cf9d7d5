"""Engine.matmul / Engine.linear on the model backend: bit-exact vs the PE accumulation rule,
float64 tolerances, epilogues, softmax, operand kinds, quantized weights, Engine.last_run."""

import ml_dtypes
import numpy as np
import pytest
import torch

from firmware import golden as G
from unified_engine.host import DeviceTensor, Engine
from unified_engine.numerics import fp

SMALL = G.small_config()


@pytest.fixture(scope="module")
def eng():
    return Engine.open("model", SMALL, dram_bytes=1 << 24)


@pytest.fixture(scope="module")
def big():
    return Engine.open("model", dram_bytes=1 << 26)


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def bits_of(y):
    """bf16 bits of an op result (float32 results are exact widenings of bf16)."""
    if isinstance(y, torch.Tensor):
        y = y.float().numpy()
    y = np.asarray(y)
    if y.dtype == np.dtype(ml_dtypes.bfloat16):
        return y.view(np.uint16)
    assert y.dtype == np.float32
    bits = y.view(np.uint32)
    assert not (bits & 0xFFFF).any(), "a float32 result is not a widened bf16"
    return (bits >> 16).astype(np.uint16)


SHAPES = [(1, 1, 1), (1, 7, 63), (7, 63, 65), (63, 65, 7), (65, 129, 1), (129, 1, 65),
          (129, 129, 129), (33, 257, 17), (5, 1000, 3)]


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_matmul_bit_exact_any_shape(eng, m, k, n):
    rng = np.random.default_rng(m * 10007 + k * 101 + n)
    a, b = rand(rng, m, k), rand(rng, k, n)
    y = eng.matmul(a, b)
    assert y.shape == (m, n) and y.dtype == np.float32
    G.assert_bits_equal(bits_of(y), fp.pe_matmul(G.b16(a), G.b16(b)), f"{m}x{k}x{n}")
    # float64: the recursive-summation bound (numerics.md §3) plus one bf16 rounding (2^-8
    # relative to the result's binade)
    a32, b32 = G.w32(G.b16(a)), G.w32(G.b16(b))
    exact = a32.astype(np.float64) @ b32.astype(np.float64)
    tol = G.matmul_bound(a32, b32) * (1 + 2**-8) + 2.0**-8 * np.abs(exact) + 1e-30
    assert np.all(np.abs(y.astype(np.float64) - exact) <= tol)


@pytest.mark.parametrize(("m", "k", "n"), [(1, 129, 7), (129, 65, 63), (33, 300, 70)])
def test_matmul_bit_exact_default_config(big, m, k, n):
    rng = np.random.default_rng(k)
    a, b = rand(rng, m, k), rand(rng, k, n)
    G.assert_bits_equal(bits_of(big.matmul(a, b)), fp.pe_matmul(G.b16(a), G.b16(b)))


@pytest.mark.parametrize("activation", [None, "gelu", "silu", "sigmoid", "tanh", "relu",
                                        (0.5, 1.25, -0.75, 0.125)])
@pytest.mark.parametrize("bias_kind", ["none", "col", "full"])
def test_matmul_epilogue_bit_exact(eng, activation, bias_kind):
    rng = np.random.default_rng(hash((str(activation), bias_kind)) % 2**32)
    m, k, n = 11, 37, 13
    a, b = rand(rng, m, k), rand(rng, k, n)
    bias = {"none": None, "col": rand(rng, n), "full": rand(rng, m, n)}[bias_kind]
    y = eng.matmul(a, b, bias=bias, activation=activation, scale=0.375)
    want = G.gemm(G.b16(a), G.b16(b), None if bias is None else G.b16(bias), activation, 0.375)
    G.assert_bits_equal(bits_of(y), want, f"{activation} {bias_kind}")


def test_matmul_gelu_close_to_float64(eng):
    rng = np.random.default_rng(3)
    a, b, c = rand(rng, 17, 40), rand(rng, 40, 9), rand(rng, 9)
    y = eng.matmul(a, b, bias=c, activation="gelu").astype(np.float64)
    s = G.w32(G.b16(a)).astype(np.float64) @ G.w32(G.b16(b)).astype(np.float64) + \
        G.w32(G.b16(c))
    ref = s / (1 + np.exp(-1.702 * s))
    # bf16 output rounding (2^-8 relative) dominates the fp32 errors of the sum and the
    # activation block (≤ (4.14 + (1−σ)|bx|)·2^-24 relative, numerics.md §6)
    assert np.all(np.abs(y - ref) <= 2.0**-8 * np.abs(ref) + 1e-4)


@pytest.mark.parametrize(("m", "k", "n"), [(1, 5, 1), (7, 20, 9), (13, 33, 40), (4, 8, 130)])
def test_matmul_softmax(eng, m, k, n):
    rng = np.random.default_rng(n)
    a, b = rand(rng, m, k), rand(rng, k, n)
    y = eng.matmul(a, b, softmax=True)
    logits = fp.pe_matmul(G.b16(a), G.b16(b))
    G.assert_bits_equal(bits_of(y), G.softmax_rows(logits, SMALL), "softmax")
    ref = G.softmax64(G.w32(logits))
    # bf16 rounding of p (≤ 2^-8 relative) + fp32 exp/sum/reciprocal (≈ 2^-20 relative)
    assert np.all(np.abs(y - ref) <= (2.0**-8 + 2.0**-18) * ref + 1e-30)
    np.testing.assert_allclose(y.astype(np.float64).sum(axis=1), 1.0, atol=n * 2.0**-8)


def test_matmul_softmax_with_bias_and_scale(eng):
    rng = np.random.default_rng(9)
    m, k, n = 6, 16, 11
    a, b, mask = rand(rng, m, k), rand(rng, k, n), rand(rng, m, n)
    mask[:, 7:] = -np.inf
    y = eng.matmul(a, b, bias=mask, scale=0.25, softmax=True)
    logits = G.gemm(G.b16(a), G.b16(b), G.b16(mask), None, 0.25)
    G.assert_bits_equal(bits_of(y), G.softmax_rows(logits, SMALL))
    assert not y[:, 7:].any()


def test_operand_kinds_round_trip(eng):
    rng = np.random.default_rng(4)
    a, b = rand(rng, 9, 21), rand(rng, 21, 5)
    want = fp.pe_matmul(G.b16(a), G.b16(b))
    # torch float32 and bfloat16 in → same kind out
    y = eng.matmul(torch.from_numpy(a), torch.from_numpy(b))
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    G.assert_bits_equal(bits_of(y), want)
    y = eng.matmul(torch.from_numpy(a).bfloat16(), torch.from_numpy(b).bfloat16())
    assert y.dtype == torch.bfloat16
    G.assert_bits_equal(bits_of(y), want)
    # ml_dtypes bfloat16
    y = eng.matmul(a.astype(ml_dtypes.bfloat16), b)
    assert y.dtype == np.dtype(ml_dtypes.bfloat16)
    G.assert_bits_equal(bits_of(y), want)
    # device tensors stay on the device; b as a device tensor is read with strided DMA
    ad = eng.tensor(a, dtype="bf16")
    bd = eng.tensor(b, dtype="bf16")
    yd = eng.matmul(ad, bd)
    assert isinstance(yd, DeviceTensor) and yd.shape == (9, 5)
    G.assert_bits_equal(yd.bits(), want)
    # chaining on the device: (a·b)·bᵀ
    z = eng.matmul(yd, np.ascontiguousarray(b.T))
    assert isinstance(z, DeviceTensor)
    G.assert_bits_equal(z.bits(), fp.pe_matmul(want, G.b16(b.T)))
    for t in (ad, bd, yd, z):
        t.free()


def test_linear_shapes_and_weight_kinds(eng):
    rng = np.random.default_rng(5)
    x, w, c = rand(rng, 2, 3, 24), rand(rng, 10, 24), rand(rng, 10)
    want = G.gemm(G.b16(x.reshape(6, 24)), G.b16(w).T, G.b16(c), "silu").reshape(2, 3, 10)
    y = eng.linear(x, w, bias=c, activation="silu")
    assert y.shape == (2, 3, 10)
    G.assert_bits_equal(bits_of(y), want)
    packed = eng.pack_weight(w)
    G.assert_bits_equal(bits_of(eng.linear(x, packed, c, "silu")), want)
    G.assert_bits_equal(packed.dequantized(), G.b16(w))
    wd = eng.tensor(w, dtype="bf16")
    G.assert_bits_equal(bits_of(eng.linear(x, wd, c, "silu")), want)
    y1 = eng.linear(x[0, 0], w)                         # a single vector [K] → [N]
    assert y1.shape == (10,)
    G.assert_bits_equal(bits_of(y1), fp.pe_matmul(G.b16(x[0, :1]), G.b16(w).T)[0])
    # torch F.linear semantics on exactly representable data
    xt, wt, ct = (torch.from_numpy(G.w32(G.b16(v))) for v in (x, w, c))
    ref = torch.nn.functional.linear(xt.double(), wt.double(), ct.double())
    got = torch.from_numpy(eng.linear(xt, wt, ct).numpy()).double()
    assert torch.all((got - ref).abs() <= 2**-8 * ref.abs() + 24 * 2**-24 * 8)
    packed.free()
    wd.free()


@pytest.mark.parametrize("fmt", ["int4", "fp4", "if4", "nvfp4", "int8", "fp8", "if8"])
def test_quantized_linear_bit_exact(eng, fmt):
    rng = np.random.default_rng(len(fmt))
    k = 128
    w, c = rand(rng, 11, k), rand(rng, 11)
    q = eng.quantize(w, fmt)
    wq = q.dequantized()                                # what numerics.quant decodes
    for m in (1, 9):                                    # decode (GEMV) and prefill shapes
        x = rand(rng, m, k)
        y = eng.linear(x, q, bias=c)
        G.assert_bits_equal(bits_of(y), G.gemm(G.b16(x), wq.T, G.b16(c)), f"{fmt} m={m}")
    q.free()


def test_last_run_reports_cycles_and_utilization(eng, big):
    rng = np.random.default_rng(6)
    eng.matmul(rand(rng, 8, 8), rand(rng, 8, 8))
    lr = eng.last_run
    assert lr.op == "matmul" and lr.cycles > 0
    assert lr.ideal_cycles == 8 * 8 * 8 / SMALL.macs_per_cycle
    assert lr.utilization == pytest.approx(lr.ideal_cycles / lr.cycles)
    # a big enough product on the default engine keeps the array busy: the loads, the
    # on-chip transposes and the stores overlap the MATMULs (dependency-token pipeline)
    m = k = n = 256
    big.linear(rand(rng, m, k), big.pack_weight(rand(rng, n, k)))
    lr = big.last_run
    c = lr.counters
    assert lr.utilization > 0.96
    assert c["array_busy"] > 0.97 * lr.cycles
    assert c["load_busy"] + c["vector_busy"] + c["store_busy"] > 0.1 * lr.cycles
    assert c["array_busy"] + c["load_busy"] + c["vector_busy"] > 1.1 * lr.cycles


def test_matmul_softmax_falls_back_to_two_kernels(eng):
    """Rows too long for the fused row buffer: logits to DRAM, then the row-wise softmax."""
    rng = np.random.default_rng(10)
    a, b = rand(rng, 5, 16), rand(rng, 16, 600)
    free = eng.allocator.free_bytes("activations")
    y = eng.matmul(a, b, softmax=True)
    G.assert_bits_equal(bits_of(y), G.softmax_rows(fp.pe_matmul(G.b16(a), G.b16(b)), SMALL))
    assert [k.split("(")[0] for k in eng.last_run.kernels] == ["gemm", "softmax"]
    assert eng.allocator.free_bytes("activations") == free
