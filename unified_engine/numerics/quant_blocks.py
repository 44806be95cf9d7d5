"""Bit-exact block encoders and decoders of the quantized weight formats (golden models).

Each ``encode_*`` function quantizes blocks of bf16 weights, each ``decode_*`` function is what
the RTL decoder outputs.  Blocks run along the **last axis**: ``x`` is a ``uint16`` array of bf16
bit patterns of shape ``[..., B]`` and every ``[..., :]`` row is one block; the leading axes are
independent blocks.  Codes are returned **unpacked**, one per ``uint8`` (packing two 4-bit codes
per byte is ``quant.py``'s job).  The contract, in full in ``docs/numerics.md §5``:

* Inputs are bf16, read with the fp32 rule (subnormals are ±0).
* bf16-scaled formats: ``scale = f32_to_bf16(f32_mul(absmax, fp32(1/max)))`` with ``max`` = 7,
  6, 127, 448; the sign bit of the stored scale is **set for INT blocks and clear for FP
  blocks** (so an INT4 or FP4 tensor is also a valid IF4 tensor); decoders use ``|scale|``.
* Element code = round-half-to-even of ``|x| / |scale|`` on the element grid, evaluated exactly,
  clamped to the largest magnitude; sign from ``x`` (see ``quant_grids``).
* A block whose scale magnitude is zero (all inputs ±0, or the scale underflowed) has all codes
  ``0``; it decodes to +0.
* A block holding NaN or ±Inf: scale = bf16 NaN (``0xFFC0`` for INT and IF blocks, ``0x7FC0`` for
  FP blocks; NVFP4 block scale ``0x7F``), all codes ``0``; it decodes to all NaN.
* Decode: ``f32_to_bf16(f32_mul(code_value, |scale|))``; NVFP4:
  ``f32_to_bf16(f32_mul(code_value · e4m3_scale, tensor_scale))`` (the inner product is exact).
* IF4/IF8 choose per block the element format with the lower ``if_metric`` (tie → INT).
"""

from __future__ import annotations

import numpy as np

from .fp import bf16_to_f32, f32_add, f32_lt, f32_mul, f32_sub, f32_to_bf16
from .quant_grids import FP4_E2M1, FP8_E4M3, INT4, INT8, ElementFormat

__all__ = [
    "BF16_SIGN",
    "NVFP4_BLOCK",
    "NVFP4_E4M3_NAN",
    "decode_fp4",
    "decode_fp8",
    "decode_if4",
    "decode_if8",
    "decode_int4",
    "decode_int8",
    "decode_nvfp4",
    "encode_fp4",
    "encode_fp8",
    "encode_if4",
    "encode_if8",
    "encode_int4",
    "encode_int8",
    "encode_nvfp4",
    "if_metric",
    "nvfp4_tensor_scale",
    "scale_reciprocal",
]

#: The bf16 sign bit; in a block scale it marks an INT block.
BF16_SIGN = 0x8000
#: NVFP4 block length along K, fixed by NVIDIA's definition (independent of ``quant_block``).
NVFP4_BLOCK = 16
#: The E4M3FN NaN code used as the block scale of a non-finite NVFP4 block.
NVFP4_E4M3_NAN = 0x7F

_BF16_NAN_INT = np.uint16(0xFFC0)  # canonical NaN with the INT (sign) flag set
_BF16_NAN_FP = np.uint16(0x7FC0)
# NVIDIA: tensor scale = amax / (FP4 max · E4M3 max).
_NVFP4_TENSOR_DIVISOR = FP4_E2M1.max_value * FP8_E4M3.max_value
_F32_MIN_NORMAL = 2.0**-126


# ----- input validation ----------------------------------------------------------------------


