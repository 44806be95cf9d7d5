"""Semantics of MATMUL (epilogue, layouts, accumulator, quantized B) and VECTOR ops."""

import math

import numpy as np
import pytest

from unified_engine import EngineConfig
from unified_engine.asm import Program
from unified_engine.host import DeviceError, Engine
from unified_engine.numerics import fp, quant
from unified_engine.numerics.transcendental import exp, reciprocal, rsqrt
from unified_engine.regs import ErrorCode

CFG = EngineConfig.preset("sim_small")
TR, C, BEAT = CFG.tile_rows, CFG.cols, CFG.axi_bytes


@pytest.fixture
def eng():
    return Engine.open("model", CFG, dram_bytes=1 << 22)


def spad(eng):
    return eng.device.machine.spad


def put(eng, row, array):
    raw = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    spad(eng)[row * BEAT:row * BEAT + raw.size] = raw


def get(eng, row, count, dtype):
    n = count * np.dtype(dtype).itemsize
    return spad(eng)[row * BEAT:row * BEAT + n].view(dtype).copy()


def run(eng, build):
    p = Program(CFG)
    build(p)
    p.halt()
    return eng.run(p)


def a_panel(a_bits):
    """Scratchpad A panel of A [M, K]: per m-tile, k-major vectors of TR values."""
    m, k = a_bits.shape
    tiles = [a_bits[i * TR:(i + 1) * TR].T.reshape(-1) for i in range(m // TR)]
    rows = -(-k * TR * 2 // BEAT)
    out = np.zeros((m // TR, rows * BEAT // 2), np.uint16)
    for i, t in enumerate(tiles):
        out[i, :t.size] = t
    return out


def b_panel(b_bits):
    """Scratchpad B panel of B [K, N]: per n-tile, k-major vectors of C values."""
    k, n = b_bits.shape
    rows = -(-k * C * 2 // BEAT)
    out = np.zeros((n // C, rows * BEAT // 2), np.uint16)
    for j in range(n // C):
        out[j, :k * C] = b_bits[:, j * C:(j + 1) * C].reshape(-1)
    return out


def bf16(rng, shape):
    return fp.f32_to_bf16(rng.standard_normal(shape).astype(np.float32))


def test_matmul_epilogue_scale_bias_relu_fp32(eng):
    rng = np.random.default_rng(3)
    m, k, n = 8, 12, 4
    a, b = bf16(rng, (m, k)), bf16(rng, (k, n))
    bias = bf16(rng, (n,))
    put(eng, 0, a_panel(a))
    put(eng, 100, b_panel(b))
    eng.device.machine.bias[:2 * n] = bias.view(np.uint8)

    def build(p):
        p.epi(2, "clamp", scale=0.5, a=0.0, b=float("inf"))
        p.matmul(a=0, b=100, dst=200, k=k, m_tiles=2, n_tiles=2, bias_mode="col", epi=2,
                 out_fmt="fp32")

    run(eng, build)
    acc = fp.pe_accumulate(a, b)
    # independent epilogue: numpy fp32 ops (all values normal here, so IEEE = contract)
    expect = np.maximum(acc * np.float32(0.5) + fp.bf16_to_f32(bias)[None, :], np.float32(0))
    np.testing.assert_array_equal(get(eng, 200, m * n, np.float32).reshape(m, n), expect)


@pytest.mark.parametrize("mode", ["row", "full"])
def test_matmul_bias_modes(eng, mode):
    rng = np.random.default_rng(4)
    m, k, n = 4, 6, 2
    a, b = bf16(rng, (m, k)), bf16(rng, (k, n))
    bias = bf16(rng, (m,) if mode == "row" else (m, n))
    put(eng, 0, a_panel(a))
    put(eng, 50, b_panel(b))
    eng.device.machine.bias[8:8 + bias.nbytes] = bias.view(np.uint8).reshape(-1)
    run(eng, lambda p: p.matmul(a=0, b=50, dst=80, k=k, bias_mode=mode, bias=4, out_fmt="fp32"))
    bias_f = fp.bf16_to_f32(bias)
    expect = fp.pe_accumulate(a, b) + (bias_f[:, None] if mode == "row" else bias_f)
    np.testing.assert_array_equal(get(eng, 80, m * n, np.float32).reshape(m, n), expect)


def test_k_split_through_the_accumulator_equals_one_pass(eng):
    rng = np.random.default_rng(5)
    m, k, n = 4, 10, 4
    a, b = bf16(rng, (m, k)), bf16(rng, (k, n))
    put(eng, 0, a_panel(a[:, :6]))
    put(eng, 20, a_panel(a[:, 6:]))
    put(eng, 40, b_panel(b[:6]))
    put(eng, 60, b_panel(b[6:]))

    def build(p):
        p.matmul(a=0, b=40, dst=0, k=6, n_tiles=2, acc=3, acc_out=True, wb=False)
        p.matmul(a=20, b=60, dst=100, k=4, n_tiles=2, acc=3, acc_in=True)

    run(eng, build)
    np.testing.assert_array_equal(get(eng, 100, m * n, np.uint16).reshape(m, n),
                                  fp.pe_matmul(a, b))


def test_panel_output_layouts_chain_matmuls(eng):
    """C1 = A·B written as an A panel feeds C2 = C1·D directly; as a B panel, E·C1."""
    rng = np.random.default_rng(6)
    m, k, n, n2 = 8, 6, 4, 2
    a, b, d = bf16(rng, (m, k)), bf16(rng, (k, n)), bf16(rng, (n, n2))
    e = bf16(rng, (TR, m))
    put(eng, 0, a_panel(a))
    put(eng, 40, b_panel(b))
    put(eng, 60, b_panel(d))
    put(eng, 70, a_panel(e))

    def build(p):
        p.matmul(a=0, b=40, dst=100, k=k, m_tiles=2, n_tiles=2, out_layout="a_panel",
                 signal="vector")
        p.matmul(a=0, b=40, dst=140, k=k, m_tiles=2, n_tiles=2, out_layout="b_panel")
        p.token("vector", "array", wait="array")  # orders nothing new; exercises the idiom
        p.matmul(a=100, b=60, dst=180, k=n, m_tiles=2, n_tiles=1, wait="vector")
        p.matmul(a=70, b=140, dst=200, k=m, m_tiles=1, n_tiles=2)

    run(eng, build)
    c1 = fp.pe_matmul(a, b)
    np.testing.assert_array_equal(get(eng, 180, m * n2, np.uint16).reshape(m, n2),
                                  fp.pe_matmul(c1, d))
    np.testing.assert_array_equal(get(eng, 200, TR * n, np.uint16).reshape(TR, n),
                                  fp.pe_matmul(e, c1))


def test_row_major_pitch_and_running_row_max(eng):
    rng = np.random.default_rng(7)
    m, k, n = 4, 4, 2
    a, b1, b2 = bf16(rng, (m, k)), bf16(rng, (k, n)), bf16(rng, (k, n))
    put(eng, 0, a_panel(a))
    put(eng, 10, b_panel(b1))
    put(eng, 12, b_panel(b2))

    def build(p):
        p.matmul(a=0, b=10, dst=20, k=k, dst_pitch=16, rowmax="init", rmax=40)
        p.matmul(a=0, b=12, dst=21, k=k, dst_pitch=16, rowmax="update", rmax=40)

    run(eng, build)
    out = spad(eng)[20 * BEAT:20 * BEAT + 16 * m].view(np.uint16).reshape(m, 8)
    np.testing.assert_array_equal(out[:, :2], fp.pe_matmul(a, b1))
    np.testing.assert_array_equal(out[:, 4:6], fp.pe_matmul(a, b2))
    assert not out[:, 2:4].any() and not out[:, 6:].any()
    both = fp.bf16_to_f32(np.concatenate([out[:, :2], out[:, 4:6]], axis=1))
    np.testing.assert_array_equal(get(eng, 40, m, np.float32), both.max(axis=1))


@pytest.mark.parametrize("fmt", ["int4", "if8", "nvfp4"])
def test_matmul_with_quantized_b(eng, fmt):
    rng = np.random.default_rng(8)
    block = 16 if fmt == "nvfp4" else CFG.quant_block
    m, k, n = 4, 2 * block, 4
    a = bf16(rng, (m, k))
    w = bf16(rng, (n, k))                       # [N, K] weights, blocks along K
    q = quant.quantize(w, fmt, block)
    b_deq = quant.dequantize(q).T               # [K, N] bf16
    bits = quant.element_bits(fmt)
    codes = quant.unpack_nibbles(q.codes) if bits == 4 else q.codes   # [N, K]
    blocks = k // block
    rows = -(-k * C * bits // 8 // BEAT)
    scale_entries = []
    for j in range(n // C):
        tile = codes[j * C:(j + 1) * C].T.reshape(-1)    # k-major, C codes per k
        raw = quant.pack_nibbles(tile) if bits == 4 else tile
        put(eng, 300 + j * rows, raw)
        for kb in range(blocks):
            scale_entries.extend(int(s) for s in q.scales[j * C:(j + 1) * C, kb])
    mem = eng.device.machine.scale
    first = 0
    if fmt == "nvfp4":
        mem[0:4] = np.array([q.tensor_scale], np.float32).view(np.uint8)
        first = 2
    mem[first * 2:(first + len(scale_entries)) * 2] = \
        np.array(scale_entries, np.uint16).view(np.uint8)
    put(eng, 0, a_panel(a))
    run(eng, lambda p: p.matmul(a=0, b=300, dst=500, k=k, n_tiles=n // C, b_fmt=fmt))
    np.testing.assert_array_equal(get(eng, 500, m * n, np.uint16).reshape(m, n),
                                  fp.pe_matmul(a, b_deq))


def test_quantized_k_must_be_whole_blocks(eng):
    with pytest.raises(DeviceError) as err:
        run(eng, lambda p: p.matmul(a=0, b=50, dst=150, k=CFG.quant_block + 1, b_fmt="int4"))
    assert err.value.code is ErrorCode.ILLEGAL_OPERAND


# ----- VECTOR -----------------------------------------------------------------------------


def vec_input(eng, row, x):
    put(eng, row, fp.f32_to_bf16(x))


@pytest.mark.parametrize("op,np_op", [("add", np.add), ("sub", np.subtract),
                                      ("mul", np.multiply), ("max", np.maximum),
                                      ("min", np.minimum)])
@pytest.mark.parametrize("bcast", ["tensor", "row", "col", "scalar"])
def test_vector_binary_ops_match_numpy(eng, op, np_op, bcast):
    rng = np.random.default_rng(9)
    rows, length = 3, 8  # 16 bytes per bf16 row = 2 scratchpad rows, packed
    x = fp.bf16_to_f32(bf16(rng, (rows, length)))
    other = {"tensor": (rows, length), "row": (rows,), "col": (length,), "scalar": ()}[bcast]
    y = fp.bf16_to_f32(bf16(rng, other)) if other else np.float32(0.75)
    put(eng, 0, fp.f32_to_bf16(x))
    if other:
        put(eng, 10, fp.f32_to_bf16(y))
    run(eng, lambda p: p.vector(op, dst=20, src0=0, src1=10, length=length, rows=rows,
                                bcast=bcast, imm=0.75, dst_fmt="fp32"))
    yb = y[:, None] if bcast == "row" else y
    np.testing.assert_array_equal(get(eng, 20, rows * length, np.float32).reshape(rows, length),
                                  np_op(x, yb).astype(np.float32))


def test_vector_unary_transcendentals(eng):
    x = np.array([[-3.5, -1.0, 0.0, 0.25, 1.0, 2.0, 10.0, 0.5]], np.float32)
    pos = np.abs(x) + np.float32(0.5)
    put(eng, 0, x)
    put(eng, 10, pos)

    def build(p):
        p.vector("exp", dst=20, src0=0, length=8, src0_fmt="fp32", dst_fmt="fp32")
        p.vector("recip", dst=30, src0=10, length=8, src0_fmt="fp32", dst_fmt="fp32")
        p.vector("rsqrt", dst=40, src0=10, length=8, src0_fmt="fp32", dst_fmt="fp32")

    run(eng, build)
    np.testing.assert_array_equal(get(eng, 20, 8, np.float32), exp(x).reshape(-1))
    np.testing.assert_array_equal(get(eng, 30, 8, np.float32), reciprocal(pos).reshape(-1))
    np.testing.assert_array_equal(get(eng, 40, 8, np.float32), rsqrt(pos).reshape(-1))
    # and against float64, within the documented bounds (exp 0.57 ulp; the others exact RNE)
    np.testing.assert_allclose(get(eng, 20, 8, np.float32), np.exp(x.astype(np.float64))[0],
                               rtol=2**-23)
    np.testing.assert_array_equal(get(eng, 30, 8, np.float32), (1 / pos.astype(np.float64))
                                  .astype(np.float32)[0])


def test_vector_activate_silu(eng):
    x = np.linspace(-4, 4, 16, dtype=np.float32).reshape(2, 8)
    put(eng, 0, x)
    run(eng, lambda p: (p.epi(5, "unified", a=0.0, b=1.0, c=1.0, d=0.0),
                        p.vector("activate", dst=20, src0=0, length=8, rows=2, epi=5,
                                 src0_fmt="fp32", dst_fmt="fp32")))
    got = get(eng, 20, 16, np.float32).reshape(2, 8)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(got, x64 / (1 + np.exp(-x64)), rtol=4 * 2**-23, atol=1e-7)


def test_vector_reductions(eng):
    rng = np.random.default_rng(10)
    rows, length = 3, 37  # 10 beats of 4 lanes: exercises the interleaved slots
    x = rng.integers(-50, 50, (rows, length)).astype(np.float32)  # sums are exact
    stride = math.ceil(length * 4 / BEAT)  # each row starts on a scratchpad row
    for r in range(rows):
        put(eng, r * stride, x[r])

    def build(p):
        for op, dst in (("rsum", 100), ("rmax", 110), ("rsumsq", 120)):
            p.vector(op, dst=dst, src0=0, length=length, rows=rows, src0_stride=stride,
                     src0_fmt="fp32", dst_fmt="fp32")
        p.vector("rsum", dst=100, src0=0, length=length, rows=rows, src0_stride=stride,
                 src0_fmt="fp32", dst_fmt="fp32", accumulate=True)
        p.vector("argmax4", dst=130, src0=0, length=length, rows=rows, src0_stride=stride,
                 src0_fmt="fp32")

    run(eng, build)
    np.testing.assert_array_equal(get(eng, 100, rows, np.float32), 2 * x.sum(axis=1))
    np.testing.assert_array_equal(get(eng, 110, rows, np.float32), x.max(axis=1))
    np.testing.assert_array_equal(get(eng, 120, rows, np.float32), (x * x).sum(axis=1))
    top = get(eng, 130, rows * 8, np.uint32).reshape(rows, 8)
    for r in range(rows):
        order = sorted(range(length), key=lambda i: (-x[r, i], i))[:4]
        assert list(top[r, :4]) == order
        np.testing.assert_array_equal(top[r, 4:].view(np.float32), x[r, order])


def test_vector_rounding_sum_is_close_to_float64(eng):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    put(eng, 0, x)
    run(eng, lambda p: p.vector("rsum", dst=100, src0=0, length=64, rows=2, src0_fmt="fp32",
                                dst_fmt="fp32"))
    got = get(eng, 100, 2, np.float32).astype(np.float64)
    ref = x.astype(np.float64).sum(axis=1)
    # 16 beat partials and 4 slots: well within 64 half-ulps of the largest partial
    assert np.all(np.abs(got - ref) <= 64 * 2**-24 * np.abs(x).sum(axis=1))


def test_vector_transpose_copy_fill(eng):
    rng = np.random.default_rng(12)
    x = bf16(rng, (3, 5))
    put(eng, 0, x[0])
    put(eng, 2, x[1])
    put(eng, 4, x[2])

    def build(p):
        p.vector("transpose", dst=20, src0=0, length=5, rows=3, src0_stride=2, dst_stride=1)
        p.vector("copy", dst=40, src0=0, length=5, rows=3, src0_stride=2, dst_fmt="fp32")
        p.vector("fill", dst=60, length=4, rows=1, imm=-2.5)

    run(eng, build)
    t = spad(eng)[20 * BEAT:25 * BEAT].view(np.uint16).reshape(5, 4)[:, :3]
    np.testing.assert_array_equal(t, x.T)
    # fp32 rows of 20 bytes are packed on 3-row (24-byte) boundaries
    copied = spad(eng)[40 * BEAT:49 * BEAT].view(np.float32).reshape(3, 6)[:, :5]
    np.testing.assert_array_equal(copied, fp.bf16_to_f32(x))
    np.testing.assert_array_equal(get(eng, 60, 4, np.uint16), [0xC020] * 4)


@pytest.mark.parametrize("fmt", ["int4", "fp8", "nvfp4"])
def test_vector_quantize_dequantize_matches_host_codec(eng, fmt):
    rng = np.random.default_rng(13)
    block = 16 if fmt == "nvfp4" else CFG.quant_block
    x = bf16(rng, (2, 2 * block))
    q = quant.quantize(x, fmt, block)
    ts = float(q.tensor_scale) if fmt == "nvfp4" else 0.0
    put(eng, 0, x)

    def build(p):
        p.vector("quantize", dst=100, src0=0, length=2 * block, rows=2, qfmt=fmt, qscale=8,
                 imm=ts)
        p.vector("dequantize", dst=200, src0=100, length=2 * block, rows=2, qfmt=fmt,
                 qscale=8, imm=ts)

    run(eng, build)
    bits = quant.element_bits(fmt)
    code_rows = -(-2 * block * bits // 8 // BEAT)
    codes = spad(eng)[100 * BEAT:(100 + 2 * code_rows) * BEAT].reshape(2, -1)
    np.testing.assert_array_equal(codes[:, :q.codes.shape[1]], q.codes)
    out = spad(eng)[200 * BEAT:200 * BEAT + x.nbytes].view(np.uint16).reshape(x.shape)
    np.testing.assert_array_equal(out, quant.dequantize(q))


def test_vector_illegal_operands(eng):
    with pytest.raises(DeviceError) as err:
        run(eng, lambda p: p.vector("add", dst=0, length=4, accumulate=True))
    assert err.value.code is ErrorCode.ILLEGAL_OPERAND
    with pytest.raises(DeviceError) as err:
        run(eng, lambda p: p.vector("quantize", dst=0, length=CFG.quant_block + 1, qfmt="int4"))
    assert err.value.code is ErrorCode.ILLEGAL_OPERAND
