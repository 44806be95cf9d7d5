"""Block-quantized weight formats: golden models vs independent exact references.

References: ``ml_dtypes`` code tables, exact ``Fraction`` arithmetic with brute-force nearest
grid search (``quant_reference.py``), hand-derived RNE tie tables, and float64 error bounds.
"""

from __future__ import annotations

import struct
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from unified_engine.config import FORMATS, EngineConfig
from unified_engine.numerics import quant_blocks as qb
from unified_engine.numerics.fp import bf16_to_f32, f32_to_bf16
from unified_engine.numerics.quant import (
    DEFAULT_BLOCK,
    QUANT_FORMATS,
    QuantizedTensor,
    dequantize,
    pack_nibbles,
    quantize,
    unpack_nibbles,
)
from unified_engine.numerics.quant_grids import FP4_E2M1, FP8_E4M3, INT4, INT8
from unified_engine.numerics.quant_snr import snr_db

from .quant_reference import (
    GRIDS,
    bf16_bits,
    bf16_value,
    f32_value,
    ref_decode_scaled,
    ref_encode_scaled,
    ref_metric,
    rne,
)

SCALED = {  # format -> (encode, decode, reference grid name)
    "int4": (qb.encode_int4, qb.decode_int4, "int4"),
    "fp4": (qb.encode_fp4, qb.decode_fp4, "fp4"),
    "int8": (qb.encode_int8, qb.decode_int8, "int8"),
    "fp8": (qb.encode_fp8, qb.decode_fp8, "fp8"),
}
IF_PAIRS = {"if4": ("int4", "fp4"), "if8": ("int8", "fp8")}


def bf16(values) -> np.ndarray:
    """float → bf16 bits through ml_dtypes (independent RNE cast)."""
    return np.asarray(values, np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def as_float(bits) -> np.ndarray:
    return np.asarray(bits, np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)


def random_blocks(rng, blocks: int, size: int) -> np.ndarray:
    """bf16 blocks of Gaussian / Student-t values at random magnitudes, some with outliers."""
    data = rng.standard_normal((blocks, size))
    data[::3] = rng.standard_t(2.0, (len(data[::3]), size))
    data *= 2.0 ** rng.integers(-40, 40, (blocks, 1))
    tiny = rng.random((blocks, size)) < 0.05  # far below the block's absmax: code 0 / subnormals
    data[tiny] *= 2.0**-12
    return bf16(data)


def tie_blocks(grid_name: str, size: int) -> np.ndarray:
    """Blocks whose absmax pins the scale to 2^e or 1.5·2^e, holding ±midpoint·scale values."""
    grid = GRIDS[grid_name]
    mids = [(a + b) / 2 for a, b in zip(grid.magnitudes, grid.magnitudes[1:], strict=False)]
    rows = []
    for exp in (-20, 0, 7):
        for mult in (Fraction(1), Fraction(3, 2)):
            scale = mult * Fraction(2) ** exp
            top = grid.max * scale
            if top != rne(top, 8):  # 127 · 1.5 needs 9 bits
                continue
            ties = [m * scale for m in mids]
            ties = [t for t in ties if t == rne(t, 8)]  # keep bf16-representable ties
            values = [top, *ties]
            values += [-v for v in values]
            row = [bf16_bits(v) for v in values]
            for start in range(0, len(row), size - 1):
                chunk = [bf16_bits(top), *row[start : start + size - 1]]
                chunk += [0] * (size - len(chunk))
                rows.append(chunk)
    return np.array(rows, np.uint16)


# ----- names, constants, decode tables -------------------------------------------------------


def test_format_names_come_from_config():
    assert tuple(f for f in FORMATS if f != "bf16") == QUANT_FORMATS
    assert EngineConfig().quant_block == DEFAULT_BLOCK


@pytest.mark.parametrize("elem, maximum", [(INT4, 7), (FP4_E2M1, 6), (INT8, 127), (FP8_E4M3, 448)])
def test_scale_reciprocal_is_rne_of_exact_quotient(elem, maximum):
    got = qb.scale_reciprocal(elem)
    assert got.dtype == np.float32
    assert f32_value(got) == rne(Fraction(1, maximum), 24)


def test_decode_tables_match_ml_dtypes():
    codes4 = np.arange(16, dtype=np.uint8)
    codes8 = np.arange(256, dtype=np.uint8)
    fp4 = codes4.view(ml_dtypes.float4_e2m1fn).astype(np.float64)
    np.testing.assert_array_equal(FP4_E2M1.values(codes4), fp4)
    np.testing.assert_array_equal(np.signbit(FP4_E2M1.values(codes4)), np.signbit(fp4))
    int4 = codes4.astype(ml_dtypes.int4).astype(np.float64)  # the uint8 → int4 cast wraps
    np.testing.assert_array_equal(INT4.values(codes4), int4)
    fp8 = codes8.view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    np.testing.assert_array_equal(FP8_E4M3.values(codes8), fp8)  # NaN codes 0x7F/0xFF agree
    np.testing.assert_array_equal(np.signbit(FP8_E4M3.values(codes8)), np.signbit(fp8))
    np.testing.assert_array_equal(INT8.values(codes8), codes8.view(np.int8))
    assert FP8_E4M3.max_value == float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max)


