"""``RowFinisher``: the end of a row reduction (RSUM, RSUMSQ, RMAX) in the VECTOR unit.

The ``VectorUnit`` accumulates a row's beats on ``VECTOR_REDUCE_SLOTS`` chains (beat *j* on
chain ``j mod 4``) and reports each chain's running value beat by beat. This block keeps the
latest value of every chain of the current row and, on the row's last beat, combines the
chains used — preceded by the old value at ``dst`` when ``accumulate`` is set — with one
``MultiInputAdder`` (golden ``_sum_rows``' final ``multi_add``; an unused input is -0, the
identity) or one ``MaxTree`` (``f32_max`` with the old value; an unused input is -Inf).
"""

from __future__ import annotations

from amaranth.hdl import Cat, EnableInserter, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import VECTOR_REDUCE_SLOTS
from ._delay import delay
from .fp import MaxTree
from .multi_add import MultiInputAdder
from .vector_exec_read import COUNT_BITS

__all__ = ["RowFinisher"]

_NEG_ZERO = 0x80000000
_NEG_INF = 0xFF800000


class RowFinisher(wiring.Component):
    """Combine a row's chain values (and the old result) into the row's result.

    Parameters
    ----------
    config:
        ``reduce_guard_bits`` (G of the adder tree, as the vector unit's).

    Ports
    -----
    start : In(1), cfg : In(cfg_layout)
        ``max`` (RMAX; else a sum), ``accumulate`` and ``rows``; sampled at ``start``.
    i : In(stream.Signature(i_layout))
        The vector unit's output beats of a reduction: ``reduce`` (the beat's chain value
        after it), ``first`` (the beat started its chain: beats 0 … 3 of a row), ``last``
        (the row's last beat) and ``chain`` (beat j of a row is on chain ``j mod 4``).
    prev : In(stream.Signature(32))
        With ``accumulate``: the old result of each row (fp32 bits), one per row, in order.
    o : Out(stream.Signature(o_layout))
        One ``value`` per row and ``end`` on the last row.

    Timing
    ------
    A beat that is not a row's last is taken at once (it only updates a chain register); a
    last beat enters a pipeline of ``latency`` = ``MultiInputAdder(5).latency`` (8) cycles
    (the 3-cycle max tree is padded to it). One row per cycle; the pipeline holds as a whole
    while ``o.valid & ~o.ready``.
    """

    def __init__(self, config: EngineConfig):
        self.config = config
        slots = VECTOR_REDUCE_SLOTS
        self.inputs = slots + 1
        self._adder = MultiInputAdder(self.inputs, config.reduce_guard_bits)
        self._max = MaxTree(self.inputs)
        self.latency = max(self._adder.latency, self._max.latency)
        self.chain_bits = max(1, (slots - 1).bit_length())
        self.cfg_layout = data.StructLayout({
            "max": 1, "accumulate": 1, "rows": unsigned(COUNT_BITS)})
        self.i_layout = data.StructLayout({
            "reduce": 32, "first": 1, "last": 1, "chain": self.chain_bits})
        self.o_layout = data.StructLayout({"value": 32, "end": 1})
        super().__init__({
            "start": In(1),
            "cfg": In(self.cfg_layout),
            "i": In(stream.Signature(self.i_layout)),
            "prev": In(stream.Signature(32)),
            "o": Out(stream.Signature(self.o_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = Signal(self.cfg_layout)
        with m.If(self.start):
            m.d.sync += cfg.eq(self.cfg)
        beat = self.i.payload
        slots = VECTOR_REDUCE_SLOTS
        identity = Mux(cfg.max, _NEG_INF, _NEG_ZERO)

        pipe = Module()
        enable = Signal()
        m.submodules.pipe = EnableInserter(enable)(pipe)
        m.d.comb += enable.eq(~self.o.valid | self.o.ready)

        # ---- chain values of the current row.
        value = [Signal(32, name=f"chain{c}") for c in range(slots)]
        used = Signal(slots)
        row = Signal(COUNT_BITS)
        prev_ok = ~cfg.accumulate | self.prev.valid
        ready = ~beat.last | (enable & prev_ok)
        m.d.comb += [
            self.i.ready.eq(ready),
            self.prev.ready.eq(self.i.valid & beat.last & enable & cfg.accumulate),
        ]
        taken = self.i.valid & ready
        mine = Signal(slots)
        row_start = beat.first & (beat.chain == 0)  # beat 0 of a row
        m.d.comb += mine.eq(1 << beat.chain)
        with m.If(taken):
            m.d.sync += used.eq(Mux(row_start, mine, used | mine))
            for c in range(slots):
                with m.If(beat.chain == c):
                    m.d.sync += value[c].eq(beat.reduce)
            with m.If(beat.last):
                m.d.sync += row.eq(row + 1)
        with m.If(self.start):
            m.d.sync += row.eq(0)

        # ---- the combine: [prev] + chains, on the row's last beat.
        parts = Signal(data.ArrayLayout(32, self.inputs))
        m.d.comb += parts[0].eq(Mux(cfg.accumulate, self.prev.payload, identity))
        for c in range(slots):
            earlier = used[c] & ~row_start
            m.d.comb += parts[1 + c].eq(
                Mux(beat.chain == c, beat.reduce, Mux(earlier, value[c], identity)))
        fire = self.i.valid & beat.last & prev_ok
        lat = self.latency
        valid = Signal(lat, name="valid")
        pipe.d.sync += valid.eq(Cat(fire, valid[:-1]))
        adder, tree = self._adder, self._max
        pipe.submodules.adder = adder
        pipe.submodules.tree = tree
        # Both trees run in lock-step with this pipeline (same enable); the adder's own
        # handshake is tied off so that its internal enable is always 1.
        pipe.d.comb += [
            adder.i.payload.eq(parts), adder.i.valid.eq(1), adder.o.ready.eq(1),
            tree.inputs.eq(parts),
        ]  # fmt: skip
        total = delay(pipe, adder.o.payload, lat - adder.latency, "sum")
        largest = delay(pipe, tree.result, lat - tree.latency, "max")
        is_max = delay(pipe, cfg.max, lat, "is_max")
        end = delay(pipe, row == cfg.rows - 1, lat, "end")
        m.d.comb += [
            self.o.valid.eq(valid[-1]),
            self.o.payload.value.eq(Mux(is_max, largest, total)),
            self.o.payload.end.eq(end),
        ]
        return m
