"""Independent exact-rational references for the fp32 numeric contract (test-only).

Everything here is scalar pure Python on ``int`` bit patterns and ``fractions.Fraction`` values,
written from the contract in docs/numerics.md and deliberately sharing no code with
``unified_engine.numerics``: a value is decoded to an exact rational, the operation is done
exactly, and :func:`round_to_f32_bits` applies the contract's rounding (RNE to 24 significant
bits with an unbounded exponent, then a magnitude below 2**-126 becomes a signed zero and one of
2**128 or more becomes a signed infinity).
"""

from __future__ import annotations

from fractions import Fraction

CANON_NAN = 0x7FC00000
POS_INF = 0x7F800000
NEG_INF = 0xFF800000
SIGN = 0x80000000


def is_nan(bits: int) -> bool:
    return (bits & 0x7F800000) == 0x7F800000 and (bits & 0x007FFFFF) != 0


def is_inf(bits: int) -> bool:
    return (bits & 0x7FFFFFFF) == 0x7F800000


def is_negative(bits: int) -> bool:
    return bool(bits & SIGN)


def ftz_bits(bits: int) -> int:
    """The storage rule: subnormal → signed zero, any NaN → canonical NaN."""
    if is_nan(bits):
        return CANON_NAN
    if (bits & 0x7F800000) == 0:
        return bits & SIGN
    return bits


def to_fraction(bits: int) -> Fraction:
    """Exact value of a finite fp32 bit pattern (subnormals decoded, not flushed)."""
    exp = (bits >> 23) & 0xFF
    man = bits & 0x7FFFFF
    if exp == 0xFF:
        raise ValueError(f"{bits:#010x} is not finite")
    mag = Fraction(man, 1 << 149) if exp == 0 else Fraction(man | 0x800000) * Fraction(2) ** (
        exp - 150
    )
    return -mag if is_negative(bits) else mag


def round_to_f32_bits(value: Fraction, zero_is_negative: bool = False) -> int:
    """Contract rounding of an exact rational to fp32 bits.

    An exact zero returns -0 when ``zero_is_negative`` else +0 (the caller knows the IEEE sign
    rule of its operation).
    """
    if value == 0:
        return SIGN if zero_is_negative else 0
    sign = SIGN if value < 0 else 0
    mag = abs(value)
    # Choose e so that 2**23 <= mag / 2**e < 2**24.
    e = mag.numerator.bit_length() - mag.denominator.bit_length() - 23
    while mag / Fraction(2) ** e >= 1 << 24:
        e += 1
    while mag / Fraction(2) ** e < 1 << 23:
        e -= 1
    scaled = mag / Fraction(2) ** e
    m = scaled.numerator // scaled.denominator
    rest = scaled - m
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and m % 2 == 1):
        m += 1
    if m == 1 << 24:
        m >>= 1
        e += 1
    biased = e + 150  # value = m * 2**e = (m / 2**23) * 2**(biased - 127)
    if biased >= 255:
        return sign | POS_INF
    if biased <= 0:
        return sign
    return sign | (biased << 23) | (m - (1 << 23))


def ref_add(a: int, b: int) -> int:
    """fp32 ``a + b`` under the contract, from first principles."""
    a, b = ftz_bits(a), ftz_bits(b)
    if is_nan(a) or is_nan(b):
        return CANON_NAN
    if is_inf(a) and is_inf(b):
        return a if a == b else CANON_NAN
    if is_inf(a):
        return a
    if is_inf(b):
        return b
    both_negative_zero = a == SIGN and b == SIGN
    return round_to_f32_bits(to_fraction(a) + to_fraction(b), both_negative_zero)


def ref_mul(a: int, b: int) -> int:
    """fp32 ``a * b`` under the contract, from first principles."""
    a, b = ftz_bits(a), ftz_bits(b)
    if is_nan(a) or is_nan(b):
        return CANON_NAN
    sign = (a ^ b) & SIGN
    a_zero, b_zero = (a & 0x7FFFFFFF) == 0, (b & 0x7FFFFFFF) == 0
    if is_inf(a) or is_inf(b):
        return CANON_NAN if a_zero or b_zero else sign | POS_INF
    return round_to_f32_bits(to_fraction(a) * to_fraction(b), bool(sign))