def _as_bf16_blocks(x, who: str) -> np.ndarray:
    """``x`` as a ``uint16`` array ``[..., B]`` with ``B ≥ 1`` (bfloat16 arrays are viewed)."""
    arr = np.asarray(x)
    if arr.dtype.name == "bfloat16":
        arr = arr.view(np.uint16)
    if arr.dtype != np.uint16:
        raise TypeError(
            f"{who} expects bf16 bit patterns (uint16 or ml_dtypes.bfloat16), got dtype "
            f"{arr.dtype}; round floats first with fp.f32_to_bf16, or use quant.quantize()"
        )
    if arr.ndim < 1 or arr.shape[-1] < 1:
        raise ValueError(
            f"{who} needs blocks along the last axis, shape [..., B≥1]; got {arr.shape}"
        )
    return arr


def _as_codes(codes, scales, elem_bits: int, scale_dtype, who: str):
    """Validate unpacked codes ``[..., B]`` and per-block scales ``[...]``."""
    c = np.asarray(codes)
    s = np.asarray(scales)
    if c.dtype != np.uint8:
        raise TypeError(f"{who}: codes must be uint8 (one code per byte), got {c.dtype}")
    if s.dtype != scale_dtype:
        raise TypeError(f"{who}: scales must be {np.dtype(scale_dtype)}, got {s.dtype}")
    if c.ndim < 1 or c.shape[:-1] != s.shape:
        raise ValueError(
            f"{who}: codes [..., B] and scales [...] disagree: {c.shape} vs {s.shape}; "
            "scales must have the codes' shape without the last (block) axis"
        )
    if elem_bits == 4 and c.size and int(c.max()) > 0xF:
        raise ValueError(f"{who}: 4-bit codes must be 0…15, found {int(c.max())}")
    return c, s


def _as_tensor_scale(tensor_scale, who: str) -> np.float32:
    ts = np.asarray(tensor_scale)
    if ts.shape != () or ts.dtype != np.float32:
        raise TypeError(f"{who}: tensor_scale must be a numpy float32 scalar, got {ts!r}")
    value = float(ts)
    if not (np.isfinite(value) and value >= _F32_MIN_NORMAL):
        raise ValueError(
            f"{who}: tensor_scale must be a positive, finite, normal fp32 (≥ 2^-126), got {value}"
        )
    return np.float32(value)


# ----- shared pieces --------------------------------------------------------------------------


def scale_reciprocal(elem: ElementFormat) -> np.float32:
    """The fp32 constant ``1/max`` the scale rule multiplies ``absmax`` by (RNE of the quotient).

    ``1/7``, ``1/6``, ``1/127`` and ``1/448`` have non-terminating binary expansions without a
    run of 29 equal bits after the 24th, so float64 → float32 rounds them correctly.
    """
    return np.float32(1.0 / elem.max_value)


def _split(x_bits: np.ndarray):
    """fp32 values, their float64 magnitudes, sign flags and the per-block 'non-finite' flag."""
    x = bf16_to_f32(x_bits)
    negative = (x_bits & np.uint16(BF16_SIGN)) != 0
    nonfinite = ~np.all(np.isfinite(x), axis=-1)
    magnitude = np.abs(x.astype(np.float64))
    magnitude[nonfinite] = 0.0  # keeps the arithmetic below quiet; those blocks are overridden
    return magnitude, negative, nonfinite


def _encode_elements(elem, magnitude, negative, divisor, zero_block):
    """Codes of ``magnitude / divisor`` (float64, exact-side; see ``round_magnitude``)."""
    safe = np.where(zero_block, 1.0, divisor)[..., None]
    codes = elem.encode(magnitude / safe, negative)
    codes[zero_block] = 0
    return codes


def _encode_scaled(x_bits: np.ndarray, elem: ElementFormat, int_flag: bool):
    magnitude, negative, nonfinite = _split(x_bits)
    absmax = np.max(magnitude, axis=-1).astype(np.float32)  # exact: bf16 values
    scales = f32_to_bf16(f32_mul(absmax, scale_reciprocal(elem)))
    scale_mag = bf16_to_f32(scales).astype(np.float64)
    codes = _encode_elements(elem, magnitude, negative, scale_mag, (scale_mag == 0) | nonfinite)
    if int_flag:
        scales = np.array(scales | np.uint16(BF16_SIGN), dtype=np.uint16)  # stays an array at 0-d
    scales[nonfinite] = _BF16_NAN_INT if int_flag else _BF16_NAN_FP
    return codes, scales


