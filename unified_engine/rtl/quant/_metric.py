"""Datapath pieces of the IF4 selection metric (golden model: ``quant_blocks.if_metric``).

Per element: ``x̂ = bf16(value(code)·|scale|)``, ``d = f32_sub(x, x̂)``, ``s = f32_mul(d, d)``;
per block: a balanced ``f32_add`` tree over the ``s``. The RTL relies on three facts, which the
tests check against the golden model:

* ``d`` is exact and narrow. A non-zero finite ``x̂`` has the sign of ``x`` and
  ``|x|/|x̂| ∈ (1/2, 3/2·(1+2**-8))`` (the code is the grid value nearest to ``|x|/scale``, half
  a grid step away at most, and the smallest non-zero grid value is at least one step), so
  the exponents of ``|x|`` and ``|x̂|`` differ by at most one and ``|d| = ||x| − |x̂||`` is a
  9-bit integer times ``2**(min exponent − 134)``; when ``x̂ = 0``, ``|d| = |x|``; when
  ``x̂ = ±Inf`` (the largest-finite corner), ``d² = +Inf``.
* ``d²`` has at most 18 significant bits, so ``f32_mul(d, d)`` only flushes (below 2**-126)
  or overflows (2**128 and up); the flush of ``d`` itself is implied by the flush of ``d²``.
* Every term of the tree is +0, positive normal or +Inf, so each node is the cheap
  ``add_nonnegative_f32``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value

from ._arith import (
    BF16_INF,
    EXP_SHAPE,
    F32_INF,
    leading_zeros_small,
    narrow_mul,
    round_product_to_bf16,
    wire,
)

__all__ = ["error_parts", "reconstruct_magnitude", "square_f32"]


def reconstruct_magnitude(m: Module, a: Value, ea: int, scale_magnitude: Value,
                          name: str) -> Signal:
    """15-bit ``|x̂| = |bf16(A·2**ea · scale)|`` for an integer ``A`` (few bits) and a bf16
    scale magnitude; ``A = 0`` or a zero scale give 0, an overflow gives Inf (``0x7F80``)."""
    a = wire(m, a, f"{name}_a")
    width = len(a)
    scale = Value.cast(scale_magnitude)
    s_exp = scale[7:15]
    lz = leading_zeros_small(m, a, f"{name}_lz")
    product = narrow_mul(m, (a << lz)[:width], Cat(scale[0:7], 1), f"{name}_p")  # exact
    magnitude, flush = round_product_to_bf16(
        m, product, wire(m, s_exp + ea - lz + (width - 1), f"{name}_exp", EXP_SHAPE), name)
    zero = (a == 0) | (s_exp == 0) | flush
    return wire(m, Mux(zero, 0, magnitude), f"{name}_xhat", 15)


def error_parts(m: Module, x_magnitude: Value, xhat_magnitude: Value,
                name: str) -> tuple[Signal, Signal, Signal]:
    """``|d| = ||x| − |x̂||`` as ``(D, emin, inf)``: ``|d| = D·2**(emin − 134)`` (D 9 bits).

    ``x_magnitude`` must be flushed (exponent 0 means 0). ``inf`` flags ``x̂ = Inf``.
    """
    x, xh = Value.cast(x_magnitude), Value.cast(xhat_magnitude)
    ex, eh = x[7:15], xh[7:15]
    h_zero = eh == 0
    emin = wire(m, Mux(h_zero | (ex < eh), ex, eh), f"{name}_emin", 8)
    # Both significands on the grid of the smaller exponent: a shift of at most one place.
    big_x = wire(m, (Cat(x[0:7], ex != 0) << (ex != emin))[:9], f"{name}_x", 9)
    big_h = wire(m, Mux(h_zero, 0, (Cat(xh[0:7], 1) << (eh != emin))[:9]), f"{name}_h", 9)
    diff = wire(m, Mux(big_x >= big_h, big_x - big_h, big_h - big_x)[:9], f"{name}_d", 9)
    return diff, emin, wire(m, xh == BF16_INF, f"{name}_inf", 1)


def square_f32(m: Module, d: Value, emin: Value, inf: Value, name: str) -> Signal:
    """fp32 bits of ``f32_mul(d, d)`` for ``|d| = d·2**(emin − 134)`` (see ``error_parts``)."""
    d = wire(m, d, f"{name}_d")
    lz = leading_zeros_small(m, d, f"{name}_lz")  # 9 for d = 0
    sq = wire(m, (d << lz)[:9] * (d << lz)[:9], f"{name}_sq", 18)  # in [2**16, 2**18)
    carry = sq[17]
    frac23 = Mux(carry, Cat(Const(0, 6), sq[0:17]), Cat(Const(0, 7), sq[0:16]))
    exp = wire(m, (emin.as_unsigned() - lz) * 2 + carry - 125, f"{name}_exp", EXP_SHAPE)
    result = Mux(
        inf, F32_INF,
        Mux((d == 0) | (exp < 1), 0,
            Mux(exp > 254, F32_INF, Cat(frac23, exp[:8], Const(0, 1)))),
    )
    return wire(m, result, name, 32)
