"""``EpiTable``: the epilogue table written by the ``EPI`` instruction, and its operand check.

The table (``engine_if.EPI_TABLE``, ``EPI_ENTRIES`` entries) is registers: the array and
vector units read every entry at once.  After a (hard) reset every entry is IDENTITY with
scale = 1.0 and a = b = c = d = 0, as in ``host.isasim.Machine``; START and soft reset keep it.

``illegal`` is the ISA simulator's ``ILLEGAL_OPERAND`` rule for the EPI word on ``word``
(``Machine._op_epi``): UNIFIED needs a, b, c, d finite; CLAMP needs a and b not NaN and
a ≤ b in the total order of ``numerics.fp.f32_order_key`` (subnormals count as zero of their
sign, -0 < +0).  It is combinational; ``write`` stores the entry at the next clock edge.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import EPI_ENTRIES, INSTRUCTION_BITS, ActKind, f32_bits, isa_for
from .engine_if import EPI_TABLE

__all__ = ["EPI_RESET", "EpiTable"]

#: Value of every table entry after reset.
EPI_RESET = [{"act": ActKind.IDENTITY, "scale": f32_bits(1.0)}] * EPI_ENTRIES

_EXP_ONES = 0xFF


def _exponent(x: Value) -> Value:
    return x[23:31]


def _is_nan(x: Value) -> Value:
    return (_exponent(x) == _EXP_ONES) & (x[:23] != 0)


def _order_key(x: Value) -> Value:
    """Signed key that orders fp32 values totally (after flushing subnormals to zero)."""
    flushed = Mux(_exponent(x) == 0, x & 0x80000000, x)
    return (flushed ^ Mux(flushed[31], 0x7FFFFFFF, 0)).as_signed()


class EpiTable(wiring.Component):
    """The epilogue table and the EPI operand check (see the module docstring).

    Ports
    -----
    word : In(256)
        An EPI instruction.
    illegal : Out(1)
        Its parameters are ILLEGAL_OPERAND.
    write : In(1)
        Store the entry (``index`` ← act, scale, a, b, c, d).
    table : Out(EPI_TABLE)
        The table.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.isa = isa_for(config)
        super().__init__({
            "word": In(INSTRUCTION_BITS),
            "illegal": Out(1),
            "write": In(1),
            "table": Out(EPI_TABLE, init=EPI_RESET),
        })

    def elaborate(self, platform):
        m = Module()
        epi = data.View(self.isa.layouts["epi"], self.word)
        params = [epi.a, epi.b, epi.c, epi.d]
        finite = [_exponent(p) != _EXP_ONES for p in params]
        unified_bad = ~(finite[0] & finite[1] & finite[2] & finite[3])
        clamp_bad = _is_nan(epi.a) | _is_nan(epi.b) | (_order_key(epi.a) > _order_key(epi.b))
        m.d.comb += self.illegal.eq(((epi.act == ActKind.UNIFIED) & unified_bad)
                                    | ((epi.act == ActKind.CLAMP) & clamp_bad))
        with m.If(self.write):
            for i in range(EPI_ENTRIES):
                with m.If(epi.index == i):
                    entry = self.table[i]
                    m.d.sync += [entry.act.eq(epi.act), entry.scale.eq(epi.scale)]
                    m.d.sync += [entry[n].eq(epi[n]) for n in "abcd"]
        return m