def _decode_scaled(codes: np.ndarray, scales: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``f32_to_bf16(f32_mul(value, |scale|))`` for code values ``values`` (float64, exact)."""
    scale_mag = bf16_to_f32(scales & np.uint16(0x7FFF))
    return f32_to_bf16(f32_mul(values.astype(np.float32), scale_mag[..., None]))


def if_metric(x_bf16, xhat_bf16) -> np.ndarray:
    """The IF4/IF8 selection metric of each block: fp32 sum of squared errors, bit-exact.

    ``d_i = f32_sub(x_i, xhat_i)`` on the bf16 inputs and the bf16 decoder outputs (both
    widened with FTZ), ``s_i = f32_mul(d_i, d_i)``; the ``s_i`` are padded with +0 to a power of
    two and summed by a balanced binary tree of ``f32_add``: each level adds neighbours
    ``(0,1), (2,3), …`` in place, so level ``l`` holds ``s`` sums of aligned runs of ``2^l``.
    Returns float32 ``[...]`` (one value per block; +Inf if a square overflows, NaN only for
    non-finite inputs).
    """
    x = _as_bf16_blocks(x_bf16, "if_metric")
    xhat = _as_bf16_blocks(xhat_bf16, "if_metric")
    if x.shape != xhat.shape:
        raise ValueError(f"if_metric: x and xhat shapes differ: {x.shape} vs {xhat.shape}")
    d = f32_sub(bf16_to_f32(x), bf16_to_f32(xhat))
    terms = f32_mul(d, d)
    width = 1 << (terms.shape[-1] - 1).bit_length()
    if width != terms.shape[-1]:
        pad = [(0, 0)] * (terms.ndim - 1) + [(0, width - terms.shape[-1])]
        terms = np.pad(terms, pad)  # +0.0 padding
    while terms.shape[-1] > 1:
        terms = f32_add(terms[..., 0::2], terms[..., 1::2])
    return terms[..., 0]


def _encode_if(x_bits, int_encode, int_decode, fp_encode, fp_decode):
    int_codes, int_scales = int_encode(x_bits)
    fp_codes, fp_scales = fp_encode(x_bits)
    int_error = if_metric(x_bits, int_decode(int_codes, int_scales))
    fp_error = if_metric(x_bits, fp_decode(fp_codes, fp_scales))
    pick_fp = f32_lt(fp_error, int_error)  # strict: a tie (or NaN) keeps INT
    codes = np.where(pick_fp[..., None], fp_codes, int_codes)
    scales = np.where(pick_fp, fp_scales, int_scales)
    return codes.astype(np.uint8), scales.astype(np.uint16)


def _decode_if(codes, scales, int_elem: ElementFormat, fp_elem: ElementFormat) -> np.ndarray:
    is_int = (scales & np.uint16(BF16_SIGN)) != 0
    values = np.where(is_int[..., None], int_elem.values(codes), fp_elem.values(codes))
    return _decode_scaled(codes, scales, values)


# ----- the bf16-scaled formats ----------------------------------------------------------------


def encode_int4(x_bf16):
    """INT4 blocks: codes −7…7 (two's complement nibbles), bf16 scale absmax/7, sign set.

    Parameters
    ----------
    x_bf16:
        ``uint16 [..., B]`` bf16 bit patterns; each last-axis row is one block.

    Returns
    -------
    codes:
        ``uint8 [..., B]``, one 4-bit code per byte.
    scales:
        ``uint16 [...]`` bf16 bits, sign bit set (the INT flag).
    """
    return _encode_scaled(_as_bf16_blocks(x_bf16, "encode_int4"), INT4, int_flag=True)


def decode_int4(codes, scales):
    """bf16 ``[..., B]`` of INT4 blocks: ``f32_to_bf16(f32_mul(code, |scale|))``."""
    c, s = _as_codes(codes, scales, 4, np.uint16, "decode_int4")
    return _decode_scaled(c, s, INT4.values(c))


def encode_fp4(x_bf16):
    """FP4-E2M1 blocks: sign-magnitude codes, bf16 scale absmax/6, sign clear (see encode_int4)."""
    return _encode_scaled(_as_bf16_blocks(x_bf16, "encode_fp4"), FP4_E2M1, int_flag=False)


def decode_fp4(codes, scales):
    """bf16 ``[..., B]`` of FP4-E2M1 blocks: ``f32_to_bf16(f32_mul(e2m1(code), |scale|))``."""
    c, s = _as_codes(codes, scales, 4, np.uint16, "decode_fp4")
    return _decode_scaled(c, s, FP4_E2M1.values(c))


def encode_if4(x_bf16):
    """IF4 blocks: per block INT4 (scale sign set) or FP4 (clear), whichever ``if_metric`` prefers.

    A tie, including a zero block, keeps INT4.
    """
    x = _as_bf16_blocks(x_bf16, "encode_if4")
    return _encode_if(x, encode_int4, decode_int4, encode_fp4, decode_fp4)


def decode_if4(codes, scales):
    """bf16 ``[..., B]`` of IF4 blocks: the scale's sign bit picks INT4 (set) or FP4 (clear)."""
    c, s = _as_codes(codes, scales, 4, np.uint16, "decode_if4")
    return _decode_if(c, s, INT4, FP4_E2M1)


def encode_int8(x_bf16):
    """INT8 blocks: codes −127…127 (two's complement bytes), bf16 scale absmax/127, sign set."""
    return _encode_scaled(_as_bf16_blocks(x_bf16, "encode_int8"), INT8, int_flag=True)


def decode_int8(codes, scales):
    """bf16 ``[..., B]`` of INT8 blocks: ``f32_to_bf16(f32_mul(code, |scale|))``."""
    c, s = _as_codes(codes, scales, 8, np.uint16, "decode_int8")
    return _decode_scaled(c, s, INT8.values(c))


def encode_fp8(x_bf16):
    """FP8-E4M3FN blocks: codes never NaN (max 448), bf16 scale absmax/448, sign clear."""
    return _encode_scaled(_as_bf16_blocks(x_bf16, "encode_fp8"), FP8_E4M3, int_flag=False)


def decode_fp8(codes, scales):
    """bf16 ``[..., B]`` of FP8-E4M3FN blocks (codes 0x7F/0xFF decode to NaN)."""
    c, s = _as_codes(codes, scales, 8, np.uint16, "decode_fp8")
    return _decode_scaled(c, s, FP8_E4M3.values(c))


def encode_if8(x_bf16):
    """IF8 blocks: per block INT8 (scale sign set) or FP8-E4M3FN (clear), as ``encode_if4``."""
    x = _as_bf16_blocks(x_bf16, "encode_if8")
    return _encode_if(x, encode_int8, decode_int8, encode_fp8, decode_fp8)


def decode_if8(codes, scales):
    """bf16 ``[..., B]`` of IF8 blocks: the scale's sign bit picks INT8 (set) or FP8 (clear)."""
    c, s = _as_codes(codes, scales, 8, np.uint16, "decode_if8")
    return _decode_if(c, s, INT8, FP8_E4M3)


# ----- NVFP4 ----------------------------------------------------------------------------------


def nvfp4_tensor_scale(x_bf16) -> np.float32:
    """NVFP4 per-tensor fp32 scale of the bf16 tensor ``x_bf16`` (any shape).

    ``amax / (6 · 448)`` rounded once (RNE) to fp32.  Two corners are defined so that every
    block scale stays within E4M3's range and decode never divides by zero:

    * ``amax == 0`` → ``1.0`` (as NVIDIA Transformer Engine does);
    * a quotient below 2^-126 (``amax < 2688 · 2^-126``) → ``2^-126``, the smallest normal fp32.

    Raises ``ValueError`` if the tensor holds NaN or ±Inf.
    """
    arr = np.asarray(x_bf16)
    if arr.dtype.name == "bfloat16":
        arr = arr.view(np.uint16)
    if arr.dtype != np.uint16 or arr.size == 0:
        raise TypeError(
            "nvfp4_tensor_scale expects a non-empty array of bf16 bit patterns (uint16 or "
            f"ml_dtypes.bfloat16), got dtype {arr.dtype} with shape {arr.shape}"
        )
    x = bf16_to_f32(arr)
    if not np.all(np.isfinite(x)):
        raise ValueError("nvfp4_tensor_scale: the tensor holds NaN or ±Inf; amax is undefined")
    amax = float(np.max(np.abs(x.astype(np.float64))))
    if amax == 0.0:
        return np.float32(1.0)
    # float64 then float32 rounding cannot double-round: amax/2688 = (amax/21)·2^-7 is either
    # exact or a periodic binary fraction (period 6), never within 2^-53 of an fp32 tie.
    quotient = amax / _NVFP4_TENSOR_DIVISOR
    if quotient < _F32_MIN_NORMAL:
        return np.float32(_F32_MIN_NORMAL)
    return np.float32(quotient)


def encode_nvfp4(x_bf16, tensor_scale):
    """NVFP4 blocks of 16: FP4-E2M1 codes and an unsigned E4M3FN scale per block.

    ``block_scale = e4m3(block_amax / (6 · tensor_scale))``, the exact quotient rounded RNE to
    E4M3FN (subnormals kept) and saturated at 448; element code = RNE of
    ``|x| / (block_scale · tensor_scale)`` (exact real divisor) on the E2M1 grid, clamped to 6,
    sign copied from ``x``.  A block scale of 0 gives all-zero codes; a non-finite block gives
    block scale ``0x7F`` (NaN) and all-zero codes.

    Parameters
    ----------
    x_bf16:
        ``uint16 [..., 16]`` bf16 bit patterns.
    tensor_scale:
        ``np.float32`` from ``nvfp4_tensor_scale`` over the whole tensor.

    Returns
    -------
    codes ``uint8 [..., 16]`` and block scales ``uint8 [...]`` (E4M3FN bits).
    """
    x = _as_bf16_blocks(x_bf16, "encode_nvfp4")
    if x.shape[-1] != NVFP4_BLOCK:
        raise ValueError(f"encode_nvfp4: NVFP4 blocks hold {NVFP4_BLOCK} elements, got {x.shape}")
    ts = float(_as_tensor_scale(tensor_scale, "encode_nvfp4"))
    magnitude, negative, nonfinite = _split(x)
    block_amax = np.max(magnitude, axis=-1)
    # 6·ts is exact in float64; the quotient's side of every E4M3 midpoint is exact (see
    # ElementFormat.round_magnitude), and round_magnitude saturates at 448.
    scale_codes = FP8_E4M3.round_magnitude(block_amax / (FP4_E2M1.max_value * ts))
    scale_value = FP8_E4M3.values(scale_codes)
    divisor = scale_value * ts  # exact in float64: 4 × 24 significant bits
    codes = _encode_elements(FP4_E2M1, magnitude, negative, divisor, (scale_codes == 0) | nonfinite)
    scale_codes[nonfinite] = NVFP4_E4M3_NAN
    return codes, scale_codes


def decode_nvfp4(codes, scales, tensor_scale):
    """bf16 ``[..., 16]``: ``f32_to_bf16(f32_mul(e2m1(code) · e4m3(scale), tensor_scale))``."""
    c, s = _as_codes(codes, scales, 4, np.uint8, "decode_nvfp4")
    ts = np.asarray(tensor_scale)
    if ts.shape != () or ts.dtype != np.float32:
        raise TypeError(f"decode_nvfp4: tensor_scale must be a numpy float32 scalar, got {ts!r}")
    # E2M1 (≤ 2 significant bits) × E4M3 (≤ 4) is exact in fp32, NaN for the NaN scale codes.
    inner = FP4_E2M1.values(c) * FP8_E4M3.values(s)[..., None]
    return f32_to_bf16(f32_mul(inner.astype(np.float32), ts))