def test_ml_dtypes_cast_traps_the_encoder_avoids():
    """Why the encoder rounds on its own grids instead of casting (documented traps)."""
    fp4 = np.array([7.0, 100.0, np.inf, np.nan], np.float64).astype(ml_dtypes.float4_e2m1fn)
    assert list(fp4.view(np.uint8)) == [0x7, 0x7, 0x7, 0x8]  # saturates; NaN → -0
    e4m3 = np.array([464.0, 465.0, np.inf], np.float64).astype(ml_dtypes.float8_e4m3fn)
    assert list(e4m3.view(np.uint8)) == [0x7E, 0x7F, 0x7F]  # just past the tie → NaN
    wrapped = np.array([9, 100], np.int64).astype(ml_dtypes.int4).astype(np.int64)
    assert list(wrapped) == [-7, 4]  # int4 wraps
    # The encoder clamps instead: the largest magnitude, never NaN, never a wrapped value.
    assert list(FP8_E4M3.round_magnitude(np.array([464.0, 465.0, 1e30]))) == [0x7E] * 3
    assert list(INT4.round_magnitude(np.array([9.0, 100.0]))) == [7, 7]
    assert list(INT4.compose(np.array([7]), np.array([True]))) == [0x9]  # -7, never -8


# ----- element rounding: ties, clamping, signs -----------------------------------------------


@pytest.mark.parametrize(
    "elem, q, expected",
    [
        # RNE on the E2M1 grid {0, .5, 1, 1.5, 2, 3, 4, 6}: ties go to the even mantissa.
        (FP4_E2M1, [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.9, 1e9], [0, 2, 2, 4, 4, 6, 6, 7, 7]),
        (FP4_E2M1, [0.2500001, 0.7499999, 4.9999999, 5.0000001], [1, 1, 6, 7]),
        # Integers: half-integers go to the even integer; clamp at 7 / 127.
        (INT4, [0.5, 1.5, 2.5, 3.5, 6.5, 7.49, 8.0], [0, 2, 2, 4, 6, 7, 7]),
        (INT8, [0.5, 125.5, 126.5, 127.4, 300.0], [0, 126, 126, 127, 127]),
        # E4M3: subnormal step 2^-9 (ties 2^-10 → 0, 3·2^-10 → code 2); 1.0625 is the tie of
        # 1.0 (0x38) and 1.125; 400 of 384 (0x7C) and 416 (0x7D); 432 of 416 and 448 (0x7E).
        (
            FP8_E4M3,
            [2.0**-10, 3 * 2.0**-10, 1.0625, 400.0, 432.0, 440.0],
            [0, 2, 0x38, 0x7C, 0x7E, 0x7E],
        ),
    ],
)
def test_round_magnitude_hand_table(elem, q, expected):
    assert list(elem.round_magnitude(np.array(q, np.float64))) == expected


@pytest.mark.parametrize("fmt", sorted(SCALED))
def test_encode_matches_brute_force_reference(fmt):
    encode, _, grid_name = SCALED[fmt]
    grid = GRIDS[grid_name]
    rng = np.random.default_rng(sum(map(ord, fmt)))
    size = 16
    count = 60 if grid.bits == 4 else 16  # the FP8 brute force checks 127 candidates/element
    x = np.concatenate([random_blocks(rng, count, size), tie_blocks(grid_name, size)])
    codes, scales = encode(x)
    assert codes.dtype == np.uint8 and codes.shape == x.shape
    assert scales.dtype == np.uint16 and scales.shape == x.shape[:1]
    for i, block in enumerate(x):
        ref_codes, ref_scale = ref_encode_scaled(block, grid)
        assert int(scales[i]) == ref_scale, (fmt, i)
        assert [int(c) for c in codes[i]] == ref_codes, (fmt, i, block)


@pytest.mark.parametrize("fmt", sorted(SCALED))
def test_tie_blocks_really_hit_ties(fmt):
    """The tie generator puts values exactly on midpoints, and they round to even codes."""
    encode, _, grid_name = SCALED[fmt]
    grid = GRIDS[grid_name]
    x = tie_blocks(grid_name, 16)
    codes, scales = encode(x)
    ties = 0
    for block, block_codes, scale_bits in zip(x, codes, scales, strict=True):
        scale = bf16_value(int(scale_bits) & 0x7FFF)
        for b, c in zip(block, block_codes, strict=True):
            q = abs(bf16_value(int(b))) / scale
            below = [g for g in grid.magnitudes if g < q]
            above = [g for g in grid.magnitudes if g > q]
            if below and above and q - below[-1] == above[0] - q:
                ties += 1
                magnitude = grid.magnitudes.index(abs(grid.code_values[int(c)]))
                assert magnitude % 2 == 0 and magnitude in (len(below) - 1, len(below))
    assert ties >= 2 * (len(grid.magnitudes) - 1)


