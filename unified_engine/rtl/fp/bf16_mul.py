"""``Bf16Multiplier``: exact bf16 × bf16 → fp32 product (the PE multiplier)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ._common import (
    F32_BIAS,
    F32_CANONICAL_NAN,
    bf16_fields,
    check_latency,
    multiply_specials,
    stage,
)

__all__ = ["Bf16Multiplier"]

# Register boundaries per latency: 0 = inputs, 1 = after the 8×8 multiply, 2 = output.
_CUTS = ((), (2,), (0, 2), (0, 1, 2))


class Bf16Multiplier(wiring.Component):
    """Exact product of two bf16 values as fp32 (golden model: ``fp.bf16_mul``).

    The two 8-bit significands are multiplied once (one DSP48 slice on Xilinx); the 16-bit
    product always fits fp32's 24-bit significand, so nothing is rounded. Subnormal inputs
    are flushed to signed zero, a product below 2**-126 becomes a signed zero, a product of
    2**128 or more becomes ±Inf, and NaN, Inf × 0 give the canonical NaN ``0x7FC00000``.

    Parameters
    ----------
    latency:
        Clock cycles from ``a``/``b`` to ``result`` (0…3). 0 is combinational; 1 registers
        the output; 2 (default) registers the inputs and the output; 3 also registers the
        raw significand product (DSP ``MREG``).

    Ports
    -----
    a, b : In(16)
        bf16 bit patterns.
    result : Out(32)
        fp32 bit pattern of ``a * b``, ``latency`` cycles after the inputs. Fully pipelined:
        one new operand pair every cycle.
    """

    def __init__(self, *, latency: int = 2):
        self.latency = check_latency("Bf16Multiplier", latency, range(4))
        super().__init__({"a": In(16), "b": In(16), "result": Out(32)})

    def elaborate(self, platform):
        m = Module()
        cuts = frozenset(_CUTS[self.latency])

        v = stage(m, 0 in cuts, "in", a=self.a, b=self.b)
        sa, ea, ma = bf16_fields(v["a"])
        sb, eb, mb = bf16_fields(v["b"])
        a_zero, b_zero, a_inf, b_inf, nan = multiply_specials(ea, ma, eb, mb)
        v = stage(
            m,
            1 in cuts,
            "mul",
            product=Cat(ma, 1) * Cat(mb, 1),  # 8×8 → 16 bits, the only wide operation
            exp=ea + eb - F32_BIAS,
            sign=sa ^ sb,
            nan=nan,
            inf=(a_inf | b_inf) & ~nan,
            zero=(a_zero | b_zero) & ~nan,
        )

        product = v["product"][:16]
        carry = product[15]  # the product of two [1, 2) significands lies in [1, 4)
        exp_out = v["exp"] + carry  # signed: below 1 flushes, 255 and up overflows
        mantissa = Mux(carry, Cat(Const(0, 8), product[0:15]), Cat(Const(0, 9), product[0:14]))
        sign = v["sign"]
        zero_bits = Cat(Const(0, 31), sign)
        inf_bits = Cat(Const(0, 23), Const(0xFF, 8), sign)
        packed = Cat(mantissa, exp_out[:8], sign)
        result = Mux(
            v["nan"],
            Const(F32_CANONICAL_NAN, 32),
            Mux(
                v["inf"] | (~v["zero"] & (exp_out >= 0xFF)),
                inf_bits,
                Mux(v["zero"] | (exp_out <= 0), zero_bits, packed),
            ),
        )
        out = stage(m, 2 in cuts, "out", result=result)
        m.d.comb += self.result.eq(out["result"])
        return m
