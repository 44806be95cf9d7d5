"""Operand plumbing of the MATMUL unit: memory rows → fixed-size chunks, and unaligned windows.

``Unpacker``
    A gearbox: a stream of memory rows in, a stream of ``chunk``-bit pieces out, in bit order
    (bit 0 of the first row is bit 0 of the first chunk). The A and B panels are such streams:
    k vectors of TR bf16 (A) or of C elements in ``b_fmt`` (B, 16/8/4 bits each), packed
    contiguously from a row-aligned tile start, with the tile's last row only partly used.

``WindowReader``
    Reads ``count`` consecutive 16-bit entries starting at any entry of a memory through an
    ``SramPort`` (the bias memory: a bias vector per output row; the scale memory: the C
    block scales of a k-block, the NVFP4 tensor scale), with a one-window cache so that a
    repeated or same-row window costs no read.
"""

from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .engine_if import MemoryGeometry, sram_port_signature

__all__ = ["Unpacker", "WindowReader", "shift_up"]


def shift_up(m: Module, value, amount, unit: int, positions: int, name: str):
    """``value << (amount · unit)`` as a logarithmic shifter (amount < ``positions``).

    The result keeps ``len(value) + (positions − 1)·unit`` bits. One 2:1 mux level per bit
    of ``amount`` instead of a ``positions``-input mux per output bit.
    """
    value = Cat(value)
    width = len(value) + (positions - 1) * unit
    out = Cat(value, Const(0, width - len(value)))
    for b in range(max(1, (positions - 1).bit_length())):
        if positions <= 1:
            break
        step = Signal(width, name=f"{name}_s{b}")
        m.d.comb += step.eq(Mux(amount[b], out << (unit << b), out))
        out = step
    return out[:width]


def shift_down(m: Module, value, amount, unit: int, positions: int, name: str):
    """``value >> (amount · unit)`` as a logarithmic shifter (amount < ``positions``)."""
    out = Cat(value)
    width = len(out)
    for b in range(max(1, (positions - 1).bit_length())):
        if positions <= 1:
            break
        step = Signal(width, name=f"{name}_s{b}")
        m.d.comb += step.eq(Mux(amount[b], out >> (unit << b), out))
        out = step
    return out


