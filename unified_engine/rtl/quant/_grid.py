"""Quotient rounding of the block-quant encoder: ``|x| / divisor`` onto an element grid.

The 8-bit grids are too fine for the midpoint comparators of ``_elements.py`` (INT8 has 127
midpoints, E4M3 126), and NVFP4's divisor ``block_scale · tensor_scale`` has a 28-bit
significand. The encoder therefore divides: both operands are normalised significands
``X, D ∈ [2**(W-1), 2**W)`` with ``q = X/D · 2**d`` (``d`` = difference of the biased
exponents), a restoring divider produces ``R = floor(X/D · 2**F)`` (``F + 1`` bits, ``X/D`` is
in (1/2, 2)) and ``sticky = (remainder ≠ 0)``, and the rounding below turns ``(R, sticky, d)``
into the magnitude code of the golden ``ElementFormat.round_magnitude``: the nearest grid value,
ties to the even code, clamped to the largest code. Everything is exact: ``R`` and ``sticky``
describe the quotient's position relative to every rounding boundary the grids need.

* Integer grids (INT4, INT8): ``F = FRAC_INT`` = 8, enough for ``floor(2q)`` up to ``2**9``.
* Floating-point grids with ``mant`` mantissa bits (E2M1, E4M3): ``F = FRAC_FP`` = 5
  (``mant + 2`` for E4M3: the mantissa, a guard bit and one bit that only feeds the sticky).

The helpers add combinational logic to the caller's ``Module``; the caller places registers
between division steps (``divide_start`` then ``divide_steps``, any split).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value

from ._arith import EXP_SHAPE, leading_zeros_small, narrow_mul, round_product_to_bf16, wire

__all__ = [
    "FRAC_FP",
    "FRAC_INT",
    "divide_start",
    "divide_steps",
    "reconstruct",
    "round_fp_grid",
    "round_int_grid",
]

FRAC_INT = 8
FRAC_FP = 5


def divide_start(m: Module, x: Value, d: Value, name: str) -> tuple[Signal, Signal]:
    """First quotient bit of ``x / d`` (both ``W`` bits, leading one at bit ``W-1``).

    Returns ``(q, rem)``: ``q`` (1 bit) = ``x ≥ d``, ``rem = x − q·d`` (< ``d``, ``W`` bits).
    """
    x, d = Value.cast(x), Value.cast(d)
    width = len(d)
    ge = wire(m, x >= d, f"{name}_q0")
    rem = wire(m, Mux(ge, x - d, x)[:width], f"{name}_r0", width)
    return ge, rem


def divide_steps(m: Module, q: Value, rem: Value, d: Value, steps: int,
                 name: str) -> tuple[Value, Value]:
    """``steps`` more restoring-division steps: each appends one quotient bit below ``q``."""
    d = Value.cast(d)
    width = len(d)
    for k in range(steps):
        doubled = Cat(Const(0, 1), rem)  # rem < d, so 2·rem < 2·d fits W + 1 bits
        ge = doubled >= d
        rem = wire(m, Mux(ge, doubled - d, doubled)[:width], f"{name}_r{len(q) + k}", width)
        q = Cat(ge, q)
    return wire(m, q, f"{name}_q", len(q)), rem


def round_int_grid(m: Module, quotient: Value, sticky: Value, d: Value, max_code,
                   name: str) -> Signal:
    """Magnitude code ``min(RNE(q), max_code)`` on the integer grid ``0, 1, 2, …``.

    ``quotient`` = ``R`` with ``FRAC_INT`` fraction bits, ``d`` the signed exponent difference.
    ``q < 1/2`` for ``d ≤ −2`` and ``q > 128`` for ``d ≥ 8``, so only ``d`` in −1…7 shifts.
    """
    r = Value.cast(quotient)
    assert len(r) == FRAC_INT + 1
    d = Value.cast(d).as_signed()
    shift = wire(m, (7 - d)[:4], f"{name}_sh", 4)  # 0…8 where it matters
    twice = wire(m, r >> shift, f"{name}_2q", 9)  # floor(2q)
    lost = (r & ((Const(1, 10) << shift) - 1)[:9]) != 0
    integer = twice[1:]
    up = twice[0] & (lost | sticky | integer[0])
    code = wire(m, integer + up, f"{name}_rne", 9)
    result = Mux(d < -1, 0, Mux((d > 7) | (code > max_code), max_code, code))
    return wire(m, result, name, 7)


def round_fp_grid(m: Module, quotient: Value, sticky: Value, d: Value, *, mant: int,
                  emin: int, max_code: int, name: str) -> Signal:
    """Magnitude code of ``q`` on a sign-magnitude FP grid (E2M1, E4M3): RNE, clamped.

    The grid has ``mant`` mantissa bits, smallest normal ``2**emin`` and subnormals in steps
    of ``2**(emin − mant)``; magnitude code ``c`` is ``(biased exponent, mantissa)``, so codes
    order like values and the code of a value is ``RNE(q / step)`` below ``2**emin`` and
    ``RNE(significand·2**mant) + (e − emin)·2**mant`` above (a carry moves into the exponent).
    """
    r = Value.cast(quotient)
    frac = len(r) - 1
    assert frac >= mant + 2
    d = Value.cast(d).as_signed()
    high = r[frac]
    sig = wire(m, Mux(high, r, r << 1)[: frac + 1], f"{name}_sig", frac + 1)  # leading one at F
    e = wire(m, d - 1 + high, f"{name}_e", EXP_SHAPE)
    under = wire(m, emin - e, f"{name}_under", EXP_SHAPE)
    # Subnormal: shift further right; beyond mant + 2 places the value is below half a step.
    extra = Mux(under > 0, Mux(under > mant + 2, mant + 2, under), 0)
    shift = wire(m, (frac - mant) + extra, f"{name}_shift", 4)
    guard_bits = frac + 3  # room below the binary point: the shift never drops a bit
    shifted = wire(m, Cat(Const(0, guard_bits), sig) >> shift, f"{name}_shifted",
                   guard_bits + frac + 1)
    units = shifted[guard_bits:]
    guard = shifted[guard_bits - 1]
    lost = shifted[: guard_bits - 1] != 0
    up = guard & (lost | sticky | units[0])
    top = (max_code >> mant) + 1  # binade offsets beyond this saturate anyway
    offset = Mux(e > emin, Mux(e - emin > top, top, e - emin), 0)
    code = wire(m, units + up + (offset << mant)[: 16], f"{name}_code", 16)
    return wire(m, Mux(code > max_code, max_code, code), name, max_code.bit_length())


def reconstruct(m: Module, a: Value, ea, scale_magnitude: Value, name: str) -> Signal:
    """15-bit ``|bf16(A·2**ea · scale)|`` for an integer ``A`` and a bf16 scale magnitude.

    Like ``_metric.reconstruct_magnitude`` but ``A`` may be wider than 4 bits (INT8 codes,
    multiplied in a DSP/LUT multiplier) and ``ea`` may be a signal (E4M3 exponents). ``A = 0``
    or a zero scale give 0, an overflow gives Inf (``0x7F80``).
    """
    a = wire(m, a, f"{name}_a")
    width = len(a)
    scale = Value.cast(scale_magnitude)
    s_exp, s_sig = scale[7:15], Cat(scale[0:7], 1)
    lz = leading_zeros_small(m, a, f"{name}_lz")
    norm = (a << lz)[:width]
    product = (narrow_mul(m, norm, s_sig, f"{name}_p") if width <= 4
               else wire(m, norm * s_sig, f"{name}_p", width + 8))
    exp = wire(m, s_exp + ea - lz + (width - 1), f"{name}_exp", EXP_SHAPE)
    magnitude, flush = round_product_to_bf16(m, product, exp, name)
    zero = (a == 0) | (s_exp == 0) | flush
    return wire(m, Mux(zero, 0, magnitude), f"{name}_xhat", 15)