@pytest.mark.parametrize("fmt", ["fp4", "fp8", "int4", "int8"])
def test_encode_agrees_with_ml_dtypes_cast_where_safe(fmt):
    """In range, our codes equal ml_dtypes' RNE cast of the quotient (clamped first)."""
    encode, _, _ = SCALED[fmt]
    x = random_blocks(np.random.default_rng(7), 200, 64)
    codes, scales = encode(x)
    scale = np.abs(as_float(scales & 0x7FFF))[:, None]
    values = as_float(x)
    values[np.abs(values) < 2.0**-126] *= 0.0  # FTZ, keeping the sign of zero
    quotient = values / scale
    if fmt == "fp4":
        expect = np.clip(quotient, -6, 6).astype(ml_dtypes.float4_e2m1fn).view(np.uint8)
    elif fmt == "fp8":
        expect = np.clip(quotient, -448, 448).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    else:
        top = 7 if fmt == "int4" else 127
        ints = np.clip(np.rint(quotient), -top, top).astype(np.int64)
        expect = (ints & ((1 << (4 if fmt == "int4" else 8)) - 1)).astype(np.uint8)
    np.testing.assert_array_equal(codes, expect)


@pytest.mark.parametrize("fmt", sorted(SCALED))
def test_clamping_and_sign_conventions(fmt):
    encode, decode, grid_name = SCALED[fmt]
    grid = GRIDS[grid_name]
    # absmax / bf16(absmax/max) > max for these absmax values: the encoder must clamp.
    found = 0
    for top_bits in range(0x3F80, 0x4000):
        top = bf16_value(top_bits)
        scale = rne(rne(top * rne(1 / grid.max, 24), 24), 8)
        if top / scale <= grid.max:
            continue
        found += 1
        block = np.array([[top_bits, top_bits | 0x8000] + [0] * 14], np.uint16)
        codes, scales = encode(block)
        top_code = len(grid.magnitudes) - 1
        assert int(codes[0, 0]) == top_code
        assert int(codes[0, 1]) == grid.compose(top_code, True)  # -7 = 0x9, never 0x8 for INT4
        assert (int(scales[0]) & 0x8000 != 0) == grid.twos  # INT blocks carry the sign flag
    assert found > 0
    # Negative zero inside a live block: FP keeps the sign (decodes to -0), INT has no -0.
    block = np.array([[bf16_bits(Fraction(1)), 0x8000] + [0] * 14], np.uint16)
    codes, scales = encode(block)
    decoded = decode(codes, scales)
    if grid.twos:
        assert int(codes[0, 1]) == 0 and int(decoded[0, 1]) == 0x0000
    else:
        assert int(codes[0, 1]) == 1 << (grid.bits - 1) and int(decoded[0, 1]) == 0x8000


# ----- decode ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(SCALED))
def test_decode_matches_exact_reference_for_every_code(fmt):
    _, decode, grid_name = SCALED[fmt]
    grid = GRIDS[grid_name]
    codes = np.arange(1 << grid.bits, dtype=np.uint8)
    finite = [c for c in codes if grid.code_values[c] is not None]
    rng = np.random.default_rng(3)
    scale_bits = [0x3F80, 0x0080, 0x7F00, 0xBE2B, 0x0000, 0x8000]
    scale_bits += [int(b) for b in rng.integers(0x0080, 0x7F00, 10)]
    for s in scale_bits:
        block = np.array(finite, np.uint8)
        got = decode(block[None, :], np.array([s], np.uint16))[0]
        want = ref_decode_scaled(block, s, grid)
        assert [int(v) for v in got] == want, (fmt, hex(s))
    if not grid.twos and grid.bits == 8:  # FP8 NaN codes decode to the canonical NaN
        got = decode(np.array([[0x7F, 0xFF]], np.uint8), np.array([0x3F80], np.uint16))
        assert list(got[0]) == [0x7FC0, 0x7FC0]


def test_int_and_fp_tensors_are_valid_if_tensors():
    x = random_blocks(np.random.default_rng(11), 50, 64)
    for int_fmt, fp_fmt, if_decode in (
        ("int4", "fp4", qb.decode_if4),
        ("int8", "fp8", qb.decode_if8),
    ):
        for fmt in (int_fmt, fp_fmt):
            encode, decode, _ = SCALED[fmt]
            codes, scales = encode(x)
            np.testing.assert_array_equal(if_decode(codes, scales), decode(codes, scales))


