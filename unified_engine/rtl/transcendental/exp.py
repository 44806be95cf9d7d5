"""``Exp`` and ``Exp2``: pipelined fp32 e**x and 2**x, bit-exact with
``numerics.transcendental.exp`` / ``exp2`` (docs/numerics.md §6, "exp(x) and exp2(x)")."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...numerics.transcendental import (
    DEFAULT_EXP_DEGREE,
    DEFAULT_EXP_TABLE_BITS,
    EXP_FRAC_BITS,
    LOG2E_FRAC_BITS,
    exp2_poly_coefficients,
    exp2_table,
    log2e_fixed,
)
from ._common import F32_BIAS, F32_LAYOUT, Special, generated, special_or
from ._pipeline import Pipeline, Product, carry
from ._stream import StreamPipeline

__all__ = ["Exp", "Exp2", "ExpDatapath"]

_F = EXP_FRAC_BITS  # 32 fraction bits of t, the table and the polynomial
_U_BITS = 40  # |t| in Q8.32
# exp: U = P >> (30 - e) with 30 = 23 + 39 - 32, taken as (P >> 24) >> (6 - e), where 6 is
# the largest exponent that reaches the datapath (|x| < 128): a 40-bit shifter input.
_P_DROP = 23 + LOG2E_FRAC_BITS - _F - 6


class ExpDatapath(wiring.Component):
    """fp32 ``e**x`` (or ``2**x`` with ``base2=True``) as a fixed-latency pipeline.

    Bit-exact with ``numerics.transcendental.exp`` / ``exp2`` for the same ``table_bits`` and
    ``degree``; the ROM and the constants come from ``exp2_table``, ``exp2_poly_coefficients``
    and ``log2e_fixed``. One input per cycle; stall it with ``EnableInserter`` (or use the
    stream wrappers :class:`Exp` / :class:`Exp2`).

    Stages (defaults; ``latency`` = 11 for exp, 9 for exp2, ``7 + 2·degree`` / ``5 + 2·degree``):

    1. decode: specials, significand ``m``, right-shift amount ``6 - e`` (exp2: ``7 - e``),
       clamped to 63;
    2-3. exp only: ``P = m · log2e_fixed()`` (24 × 40: three pieces) and ``P >> 24``;
       exp2 uses ``m << 16`` instead;
    4. ``U`` = barrel shift (6 levels of 2:1 muxes), ``t = ±U`` (41-bit carry chain); split
       into ``n``, table index ``i`` and ``r``;
    5…4+2·degree. Horner steps, each a registered partial-product stage (``acc × r``) and a
       three-input add (``(C_k << 32) + pieces``, then ``>> 32``); the ROM read of ``T[i]``
       is issued in the last of them;
    then ``T[i] × e_r`` (33 × 24: two pieces), ``y = T + (T·e_r >> 32)`` with ``n + 127``
    alongside, and a final stage that rounds (RNE on 9 bits), flushes/overflows and muxes in
    the special results.

    Multipliers (default): 24×40 constant (3 DSPs, one of them 24×6), 24×30 constant (2),
    24×32 (2), 24×33 (2): 9 DSP pieces for exp, 6 for exp2. ROM: ``2**table_bits`` × 33 bits
    (``lib.memory.Memory`` with a registered read port: a BRAM18 or LUT ROM, tool's choice).

    Parameters
    ----------
    table_bits:
        log2 of the table size, 2…10 (default 8).
    degree:
        Degree of the polynomial for ``2**r - 1``, 1…4 (default 2).
    base2:
        Compute ``2**x`` (skips the log2(e) multiply; saturates at |x| >= 256).

    Ports
    -----
    x : In(32)
        fp32 bit pattern.
    result : Out(32)
        fp32 bits of ``exp(x)`` (``exp2(x)``), ``latency`` cycles later.
    """

    def __init__(
        self,
        *,
        table_bits: int = DEFAULT_EXP_TABLE_BITS,
        degree: int = DEFAULT_EXP_DEGREE,
        base2: bool = False,
    ):
        self.latency = self.check_params(table_bits=table_bits, degree=degree, base2=base2)
        self.table = exp2_table(table_bits)
        self.coefficients = exp2_poly_coefficients(degree)
        self.table_bits = table_bits
        self.degree = degree
        self.base2 = base2
        super().__init__({"x": In(32), "result": Out(32)})

    @classmethod
    def check_params(
        cls,
        *,
        table_bits: int = DEFAULT_EXP_TABLE_BITS,
        degree: int = DEFAULT_EXP_DEGREE,
        base2: bool = False,
    ) -> int:
        """Validate the parameters (ranges of the golden model) and return the latency."""
        if not isinstance(base2, bool):
            raise TypeError(f"ExpDatapath: base2 must be a bool, got {base2!r}")
        generated("ExpDatapath", exp2_table, table_bits)
        generated("ExpDatapath", exp2_poly_coefficients, degree)
        # decode, [log2(e) product and sum], shift/split, Horner, table product and sum, round
        return 1 + (0 if base2 else 2) + 1 + 2 * degree + 2 + 1

    def _widths(self) -> tuple[list[int], int]:
        """Bit widths of the Horner accumulators (C_d first) and of ``e_r``.

        Every coefficient is positive, so each value is largest at the largest ``r``.
        """
        r_max = (1 << (_F - self.table_bits)) - 1
        acc = self.coefficients[-1]
        widths = [acc.bit_length()]
        for c in self.coefficients[-2::-1]:
            acc = c + ((acc * r_max) >> _F)
            widths.append(acc.bit_length())
        e_max = (acc * r_max) >> _F
        y_max = self.table[-1] + ((self.table[-1] * e_max) >> _F)
        assert y_max < 1 << (_F + 1), "2**f must stay below 2 (checked in numerics tests)"
        return widths, e_max.bit_length()

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, "exp2" if self.base2 else "exp")
        r_bits = _F - self.table_bits
        acc_widths, e_width = self._widths()

        rom = Memory(shape=unsigned(_F + 1), depth=len(self.table), init=self.table)
        m.submodules.rom = rom
        table = rom.read_port()

        # -- 1: decode. |x| >= 2**sat_exp saturates (keeps t inside Q8.32). --
        x = data.View(F32_LAYOUT, self.x)
        sat_exp = 8 if self.base2 else 7
        code = Signal(Special)
        with m.If((x.exp == 0xFF) & (x.man != 0)):
            m.d.comb += code.eq(Special.NAN)
        with m.Elif(x.exp == 0):  # ±0 and flushed subnormals
            m.d.comb += code.eq(Special.ONE)
        with m.Elif(x.exp >= F32_BIAS + sat_exp):  # includes ±Inf
            m.d.comb += code.eq(Mux(x.sign, Special.ZERO, Special.INF))
        # Right shift of the 40-bit |t| source: exp 6 - e, exp2 7 - e; 63 already clears it.
        limit = F32_BIAS + sat_exp - 1
        amount = Mux(x.exp < limit - 63, 63, (limit - x.exp)[:6])
        s = pipe.stage("decode", sign=x.sign, m=Cat(x.man, 1), amount=amount, code=code)

        # -- 2-3: |x|·log2(e) as floor(m·L / 2**24) (exp), or m·2**16 (exp2), both 40 bits. --
        if self.base2:
            source = s.m << 16
        else:
            prod = Product("p", s.m, log2e_fixed())
            s = pipe.stage("log2e_mul", **prod.fields(), **carry(s, "sign", "amount", "code"))
            total = prod.total(s)
            s = pipe.stage(
                "log2e_sum",
                v=total[_P_DROP : _P_DROP + _U_BITS],
                **carry(s, "sign", "amount", "code"),
            )
            source = s.v

        # -- 4: U = source >> amount; t = ±U (Q8.32 two's complement); n, i, r. --
        u = source >> s.amount
        t = Mux(s.sign, -u, u)
        s = pipe.stage(
            "split",
            n=t[_F : _U_BITS + 1].as_signed(),
            i=t[r_bits:_F],
            r=t[:r_bits],
            code=s.code,
        )

        # -- Horner: acc = C_d; acc = C_k + (acc·r >> 32); e_r = acc·r >> 32. Adding C_k
        # before the shift (C_k·2**32 has no low bits) makes each step one 3-input add. --
        acc = self.coefficients[-1]
        steps = [*self.coefficients[-2::-1], None]
        for c, width in zip(steps, [*acc_widths[1:], e_width], strict=True):
            prod = Product("p", acc, s.r)
            s = pipe.stage("poly_mul", **prod.fields(), **carry(s, "n", "i", "r", "code"))
            total = prod.total(s)
            if c is not None:
                acc_value = ((Const(c) << _F) + total)[_F : _F + width]
                s = pipe.stage("poly_sum", acc=acc_value, **carry(s, "n", "i", "r", "code"))
                acc = s.acc
            else:
                m.d.comb += table.addr.eq(s.i)  # T[i] arrives with this stage
                s = pipe.stage("poly_sum", e=total[_F : _F + width], **carry(s, "n", "code"))

        # -- y = T[i] + (T[i]·e_r >> 32), in [2**32, 2**33). --
        prod = Product("p", s.e, table.data)
        s = pipe.stage("table_mul", **prod.fields(), t=table.data, **carry(s, "n", "code"))
        y = ((s.t << _F) + prod.total(s))[_F : 2 * _F + 1]
        s = pipe.stage("table_sum", y=y, biased=(signed(10), s.n + F32_BIAS), **carry(s, "code"))

        # -- round to 24 bits (RNE on the 9 dropped bits); carry bumps the exponent. --
        y = s.y
        up = y[8] & (y[:8].any() | y[9])
        rounded = y[9:] + up  # 25 bits: 2**24 on a carry, whose low 23 bits are then 0
        biased = s.biased + rounded[24]
        normal = Mux(
            biased >= 0xFF,
            Const(0x7F800000, 32),
            Mux(biased <= 0, Const(0, 32), Cat(rounded[:23], biased[:8], Const(0, 1))),
        )
        s = pipe.stage("round", result=special_or(s.code, Const(0, 1), normal))
        m.d.comb += self.result.eq(s.result)
        assert pipe.depth == self.latency
        return m


class Exp(StreamPipeline):
    """Stream unit for fp32 ``e**x`` (:class:`ExpDatapath` behind valid/ready).

    Parameters
    ----------
    table_bits, degree:
        As ``numerics.transcendental.exp`` (2…10, default 8; 1…4, default 2).

    Attributes
    ----------
    latency : int
        Cycles from an accepted input to its result: ``7 + 2·degree`` (11 by default).

    Ports: ``i``, ``o`` (see :class:`StreamPipeline`).
    """

    def __init__(
        self, *, table_bits: int = DEFAULT_EXP_TABLE_BITS, degree: int = DEFAULT_EXP_DEGREE
    ):
        super().__init__(ExpDatapath, table_bits=table_bits, degree=degree)


class Exp2(StreamPipeline):
    """Stream unit for fp32 ``2**x``: :class:`Exp` without the log2(e) multiply.

    Latency ``5 + 2·degree`` (9 by default). Parameters as :class:`Exp`.
    """

    def __init__(
        self, *, table_bits: int = DEFAULT_EXP_TABLE_BITS, degree: int = DEFAULT_EXP_DEGREE
    ):
        super().__init__(ExpDatapath, table_bits=table_bits, degree=degree, base2=True)
