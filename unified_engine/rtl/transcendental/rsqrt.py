"""``Rsqrt``: pipelined, correctly rounded fp32 1/sqrt(x), bit-exact with
``numerics.transcendental.rsqrt`` (docs/numerics.md §6, "rsqrt(x)")."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...numerics.transcendental import (
    DEFAULT_RSQRT_TABLE_BITS,
    RSQRT_FRAC_BITS,
    rsqrt_seed_table,
    seed_frac_bits,
)
from ._common import F32_BIAS, F32_LAYOUT, Special, generated, special_or
from ._pipeline import Pipeline, Product, Square, carry
from ._stream import StreamPipeline

__all__ = ["Rsqrt", "RsqrtDatapath", "rsqrt_delta_widths"]

_W = RSQRT_FRAC_BITS  # 31: the Newton iterate is Q1.31 (its value stays below 1)


def rsqrt_delta_widths(table_bits: int) -> tuple[int, int]:
    """Widths of the Newton residuals ``δ = 2**31 - t`` of the two steps, for ``table_bits``.

    Step 1: ``|δ0| < 2**(31-p)`` (seed error below 0.75·2**-p), signed ``32 - p`` bits.
    Step 2: ``0 <= δ1 < 2**(30-2p)``, unsigned ``30 - 2p`` bits. Both bounds were checked
    over all parities and 2**23 mantissas for every p in 6…12 (the RTL tests repeat it).
    """
    return 32 - table_bits, 30 - 2 * table_bits


def _pack(sig: Value, biased: Value, sign: Value, code: Value) -> Value:
    """fp32 bits of a positive significand in [2**23, 2**24] (2**24 carries); always normal."""
    sig = Value.cast(sig)
    carry_out = sig[24] if len(sig) > 24 else Const(0, 1)
    normal = Cat(sig[:23], (biased + carry_out)[:8], Const(0, 1))
    return special_or(code, sign, normal)


class RsqrtDatapath(wiring.Component):
    """Correctly rounded fp32 ``1/sqrt(x)`` as a fixed-latency pipeline (``latency`` = 16).

    Bit-exact with ``numerics.transcendental.rsqrt(x, table_bits=table_bits)``; the seed ROM
    (parity-indexed, ``2·2**p`` × ``p+3`` bits, registered ``Memory`` port) is
    ``rsqrt_seed_table(table_bits)``. One input per cycle; stall with ``EnableInserter`` or
    use :class:`Rsqrt`.

    ``A = m << π`` (π the parity of the unbiased exponent) never enters a multiplier: every
    product uses the 24-bit ``m`` and shifts the sum by π, so each piece stays 24 × 17.

    Stages: 1 decode + seed read; 2 ``S²``; 3 ``m × S²``; 4 ``δ0`` (``2**31 - t0``, low
    ``32-p`` bits, one subtract); 5 ``S × δ0``; 6 ``y1``; 7 ``y1²`` (3 pieces); 8 ``>> 31``;
    9 ``m × (y1² >> 31)``; 10 ``δ1`` (low ``30-2p`` bits); 11 ``y1 × δ1``; 12 ``y2``,
    ``q = y2 >> 7``; 13 ``h² `` with ``h = 2q+1`` (3 pieces); 14 sum, with both candidate
    results packed; 15 ``m × h²`` (3 pieces); 16 pick by bit 63 of ``A·h²`` (the sign of
    ``A·h² - 2**73``; only the low 64 bits are formed, as in the model).

    Multipliers (default p = 7): 10×10, 24×20 (2), 10×25, 31² (3), 24×31 (2), 31×16 (2),
    25² (3), 24×50 (3): 17 DSP pieces.

    Parameters
    ----------
    table_bits:
        Seed index bits per parity, 6…12 (default 7).

    Ports
    -----
    x : In(32)
        fp32 bit pattern.
    result : Out(32)
        fp32 bits of ``1/sqrt(x)``, ``latency`` cycles later.
    """

    latency = 16

    def __init__(self, *, table_bits: int = DEFAULT_RSQRT_TABLE_BITS):
        self.check_params(table_bits=table_bits)
        self.table = rsqrt_seed_table(table_bits)
        self.table_bits = table_bits
        super().__init__({"x": In(32), "result": Out(32)})

    @classmethod
    def check_params(cls, *, table_bits: int = DEFAULT_RSQRT_TABLE_BITS) -> int:
        """Validate ``table_bits`` (range of the golden model) and return the latency."""
        generated("RsqrtDatapath", rsqrt_seed_table, table_bits)
        return cls.latency

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, "rsqrt")
        p = self.table_bits
        s_bits = seed_frac_bits(p)
        w0, w1 = rsqrt_delta_widths(p)

        rom = Memory(shape=unsigned(s_bits), depth=len(self.table), init=self.table)
        m.submodules.rom = rom
        seed = rom.read_port()

        # -- 1: decode. e = E - 127, π = e & 1 (E even), k = e >> 1, exponent out 126 - k. --
        x = data.View(F32_LAYOUT, self.x)
        code = Signal(Special)
        with m.If((x.exp == 0xFF) & (x.man != 0)):
            m.d.comb += code.eq(Special.NAN)
        with m.Elif(x.exp == 0):  # ±0 → ±Inf
            m.d.comb += code.eq(Special.INF)
        with m.Elif(x.sign):  # negative, -Inf included
            m.d.comb += code.eq(Special.NAN)
        with m.Elif(x.exp == 0xFF):  # +Inf → +0
            m.d.comb += code.eq(Special.ZERO)
        parity = ~x.exp[0]
        half = (x.exp - F32_BIAS) >> 1  # signed, so an arithmetic (floor) shift
        m.d.comb += seed.addr.eq(Cat(x.man[23 - p :], parity))
        s = pipe.stage(
            "decode",
            sign=x.sign,
            m=Cat(x.man, 1),
            parity=parity,
            biased=(unsigned(8), 126 - half),
            code=code,
        )
        keep = ("sign", "m", "parity", "biased", "code")

        # -- Newton step 1 from y0 = S << (31 - s): y0² >> 31 = S² << (31 - 2s) exactly,
        # t0 = A·(y0² >> 31) >> 23 = (m·S² << π) >> (2s - 8). --
        prod = Product("p", seed.data, seed.data)
        s = pipe.stage("n0_square", **prod.fields(), seed=seed.data, **carry(s, *keep))
        prod = Product("p", s.m, prod.total(s))
        s = pipe.stage("n0_tmul", **prod.fields(), **carry(s, "seed", *keep))
        k = 2 * s_bits - 8
        scaled = Mux(s.parity, prod.total(s) << 1, prod.total(s))
        delta0 = (((1 << k) - 1) - scaled)[k : k + w0].as_signed()
        s = pipe.stage("n0_delta", delta=delta0, **carry(s, "seed", *keep))
        # y1 = y0 + (y0·δ0 >> 32) = (S·2**32 + S·δ0) >> (s + 1)
        prod = Product("p", s.seed, s.delta)
        s = pipe.stage("n0_mul", **prod.fields(), **carry(s, "seed", *keep))
        y1 = ((s.seed << 32) + prod.total(s))[s_bits + 1 : s_bits + 1 + _W]
        s = pipe.stage("n0_sum", y=y1, **carry(s, *keep))

        # -- Newton step 2: t1 = A·(y1² >> 31) >> 23, δ1 = 2**31 - t1 >= 0,
        # y2 = y1 + (y1·δ1 >> 32). --
        prod = Square("p", s.y)
        s = pipe.stage("n1_square", **prod.fields(), **carry(s, "y", *keep))
        s = pipe.stage("n1_sq", sq=prod.total(s)[_W : 2 * _W], **carry(s, "y", *keep))
        prod = Product("p", s.m, s.sq)
        s = pipe.stage("n1_tmul", **prod.fields(), **carry(s, "y", *keep))
        scaled = Mux(s.parity, prod.total(s) << 1, prod.total(s))
        delta1 = (((1 << 23) - 1) - scaled)[23 : 23 + w1]
        s = pipe.stage("n1_delta", delta=delta1, **carry(s, "y", *keep))
        prod = Product("p", s.y, s.delta)
        s = pipe.stage("n1_mul", **prod.fields(), **carry(s, "y", *keep))
        y2 = ((s.y << 32) + prod.total(s))[32 : 32 + _W]
        s = pipe.stage("n1_sum", q=y2[7:], **carry(s, *keep))

        # -- correct rounding: round up iff A·h² < 2**73, h = 2q + 1. |A·h² - 2**73| < 2**52,
        # so bit 63 of A·h² = (m·h²) << π is the sign of the difference. --
        prod = Square("p", Cat(Const(1, 1), s.q))
        s = pipe.stage("check_square", **prod.fields(), **carry(s, "q", *keep))
        s = pipe.stage(
            "check_sq",
            h2=prod.total(s)[:50],
            down=_pack(s.q, s.biased, s.sign, s.code),
            up=_pack(s.q + 1, s.biased, s.sign, s.code),
            **carry(s, "m", "parity"),
        )
        prod = Product("p", s.m, s.h2)
        s = pipe.stage("check_mul", **prod.fields(), **carry(s, "parity", "down", "up"))
        below = Mux(s.parity, prod.total(s)[62], prod.total(s)[63])
        s = pipe.stage("round", result=Mux(below, s.up, s.down))
        m.d.comb += self.result.eq(s.result)
        assert pipe.depth == self.latency
        return m


class Rsqrt(StreamPipeline):
    """Stream unit for correctly rounded fp32 ``1/sqrt(x)`` (:class:`RsqrtDatapath`).

    Parameters
    ----------
    table_bits:
        Seed index bits per parity, 6…12 (default 7), as ``numerics.transcendental.rsqrt``.

    Attributes
    ----------
    latency : int
        16 cycles from an accepted input to its result.

    Ports: ``i``, ``o`` (see :class:`StreamPipeline`).
    """

    def __init__(self, *, table_bits: int = DEFAULT_RSQRT_TABLE_BITS):
        super().__init__(RsqrtDatapath, table_bits=table_bits)