# ----- IF4 / IF8 --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["if4", "if8"])
def test_if_selection_matches_reference_metric(fmt):
    int_fmt, fp_fmt = IF_PAIRS[fmt]
    encode = qb.encode_if4 if fmt == "if4" else qb.encode_if8
    rng = np.random.default_rng(5)
    x = random_blocks(rng, 24 if fmt == "if4" else 10, 64)
    x = np.concatenate([x, np.zeros((1, 64), np.uint16)])
    codes, scales = encode(x)
    for i, block in enumerate(x):
        errors = {}
        for name in (int_fmt, fp_fmt):
            ref_codes, ref_scale = ref_encode_scaled(block, GRIDS[name])
            decoded = ref_decode_scaled(ref_codes, ref_scale, GRIDS[name])
            errors[name] = (ref_metric(block, decoded), ref_codes, ref_scale)
        pick = fp_fmt if errors[fp_fmt][0] < errors[int_fmt][0] else int_fmt
        assert int(scales[i]) == errors[pick][2], (fmt, i)
        assert [int(c) for c in codes[i]] == errors[pick][1], (fmt, i)


def test_if_metric_matches_reference_and_pads():
    rng = np.random.default_rng(9)
    for size in (1, 3, 16, 20, 64):
        x = random_blocks(rng, 4, size)
        xhat = random_blocks(rng, 4, size)
        xhat[:, ::2] = x[:, ::2]  # some exact zeros in d
        got = qb.if_metric(x, xhat)
        assert got.dtype == np.float32 and got.shape == (4,)
        for i in range(4):
            assert f32_value(got[i]) == ref_metric(x[i], xhat[i]), (size, i)


def test_if_zero_block_and_tie_pick_int():
    codes, scales = qb.encode_if4(np.array([[0x8000] * 16, [0] * 16], np.uint16))
    assert list(scales) == [0x8000, 0x8000] and not codes.any()
    # Both formats reconstruct [42, 0, …] exactly (INT4: 7 × scale 6; FP4: 6 × scale 7), so
    # both errors are 0: a tie.
    block = np.array([[bf16_bits(Fraction(42))] + [0] * 15], np.uint16)
    codes, scales = qb.encode_if4(block)
    assert int(scales[0]) & 0x8000  # tie (both errors 0) → INT4


@pytest.mark.parametrize("fmt", ["if4", "if8"])
def test_if_never_worse_than_best_of_both(fmt):
    int_fmt, fp_fmt = IF_PAIRS[fmt]
    rng = np.random.default_rng(13)
    block = 64
    w = rng.standard_normal((64, 1024))
    w[32:] = rng.standard_t(3.0, (32, 1024))
    bits = f32_to_bf16(w.astype(np.float32))
    x = bf16_to_f32(bits).astype(np.float64).reshape(64, -1, block)

    def per_block(name):
        q = quantize(bits, name, block)
        decoded = q.dequantize()
        xhat = bf16_to_f32(decoded).astype(np.float64).reshape(x.shape)
        metric = qb.if_metric(bits.reshape(x.shape), decoded.reshape(x.shape))
        return ((x - xhat) ** 2).sum(-1), metric

    mse_if, metric_if = per_block(fmt)
    mse_int, metric_int = per_block(int_fmt)
    mse_fp, metric_fp = per_block(fp_fmt)
    # Under the defined metric IF is exactly the better of the two (it *is* the min).
    np.testing.assert_array_equal(metric_if, np.minimum(metric_int, metric_fp))
    assert np.all((mse_if == mse_int) | (mse_if == mse_fp))  # IF reuses one of the encodings
    # Under float64 MSE: the fp32 metric is Σd² with one rounding per square and log2(B)
    # rounded additions, so metric = S·(1 ± δ) with δ = (log2 B + 1)·2^-24 (d itself is exact:
    # x and xhat are bf16 within a factor 2 of each other, or xhat = 0). IF can pick the
    # float64-worse format only if S_pick·(1-δ) ≤ S_other·(1+δ).
    delta = (np.log2(block) + 1) * 2.0**-24
    best = np.minimum(mse_int, mse_fp)
    assert np.all(mse_if <= best * (1 + delta) / (1 - delta))
    chosen_fp = (quantize(bits, fmt, block).scales & 0x8000) == 0
    assert 0 < chosen_fp.mean() < 1  # both branches are exercised


# ----- zero, tiny and non-finite blocks ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["int4", "fp4", "if4", "int8", "fp8", "if8"])
def test_zero_and_underflow_blocks(fmt):
    encode = getattr(qb, f"encode_{fmt}")
    decode = getattr(qb, f"decode_{fmt}")
    int_flag = fmt.startswith("int") or fmt.startswith("if")  # IF: tie → INT
    blocks = np.array(
        [
            [0x0000] * 16,  # +0
            [0x8000] * 16,  # -0
            [0x0001, 0x807F] + [0] * 14,  # subnormals: read as ±0
            [0x0100, 0x8100] + [0] * 14,  # 2^-125: absmax·(1/max) underflows → zero scale
        ],
        np.uint16,
    )
    codes, scales = encode(blocks)
    assert not codes.any()
    assert list(scales) == [0x8000 if int_flag else 0x0000] * 4
    assert not decode(codes, scales).any()  # decodes to +0 everywhere