class Unpacker(wiring.Component):
    """Rows of ``row_bits`` in, chunks of ``chunk_sizes[sel]`` bits out, segment by segment.

    A *segment* (one operand tile) is ``count`` chunks read from the rows up to and including
    the one flagged ``last``; whatever that row holds after the segment's last chunk is
    dropped, and the next segment starts with the next row (tiles are row-aligned).

    Parameters
    ----------
    row_bits:
        Bits per input row.
    chunk_sizes:
        The chunk sizes in bits (``sel`` picks one; e.g. 16·C, 8·C and 4·C for the B panel).
    count_bits:
        Width of ``count``.

    Ports
    -----
    i : In(stream {data: row_bits, last: 1})
        Rows; ``last`` marks a segment's last row.
    o : Out(stream {data: max chunk, first: 1, last: 1})
        Chunks in the low bits of ``data`` (bits above the selected size are don't-care);
        ``first``/``last`` mark a segment's first and last chunk.
    sel, count : In
        The chunk size and the chunks per segment (≥ 1); hold them while a segment is in
        flight.

    Timing: a chunk is valid the cycle after the row completing it is accepted; a row and a
    chunk can move in the same cycle, so the rate is one row or chunk per cycle each. The
    buffer holds ``max chunk + row_bits − g`` bits (g = gcd of all sizes), the least that
    always accepts a row while no chunk is complete, so the row insertion mux has only
    ``(max chunk − g)/g + 1`` positions. A segment's first row waits until the previous
    segment's last chunk leaves (at most one cycle of bubble per segment).
    """

    def __init__(self, row_bits: int, chunk_sizes, count_bits: int) -> None:
        sizes = tuple(int(s) for s in chunk_sizes)
        if not sizes or min(sizes) < 1 or row_bits < 1:
            raise ValueError(f"Unpacker: bad sizes row={row_bits} chunks={sizes}")
        self.row_bits = row_bits
        self.sizes = sizes
        self.granule = math.gcd(row_bits, *sizes)
        self.max_chunk = max(sizes)
        self.capacity = self.max_chunk + row_bits - self.granule
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"data": row_bits, "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout(
                {"data": self.max_chunk, "first": 1, "last": 1}))),
            "sel": In(range(len(sizes))),
            "count": In(count_bits),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.granule
        cap_g = self.capacity // g
        row_g = self.row_bits // g
        positions = cap_g - row_g + 1  # where a row can be inserted (level before it, in g)

        buf = Signal(self.capacity)  # bits at and above `level` are zero
        level = Signal(range(cap_g + 1))  # granules held
        chunks = Signal.like(self.count)  # chunks of the segment already sent
        drain = Signal()  # the segment's last row is in: no row until its last chunk leaves

        size_g = Signal(range(self.max_chunk // g + 1))
        m.d.comb += size_g.eq(Array(Const(s // g) for s in self.sizes)[self.sel])

        o = self.o.payload
        m.d.comb += [
            self.o.valid.eq(level >= size_g),
            o.data.eq(buf[:self.max_chunk]),
            o.first.eq(chunks == 0),
            o.last.eq(chunks + 1 == self.count),
        ]
        pop = self.o.valid & self.o.ready
        end = pop & o.last
        # Buffer after this cycle's pop (a segment's end drops the rest of its last row).
        kept = Signal(self.capacity)
        kept_level = Signal.like(level)
        shifted = Array(buf >> s for s in self.sizes)[self.sel]
        m.d.comb += [
            kept.eq(Mux(end, 0, Mux(pop, shifted, buf))),
            kept_level.eq(Mux(end, 0, Mux(pop, level - size_g, level))),
        ]
        m.d.comb += self.i.ready.eq((~drain | end) & (kept_level + row_g <= cap_g))
        push = self.i.valid & self.i.ready
        inserted = Array(
            (Cat(self.i.payload.data) << (p * g))[:self.capacity] for p in range(positions)
        )[kept_level]
        m.d.sync += [
            buf.eq(Mux(push, kept | inserted, kept)),
            level.eq(kept_level + Mux(push, row_g, 0)),
        ]
        with m.If(pop):
            m.d.sync += chunks.eq(Mux(o.last, 0, chunks + 1))
        with m.If(push & self.i.payload.last):
            m.d.sync += drain.eq(1)
        with m.Elif(end):
            m.d.sync += drain.eq(0)
        return m


class WindowReader(wiring.Component):
    """``count`` consecutive 16-bit entries from any entry of a memory, one window per request.

    Parameters
    ----------
    geometry:
        The memory (rows of ``beat_bytes``; ``E = beat_bytes / 2`` entries per row).
    width:
        Entries per window at most (W).
    entry_bits:
        Width of the entry address in requests.
    depth:
        Row buffer (and read-ahead) depth.

    Ports
    -----
    req : In(stream {entry, count})
        Window start (entry address) and length 1 … W.
    o : Out(stream ArrayLayout(16, W))
        The window, entry ``entry`` in element 0 (elements past ``count`` are don't-care).
    port : Out(sram_port_signature(geometry))
        Read-only client port.
    flush : In(1)
        Forget the cached rows (pulse it when the memory may have changed, e.g. at the start
        of an instruction; no request may be in flight).

    Behaviour: requests are turned into row reads in order; reads run ahead of the window
    assembly by up to ``depth`` rows. A request whose rows are exactly the rows of the
    previous request (the same bias row for consecutive ROW entries, the same column window
    repeated for every row of a tile) reads nothing: the window is cut again from the rows
    already held. A window of ``n`` rows leaves ``n + 1`` cycles after its first row is
    available (1 cycle for a cached window).
    """

    def __init__(self, geometry: MemoryGeometry, width: int, entry_bits: int,
                 depth: int = 4) -> None:
        beat = geometry.beat_bytes
        if beat % 2 or beat & (beat - 1):
            raise ValueError("WindowReader: rows must be a power-of-two number of bytes")
        self.geometry = geometry
        self.per_row = beat // 2
        self.width = width
        self.entry_bits = entry_bits
        self.depth = depth
        # rows one window can touch: offset ≤ E − 1 plus W entries
        self.max_rows = (self.per_row - 1 + width - 1) // self.per_row + 1
        super().__init__({
            "req": In(stream.Signature(data.StructLayout(
                {"entry": entry_bits, "count": range(width + 1)}))),
            "o": Out(stream.Signature(data.ArrayLayout(16, width))),
            "port": Out(sram_port_signature(geometry)),
            "flush": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        e_row = self.per_row
        shift = (e_row - 1).bit_length()  # log2 E
        nr = self.max_rows
        aw = self.geometry.addr_bits
        req = self.req.payload

        # ---- issue: split requests into row reads -------------------------------------------
        desc_layout = data.StructLayout({"offset": range(e_row), "rows": range(nr + 1)})
        descs = m.submodules.descs = fifo.SyncFIFO(width=desc_layout.size, depth=4)
        rows_fifo = m.submodules.rows = fifo.SyncFIFO(width=16 * e_row, depth=self.depth)

        first_row = Signal(max(self.entry_bits - shift, 1))
        n_rows = Signal(range(nr + 1))
        offset = Signal(range(e_row))
        m.d.comb += [
            first_row.eq(req.entry >> shift),
            offset.eq(req.entry[:shift] if shift else 0),
            n_rows.eq(((offset + req.count - 1) >> shift) + 1),
        ]
        cached_row = Signal.like(first_row)
        cached_rows = Signal(range(nr + 1))  # 0: nothing cached
        hit = (cached_rows == n_rows) & (cached_row == first_row)

        issue_row = Signal(aw)  # next row to read
        issue_left = Signal(range(nr + 1))  # rows of the current request still to read
        outstanding = Signal(range(self.depth + 1))
        m.d.comb += self.req.ready.eq((issue_left == 0) & descs.w_rdy)
        accept = self.req.valid & self.req.ready
        desc_in = Signal(desc_layout)
        m.d.comb += [
            desc_in.offset.eq(offset),
            desc_in.rows.eq(Mux(hit, 0, n_rows)),
            descs.w_data.eq(desc_in),
            descs.w_en.eq(accept),
        ]
        with m.If(accept & ~hit):
            m.d.sync += [
                issue_row.eq(first_row),
                issue_left.eq(n_rows),
                cached_row.eq(first_row),
                cached_rows.eq(n_rows),
            ]
        with m.If(self.flush):
            m.d.sync += cached_rows.eq(0)

        port = self.port
        room = rows_fifo.level + outstanding < self.depth
        m.d.comb += [
            port.req.valid.eq((issue_left != 0) & room),
            port.req.payload.addr.eq(issue_row),
            port.req.payload.write.eq(0),
        ]
        sent = port.req.valid & port.req.ready
        with m.If(sent):
            m.d.sync += [issue_row.eq(issue_row + 1), issue_left.eq(issue_left - 1)]
        got = port.resp.valid & (outstanding != 0)  # (none outstanding: from before a reset)
        m.d.sync += outstanding.eq(outstanding + sent - got)
        m.d.comb += [rows_fifo.w_data.eq(port.resp.payload), rows_fifo.w_en.eq(got)]

        # ---- assemble windows ---------------------------------------------------------------
        buf = Array(Signal(16 * e_row, name=f"win_row{r}") for r in range(nr))
        collected = Signal(range(nr + 1))
        head = Signal(desc_layout)
        m.d.comb += head.eq(descs.r_data)
        out_offset = Signal(range(e_row))
        flat = Cat(*buf)
        m.d.comb += self.o.payload.as_value().eq(
            shift_down(m, flat, out_offset, 16, e_row, "win")[:16 * self.width])
        free = ~self.o.valid | self.o.ready
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        # a row for the head window
        take_row = descs.r_rdy & rows_fifo.r_rdy & (collected < head.rows) & free
        m.d.comb += rows_fifo.r_en.eq(take_row)
        with m.If(take_row):
            m.d.sync += [buf[collected].eq(rows_fifo.r_data), collected.eq(collected + 1)]
        # the head window is complete: emit it
        complete = descs.r_rdy & (collected == head.rows) & free
        m.d.comb += descs.r_en.eq(complete)
        with m.If(complete):
            m.d.sync += [self.o.valid.eq(1), out_offset.eq(head.offset), collected.eq(0)]
        return m
