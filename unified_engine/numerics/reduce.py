"""Bit-exact golden models of the vector unit's reductions: multi-input add, max, top-4.

All three follow the fp32 contract of :mod:`unified_engine.numerics.fp` (FTZ on input and output,
RNE, one canonical NaN) and are defined so that a comparator / adder tree in RTL computes them
bit for bit **whatever the shape or order of the tree** (see ``docs/numerics.md``).

``multi_add``
    The multi-input fp32 adder: n inputs, **one** alignment, **one** normalisation and **one**
    rounding. Every significand is aligned to the largest exponent in a window of 24 + G bits
    (G = ``guard_bits``); the bits shifted out of an addend are OR-ed ("jammed") into that
    addend's own LSB; the aligned signed integers are summed exactly; the sum is rounded once to
    nearest even. Because the jam is applied per addend *before* the sum, the result is a pure
    function of the multiset of inputs: any adder tree, any order, gives the same bits.
``max_reduce``
    The max tree: ``f32_max`` folded over an axis (NaN if any input is NaN, -0 < +0). ``f32_max``
    is a total-order maximum, so the result does not depend on the tree either.
``argmax_top4``
    The four best elements of a streamed vector and their indices, as a 4-entry sorted register
    list updated once per element (strict greater-than displaces, so ties keep the lower index).
"""

from __future__ import annotations

import math
import operator

import numpy as np

from .fp import F32_CANONICAL_NAN, f32_order_key, f32_to_bits, ftz32

__all__ = [
    "DEFAULT_GUARD_BITS",
    "MAX_GUARD_BITS",
    "TOP4_FILL_INDEX",
    "TOP4_FILL_VALUE",
    "argmax_top4",
    "max_reduce",
    "multi_add",
    "multi_add_adder_width",
    "multi_add_error_bound",
]

DEFAULT_GUARD_BITS = 3
#: Upper limit on ``guard_bits`` accepted by the models (an RTL window wider than this buys
#: nothing that a wider G in a tree could not, and keeps the int64 model exact).
MAX_GUARD_BITS = 24
#: Index of an ``argmax_top4`` slot that no element filled (vector shorter than 4): the RTL's
#: all-ones 32-bit index register. Its value slot holds ``TOP4_FILL_VALUE``.
TOP4_FILL_INDEX = 0xFFFFFFFF
TOP4_FILL_VALUE = np.float32(-np.inf)

_SIG_BITS = 24  # significand bits of fp32, hidden bit included
_EXP_INF = 0xFF
_BIAS_SHIFT = 150  # value = significand · 2**(biased_exp - 150)
_NAN_RANK = 0x7F800001  # rank key of NaN in argmax_top4: one above +Inf (0x7F800000)
_CHUNK_ELEMS = 1 << 20  # rows are processed in chunks of about this many elements


# --------------------------------------------------------------------------- validation