@pytest.mark.parametrize("fmt", ["int4", "fp4", "if4", "int8", "fp8", "if8"])
def test_nonfinite_blocks_encode_to_nan_scale(fmt):
    encode = getattr(qb, f"encode_{fmt}")
    decode = getattr(qb, f"decode_{fmt}")
    finite = bf16(np.linspace(-3, 3, 16))
    blocks = np.stack([finite, finite, finite, finite])
    blocks[0, 3] = 0x7FC0  # NaN
    blocks[1, 0] = 0xFF80  # -Inf
    blocks[2, 15] = 0x7F81  # signalling-NaN pattern
    codes, scales = encode(blocks)
    nan_scale = 0x7FC0 if fmt in ("fp4", "fp8") else 0xFFC0
    assert list(scales[:3]) == [nan_scale] * 3
    assert not codes[:3].any()
    decoded = decode(codes, scales)
    assert (decoded[:3] == 0x7FC0).all()
    good_codes, good_scales = encode(finite[None])
    np.testing.assert_array_equal(codes[3], good_codes[0])  # other blocks unaffected
    assert scales[3] == good_scales[0]


def test_largest_bf16_decodes_to_inf_documented_corner():
    """The one finite absmax whose top code decodes to Inf is bf16 max (0x7F7F); FP4 is safe."""
    tops = np.arange(0x7F00, 0x7F80, dtype=np.uint16)
    for fmt in sorted(SCALED):
        encode, decode, _ = SCALED[fmt]
        block = np.zeros((len(tops), 16), np.uint16)
        block[:, 0] = tops
        decoded = decode(*encode(block))[:, 0]
        overflowed = [hex(t) for t, d in zip(tops, decoded, strict=True) if d == 0x7F80]
        assert overflowed == ([] if fmt == "fp4" else ["0x7f7f"]), fmt


# ----- NVFP4 ------------------------------------------------------------------------------------


def ref_nvfp4(bits: np.ndarray):
    """Reference NVFP4 encoder of a finite [N, K] bf16 tensor with exact Fractions."""
    values = [[bf16_value(int(b)) for b in row] for row in bits]
    amax = max(abs(v) for row in values for v in row)
    if amax == 0:
        ts = Fraction(1)
    else:
        ts = rne(amax / 2688, 24)
        if ts < Fraction(1, 2**126):
            ts = Fraction(1, 2**126)
    e4m3, fp4 = GRIDS["fp8"], GRIDS["fp4"]
    codes, scales = [], []
    for row_bits, row in zip(bits, values, strict=True):
        row_codes, row_scales = [], []
        for start in range(0, len(row), 16):
            block = row[start : start + 16]
            bs_code = e4m3.nearest(max(abs(v) for v in block) / (6 * ts))
            bs = e4m3.magnitudes[bs_code]
            row_scales.append(bs_code)
            for b, v in zip(row_bits[start : start + 16], block, strict=True):
                if bs == 0:
                    row_codes.append(0)
                else:
                    row_codes.append(fp4.compose(fp4.nearest(abs(v) / (bs * ts)), bool(b & 0x8000)))
        codes.append(row_codes)
        scales.append(row_scales)
    return codes, scales, ts


