"""Result framing of the VECTOR execution unit: everything the writer sees is a beat of
``lanes`` words with a valid count (:func:`vector_exec_write.out_layout`).

* :class:`BeatFramer` reassembles the element results of an output row. In the normal (wide)
  case it only adds ``count`` / ``row_last`` / ``end``; when an operation runs narrow (a
  function or the activation built in ``n < L`` lanes, so every beat went through the datapath
  as ``L / n`` sub-beats of ``n`` elements in lanes 0…n-1) it puts the sub-beats back side by
  side.
* :class:`WordPacker` packs per-row results (one word per row for RSUM/RMAX/RSUMSQ, eight for
  ARGMAX4) into beats, because those results are one packed vector at ``dst``.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .vector_exec_read import COUNT_BITS
from .vector_exec_write import out_layout

__all__ = ["ARGMAX_WORDS", "BeatFramer", "WordPacker"]

#: Words of one ARGMAX4 result: 4 uint32 indices then 4 fp32 values (docs/isa.md).
ARGMAX_WORDS = 8


class BeatFramer(wiring.Component):
    """Output rows of element results → full beats with ``count``, ``row_last``, ``end``.

    Parameters
    ----------
    lanes:
        L.
    widths:
        The sub-beat widths ``n`` the unit can run at (powers of two dividing L; L itself is
        the wide case), selected per instruction by ``cfg.width``.

    Ports
    -----
    start : In(1), cfg : In(cfg_layout)
        ``rows`` (output rows), ``last_count`` (elements in a row's last beat, 1…L) and
        ``width`` (index into ``widths``); sampled at ``start``.
    i : In(stream.Signature(i_layout))
        ``data`` (lanes 0…n-1 valid) and ``last`` (the output row's last sub-beat). Sub-beats
        of a beat arrive in order; a row's last beat has ``ceil(last_count / n)`` of them.
    o : Out(stream.Signature(out_layout(L)))
        One beat per L elements (fewer at a row end), registered.

    One sub-beat per cycle, ``i.ready = ~o.valid | o.ready``.
    """

    def __init__(self, lanes: int, widths: tuple[int, ...] | None = None):
        widths = (lanes,) if widths is None else tuple(widths)
        for n in widths:
            if n < 1 or n > lanes or lanes % n or n & (n - 1):
                raise ValueError(f"BeatFramer: width {n} must be a power of two dividing {lanes}")
        self.lanes = lanes
        self.widths = widths
        self.cfg_layout = data.StructLayout({
            "rows": unsigned(COUNT_BITS),
            "last_count": unsigned(ceil_log2(lanes + 1)),
            "width": unsigned(max(1, ceil_log2(len(widths)))),
        })
        self.i_layout = data.StructLayout({"data": data.ArrayLayout(32, lanes), "last": 1})
        super().__init__({
            "start": In(1),
            "cfg": In(self.cfg_layout),
            "i": In(stream.Signature(self.i_layout)),
            "o": Out(stream.Signature(out_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        cfg = Signal(self.cfg_layout)
        with m.If(self.start):
            m.d.sync += cfg.eq(self.cfg)
        beat = self.i.payload
        max_ways = lanes // min(self.widths)
        k = Signal(range(max(2, max_ways)))  # sub-beat index inside the beat
        row = Signal(COUNT_BITS)
        acc = Signal(data.ArrayLayout(32, lanes))
        merged = Signal(data.ArrayLayout(32, lanes))
        ways = Signal(range(max_ways + 1))
        m.d.comb += [merged.eq(acc), ways.eq(lanes // self.widths[0])]
        for w, n in enumerate(self.widths):
            with m.If(cfg.width == w):
                m.d.comb += ways.eq(lanes // n)
                for lane in range(lanes):
                    with m.If(k == lane // n):
                        m.d.comb += merged[lane].eq(beat.data[lane % n])
        complete = beat.last | (k == ways - 1)

        load = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(load)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & load):
            with m.If(complete):
                out = self.o.payload
                m.d.sync += [
                    self.o.valid.eq(1),
                    out.words.eq(merged),
                    out.count.eq(Mux(beat.last, cfg.last_count, lanes)),
                    out.row_last.eq(beat.last),
                    out.end.eq(beat.last & (row == cfg.rows - 1)),
                    k.eq(0),
                    row.eq(row + beat.last),
                ]
            with m.Else():
                m.d.sync += [acc.eq(merged), k.eq(k + 1)]
        with m.If(self.start):
            m.d.sync += [k.eq(0), row.eq(0)]
        return m


class WordPacker(wiring.Component):
    """Per-row results (groups of 1 or 8 words) → beats of L words, one packed output row.

    Ports
    -----
    group8 : In(1)
        Groups are 8 words (ARGMAX4) instead of 1 (word 0); hold stable while running.
    i : In(stream.Signature(i_layout))
        ``words`` (ArrayLayout(32, 8)) and ``end`` (the last group of the instruction).
    o : Out(stream.Signature(out_layout(L)))
        The words in order, L per beat (fewer in the last); ``row_last = end``.

    One group per cycle when a group fits in a beat (8 ≤ L or single words); an 8-word group
    with L < 8 leaves as 8 / L beats, one per cycle. Registered output.
    """

    def __init__(self, lanes: int):
        self.lanes = lanes
        self.i_layout = data.StructLayout({
            "words": data.ArrayLayout(32, ARGMAX_WORDS), "end": 1})
        super().__init__({
            "group8": In(1),
            "i": In(stream.Signature(self.i_layout)),
            "o": Out(stream.Signature(out_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, g8 = self.lanes, ARGMAX_WORDS
        group = self.i.payload
        out = self.o.payload
        load = ~self.o.valid | self.o.ready
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # Fill: group words go to lanes pos … pos + size - 1.
        pos = Signal(range(lanes + 1))
        acc = Signal(data.ArrayLayout(32, lanes))
        merged = Signal(data.ArrayLayout(32, lanes))
        m.d.comb += merged.eq(acc)
        for lane in range(lanes):
            with m.If(~self.group8 & (pos == lane)):
                m.d.comb += merged[lane].eq(group.words[0])
            if lanes >= g8:
                with m.If(self.group8 & (pos == lane - lane % g8)):
                    m.d.comb += merged[lane].eq(group.words[lane % g8])
        size = Mux(self.group8, g8, 1)
        complete = group.end | (pos + size == lanes)
        fill_ready = load

        # Split (L < 8): an 8-word group leaves in 8 / L beats.
        if lanes < g8:
            parts = g8 // lanes
            sub = Signal(range(parts))
            split = self.group8
            split_last = sub == parts - 1
        else:
            split = Const(0, 1)
            split_last = Const(1, 1)
        m.d.comb += self.i.ready.eq(Mux(split, load & split_last, fill_ready))

        with m.If(self.i.valid & load):
            if lanes < g8:
                with m.If(split):
                    m.d.sync += [
                        self.o.valid.eq(1),
                        out.count.eq(lanes),
                        out.row_last.eq(group.end & split_last),
                        out.end.eq(group.end & split_last),
                        sub.eq(sub + 1),
                    ]
                    for lane in range(lanes):
                        chunk = [group.words[s * lanes + lane] for s in range(parts)]
                        value = chunk[0]
                        for s in range(1, parts):
                            value = Mux(sub == s, chunk[s], value)
                        m.d.sync += out.words[lane].eq(value)
            with m.If(~split):
                with m.If(complete):
                    m.d.sync += [
                        self.o.valid.eq(1),
                        out.words.eq(merged),
                        out.count.eq(pos + size),
                        out.row_last.eq(group.end),
                        out.end.eq(group.end),
                        pos.eq(0),
                    ]
                with m.Else():
                    m.d.sync += [acc.eq(merged), pos.eq(pos + size)]
        return m