def _as_f32(x, fn: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype != np.float32:
        raise TypeError(
            f"{fn} takes float32 values (fp32 bit patterns); got dtype {arr.dtype}. "
            "Round explicitly first, e.g. np.asarray(x, np.float32)."
        )
    if arr.ndim == 0:
        raise ValueError(f"{fn} reduces along an axis; got a 0-d value")
    return arr


def _check_axis(axis, ndim: int, fn: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{fn}: axis must be an int; got {type(axis).__name__}")
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{fn}: axis {axis} is out of range for a {ndim}-d input")
    return axis % ndim


def _check_guard_bits(guard_bits, fn: str) -> int:
    if isinstance(guard_bits, bool) or not isinstance(guard_bits, (int, np.integer)):
        raise TypeError(f"{fn}: guard_bits must be an int; got {type(guard_bits).__name__}")
    if not 0 <= guard_bits <= MAX_GUARD_BITS:
        raise ValueError(f"{fn}: guard_bits must be in 0..{MAX_GUARD_BITS}; got {guard_bits}")
    return int(guard_bits)


def _rows(x, axis, fn: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate and return FTZ'd bit patterns as ``[rows, n]`` plus the output shape."""
    arr = _as_f32(x, fn)
    ax = _check_axis(axis, arr.ndim, fn)
    n = arr.shape[ax]
    if n == 0:
        raise ValueError(f"{fn}: cannot reduce an empty axis (length 0); need at least 1 input")
    moved = np.moveaxis(arr, ax, -1)
    bits = f32_to_bits(ftz32(moved)).reshape(-1, n)
    return bits, moved.shape[:-1]


# --------------------------------------------------------------------------- multi_add


def multi_add_adder_width(n: int, guard_bits: int = DEFAULT_GUARD_BITS) -> int:
    """Width in bits of the two's-complement integer adder (tree) of an n-input ``multi_add``.

    Each aligned addend has a magnitude below 2**(24 + G); n of them sum to below
    2**(24 + G + ceil(log2 n)); one more bit holds the sign:
    ``24 + G + ceil(log2 n) + 1``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"multi_add_adder_width: n must be an int; got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"multi_add_adder_width: n must be >= 1; got {n}")
    g = _check_guard_bits(guard_bits, "multi_add_adder_width")
    return _SIG_BITS + g + math.ceil(math.log2(n)) + 1


def _bit_length(v: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values (0 for 0), exactly (no float conversion)."""
    length = np.zeros(v.shape, np.int64)
    w = v.copy()
    for step in (32, 16, 8, 4, 2, 1):
        big = (w >> step) != 0
        w = np.where(big, w >> step, w)
        length += np.where(big, step, 0)
    return length + (w != 0)


def _decode(bits: np.ndarray):
    """Split FTZ'd fp32 bits into (negative, biased exponent, significand with hidden bit)."""
    b = bits.astype(np.int64)
    neg = (b >> 31) != 0
    exp = (b >> 23) & 0xFF
    frac = b & 0x7FFFFF
    sig = np.where(exp != 0, frac | (1 << 23), 0)
    return neg, exp, sig


def _multi_add_chunk(bits: np.ndarray, g: int) -> tuple[np.ndarray, ...]:
    """multi_add of ``bits[rows, n]``.

    Returns (result bits, emax, number of addends that lost bits, integer sum is zero).
    """
    neg, exp, sig = _decode(bits)
    is_nan = (exp == _EXP_INF) & ((bits & 0x7FFFFF) != 0)
    pos_inf = bits == 0x7F800000
    neg_inf = bits == 0xFF800000
    finite = exp != _EXP_INF
    # The finite datapath ignores specials (they only steer the result mux below).
    exp = np.where(finite, exp, 0)
    sig = np.where(finite, sig, 0)

    emax = exp.max(axis=1, keepdims=True)
    # Everything beyond the window is sticky; cap the shift so the int64 shifts stay defined.
    dist = np.minimum(emax - exp, _SIG_BITS + g + 1)
    widened = sig << g
    aligned = widened >> dist
    lost = (widened & ((np.int64(1) << dist) - 1)) != 0
    aligned |= lost.astype(np.int64)  # per-addend sticky jam
    total = np.where(neg, -aligned, aligned).sum(axis=1)

    # One normalisation, one RNE rounding of the exact integer sum.
    mag = np.abs(total)
    length = _bit_length(mag)
    shr = np.maximum(length - _SIG_BITS, 0)
    shl = np.maximum(_SIG_BITS - length, 0)
    q = mag >> shr
    rem = mag & ((np.int64(1) << shr) - 1)
    half = (np.int64(1) << shr) >> 1
    round_up = (shr > 0) & ((rem > half) | ((rem == half) & ((q & 1) == 1)))
    q = (q + round_up) << shl
    carry = q >> _SIG_BITS  # rounded up to 2**24: renormalise
    q >>= carry
    biased = emax[:, 0] - g + shr - shl + carry
    sign = (total < 0).astype(np.int64) << 31
    out = sign | (biased << 23) | (q & 0x7FFFFF)
    out = np.where(biased >= _EXP_INF, sign | 0x7F800000, out)  # overflow → ±Inf
    out = np.where(biased <= 0, sign, out)  # below 2**-126 after rounding → signed zero
    all_neg_zero = np.all(bits == 0x80000000, axis=1)
    out = np.where(total == 0, np.where(all_neg_zero, 0x80000000, 0), out)

    any_pos_inf, any_neg_inf = pos_inf.any(axis=1), neg_inf.any(axis=1)
    out = np.where(any_pos_inf, 0x7F800000, out)
    out = np.where(any_neg_inf, 0xFF800000, out)
    out = np.where(is_nan.any(axis=1) | (any_pos_inf & any_neg_inf), F32_CANONICAL_NAN, out)
    return out.astype(np.uint32), emax[:, 0], lost.sum(axis=1), total == 0


def _multi_add_rows(x, axis, guard_bits, fn: str):
    g = _check_guard_bits(guard_bits, fn)
    bits, out_shape = _rows(x, axis, fn)
    n = bits.shape[1]
    width = _SIG_BITS + g + math.ceil(math.log2(n)) + 1
    if width > 63:
        raise ValueError(
            f"{fn}: {n} inputs with guard_bits={g} need a {width}-bit adder; the model supports "
            "up to 63 bits (reduce n or guard_bits)"
        )
    step = max(1, _CHUNK_ELEMS // n)
    # range(..., max(rows, 1), ...) so an empty batch still yields one (empty) chunk.
    starts = range(0, max(bits.shape[0], 1), step)
    parts = [_multi_add_chunk(bits[i : i + step], g) for i in starts]
    res, emax, inexact, zero_sum = (np.concatenate(p) for p in zip(*parts, strict=True))
    return res, emax, inexact, zero_sum, out_shape, g


def multi_add(x, axis: int = -1, *, guard_bits: int = DEFAULT_GUARD_BITS) -> np.ndarray:
    """Sum fp32 values along ``axis`` with one alignment, one normalisation and one rounding.

    Parameters
    ----------
    x : float32 array
        The n inputs lie along ``axis`` (n >= 1); other axes are independent sums.
    axis : int
        Axis to reduce.
    guard_bits : int
        G, the bits kept below an aligned significand's LSB (0..24, default 3).

    Returns
    -------
    float32 array of ``x.shape`` without ``axis``.

    Algorithm (what the RTL implements, bit for bit)
    ------------------------------------------------
    1. FTZ the inputs; decode each finite input as ``(-1)**s · M · 2**(E - 150)`` with the
       24-bit significand M (hidden bit included; M = 0 for ±0).
    2. ``emax = max E`` over the finite inputs.
    3. Align: ``A = (M << G) >> (emax - E)``, and if any 1 bit was shifted out, ``A |= 1``
       (the per-addend sticky jam). A fits 24 + G bits.
    4. Sum the signed A exactly in a ``multi_add_adder_width(n, G)``-bit integer adder. Integer
       addition is associative, so the tree shape and input order do not matter.
    5. Normalise the sum once and round it once to 24 bits, nearest even, using *all* of the
       sum's lower bits as round and sticky bits (exponent unbounded).
    6. A rounded magnitude below 2**-126 becomes a zero with the sum's sign; a biased exponent
       of 255 or more becomes ±Inf.

    Specials: any NaN, or both +Inf and -Inf, gives the canonical NaN; else any Inf gives that
    Inf. An exact-zero sum is +0 unless every input is -0 (then -0).

    Error: ``|multi_add(x) - sum(x)| <= 0.5·ulp(result) + k·2**(emax - 150 - G)`` where k is the
    number of inputs that lost bits in step 3 (k <= n - 1); see ``multi_add_error_bound``.
    For n = 2 and G >= 3 the result equals ``f32_add`` (a correctly rounded sum; G = 2 does not).
    """
    res, _, _, _, out_shape, _ = _multi_add_rows(x, axis, guard_bits, "multi_add")
    return res.view(np.float32).reshape(out_shape)


def multi_add_error_bound(x, axis: int = -1, *, guard_bits: int = DEFAULT_GUARD_BITS) -> np.ndarray:
    """Proven bound on ``|multi_add(x) - exact sum of ftz32(x)|``, per output, as float64.

    ``0.5·ulp(r) + k·2**(emax - 150 - G)``: the first term is the single rounding of the aligned
    integer sum (for a zero result, 2**-126 covers a flushed sum; 0 for an exact zero sum), the
    second the jam error (< 1 unit of 2**(emax - 150 - G) for each of the k addends that lost
    bits in alignment). ``inf`` where the result is ±Inf or NaN (no finite bound applies).
    The float64 value is rounded upward, so it is never below the exact bound.
    """
    res, emax, inexact, zero_sum, out_shape, g = _multi_add_rows(
        x, axis, guard_bits, "multi_add_error_bound"
    )
    exp = ((res >> 23) & 0xFF).astype(np.int32)
    # ulp(r) = 2**(E - 150) for a normal r with biased exponent E. A zero result is either a
    # zero integer sum (no rounding error) or a sum flushed from below 2**-126.
    round_term = np.where(exp > 0, np.ldexp(0.5, exp - _BIAS_SHIFT), 2.0**-126)
    round_term = np.where(zero_sum, 0.0, round_term)
    jam_term = inexact * np.ldexp(1.0, (emax - _BIAS_SHIFT - g).astype(np.int32))
    # Add the two terms rounding upward, so the float64 bound is never below the exact one:
    # (big - (s - small)) style Fast2Sum gives the exact rounding error of the sum.
    big, small = np.maximum(round_term, jam_term), np.minimum(round_term, jam_term)
    bound = big + small
    bound = np.where(small - (bound - big) > 0, np.nextafter(bound, np.inf), bound)
    bound = np.where(exp == _EXP_INF, np.inf, bound)
    return bound.reshape(out_shape)


# --------------------------------------------------------------------------- max_reduce


def max_reduce(x, axis: int = -1) -> np.ndarray:
    """Maximum of fp32 values along ``axis``: ``f32_max`` folded in any order.

    FTZ inputs; the canonical NaN if any input is NaN; otherwise the greatest value in the total
    order -Inf < … < -0 < +0 < … < +Inf (so a mix of -0 and +0 gives +0). Because this is the
    maximum of a total order, every comparator tree gives the same bits.
    """
    bits, out_shape = _rows(x, axis, "max_reduce")
    keys = f32_order_key(bits.view(np.float32)).max(axis=1)
    # Invert f32_order_key: negative keys are the flipped patterns of negative numbers.
    out = np.where(keys >= 0, keys, 0x7FFFFFFF - keys).astype(np.uint32)
    any_nan = np.isnan(bits.view(np.float32)).any(axis=1)
    # ftz32 already made every NaN the canonical 0x7FC00000, whose key is above +Inf; the
    # explicit mux mirrors the RTL's NaN flag rather than relying on that coincidence.
    out = np.where(any_nan, np.uint32(F32_CANONICAL_NAN), out)
    return out.view(np.float32).reshape(out_shape)


# --------------------------------------------------------------------------- argmax_top4


def argmax_top4(x) -> tuple[np.ndarray, np.ndarray]:
    """The four largest elements of each fp32 vector ``x[..., n]`` and their indices.

    Returns ``(values float32 [..., 4], indices int64 [..., 4])``, best first.

    Ranking (after FTZ, so subnormals are ±0): NaN ranks above +Inf, and NaNs among themselves
    by index; -0 and +0 are equal; equal values rank by index, lower first. A reported value is
    the element itself after FTZ (so -0 stays -0; every NaN is the canonical NaN). If n < 4 the
    last ``4 - n`` slots are filler: value ``TOP4_FILL_VALUE`` (-Inf) and index
    ``TOP4_FILL_INDEX`` (0xFFFFFFFF); filler ranks below every element, a real -Inf included.

    Streaming RTL rule: four registers ``(valid, key, index)`` kept sorted, reset to not-valid.
    Element i (in increasing i) goes to the first slot p that is not valid or whose key it beats
    with a **strict** greater-than; slots p..2 shift down one and slot 3 drops out. The key is
    the fp32 order key with -0 merged into +0 and NaN forced above +Inf. Lane-parallel versions
    may merge per-beat top-4 lists with the comparator "key greater, or equal key and smaller
    index": (key, index) is a strict total order, so every merge tree gives the same result.
    """
    arr = _as_f32(x, "argmax_top4")
    n = arr.shape[-1]
    if n == 0:
        raise ValueError("argmax_top4 needs at least one element along the last axis; got 0")
    if n > TOP4_FILL_INDEX:
        raise ValueError(f"argmax_top4 indexes with 32 bits; got {n} elements (max 2**32 - 1)")
    flushed = ftz32(arr)
    key = f32_order_key(flushed)
    key = np.where(key == -1, 0, key)  # -0 (key -1) ranks equal to +0
    key = np.where(np.isnan(flushed), _NAN_RANK, key)
    # One unique uint64 per element: rank in the high word, inverted index in the low word, so
    # a larger composite is a better element and equal ranks prefer the lower index.
    idx = np.arange(n, dtype=np.uint64)
    comp = ((key + 0x7F800001).astype(np.uint64) << np.uint64(32)) | (
        np.uint64(TOP4_FILL_INDEX) - idx
    )
    k = min(n, 4)
    top = np.partition(comp, n - k, axis=-1)[..., n - k :] if n > k else comp
    top = np.flip(np.sort(top, axis=-1), axis=-1)
    indices = (np.uint64(TOP4_FILL_INDEX) - (top & np.uint64(TOP4_FILL_INDEX))).astype(np.int64)
    values = np.take_along_axis(flushed, indices, axis=-1)
    if k < 4:
        pad = (*arr.shape[:-1], 4 - k)
        values = np.concatenate([values, np.full(pad, TOP4_FILL_VALUE, np.float32)], axis=-1)
        indices = np.concatenate([indices, np.full(pad, TOP4_FILL_INDEX, np.int64)], axis=-1)
    return values.astype(np.float32), indices
