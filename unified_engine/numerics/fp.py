"""Bit-exact golden models of the engine's basic floating-point arithmetic.

The numeric contract (see ``docs/numerics.md``), implemented here once:

* **bf16** values travel as ``uint16`` bit patterns, **fp32** values as ``numpy.float32``
  arrays whose bit patterns are exactly what the hardware holds.
* Subnormals are flushed to zero **on input and on output** (FTZ/DAZ), keeping the sign.
* Results are rounded to nearest, ties to even (RNE) as if the exponent range were unbounded;
  a rounded magnitude below the smallest normal (2**-126) becomes a signed zero, a rounded
  magnitude of 2**128 or more becomes a signed infinity.
* Every NaN result is the one canonical quiet NaN (fp32 ``0x7FC00000``, bf16 ``0x7FC0``).
  ``Inf - Inf`` and ``0 * Inf`` are NaN.
* An exact zero sum is +0, except ``(-0) + (-0) = -0`` (IEEE RNE).

A bf16 × bf16 product has at most 16 significant bits, so it is exact in fp32; the processing
element accumulates such products sequentially in k order from +0 in fp32 and rounds to bf16
once (``pe_matmul``).  All functions accept scalars or arrays and broadcast like numpy.
"""

from __future__ import annotations

import numpy as np

F32_CANONICAL_NAN = 0x7FC00000
BF16_CANONICAL_NAN = 0x7FC0
F32_MIN_NORMAL = np.float32(2.0**-126)

_F32_EXP_MASK = np.uint32(0x7F800000)
_F32_MAN_MASK = np.uint32(0x007FFFFF)
_F32_SIGN_MASK = np.uint32(0x80000000)


def f32_from_bits(bits) -> np.ndarray:
    """Reinterpret ``uint32`` bit patterns as ``float32`` (no canonicalisation)."""
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def f32_to_bits(x) -> np.ndarray:
    """Reinterpret ``float32`` values as their ``uint32`` bit patterns."""
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def ftz32(x) -> np.ndarray:
    """Apply the fp32 storage rule: subnormals → signed zero, every NaN → canonical NaN."""
    bits = f32_to_bits(x).copy()
    exp = bits & _F32_EXP_MASK
    man = bits & _F32_MAN_MASK
    subnormal = (exp == 0) & (man != 0)
    bits[subnormal] &= _F32_SIGN_MASK
    bits[(exp == _F32_EXP_MASK) & (man != 0)] = F32_CANONICAL_NAN
    return bits.view(np.float32)


