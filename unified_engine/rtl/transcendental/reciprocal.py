"""``Reciprocal``: pipelined, correctly rounded fp32 1/x, bit-exact with
``numerics.transcendental.reciprocal`` (docs/numerics.md §6, "reciprocal(x)")."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...numerics.transcendental import (
    DEFAULT_RECIPROCAL_TABLE_BITS,
    RECIPROCAL_FRAC_BITS,
    reciprocal_seed_table,
    seed_frac_bits,
)
from ._common import F32_LAYOUT, Special, generated, special_or
from ._pipeline import Pipeline, Product, carry
from ._stream import StreamPipeline

__all__ = ["Reciprocal", "ReciprocalDatapath", "reciprocal_delta_widths"]

_W = RECIPROCAL_FRAC_BITS  # 32: the Newton iterate is Q0.32


def reciprocal_delta_widths(table_bits: int) -> tuple[int, int]:
    """Widths of the Newton residuals ``δ = 2**32 - d`` of the two steps, for ``table_bits``.

    Step 1: ``|δ0| < 2**(32-p)`` (seed error below 0.625·2**-p), a signed ``33 - p``-bit
    value. Step 2: ``0 <= δ1 < 2**(31-2p)``, unsigned ``31 - 2p`` bits. Both bounds were
    checked over all 2**23 mantissas for every p in 6…12 (``tests/rtl/test_transcendental.py``
    repeats the check); only these low bits of ``d`` are computed.
    """
    return 33 - table_bits, 31 - 2 * table_bits


def _pack(sig: Value, biased: Value, sign: Value, code: Value) -> Value:
    """fp32 bits of a significand in [2**23, 2**24] (2**24 carries into the exponent);
    a biased exponent <= 0 flushes to a signed zero. No reciprocal overflows."""
    sig = Value.cast(sig)
    carry_out = sig[24] if len(sig) > 24 else Const(0, 1)
    exp = biased + carry_out
    normal = Mux(exp <= 0, Cat(Const(0, 31), sign), Cat(sig[:23], exp[:8], sign))
    return special_or(code, sign, normal)


class ReciprocalDatapath(wiring.Component):
    """Correctly rounded fp32 ``1/x`` as a fixed-latency pipeline (``latency`` = 11).

    Bit-exact with ``numerics.transcendental.reciprocal(x, table_bits=table_bits)``; the seed
    ROM is ``reciprocal_seed_table(table_bits)``. One input per cycle; stall with
    ``EnableInserter`` or use :class:`Reciprocal`.

    Stages: 1 decode + seed ROM read (``2**p`` × ``p+3`` bits, registered ``Memory`` port);
    2 ``m × S``; 3 ``δ0 = 2**32 - (m·S >> (s-9))`` (low ``33-p`` bits, one subtract);
    4 ``S × δ0``; 5 ``y1 = y0 + (y0·δ0 >> 32)``; 6 ``m × y1``; 7 ``δ1`` (low ``31-2p``
    bits of ``2**32 - (m·y1 >> 23)``); 8 ``y1 × δ1``; 9 ``y2``, ``q = y2 >> 8``;
    10 ``m × (2q+1)`` with both candidate results (q and q+1) packed alongside;
    11 pick by the sign of ``2**48 - m·(2q+1)``.

    Multipliers (default p = 7): 24×10, 10×26 (2 pieces, one 10×2), 24×32 (2), 32×17 (2),
    24×25 (2): 9 DSP pieces. Subtractions ``2**W - (X >> k)`` are computed as
    ``((2**k - 1) - X) >> k`` so that each is one carry chain.

    Parameters
    ----------
    table_bits:
        Seed-table index bits, 6…12 (default 7).

    Ports
    -----
    x : In(32)
        fp32 bit pattern.
    result : Out(32)
        fp32 bits of ``1/x``, ``latency`` cycles later.
    """

    latency = 11

    def __init__(self, *, table_bits: int = DEFAULT_RECIPROCAL_TABLE_BITS):
        self.check_params(table_bits=table_bits)
        self.table = reciprocal_seed_table(table_bits)
        self.table_bits = table_bits
        super().__init__({"x": In(32), "result": Out(32)})

    @classmethod
    def check_params(cls, *, table_bits: int = DEFAULT_RECIPROCAL_TABLE_BITS) -> int:
        """Validate ``table_bits`` (range of the golden model) and return the latency."""
        generated("ReciprocalDatapath", reciprocal_seed_table, table_bits)
        return cls.latency

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, "recip")
        p = self.table_bits
        s_bits = seed_frac_bits(p)
        w0, w1 = reciprocal_delta_widths(p)

        rom = Memory(shape=unsigned(s_bits), depth=len(self.table), init=self.table)
        m.submodules.rom = rom
        seed = rom.read_port()

        # -- 1: decode; the seed ROM is read with the input's top p mantissa bits. --
        x = data.View(F32_LAYOUT, self.x)
        code = Signal(Special)
        with m.If((x.exp == 0xFF) & (x.man != 0)):
            m.d.comb += code.eq(Special.NAN)
        with m.Elif(x.exp == 0):
            m.d.comb += code.eq(Special.INF)
        with m.Elif(x.exp == 0xFF):
            m.d.comb += code.eq(Special.ZERO)
        m.d.comb += seed.addr.eq(x.man[23 - p :])
        s = pipe.stage(
            "decode",
            sign=x.sign,
            m=Cat(x.man, 1),
            biased=(signed(10), 253 - x.exp),
            code=code,
        )
        keep = ("sign", "m", "biased", "code")

        # -- Newton step 1 from y0 = S << (32 - s): d0 = m·y0 >> 23 = m·S >> (s - 9). --
        prod = Product("p", s.m, seed.data)
        s = pipe.stage("n0_dmul", **prod.fields(), seed=seed.data, **carry(s, *keep))
        k = s_bits - 9
        delta0 = (((1 << k) - 1) - prod.total(s))[k : k + w0].as_signed()
        s = pipe.stage("n0_delta", delta=delta0, **carry(s, "seed", *keep))
        # y1 = y0 + (y0·δ0 >> 32) = (S·2**32 + S·δ0) >> s
        prod = Product("p", s.seed, s.delta)
        s = pipe.stage("n0_mul", **prod.fields(), **carry(s, "seed", *keep))
        y1 = ((s.seed << _W) + prod.total(s))[s_bits : s_bits + _W]
        s = pipe.stage("n0_sum", y=y1, **carry(s, *keep))

        # -- Newton step 2: δ1 = 2**32 - (m·y1 >> 23) >= 0; y2 = y1 + (y1·δ1 >> 32). --
        prod = Product("p", s.m, s.y)
        s = pipe.stage("n1_dmul", **prod.fields(), **carry(s, "y", *keep))
        delta1 = (((1 << 23) - 1) - prod.total(s))[23 : 23 + w1]
        s = pipe.stage("n1_delta", delta=delta1, **carry(s, "y", *keep))
        prod = Product("p", s.y, s.delta)
        s = pipe.stage("n1_mul", **prod.fields(), **carry(s, "y", *keep))
        y2 = ((s.y << _W) + prod.total(s))[_W : 2 * _W]
        s = pipe.stage("n1_sum", q=y2[8:], **carry(s, *keep))

        # -- correct rounding: round up iff m·(2q + 1) < 2**48 (the product is < 2**49). --
        prod = Product("p", s.m, Cat(Const(1, 1), s.q))
        s = pipe.stage(
            "check_mul",
            **prod.fields(),
            down=_pack(s.q, s.biased, s.sign, s.code),
            up=_pack(s.q + 1, s.biased, s.sign, s.code),
        )
        result = Mux(prod.total(s)[48], s.down, s.up)
        s = pipe.stage("round", result=result)
        m.d.comb += self.result.eq(s.result)
        assert pipe.depth == self.latency
        return m


class Reciprocal(StreamPipeline):
    """Stream unit for correctly rounded fp32 ``1/x`` (:class:`ReciprocalDatapath`).

    Parameters
    ----------
    table_bits:
        Seed-table index bits, 6…12 (default 7), as ``numerics.transcendental.reciprocal``.

    Attributes
    ----------
    latency : int
        11 cycles from an accepted input to its result.

    Ports: ``i``, ``o`` (see :class:`StreamPipeline`).
    """

    def __init__(self, *, table_bits: int = DEFAULT_RECIPROCAL_TABLE_BITS):
        super().__init__(ReciprocalDatapath, table_bits=table_bits)
