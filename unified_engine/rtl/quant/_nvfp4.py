"""NVFP4 pieces of the block-quant encoder: the E4M3 block scale and the element divisor.

Golden model (``quant_blocks.encode_nvfp4``): ``block_scale = e4m3(block_amax / (6·ts))`` (RNE
onto E4M3FN with subnormals, saturating at 448) and element code ``c = e2m1(|x| / (bs·ts))``
with ``bs = value(block_scale)`` and the fp32 tensor scale ``ts`` (a positive normal). Both are
quotients, rounded with ``_grid``:

* block scale: ``X = amax`` significand (8 bits), ``D = 3·sig(ts)`` normalised to 26 bits;
* element divisor: ``bs · ts`` is exact in 28 bits (E4M3 significand ≤ 4 bits times 24).

Exponents are *biased* like bf16/fp32 exponents, so the quotient's exponent difference is
``exp(x) − exp(divisor)`` in every case; a divisor ``D`` (``W`` bits, leading one at ``W−1``)
with biased exponent ``E`` stands for ``D / 2**(W−1) · 2**(E − 127)``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Value

from ._arith import EXP_SHAPE, leading_zeros_small, narrow_mul, wire

__all__ = ["DIVISOR_BITS", "SCALE_DIVISOR_BITS", "element_divisor", "scale_divisor"]

#: Width of the normalised ``6·ts`` divisor and of the normalised ``bs·ts`` element divisor.
SCALE_DIVISOR_BITS = 26
DIVISOR_BITS = 28


def scale_divisor(m: Module, ts: Value, name: str) -> tuple[Value, Value]:
    """``6·ts`` as ``(D, E)``: 26-bit normalised significand and biased exponent."""
    ts = Value.cast(ts)
    t3 = narrow_mul(m, 3, Cat(ts[0:23], 1), f"{name}_t3")  # 3·sig in [3·2**23, 3·2**24)
    high = t3[25]
    sig = wire(m, Mux(high, t3, t3 << 1)[:SCALE_DIVISOR_BITS], f"{name}_sig")
    # 6·ts = 3·sig·2**(e−150+1); with the leading one at bit 25 that is sig/2**25 · 2**(e+2+h−127).
    exp = wire(m, ts[23:31] + 2 + high, f"{name}_exp", EXP_SHAPE)
    return sig, exp


def element_divisor(m: Module, code: Value, ts: Value, name: str) -> tuple[Value, Value]:
    """``value(code) · ts`` for an E4M3 block-scale ``code`` ≠ 0, as ``(D, E)`` (28 bits)."""
    code, ts = Value.cast(code), Value.cast(ts)
    e, mant = code[3:7], code[0:3]
    a = wire(m, Mux(e == 0, mant, Cat(mant, 1)), f"{name}_a", 4)  # value = a · 2**(max(e,1)−10)
    lz = leading_zeros_small(m, a, f"{name}_lz")
    product = narrow_mul(m, (a << lz)[:4], Cat(ts[0:23], 1), f"{name}_p")  # [2**26, 2**28)
    high = product[27]
    sig = wire(m, Mux(high, product, product << 1)[:DIVISOR_BITS], f"{name}_sig")
    # a·2**(max(e,1)−10) · sig(ts)·2**(e_ts−150) = P·2**(max(e,1)−10−lz+e_ts−150), and with
    # the leading one moved to bit 27: sig/2**27 · 2**(max(e,1) − 7 − lz + e_ts + h − 127).
    exp = wire(m, Mux(e == 0, 1, e) - 7 - lz + ts[23:31] + high, f"{name}_exp", EXP_SHAPE)
    return sig, exp
