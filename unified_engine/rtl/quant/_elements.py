"""Element-code rounding of the block-quant encoder: thresholds ``M·|scale|`` and comparators.

The golden rule (``ElementFormat.round_magnitude``): the magnitude code of ``|x| / scale`` is
the number of grid midpoints ``M_j`` strictly below the quotient, plus one on an exact tie
``|x| = M_j·scale`` when ``j`` is odd (the tie goes to the even code). The RTL compares ``|x|``
with the exact products ``T_j = M_j·|scale|`` instead of dividing: a midpoint ``M_j`` has at
most 4 significant bits for the 4-bit grids and the scale 8, so ``T_j`` is exact in 12 bits.

Both sides are compared as *keys*: the biased exponent of the leading one (offset by 2 so a
threshold below 2**-126 stays positive; 10 bits) above an 11-bit fraction. Normalised keys
order like the values they encode, and a zero ``|x|`` has key 0, below every threshold.
"""

from __future__ import annotations

from fractions import Fraction

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value

from ...numerics.quant_grids import ElementFormat
from ._arith import narrow_mul, wire

__all__ = ["KEY_BITS", "magnitude_key", "midpoint_factors", "round_to_grid", "threshold_key"]

_FRAC_BITS = 11
_EXP_OFFSET = 2
_EXP_BITS = 10
KEY_BITS = _FRAC_BITS + _EXP_BITS


def midpoint_factors(elem: ElementFormat) -> list[tuple[int, int]]:
    """Each midpoint of ``elem``'s grid as ``(odd integer m, exponent q)``, ``M = m·2**q``."""
    factors = []
    for mid in elem.midpoints:
        frac = Fraction(float(mid))
        num, den = frac.numerator, frac.denominator
        q = -(den.bit_length() - 1)  # den is a power of two: the grid is dyadic
        assert den == 1 << -q
        while num % 2 == 0:
            num //= 2
            q += 1
        if num.bit_length() > 4:
            raise ValueError(f"{elem.name}: midpoint {mid} needs more than 4 significant bits")
        factors.append((num, q))
    return factors


def magnitude_key(m: Module, bf16_magnitude: Value, name: str) -> Signal:
    """Key of a bf16 magnitude (15 bits: exponent, fraction); exponent 0 (±0, subnormal) → 0."""
    mag = Value.cast(bf16_magnitude)
    exp = mag[7:15]
    key = Cat(Const(0, _FRAC_BITS - 7), mag[0:7], (exp + _EXP_OFFSET)[:_EXP_BITS])
    return wire(m, Mux(exp == 0, 0, key), name, KEY_BITS)


def threshold_key(m: Module, factor: tuple[int, int], scale_magnitude: Value,
                  name: str) -> Signal:
    """Key of the exact product ``m·2**q · scale`` for a normal bf16 ``scale_magnitude``."""
    mult, q = factor
    scale = Value.cast(scale_magnitude)
    s_exp, s_sig = scale[7:15], Cat(scale[0:7], 1)
    bits = mult.bit_length()
    product = narrow_mul(m, mult, s_sig, f"{name}_p")  # 8+bits bits, in [128·m, 256·m)
    high = product[7 + bits]  # leading one at bit 7+bits, else at 6+bits
    fraction = Mux(high, product[: 7 + bits], Cat(Const(0, 1), product[: 6 + bits]))
    exp = s_exp + (q + bits - 1 + _EXP_OFFSET) + high
    return wire(m, Cat(Const(0, _FRAC_BITS - 7 - bits), fraction, exp[:_EXP_BITS]), name,
                KEY_BITS)


def round_to_grid(m: Module, x_key: Value, thresholds: list[Value], name: str) -> Signal:
    """Magnitude code: midpoints below ``x`` plus the odd-index ties (see module docstring)."""
    counted = [
        (x_key >= t) if j % 2 == 1 else (x_key > t)
        for j, t in enumerate(thresholds)
    ]
    count = sum(counted[1:], Value.cast(counted[0]))
    return wire(m, count, name, (len(thresholds)).bit_length())