def bf16_to_f32(b) -> np.ndarray:
    """Widen bf16 bit patterns to fp32 (exact), flushing subnormals and canonicalising NaN."""
    wide = np.asarray(b, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
    return ftz32(wide.view(np.float32))


def f32_to_bf16(x) -> np.ndarray:
    """Round fp32 to bf16 bit patterns: FTZ input, RNE, overflow → ±Inf, canonical NaN.

    bf16 shares fp32's exponent range, so a normal input never rounds into the subnormal
    range; a carry out of the significand rounds up into the next binade or to infinity.
    """
    bits = f32_to_bits(ftz32(x)).astype(np.uint64)
    lsb = (bits >> np.uint64(16)) & np.uint64(1)
    rounded = ((bits + np.uint64(0x7FFF) + lsb) >> np.uint64(16)).astype(np.uint16)
    is_nan = np.isnan(f32_from_bits(bits.astype(np.uint32)))
    return np.where(is_nan, np.uint16(BF16_CANONICAL_NAN), rounded).astype(np.uint16)


def f32_to_bf16_f32(x) -> np.ndarray:
    """Round fp32 to bf16 and widen back: the fp32 value a bf16 output register holds."""
    return bf16_to_f32(f32_to_bf16(x))


def _round_f64_to_f32(p) -> np.ndarray:
    """Round float64 values to fp32 under the contract's rule (unbounded-exponent RNE, then FTZ).

    A plain float64 → float32 cast rounds tiny values on the subnormal grid, which differs from
    rounding to 24 significant bits first; scale tiny values into the normal range to round.
    """
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        direct = p.astype(np.float32)
        scaled = (p * 2.0**100).astype(np.float32)
    tiny = np.abs(p) < 2.0**-126
    # Rounded at 24 bits, a tiny value either stays below 2**-126 (→ signed zero) or rounds
    # up to exactly 2**-126.
    rounds_up = np.abs(scaled) >= np.float32(2.0**-26)
    tiny_result = np.where(rounds_up, np.copysign(F32_MIN_NORMAL, p), np.copysign(0.0, p))
    return ftz32(np.where(tiny, tiny_result.astype(np.float32), direct))


def f32_add(a, b) -> np.ndarray:
    """fp32 ``a + b`` under the engine contract (FTZ in/out, RNE, canonical NaN).

    The exact sum of two normal fp32 values is a multiple of 2**-149, so a sum below 2**-126
    is exact and simply flushed; numpy's IEEE add therefore matches the contract after FTZ.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return ftz32(np.add(ftz32(a), ftz32(b), dtype=np.float32))


def f32_sub(a, b) -> np.ndarray:
    """fp32 ``a - b`` (``a + (-b)``) under the engine contract."""
    return f32_add(a, np.negative(ftz32(b)))


def f32_mul(a, b) -> np.ndarray:
    """fp32 ``a * b`` under the engine contract; the float64 product of two fp32 is exact."""
    a64 = ftz32(a).astype(np.float64)
    b64 = ftz32(b).astype(np.float64)
    with np.errstate(invalid="ignore"):
        return _round_f64_to_f32(a64 * b64)


def bf16_mul(a, b) -> np.ndarray:
    """Exact bf16 × bf16 product as fp32 (the PE multiplier). Inputs are bf16 bit patterns.

    The 8×8-bit significand product fits fp32's 24 bits, so nothing is rounded: a product
    below 2**-126 is flushed to a signed zero and one of 2**128 or more is ±Inf.
    """
    return f32_mul(bf16_to_f32(a), bf16_to_f32(b))


def f32_max(a, b) -> np.ndarray:
    """fp32 maximum: NaN if either input is NaN, and -0 orders below +0."""
    return _minmax(a, b, take_max=True)


def f32_min(a, b) -> np.ndarray:
    """fp32 minimum: NaN if either input is NaN, and -0 orders below +0."""
    return _minmax(a, b, take_max=False)


def _minmax(a, b, take_max: bool) -> np.ndarray:
    a, b = np.broadcast_arrays(ftz32(a), ftz32(b))
    ka, kb = f32_order_key(a), f32_order_key(b)
    pick_a = ka >= kb if take_max else ka <= kb
    out = np.where(pick_a, a, b).astype(np.float32)
    return np.where(np.isnan(a) | np.isnan(b), f32_from_bits(F32_CANONICAL_NAN), out)


def f32_order_key(x) -> np.ndarray:
    """Signed integer key that orders fp32 values totally (-Inf < ... < -0 < +0 < ... < +Inf).

    This is the comparator the RTL uses: flip the magnitude bits of negative numbers.
    NaN keys are meaningless; callers handle NaN first.
    """
    bits = f32_to_bits(ftz32(x)).astype(np.int64)
    return np.where(bits >= 0x80000000, 0x7FFFFFFF - bits, bits)


def f32_lt(a, b) -> np.ndarray:
    """IEEE ordered less-than on fp32 after FTZ (False when either input is NaN; -0 == +0)."""
    a, b = ftz32(a), ftz32(b)
    return np.less(a, b)


def f32_eq(a, b) -> np.ndarray:
    """IEEE ordered equality on fp32 after FTZ (False when either input is NaN; -0 == +0)."""
    a, b = ftz32(a), ftz32(b)
    return np.equal(a, b)


def _flush_subnormals_inplace(x: np.ndarray) -> None:
    """Set float32 subnormals in ``x`` to zero with their sign (FTZ), in place."""
    tiny = (np.abs(x) < F32_MIN_NORMAL) & (x != 0)
    if tiny.any():
        x[tiny] = np.copysign(np.float32(0), x[tiny])


def pe_accumulate(a_bf16, b_bf16, acc=None) -> np.ndarray:
    """What the systolic array computes before rounding: fp32 ``acc + A @ B``.

    ``a_bf16`` is ``[M, K]``, ``b_bf16`` is ``[K, N]`` (bf16 bit patterns). Each output starts
    from ``acc`` (default +0) and adds the exact products ``a[m, k] * b[k, n]`` one at a time
    in increasing k with fp32 RNE/FTZ addition. Returns ``float32 [M, N]``.

    Implementation note: a bf16 × bf16 product is exact in float32 unless it underflows (then
    it is below 2**-126 and flushes: no round-up case exists with 16 significant bits) or
    overflows (float32 gives ±Inf, as the contract does), so plain float32 multiply and add
    plus an explicit flush after each step is this contract, bit for bit (NaN payloads are
    canonicalised once at the end; NaN stays NaN through additions).
    """
    a = np.asarray(a_bf16, dtype=np.uint16)
    b = np.asarray(b_bf16, dtype=np.uint16)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"pe_accumulate needs A[M,K] and B[K,N]; got {a.shape} and {b.shape}")
    m, n = a.shape[0], b.shape[1]
    if acc is None:
        out = np.zeros((m, n), np.float32)
    else:
        acc = np.asarray(acc)
        if acc.size != m * n:
            raise ValueError(f"pe_accumulate: acc must have {m}×{n} elements, got {acc.shape}")
        out = ftz32(acc.astype(np.float32, copy=False)).reshape(m, n).copy()
    a32 = np.ascontiguousarray(bf16_to_f32(a).T)  # [K, M]: row k is a contiguous column of A
    b32 = bf16_to_f32(b)
    product = np.empty((m, n), np.float32)
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        for k in range(a.shape[1]):
            np.multiply(a32[k][:, None], b32[k][None, :], out=product)
            _flush_subnormals_inplace(product)
            np.add(out, product, out=out)
            _flush_subnormals_inplace(out)
    return ftz32(out)


def pe_matmul(a_bf16, b_bf16, acc=None) -> np.ndarray:
    """bf16 ``A @ B`` as the array outputs it: ``pe_accumulate`` rounded once to bf16 bits."""
    return f32_to_bf16(pe_accumulate(a_bf16, b_bf16, acc))
