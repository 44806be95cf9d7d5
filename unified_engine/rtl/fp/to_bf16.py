"""``Fp32ToBf16``: fp32 → bf16 rounding converter."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ._common import check_latency, f32_fields, stage

__all__ = ["BF16_CANONICAL_NAN", "Fp32ToBf16"]

BF16_CANONICAL_NAN = 0x7FC0

# Register boundaries per latency: 0 = input, 1 = output.
_CUTS = ((), (1,), (0, 1))


class Fp32ToBf16(wiring.Component):
    """Round fp32 to bf16 (golden model: ``fp.f32_to_bf16``).

    Subnormal inputs become signed zero; the top 16 bits are rounded to nearest, ties to
    even, by adding ``0x7FFF + lsb`` to the bit pattern: a carry out of the mantissa moves
    into the exponent, so the largest finite values round up to ±Inf and ±Inf stays ±Inf.
    bf16 has fp32's exponent range, so a normal input never becomes subnormal. Every NaN
    gives the canonical bf16 NaN ``0x7FC0``.

    Parameters
    ----------
    latency:
        0 (combinational), 1 (registered output, default) or 2 (input and output).

    Ports
    -----
    a : In(32)
        fp32 bit pattern.
    result : Out(16)
        bf16 bit pattern, ``latency`` cycles later; one value per cycle.
    """

    def __init__(self, *, latency: int = 1):
        self.latency = check_latency("Fp32ToBf16", latency, range(3))
        super().__init__({"a": In(32), "result": Out(16)})

    def elaborate(self, platform):
        m = Module()
        cuts = frozenset(_CUTS[self.latency])
        v = stage(m, 0 in cuts, "in", a=self.a)
        sign, exp, man = f32_fields(v["a"])
        flushed = Mux(exp == 0, sign << 31, v["a"])
        rounded = (flushed + 0x7FFF + flushed[16])[16:32]
        nan = (exp == 0xFF) & (man != 0)
        result = Mux(nan, Const(BF16_CANONICAL_NAN, 16), rounded)
        out = stage(m, 1 in cuts, "out", result=result)
        m.d.comb += self.result.eq(out["result"])
        return m
