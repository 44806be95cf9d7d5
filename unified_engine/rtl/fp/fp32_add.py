"""``Fp32Adder``: pipelined fp32 adder with round-to-nearest-even and flush-to-zero."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ._common import F32_CANONICAL_NAN, check_latency, f32_fields, leading_zeros, stage

__all__ = ["Fp32Adder"]

# Stage boundaries: 0 inputs | compare/swap | 1 | align (shift + sticky) | 2 | add | 3 |
# leading-zero count | 4 | normalise shift | 5 | round | 6 | pack | 7 output.
# Registers for each latency, chosen to balance logic depth (prototype-pe.md: L=4 puts them
# after compare/swap, after the add, after normalising and at the output).
_CUTS = (
    (),
    (7,),
    (3, 7),
    (3, 5, 7),
    (1, 3, 5, 7),
    (1, 2, 3, 5, 7),
    (1, 2, 3, 4, 5, 7),
    (1, 2, 3, 4, 5, 6, 7),
    (0, 1, 2, 3, 4, 5, 6, 7),
)

MAX_LATENCY = len(_CUTS) - 1


class Fp32Adder(wiring.Component):
    """fp32 ``a + b`` under the engine contract (golden model: ``fp.f32_add``).

    Subnormal inputs are flushed to signed zero and a result below 2**-126 becomes a signed
    zero (such a sum of two normal numbers is exact, so nothing is rounded first). The sum
    is rounded to nearest, ties to even; a rounded magnitude of 2**128 or more is ±Inf.
    ``Inf - Inf`` and any NaN input give the canonical NaN ``0x7FC00000``. An exact zero sum
    is +0, except ``(-0) + (-0) = -0``; therefore ``x + (-0) == x`` for every ``x``.

    Datapath ("far path only"): magnitude compare and swap; alignment shift of the smaller
    significand over 24+3 bits with a sticky jam; one add/subtract carry chain; a tree
    leading-zero count and normalising shift; RNE increment and packing.

    Parameters
    ----------
    latency:
        Clock cycles from ``a``/``b`` to ``result`` (0…8, default 4). Registers are spread
        over the seven internal boundaries (and the inputs for 8); 4 is the configuration
        measured in ``research/prototype-pe.md`` (~180 MHz on xc7 by logic depth). In the PE
        this is the interleave factor P: the pipeline registers are the P accumulators.

    Ports
    -----
    a, b : In(32)
        fp32 bit patterns.
    result : Out(32)
        fp32 bit pattern of ``a + b``, ``latency`` cycles later; one operand pair per cycle.
    """

    def __init__(self, *, latency: int = 4):
        self.latency = check_latency("Fp32Adder", latency, range(MAX_LATENCY + 1))
        super().__init__({"a": In(32), "b": In(32), "result": Out(32)})

    def elaborate(self, platform):
        m = Module()
        cuts = frozenset(_CUTS[self.latency])

        v = stage(m, 0 in cuts, "in", a=self.a, b=self.b)

        # -- compare / swap: X is the operand of larger magnitude, Y the smaller. --
        sa, ea, ma = f32_fields(v["a"])
        sb, eb, mb = f32_fields(v["b"])
        a_inf = (ea == 0xFF) & (ma == 0)
        b_inf = (eb == 0xFF) & (mb == 0)
        a_nan = (ea == 0xFF) & (ma != 0)
        b_nan = (eb == 0xFF) & (mb != 0)
        nan = a_nan | b_nan | (a_inf & b_inf & (sa != sb))
        # Compare raw magnitudes: a subnormal (flushed to zero) only ever meets a larger
        # normal operand or another flushed zero, where the order does not matter.
        swap = v["b"][0:31] > v["a"][0:31]
        ex, ey = Mux(swap, eb, ea), Mux(swap, ea, eb)
        # Significands with the hidden bit; a zero exponent field flushes the value to 0.
        sig_a = Cat(ma, 1) & (ea != 0).replicate(24)
        sig_b = Cat(mb, 1) & (eb != 0).replicate(24)
        v = stage(
            m,
            1 in cuts,
            "cmp",
            mx=Mux(swap, sig_b, sig_a),
            my=Mux(swap, sig_a, sig_b),
            ex=ex,
            diff=ex - ey,  # >= 0 because |X| >= |Y|
            sign=Mux(swap, sb, sa),
            sub=sa ^ sb,
            zero_sign=sa & sb,  # sign of an exact zero sum: -0 only for (-0) + (-0)
            nan=nan,
            inf=(a_inf | b_inf) & ~nan,
            inf_sign=Mux(a_inf, sa, sb),
        )

        # -- align: shift Y right by the exponent difference over 27 bits (24 + guard,
        # round, sticky); every bit shifted out is ORed into the lowest bit. --
        diff = v["diff"][:8]
        amount = Mux(diff[5:8].any(), 31, diff[0:5])  # >= 27 shifts everything out
        my = v["my"]
        shifted = Cat(Const(0, 3), my) >> amount
        # Bit k of the 27-bit Y (k >= 3 holds significand bit k-3) is lost iff amount > k.
        lost = Cat(*((amount > k + 3) for k in range(24)))
        sticky = (my & lost).any()
        common = dict(
            ex=v["ex"], sign=v["sign"], sub=v["sub"], zero_sign=v["zero_sign"],
            nan=v["nan"], inf=v["inf"], inf_sign=v["inf_sign"],
        )  # fmt: skip
        v = stage(m, 2 in cuts, "aln", mx=v["mx"], y=shifted[0:27] | sticky, **common)

        # -- add / subtract: one 28-bit carry chain, X + (Y ^ sub) + sub. The carry-in rides
        # on an extra low bit so that a single adder is inferred. --
        x28 = Cat(Const(0, 3), v["mx"], Const(0, 1))
        y28 = Cat(v["y"], Const(0, 1)) ^ v["sub"].replicate(28)
        total = (Cat(Const(1, 1), x28) + Cat(v["sub"], y28))[1:29]
        keys = tuple(common)  # fields that ride along unchanged until normalising
        v = stage(m, 3 in cuts, "add", total=total, **{k: v[k] for k in keys})

        # -- leading-zero count (tree). --
        count, all_zero = leading_zeros(v["total"])
        v = stage(
            m, 4 in cuts, "lzc", total=v["total"], count=count, zero=all_zero,
            **{k: v[k] for k in keys},
        )  # fmt: skip

        # -- normalise: MSB to bit 27; exponent ex + 1 - count (signed). --
        normal = (v["total"] << v["count"])[0:28]
        v = stage(
            m,
            5 in cuts,
            "nrm",
            normal=normal,
            exp=v["ex"] + 1 - v["count"],
            zero=v["zero"],
            **{k: v[k] for k in keys if k != "ex"},
        )

        # -- round to nearest even on bits [27:4], guard bit 3, sticky bits [2:0]. --
        normal = v["normal"]
        sig = normal[4:28]
        round_up = normal[3] & (normal[0:3].any() | sig[0])
        rounded = sig + round_up  # 25 bits; a carry-out leaves the low 23 bits zero
        rest = {k: v[k] for k in ("sign", "zero", "zero_sign", "nan", "inf", "inf_sign")}
        v = stage(m, 6 in cuts, "rnd", mantissa=rounded[0:23], exp=v["exp"] + rounded[24], **rest)

        # -- pack: specials, exact zero, underflow flush, overflow to infinity. --
        exp, sign = v["exp"], v["sign"]
        result = Mux(
            v["nan"],
            Const(F32_CANONICAL_NAN, 32),
            Mux(
                v["inf"],
                Cat(Const(0, 23), Const(0xFF, 8), v["inf_sign"]),
                Mux(
                    v["zero"],
                    Cat(Const(0, 31), v["zero_sign"]),
                    Mux(
                        exp <= 0,
                        Cat(Const(0, 31), sign),
                        Mux(
                            exp >= 0xFF,
                            Cat(Const(0, 23), Const(0xFF, 8), sign),
                            Cat(v["mantissa"], exp[:8], sign),
                        ),
                    ),
                ),
            ),
        )
        out = stage(m, 7 in cuts, "out", result=result)
        m.d.comb += self.result.eq(out["result"])
        return m
