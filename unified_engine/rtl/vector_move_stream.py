"""Streaming building blocks of ``VectorMove``: row reads, beat ↔ chunk conversion, writes.

An operand is ``rows`` rows, each starting on a memory row (``addr + r·stride``) and spanning
``ceil(row_bytes / B)`` memory rows of ``B`` bytes (``engine_if`` memories). These blocks turn
that into streams and back:

* ``RowReader``: issues the read requests of such an operand, one per cycle, and delivers the
  beats in order; it keeps at most ``depth`` beats requested and not yet taken, so the
  response FIFO never overflows (the memory's ``resp`` must always be taken).
* ``ChunkSplitter``: beats → chunks of ``C`` bytes, ``chunks_per_row`` per row (the rest of a
  row's last beat is dropped).
* ``ChunkPacker``: chunks → write requests, a row at a time (a partial last beat is written
  with byte enables only for the row's bytes, so the bytes after a row are left alone).
* ``PortMerge``: a ``RowReader``'s requests and a ``ChunkPacker``'s writes onto one
  ``SramPort`` (round robin when both wait; the offer is held while the memory stalls).

Chunk sizes are ``max_chunk`` bytes or, when ``half`` is set, ``max_chunk / 2`` (both divide
``B``: everything is a power of two).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .engine_if import MemoryGeometry, sram_port_signature

__all__ = ["COUNT_BITS", "ChunkPacker", "ChunkSplitter", "PortMerge", "RowReader",
           "write_request_layout"]

#: Width of row, beat and chunk counters (VECTOR ``rows``/``length`` are 20-bit fields; a
#: row of ``length`` fp32 spans fewer than 2**22 bytes).
COUNT_BITS = 22


def write_request_layout(geometry: MemoryGeometry) -> data.StructLayout:
    """One write: memory row, data, byte enables."""
    beat = geometry.beat_bytes
    return data.StructLayout({"addr": geometry.addr_bits, "data": 8 * beat, "be": beat})


class RowReader(wiring.Component):
    """Read ``rows`` rows of ``beats`` memory rows each, from ``base`` with row ``stride``.

    ``start`` (a pulse while idle) samples ``base``, ``stride``, ``rows`` and ``beats``
    (``rows`` and ``beats`` ≥ 1). Requests go out on ``req`` (one per cycle while there is
    credit), answers come back on ``resp`` and leave in order on ``o``. ``busy`` is high from
    ``start`` until the last request is issued. Latency: a beat leaves ``o`` one cycle after
    its answer (through a FIFO); throughput one beat per cycle when ``o`` is ready and the
    memory answers within ``depth - 1`` cycles.
    """

    def __init__(self, geometry: MemoryGeometry, depth: int = 4):
        self.geometry, self.depth = geometry, depth
        aw, beat = geometry.addr_bits, geometry.beat_bytes
        super().__init__({
            "start": In(1),
            "base": In(aw),
            "stride": In(aw),
            "rows": In(COUNT_BITS),
            "beats": In(COUNT_BITS),
            "req": Out(stream.Signature(aw)),
            "resp": In(stream.Signature(8 * beat, always_ready=True)),
            "o": Out(stream.Signature(8 * beat)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        beat = self.geometry.beat_bytes
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8 * beat, depth=self.depth)
        m.d.comb += [
            fifo.w_data.eq(self.resp.payload),
            fifo.w_en.eq(self.resp.valid),
            self.o.payload.eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
        ]
        row_addr = Signal.like(self.base)
        beat_idx = Signal(COUNT_BITS)
        rows_left = Signal(COUNT_BITS)
        stride = Signal.like(self.stride)
        beats = Signal(COUNT_BITS)
        # Beats requested and not yet taken from `o`: the FIFO always has room for them.
        credit = Signal(range(self.depth + 1))
        issue = self.req.valid & self.req.ready
        taken = self.o.valid & self.o.ready
        m.d.sync += credit.eq(credit + issue - taken)
        m.d.comb += [
            self.busy.eq(rows_left != 0),
            self.req.payload.eq(row_addr + beat_idx),
            # Valid only from registers (never from ready): credit counts what is in flight.
            self.req.valid.eq((rows_left != 0) & (credit < self.depth)),
        ]
        last_beat = beat_idx == beats - 1
        with m.If(self.start):
            m.d.sync += [row_addr.eq(self.base), beat_idx.eq(0), rows_left.eq(self.rows),
                         stride.eq(self.stride), beats.eq(self.beats)]
        with m.Elif(issue):
            with m.If(last_beat):
                m.d.sync += [beat_idx.eq(0), row_addr.eq(row_addr + stride),
                             rows_left.eq(rows_left - 1)]
            with m.Else():
                m.d.sync += beat_idx.eq(beat_idx + 1)
        return m


class ChunkSplitter(wiring.Component):
    """Cut beats of ``B`` bytes into chunks: ``chunks_per_row`` chunks per operand row.

    Chunk ``k`` of a beat is bytes ``[k·C, (k+1)·C)`` (``C = max_chunk`` or half of it when
    ``half``), in the low bits of ``o.payload.data``; ``o.payload.last`` marks a row's last
    chunk, after which the rest of that beat is dropped and the next beat starts a row.
    ``half`` and ``chunks_per_row`` must be stable while chunks flow; ``restart`` (a pulse
    while idle) rewinds the counters. One chunk per cycle, combinational from ``i``.
    """

    def __init__(self, beat_bytes: int, max_chunk: int):
        assert beat_bytes % max_chunk == 0 and max_chunk >= 2
        self.beat_bytes, self.max_chunk = beat_bytes, max_chunk
        super().__init__({
            "restart": In(1),
            "half": In(1),
            "chunks_per_row": In(COUNT_BITS),
            "i": In(stream.Signature(8 * beat_bytes)),
            "o": Out(stream.Signature(data.StructLayout({"data": 8 * max_chunk, "last": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        beat, chunk = self.beat_bytes, self.max_chunk
        k = Signal(range(2 * beat // chunk + 1))  # chunk index inside the beat
        n = Signal(COUNT_BITS)  # chunk index inside the row
        per_beat = Mux(self.half, 2 * beat // chunk, beat // chunk)
        row_end = n == self.chunks_per_row - 1
        beat_end = row_end | (k == per_beat - 1)
        word = self.i.payload
        piece = Mux(self.half, word.word_select(k, 4 * chunk), word.word_select(k, 8 * chunk))
        take = self.o.valid & self.o.ready
        m.d.comb += [
            self.o.valid.eq(self.i.valid),
            self.o.payload.data.eq(piece),
            self.o.payload.last.eq(row_end),
            self.i.ready.eq(self.o.ready & beat_end),
        ]
        with m.If(self.restart):
            m.d.sync += [k.eq(0), n.eq(0)]
        with m.Elif(take):
            m.d.sync += [k.eq(Mux(beat_end, 0, k + 1)), n.eq(Mux(row_end, 0, n + 1))]
        return m


class ChunkPacker(wiring.Component):
    """Pack chunks into memory rows and write them: row ``r`` at ``base + r·stride``.

    Chunks (``C`` = ``max_chunk`` or half, see ``ChunkSplitter``) fill a beat register from
    byte 0; the beat is written when it is full or the chunk is its row's last (byte enables
    cover exactly the row's bytes). ``start`` (a pulse while idle) samples ``base`` and
    ``stride``. ``rows_done`` pulses when a row's last write is accepted. One chunk per cycle;
    a completed beat waits in the output register for the memory (``o``), the next chunk can
    enter meanwhile unless that would complete another beat.
    """

    def __init__(self, geometry: MemoryGeometry, max_chunk: int):
        beat = geometry.beat_bytes
        assert beat % max_chunk == 0 and max_chunk >= 2
        self.geometry, self.max_chunk = geometry, max_chunk
        super().__init__({
            "start": In(1),
            "half": In(1),
            "base": In(geometry.addr_bits),
            "stride": In(geometry.addr_bits),
            "i": In(stream.Signature(data.StructLayout({"data": 8 * max_chunk, "last": 1}))),
            "o": Out(stream.Signature(write_request_layout(geometry))),
            "rows_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        beat, chunk = self.geometry.beat_bytes, self.max_chunk
        unit = chunk // 2  # positions count half chunks
        slots = beat // unit
        pos = Signal(range(slots + 1))
        acc = Signal(8 * beat)
        acc_be = Signal(beat)
        row_addr = Signal(self.geometry.addr_bits)
        beat_idx = Signal(self.geometry.addr_bits)
        stride = Signal(self.geometry.addr_bits)
        out_last = Signal()  # the pending write ends a row

        size = Mux(self.half, 1, 2)  # chunk size in units
        new_pos = pos + size
        full = (new_pos == slots) | self.i.payload.last
        # Place the chunk at `pos` (a multiple of its own size): a full chunk covers slots
        # pos and pos+1 with its two halves, a half chunk slot pos with its low half.
        low, high = self.i.payload.data[: 8 * unit], self.i.payload.data[8 * unit :]
        merged, merged_be = [], []
        for s in range(slots):
            high_hit = (size == 2) & (pos == s - 1)
            hit = (pos == s) | high_hit
            merged.append(Mux(hit, Mux(high_hit, high, low), acc.word_select(s, 8 * unit)))
            merged_be.append(Mux(hit, Const((1 << unit) - 1, unit),
                                 acc_be.word_select(s, unit)))
        o_free = ~self.o.valid | self.o.ready
        take = self.i.valid & self.i.ready
        m.d.comb += [
            self.i.ready.eq(~full | o_free),
            self.rows_done.eq(self.o.valid & self.o.ready & out_last),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.start):
            m.d.sync += [row_addr.eq(self.base), beat_idx.eq(0), stride.eq(self.stride),
                         pos.eq(0), acc_be.eq(0)]
        with m.Elif(take):
            with m.If(full):
                m.d.sync += [
                    self.o.valid.eq(1),
                    self.o.payload.addr.eq(row_addr + beat_idx),
                    self.o.payload.data.eq(Cat(*merged)),
                    self.o.payload.be.eq(Cat(*merged_be)),
                    out_last.eq(self.i.payload.last),
                    pos.eq(0),
                    acc_be.eq(0),
                ]
                with m.If(self.i.payload.last):
                    m.d.sync += [row_addr.eq(row_addr + stride), beat_idx.eq(0)]
                with m.Else():
                    m.d.sync += beat_idx.eq(beat_idx + 1)
            with m.Else():
                m.d.sync += [acc.eq(Cat(*merged)), acc_be.eq(Cat(*merged_be)),
                             pos.eq(new_pos)]
        return m


class PortMerge(wiring.Component):
    """One ``SramPort`` (client side, ``port``) shared by a reader (``rd``) and a writer (``wr``).

    Read answers go to ``rd_resp``. When both wait, the one not served last goes first; a
    request offered to a stalled memory stays offered (stream rule).
    """

    def __init__(self, geometry: MemoryGeometry):
        aw, beat = geometry.addr_bits, geometry.beat_bytes
        super().__init__({
            "rd": In(stream.Signature(aw)),
            "rd_resp": Out(stream.Signature(8 * beat, always_ready=True)),
            "wr": In(stream.Signature(write_request_layout(geometry))),
            "port": Out(sram_port_signature(geometry)),
        })

    def elaborate(self, platform):
        m = Module()
        port = self.port
        held = Signal()  # the memory did not take last cycle's offer: keep it
        held_write = Signal()
        last_write = Signal()  # the last request served was a write
        choose_write = Mux(held, held_write,
                           self.wr.valid & (~self.rd.valid | ~last_write))
        accepted = port.req.valid & port.req.ready
        m.d.comb += [
            port.req.valid.eq(Mux(choose_write, self.wr.valid, self.rd.valid)),
            port.req.payload.write.eq(choose_write),
            port.req.payload.addr.eq(Mux(choose_write, self.wr.payload.addr, self.rd.payload)),
            # Zero for reads: a held read's payload must not change with the writer's offer.
            port.req.payload.data.eq(Mux(choose_write, self.wr.payload.data, 0)),
            port.req.payload.be.eq(Mux(choose_write, self.wr.payload.be, 0)),
            self.wr.ready.eq(choose_write & port.req.ready),
            self.rd.ready.eq(~choose_write & port.req.ready),
            self.rd_resp.valid.eq(port.resp.valid),
            self.rd_resp.payload.eq(port.resp.payload),
        ]
        m.d.sync += [held.eq(port.req.valid & ~port.req.ready), held_write.eq(choose_write)]
        with m.If(accepted):
            m.d.sync += last_write.eq(choose_write)
        return m
