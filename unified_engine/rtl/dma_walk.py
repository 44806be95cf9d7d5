"""Row walking for the DMA units: the address registers of one side of a 2-D transfer and the
``BurstIssuer`` that turns the rows of one side into bursts of beats.

A DMA transfer (``host/units.py: dma``) moves ``rows`` rows; row ``r`` occupies the bytes
``[first + r·stride, last + r·stride]`` of each side (DRAM, on-chip).  Every block of a DMA
unit that walks the rows (the AXI address issuer, the on-chip read issuer, the realigner) keeps
its own copy of these registers and steps them at its own pace, so no row descriptors have to
be queued between blocks however many rows are in flight (one-byte rows can have hundreds).
Stepping is one addition per register; addresses wrap modulo ``2**width``, which is exact
because every row of a valid transfer lies inside its memory.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

__all__ = ["BurstIssuer", "RowSide", "side_layout"]


def side_layout(addr_width: int, stride_width: int) -> data.StructLayout:
    """One side of a transfer: byte address of the first and last byte of row 0, stride."""
    return data.StructLayout({
        "first": unsigned(addr_width),
        "last": unsigned(addr_width),
        "stride": unsigned(stride_width),
    })


class RowSide:
    """The registers of one side of the current row (built into the caller's module).

    ``first``/``last`` are the byte addresses of the row's first and last byte; ``load``
    sets row 0 from a :func:`side_layout` view, ``advance`` steps to the next row.
    """

    def __init__(self, name: str, layout: data.StructLayout, beat_bytes: int) -> None:
        self.width = layout["first"].width
        self.lb = exact_log2(beat_bytes)
        self.first = Signal(self.width, name=f"{name}_first")
        self.last = Signal(self.width, name=f"{name}_last")
        self.stride = Signal(layout["stride"].width, name=f"{name}_stride")

    def load(self, side) -> list:
        return [self.first.eq(side.first), self.last.eq(side.last),
                self.stride.eq(side.stride)]

    def advance(self) -> list:
        return [self.first.eq(self.next_first), self.last.eq(self.last + self.stride)]

    @property
    def next_first(self):
        """First byte of the next row."""
        return (self.first + self.stride)[:self.width]

    @property
    def first_beat(self):
        return self.first[self.lb:]

    @property
    def last_beat(self):
        return self.last[self.lb:]

    @property
    def offset(self):
        """Byte offset of the row's first byte inside its beat."""
        return self.first[:self.lb]

    @property
    def end_offset(self):
        """Byte offset of the row's last byte inside its beat."""
        return self.last[:self.lb]


class BurstIssuer(wiring.Component):
    """Cut the rows of one side of a transfer into bursts of beats, one burst per cycle.

    A burst covers the beats of one row between *chunk* boundaries: chunks are aligned groups
    of ``chunk_beats`` beats (a power of two), so with ``chunk_beats · beat_bytes ≤ 4096`` no
    burst crosses a 4 KB boundary and no burst is longer than ``chunk_beats``.  The W path of
    the STORE unit finds the same boundaries on its own (WLAST on a row's last beat or a
    chunk's last beat).  With ``chunk_beats = 1`` every burst is one beat: the on-chip read
    issuer of the STORE unit.

    Ports
    -----
    ``start`` (in, pulse): take ``rows`` (≥ 1) and ``side`` (row 0, stride) and begin; only
    while not ``busy``.  Every row must have at least one byte.
    ``bursts`` (out stream): ``beat`` (beat address of the first beat) and ``len`` (beats − 1,
    AXI encoding), from a register: one burst per cycle while ``bursts.ready``.
    ``beats`` (out): the length in beats of the burst the issuer would issue next;
    ``allow`` (in): the parent's permission to issue it (credit, outstanding limit), may
    depend on ``beats``; ``issue`` (out): one-cycle pulse when a burst is issued (loaded
    into the ``bursts`` register; it is presented on ``bursts`` from the next cycle).
    ``busy`` (out): bursts remain or the last one is not yet accepted.
    """

    def __init__(self, *, side: data.StructLayout, rows_width: int, beat_bytes: int,
                 chunk_beats: int) -> None:
        if chunk_beats < 1 or chunk_beats & (chunk_beats - 1) or chunk_beats > 256:
            raise ValueError(f"chunk_beats={chunk_beats} must be a power of two ≤ 256")
        self._side = side
        self._beat_bytes = beat_bytes
        self._chunk = chunk_beats
        beat_width = side["first"].width - exact_log2(beat_bytes)
        super().__init__({
            "start": In(1),
            "rows": In(rows_width),
            "side": In(side),
            "allow": In(1),
            "beats": Out(range(chunk_beats + 1)),
            "issue": Out(1),
            "bursts": Out(stream.Signature(data.StructLayout({
                "beat": unsigned(beat_width),
                "len": unsigned(max(1, exact_log2(chunk_beats))),
            }))),
            "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        side = RowSide("row", self._side, self._beat_bytes)
        cb = exact_log2(self._chunk)
        rows_left = Signal.like(self.rows)
        active = Signal()
        cur = Signal.like(side.first_beat)  # next beat to issue in the current row
        out = self.bursts

        end_beat = side.last_beat
        same_chunk = (cur >> cb) == (end_beat >> cb)
        burst_end = Mux(same_chunk, end_beat, cur | (self._chunk - 1))
        length = (burst_end - cur)[:max(1, cb)]
        row_done = burst_end == end_beat
        m.d.comb += [
            self.beats.eq(length + 1),
            self.issue.eq(active & self.allow & (~out.valid | out.ready)),
            self.busy.eq(active | out.valid),
        ]

        with m.If(self.start):
            m.d.sync += [*side.load(self.side), rows_left.eq(self.rows),
                         cur.eq(self.side.first[side.lb:]), active.eq(1)]
        with m.If(self.issue):
            m.d.sync += [out.valid.eq(1), out.payload.beat.eq(cur), out.payload.len.eq(length)]
            with m.If(~row_done):
                m.d.sync += cur.eq(burst_end + 1)
            with m.Elif(rows_left == 1):
                m.d.sync += active.eq(0)
            with m.Else():
                m.d.sync += [rows_left.eq(rows_left - 1), *side.advance(),
                             cur.eq(side.next_first[side.lb:])]
        with m.Elif(out.ready):
            m.d.sync += out.valid.eq(0)
        return m