@pytest.mark.parametrize("exponent", [-130, -100, 0, 60])
def test_nvfp4_matches_reference(exponent):
    rng = np.random.default_rng(exponent + 200)
    w = rng.standard_t(3.0, (4, 64)) * 2.0**exponent
    w[1, :16] *= 2.0**-30  # a block whose scale lands in E4M3's subnormals or underflows
    w[2, 16:32] = 0.0
    bits = bf16(w) if exponent > -126 else np.where(rng.random((4, 64)) < 0.5, 0x0080, 0x8100)
    bits = bits.astype(np.uint16)
    q = quantize(bits, "nvfp4", DEFAULT_BLOCK)
    ref_codes, ref_scales, ts = ref_nvfp4(bits)
    assert q.block == 16 and q.scales.dtype == np.uint8
    assert f32_value(q.tensor_scale) == ts
    np.testing.assert_array_equal(q.scales, np.array(ref_scales, np.uint8))
    np.testing.assert_array_equal(q.unpacked_codes(), np.array(ref_codes, np.uint8))
    # decode: bf16(fp32(e2m1 · e4m3 · ts)) exactly
    fp4, e4m3 = GRIDS["fp4"], GRIDS["fp8"]
    decoded = q.dequantize()
    for r in range(4):
        for k in range(64):
            code = ref_codes[r][k]
            value = fp4.code_values[code] * e4m3.code_values[ref_scales[r][k // 16]]
            want = rne(rne(value * ts, 24), 8)
            assert bf16_value(int(decoded[r, k])) == want
            if want == 0:
                assert (int(decoded[r, k]) == 0x8000) == bool(code & 0x8)


def test_nvfp4_exact_ties():
    """amax = 2688·2^-3 pins tensor_scale to 2^-3; blocks then tie on E4M3 and E2M1 midpoints."""
    e4m3, fp4 = GRIDS["fp8"], GRIDS["fp4"]
    ts = Fraction(1, 8)
    mids = [(a + b) / 2 for a, b in zip(e4m3.magnitudes, e4m3.magnitudes[1:], strict=False)]
    fp4_mids = [(a + b) / 2 for a, b in zip(fp4.magnitudes, fp4.magnitudes[1:], strict=False)]
    rows = []
    for mid in mids[::3]:
        block_amax = 6 * mid * ts
        bs = e4m3.magnitudes[e4m3.nearest(mid)]
        elements = [block_amax] + [m * bs * ts for m in fp4_mids if m * bs * ts < block_amax]
        elements += [-e for e in elements[1:]]
        elements = [e for e in elements if e == rne(e, 8) and abs(e) >= Fraction(1, 2**126)]
        rows.append([bf16_bits(e) for e in elements][:16] + [0] * (16 - len(elements[:16])))
    rows[0][1] = bf16_bits(Fraction(2688) * ts)  # the tensor amax
    bits = np.array(rows, np.uint16).reshape(-1, 32)
    q = quantize(bits, "nvfp4")
    assert f32_value(q.tensor_scale) == ts
    ref_codes, ref_scales, _ = ref_nvfp4(bits)
    np.testing.assert_array_equal(q.scales, np.array(ref_scales, np.uint8))
    np.testing.assert_array_equal(q.unpacked_codes(), np.array(ref_codes, np.uint8))
    # The scales really were ties, and went to even E4M3 codes.
    assert all(code % 2 == 0 for code in q.scales.ravel()[1:])
    assert len(rows) > 30


def test_nvfp4_corners():
    zero = quantize(np.zeros((2, 32), np.uint16), "nvfp4")
    assert zero.tensor_scale == np.float32(1.0) and not zero.scales.any()
    assert not zero.codes.any() and not zero.dequantize().any()
    # Non-finite block at the bit level: E4M3 NaN scale, zero codes, decodes to NaN.
    block = bf16(np.linspace(-1, 1, 16))[None].copy()
    block[0, 5] = 0x7F80
    codes, scales = qb.encode_nvfp4(block, np.float32(0.25))
    assert list(scales) == [qb.NVFP4_E4M3_NAN] and not codes.any()
    assert (qb.decode_nvfp4(codes, scales, np.float32(0.25)) == 0x7FC0).all()
    with pytest.raises(ValueError, match="16 elements"):
        qb.encode_nvfp4(np.zeros((1, 32), np.uint16), np.float32(1))
    with pytest.raises(ValueError, match="positive, finite, normal"):
        qb.encode_nvfp4(np.zeros((1, 16), np.uint16), np.float32(0))
    with pytest.raises(TypeError, match="float32 scalar"):
        qb.encode_nvfp4(np.zeros((1, 16), np.uint16), 1.0)
    with pytest.raises(ValueError, match="NaN or ±Inf"):
        qb.nvfp4_tensor_scale(np.array([0x7F80], np.uint16))


# ----- host quantize / dequantize and round trips ---------------------------------------------


def grid_step_bound(fmt_grid, magnitude_code: np.ndarray) -> np.ndarray:
    """Half of the larger gap next to each chosen grid value (the RNE error bound on the grid)."""
    mags = np.array([float(m) for m in fmt_grid.magnitudes])
    gaps = np.diff(mags)
    below = np.concatenate([[gaps[0]], gaps])[magnitude_code]
    above = np.concatenate([gaps, [gaps[-1]]])[magnitude_code]
    return np.maximum(below, above) / 2


@pytest.mark.parametrize("fmt", QUANT_FORMATS)
def test_round_trip_error_bound(fmt):
    rng = np.random.default_rng(21)
    # Rows at different magnitudes; NVFP4's E4M3 block scales span only ~2^17 below the
    # tensor's amax (smaller blocks lose precision by design), so its rows stay within 2^±4.
    spread = 4 if fmt == "nvfp4" else 20
    w = rng.standard_normal((16, 256)) * 2.0 ** rng.integers(-spread, spread, (16, 1))
    bits = f32_to_bf16(w.astype(np.float32))
    q = quantize(bits, fmt)
    x = as_float(bits)
    xhat = as_float(dequantize(q))
    codes = q.unpacked_codes().astype(np.int64)
    reps = np.repeat(np.arange(q.scales.shape[1]), q.block)
    if fmt == "nvfp4":
        scale = FP8_E4M3.values(q.scales)[:, reps] * float(q.tensor_scale)
        is_int = np.zeros(x.shape, bool)
    else:
        scale = np.abs(as_float(q.scales & 0x7FFF))[:, reps]
        is_int = (q.scales[:, reps] & 0x8000) != 0
    int_grid = GRIDS["int8" if fmt in ("int8", "fp8", "if8") else "int4"]
    fp_grid = GRIDS["fp8" if fmt in ("int8", "fp8", "if8") else "fp4"]
    int_mag = np.abs(
        np.where(codes >= 1 << (int_grid.bits - 1), codes - (1 << int_grid.bits), codes)
    )
    fp_mag = codes & ((1 << (fp_grid.bits - 1)) - 1)
    step = np.where(
        is_int,
        grid_step_bound(int_grid, np.minimum(int_mag, len(int_grid.magnitudes) - 1)),
        grid_step_bound(fp_grid, np.minimum(fp_mag, len(fp_grid.magnitudes) - 1)),
    )
    # RNE on the grid (clamped values stay within half the top gap, see the docs), then the
    # fp32 product rounding (2^-24) and the bf16 output rounding (half an ulp ≤ 2^-8·|x̂|).
    bound = step * scale + (2.0**-8 + 2.0**-23) * np.abs(xhat) + 2.0**-126
    assert np.all(np.abs(x - xhat) <= bound)


@pytest.mark.parametrize("fmt", QUANT_FORMATS)
def test_pack_round_trip_and_sizes(fmt):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 128)).astype(np.float32)
    q = quantize(w, fmt, 32)
    bits_per = 4 if fmt in ("int4", "fp4", "if4", "nvfp4") else 8
    block = 16 if fmt == "nvfp4" else 32
    scale_bytes = 1 if fmt == "nvfp4" else 2
    expect = 3 * 128 * bits_per // 8 + 3 * (128 // block) * scale_bytes + 4 * (fmt == "nvfp4")
    assert q.nbytes == expect and len(q.to_bytes()) == expect
    assert q.bits_per_weight == pytest.approx(8 * expect / (3 * 128))
    back = QuantizedTensor.from_bytes(q.to_bytes(), fmt, (3, 128), 32)
    np.testing.assert_array_equal(back.codes, q.codes)
    np.testing.assert_array_equal(back.scales, q.scales)
    np.testing.assert_array_equal(back.dequantize(), q.dequantize())
    assert back.to_bytes() == q.to_bytes()
    with pytest.raises(ValueError, match="needs exactly"):
        QuantizedTensor.from_bytes(q.to_bytes()[:-1], fmt, (3, 128), 32)


