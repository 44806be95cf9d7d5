"""``BeatFeeder``: the input sequencer of the VECTOR execution unit.

It walks ``rows × ceil(length / L)`` beats and turns each into one ``VectorUnit`` A beat (or
``L / n`` sub-beats when the instruction runs narrow on ``n`` lanes), with the row flags,
the reduction chain ``j mod VECTOR_REDUCE_SLOTS`` of beat *j* (``first`` on beats 0 … 3,
which start their chains) and the lanes past ``length``
excluded from the lane reduction. The data come from the src0 beats, or are the ``imm``
everywhere (FILL); a ROW broadcast takes one per-row scalar for each row.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..isa import VECTOR_REDUCE_SLOTS
from .vector import BSource, Reduce, VectorFn, VectorOp
from .vector_exec_read import COUNT_BITS, beat_layout

__all__ = ["BeatFeeder"]


class BeatFeeder(wiring.Component):
    """Sequence the A beats of one instruction into a ``VectorUnit``.

    Parameters
    ----------
    lanes:
        L.
    a_layout:
        The vector unit's ``a_layout``.
    widths:
        Sub-beat widths (as :class:`vector_exec_pack.BeatFramer`), selected by ``cfg.width``.

    Ports
    -----
    start : In(1), cfg : In(cfg_layout)
        Sampled at ``start``: ``rows``, ``length`` (≥ 1), ``width``, ``fill`` (data = imm),
        ``row_scalar`` (take one ``scalar`` per row), the vector-unit controls ``op``,
        ``fn``, ``b_src``, ``reduce``, ``accumulate`` and ``imm``.
    src0 : In(stream.Signature(beat_layout(L)))
        Operand beats (not used with ``fill``).
    scalar : In(stream.Signature(32))
        Per-row scalars (``row_scalar``); one is consumed with each row's last A beat, and
        ``scalar_value`` shows the current one.
    a : Out(stream.Signature(a_layout))
        To ``VectorUnit.a``.
    scalar_value : Out(32)
        The current row's scalar (for ``VectorUnit.scalar``).

    Combinational: an A beat is offered in the cycle its src0 beat (and scalar) is.
    """

    def __init__(self, lanes: int, a_layout: data.StructLayout, widths: tuple[int, ...]):
        self.lanes = lanes
        self.widths = tuple(widths)
        self.cfg_layout = data.StructLayout({
            "rows": unsigned(COUNT_BITS),
            "length": unsigned(COUNT_BITS),
            "width": unsigned(max(1, ceil_log2(len(self.widths)))),
            "fill": 1,
            "row_scalar": 1,
            "op": VectorOp,
            "fn": VectorFn,
            "b_src": BSource,
            "reduce": Reduce,
            "accumulate": 1,
            "imm": 32,
        })
        super().__init__({
            "start": In(1),
            "cfg": In(self.cfg_layout),
            "src0": In(stream.Signature(beat_layout(lanes))),
            "scalar": In(stream.Signature(32)),
            "a": Out(stream.Signature(a_layout)),
            "scalar_value": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        cfg = Signal(self.cfg_layout)
        with m.If(self.start):
            m.d.sync += cfg.eq(self.cfg)

        row = Signal(COUNT_BITS)
        beat = Signal(COUNT_BITS)
        max_ways = lanes // min(self.widths)
        sub = Signal(range(max(2, max_ways)))
        beats_per_row = Signal(COUNT_BITS)
        last_count = Signal(range(lanes + 1))
        m.d.comb += [
            beats_per_row.eq((cfg.length + lanes - 1) >> exact_log2(lanes)),
            last_count.eq(((cfg.length - 1) & (lanes - 1)) + 1),
        ]
        is_last = beat == beats_per_row - 1
        # Sub-beats of this beat: L / n, or ceil(last_count / n) for a row's last beat.
        sub_end = Signal.like(sub)
        for w, n in enumerate(self.widths):
            with m.If(cfg.width == w):
                m.d.comb += sub_end.eq(Mux(is_last, (last_count - 1) >> exact_log2(n),
                                           lanes // n - 1))  # fmt: skip
        beat_done = sub == sub_end
        row_done = beat_done & is_last

        a = self.a.payload
        src = self.src0.payload.data
        for lane in range(lanes):
            value = src[lane]
            for w, n in enumerate(self.widths):
                if n < lanes and lane < n:
                    part = Array(src[s * n + lane] for s in range(lanes // n))[sub]
                    value = Mux(cfg.width == w, part, value)
            m.d.comb += [
                a.data[lane].eq(Mux(cfg.fill, cfg.imm, value)),
                a.exclude[lane].eq(is_last & (lane >= last_count)),
            ]
        m.d.comb += [
            a.op.eq(cfg.op),
            a.fn.eq(cfg.fn),
            a.b_src.eq(cfg.b_src),
            a.reduce.eq(cfg.reduce),
            a.accumulate.eq(cfg.accumulate),
            # `first` restarts the beat's chain: beats 0 … 3 are each chain's first in the row.
            a.first.eq((beat < VECTOR_REDUCE_SLOTS) & (sub == 0)),
            a.last.eq(row_done),
            a.chain.eq(beat[:exact_log2(VECTOR_REDUCE_SLOTS)]),
            self.scalar_value.eq(self.scalar.payload),
        ]

        active = row != cfg.rows
        m.d.comb += self.a.valid.eq(
            active & (cfg.fill | self.src0.valid) & (~cfg.row_scalar | self.scalar.valid))
        sent = self.a.valid & self.a.ready
        m.d.comb += [
            self.src0.ready.eq(sent & beat_done & ~cfg.fill),
            self.scalar.ready.eq(sent & row_done & cfg.row_scalar),
        ]
        with m.If(sent):
            with m.If(beat_done):
                m.d.sync += [sub.eq(0), beat.eq(Mux(is_last, 0, beat + 1)), row.eq(row + is_last)]
            with m.Else():
                m.d.sync += sub.eq(sub + 1)
        with m.If(self.start):
            m.d.sync += [row.eq(0), beat.eq(0), sub.eq(0)]
        return m
