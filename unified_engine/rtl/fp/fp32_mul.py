"""``Fp32Multiplier``: pipelined fp32 × fp32 with round-to-nearest-even and flush-to-zero."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ._common import (
    F32_BIAS,
    F32_CANONICAL_NAN,
    check_latency,
    f32_fields,
    multiply_specials,
    stage,
)

__all__ = ["Fp32Multiplier"]

# Register boundaries per latency: 0 = inputs, 1 = after the 24×24 product,
# 2 = after normalise + round, 3 = output.
_CUTS = ((), (3,), (1, 3), (1, 2, 3), (0, 1, 2, 3))


class Fp32Multiplier(wiring.Component):
    """fp32 product under the engine contract (golden model: ``fp.f32_mul``).

    Subnormal inputs are flushed to signed zero; the 48-bit significand product is rounded
    to 24 bits (RNE) as if the exponent were unbounded, then a magnitude below 2**-126 is
    flushed to a signed zero and one of 2**128 or more becomes ±Inf. A product just below
    2**-126 that rounds up to exactly 2**-126 is therefore kept (normal), as IEEE RNE with
    an unbounded exponent would. NaN inputs, 0 × Inf give the canonical NaN ``0x7FC00000``.

    Parameters
    ----------
    latency:
        Clock cycles from ``a``/``b`` to ``result`` (0…4, default 3). Registers go, in order of
        preference, at the output, after the 24×24 product (absorbed by the DSP pipeline
        register), after rounding, and at the inputs.

    Ports
    -----
    a, b : In(32)
        fp32 bit patterns.
    result : Out(32)
        fp32 bit pattern of ``a * b``, ``latency`` cycles later; one operand pair per cycle.
    """

    def __init__(self, *, latency: int = 3):
        self.latency = check_latency("Fp32Multiplier", latency, range(5))
        super().__init__({"a": In(32), "b": In(32), "result": Out(32)})

    def elaborate(self, platform):
        m = Module()
        cuts = frozenset(_CUTS[self.latency])

        v = stage(m, 0 in cuts, "in", a=self.a, b=self.b)
        sa, ea, ma = f32_fields(v["a"])
        sb, eb, mb = f32_fields(v["b"])
        a_zero, b_zero, a_inf, b_inf, nan = multiply_specials(ea, ma, eb, mb)
        v = stage(
            m,
            1 in cuts,
            "mul",
            product=Cat(ma, 1) * Cat(mb, 1),  # 24×24 → 48 bits
            exp=ea + eb - F32_BIAS,  # signed(10): the exponent of the product's bit 46
            sign=sa ^ sb,
            nan=nan,
            inf=(a_inf | b_inf) & ~nan,
            zero=(a_zero | b_zero) & ~nan,
        )

        # Normalise: the product of two [1, 2) significands lies in [1, 4), so its leading
        # one is bit 47 or bit 46; keep 24 bits, a guard bit and the sticky OR of the rest.
        product = v["product"][:48]
        high = product[47]
        sig = Mux(high, product[24:48], product[23:47])
        guard = Mux(high, product[23], product[22])
        sticky = Mux(high, product[0:23].any(), product[0:22].any())
        round_up = guard & (sticky | sig[0])
        rounded = sig + round_up  # 25 bits; a carry out means the significand became 2.0
        v = stage(
            m,
            2 in cuts,
            "rnd",
            mantissa=rounded[0:23],  # also right after a carry-out (all zero then)
            exp=v["exp"] + high + rounded[24],
            sign=v["sign"],
            nan=v["nan"],
            inf=v["inf"],
            zero=v["zero"],
        )

        exp, sign = v["exp"], v["sign"]
        result = Mux(
            v["nan"],
            Const(F32_CANONICAL_NAN, 32),
            Mux(
                v["inf"] | (~v["zero"] & (exp >= 0xFF)),
                Cat(Const(0, 23), Const(0xFF, 8), sign),
                Mux(
                    v["zero"] | (exp <= 0),
                    Cat(Const(0, 31), sign),
                    Cat(v["mantissa"], exp[:8], sign),
                ),
            ),
        )
        out = stage(m, 3 in cuts, "out", result=result)
        m.d.comb += self.result.eq(out["result"])
        return m