def test_bits_per_weight_at_default_block():
    w = np.zeros((8, 256), np.uint16)
    assert quantize(w, "if4").bits_per_weight == 4.25
    assert quantize(w, "int8").bits_per_weight == 8.25
    assert quantize(w, "nvfp4").bits_per_weight == 4.5 + 32 / (8 * 256)


def test_byte_layout_explicit():
    # Row 0: codes 1..16 then 0s; nibble order puts even k in the low nibble.
    assert list(pack_nibbles(np.array([1, 2, 3, 4], np.uint8))) == [0x21, 0x43]
    np.testing.assert_array_equal(unpack_nibbles(np.array([0x21, 0x43], np.uint8)), [1, 2, 3, 4])
    w = np.zeros((2, 32), np.uint16)
    w[0, :7] = bf16([7, -7, 1, -1, 0, 3, -3])
    w[1, 16] = bf16([-14])[0]
    q = quantize(w, "int4", 16)
    # scales: bf16(7·fp32(1/7)) = 1.0 (0x3F80) with the INT flag; -14 → scale 2.0 (0x4000)
    expect_codes = bytes([0x97, 0xF1, 0x30, 0x0D] + [0] * 12 + [0] * 8 + [0x09] + [0] * 7)
    expect_scales = struct.pack("<4H", 0xBF80, 0x8000, 0x8000, 0xC000)
    assert q.to_bytes() == expect_codes + expect_scales
    nv = quantize(w, "nvfp4")
    raw = nv.to_bytes()
    assert raw[-4:] == struct.pack("<f", float(nv.tensor_scale))
    assert raw[32:36] == bytes(nv.scales.ravel())


def test_host_input_conversion():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((4, 64))
    via_ml_dtypes = bf16(w.astype(np.float32))
    for given in (w, w.astype(np.float32), via_ml_dtypes, via_ml_dtypes.view(ml_dtypes.bfloat16)):
        q = quantize(given, "if4")
        np.testing.assert_array_equal(q.dequantize(), quantize(via_ml_dtypes, "if4").dequantize())


# ----- errors -----------------------------------------------------------------------------------


def test_host_errors_are_specific():
    good = np.zeros((2, 64), np.float32)
    with pytest.raises(ValueError, match="K=48 is not a multiple of the int4 block size 64"):
        quantize(np.zeros((2, 48), np.float32), "int4")
    with pytest.raises(ValueError, match="K=40 is not a multiple of the nvfp4 block size 16"):
        quantize(np.zeros((2, 40), np.float32), "nvfp4")
    with pytest.raises(ValueError, match="2-D"):
        quantize(np.zeros(64, np.float32), "int4")
    with pytest.raises(ValueError, match="2-D"):
        quantize(np.zeros((2, 2, 64), np.float32), "int4")
    with pytest.raises(TypeError, match="dtype int32"):
        quantize(np.zeros((2, 64), np.int32), "int4")
    with pytest.raises(ValueError, match="unknown quantized format 'int3'"):
        quantize(good, "int3")
    with pytest.raises(ValueError, match="unknown quantized format 'bf16'"):
        quantize(good, "bf16")
    with pytest.raises(ValueError, match="block=48 is not a valid quant_block"):
        quantize(good, "int4", 48)
    with pytest.raises(ValueError, match="block=8 is not a valid quant_block"):
        quantize(good, "int4", 8)
    with pytest.raises(TypeError, match="block must be an int"):
        quantize(good, "int4", 64.0)
    bad = np.zeros((3, 128), np.float32)
    bad[2, 70] = np.nan
    with pytest.raises(ValueError, match=r"row 2, block 1 \(columns 64…127\), column 70"):
        quantize(bad, "if8")
    huge = np.zeros((1, 64))
    huge[0, 3] = 1e39  # beyond bf16: rounds to Inf
    with pytest.raises(ValueError, match="row 0, block 0"):
        quantize(huge, "fp4")
    with pytest.raises(TypeError, match="QuantizedTensor"):
        dequantize(good)


def test_block_level_errors_are_specific():
    with pytest.raises(TypeError, match="bf16 bit patterns"):
        qb.encode_int4(np.zeros((1, 16), np.float32))
    with pytest.raises(ValueError, match=r"shape \[\.\.\., B≥1\]"):
        qb.encode_fp4(np.zeros((1, 0), np.uint16))
    with pytest.raises(ValueError, match="4-bit codes must be 0…15"):
        qb.decode_if4(np.full((1, 16), 16, np.uint8), np.zeros(1, np.uint16))
    with pytest.raises(ValueError, match="disagree"):
        qb.decode_int8(np.zeros((2, 16), np.uint8), np.zeros(3, np.uint16))
    with pytest.raises(TypeError, match="scales must be uint16"):
        qb.decode_fp8(np.zeros((2, 16), np.uint8), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="shapes differ"):
        qb.if_metric(np.zeros((1, 16), np.uint16), np.zeros((1, 8), np.uint16))
    with pytest.raises(ValueError, match="codes must be uint8"):
        QuantizedTensor(
            "int4", (1, 64), np.zeros((1, 64), np.uint8), np.zeros((1, 1), np.uint16), 64
        )
    with pytest.raises(ValueError, match="tensor_scale is only for nvfp4"):
        QuantizedTensor(
            "int8",
            (1, 64),
            np.zeros((1, 64), np.uint8),
            np.zeros((1, 1), np.uint16),
            64,
            np.float32(1),
        )
    with pytest.raises(ValueError, match="nvfp4 blocks are 16"):
        QuantizedTensor(
            "nvfp4",
            (1, 64),
            np.zeros((1, 32), np.uint8),
            np.zeros((1, 4), np.uint8),
            64,
            np.float32(1),
        )


# ----- SNR ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, top", [("int4", 7), ("int8", 127)])
def test_integer_snr_matches_uniform_noise_model(fmt, top):
    """INT SNR on Gaussian weights ≈ the uniform-quantization-noise prediction (step²/12)."""
    rng = np.random.default_rng(1)
    bits = f32_to_bf16(rng.standard_normal((64, 1024)).astype(np.float32))
    x = bf16_to_f32(bits).astype(np.float64)
    step = np.abs(x.reshape(64, -1, 64)).max(-1) / top  # ≈ the scale (before bf16 rounding)
    predicted = 10 * np.log10(np.sum(x**2) / (np.sum(step**2) * 64 / 12))
    measured = snr_db(x, bf16_to_f32(quantize(bits, fmt).dequantize()))
    assert abs(measured - predicted) < 0.5


@pytest.mark.parametrize("fmt", ["int4", "fp4", "if4", "int8", "fp8", "if8"])
def test_single_1d_block_encodes_like_a_batch_of_one(fmt):
    block = np.full(16, 0x3F80, np.uint16)  # sixteen 1.0 values
    encode = getattr(qb, f"encode_{fmt}")
    codes, scales = encode(block)
    codes2, scales2 = encode(block[None, :])
    np.testing.assert_array_equal(codes, codes2[0])
    assert int(scales) == int(scales2[0])
