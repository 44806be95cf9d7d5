"""Output side of the MATMUL unit: byte segments → scratchpad writes, the A-panel transpose, and
the running row maximum write-back.

Everything the unit writes to the scratchpad is a *segment*: ``nbytes`` contiguous bytes at
any byte address (an output row of C elements, a piece of an A-panel column, one fp32 row
maximum). ``SEGMENT`` is its layout; ``segment_signature`` the stream carrying it.

``SegmentWriter``
    Turns a segment into one or two (more for wide segments) row writes with byte enables.
``PanelTransposer``
    Buffers output tiles (two, so one fills while the other drains) and emits them column by
    column, the A_PANEL layout (a tile's column n is TR consecutive elements).
``RowMaxWriter``
    Writes the fp32 row maxima (INIT) or ``f32_max`` of them with the stored ones (UPDATE,
    read-modify-write through the unit's scratchpad port).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..isa import ElemFormat
from .fp import Fp32Compare
from .matmul_stream import shift_up

__all__ = [
    "PanelTransposer",
    "RowMaxWriter",
    "SegmentWriter",
    "pack_elements",
    "segment_layout",
    "write_layout",
]


def segment_layout(addr_bits: int, max_bytes: int) -> data.StructLayout:
    """A segment: ``nbytes`` (1 … max_bytes) bytes of ``data`` (byte 0 in the low bits) at
    byte address ``addr``."""
    return data.StructLayout({
        "addr": addr_bits,
        "nbytes": range(max_bytes + 1),
        "data": 8 * max_bytes,
    })


def write_layout(row_bits: int, beat_bytes: int) -> data.StructLayout:
    """A row write: ``addr`` (row), ``data`` and byte enables ``be``."""
    return data.StructLayout({"addr": row_bits, "data": 8 * beat_bytes, "be": beat_bytes})


def pack_elements(lanes, out_fmt, width_bits: int):
    """The bytes of fp32 lanes as written in ``out_fmt``: BF16 takes each lane's upper half
    (the epilogue puts the rounded bf16 there), FP32 the whole lane. Zero-extended to
    ``width_bits``."""
    lanes = list(lanes)
    bf16 = Cat(*(lane[16:32] for lane in lanes))
    fp32 = Cat(*lanes)
    return Mux(out_fmt == ElemFormat.FP32, fp32, Cat(bf16, Const(0, len(fp32) - len(bf16))))[
        :width_bits]


class SegmentWriter(wiring.Component):
    """Segments in, aligned row writes out.

    Parameters
    ----------
    beat_bytes:
        Bytes per scratchpad row (B, a power of two).
    row_bits:
        Row-address width; the segment byte address is ``row_bits + log2 B`` bits.
    max_bytes:
        Largest segment.

    Ports
    -----
    i : In(stream segment_layout)
    o : Out(stream write_layout)
        Row writes: a segment at byte offset ``off`` in its row becomes
        ``ceil((off + nbytes) / B)`` writes of consecutive rows, enabling exactly its bytes.
    idle : Out(1)
        No segment held.

    Timing: the segment is moved into place as it is accepted and registered; its writes
    leave one per cycle, and the next segment is accepted in the cycle its predecessor's last
    write leaves. When a segment fits in a row (``max_bytes ≤ B``) the data is *rotated* by
    its offset within one row (log2 B levels of B-byte muxes) and both rows it touches take
    that rotated row with their own byte enables; wider segments are shifted.
    """

    def __init__(self, beat_bytes: int, row_bits: int, max_bytes: int) -> None:
        if beat_bytes & (beat_bytes - 1):
            raise ValueError("SegmentWriter: beat_bytes must be a power of two")
        self.beat = beat_bytes
        self.row_bits = row_bits
        self.offset_bits = (beat_bytes - 1).bit_length()
        self.max_bytes = max_bytes
        self.max_rows = (beat_bytes - 1 + max_bytes - 1) // beat_bytes + 1
        super().__init__({
            "i": In(stream.Signature(segment_layout(row_bits + self.offset_bits, max_bytes))),
            "o": Out(stream.Signature(write_layout(row_bits, beat_bytes))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        b, ob = self.beat, self.offset_bits
        seg = self.i.payload
        off = seg.addr[:ob] if ob else Const(0, 1)
        span = self.max_rows * b
        enables = Cat(*(seg.nbytes > n for n in range(self.max_bytes)))
        placed_be = shift_up(m, enables, off, 1, b, "seg_be")
        rotate = self.max_bytes <= b
        if rotate:
            placed = Cat(seg.data, Const(0, 8 * (b - self.max_bytes)))
            for bit in range(self.offset_bits):  # rotate left by `off` bytes
                rotated = Signal(8 * b, name=f"seg_rot{bit}")
                m.d.comb += rotated.eq(Mux(off[bit], placed.rotate_left(8 << bit), placed))
                placed = rotated
            data_reg = Signal(8 * b)
        else:
            placed = shift_up(m, seg.data, off, 8, b, "seg_data")
            data_reg = Signal(8 * span)
        be_reg = Signal(span)
        row = Signal(self.row_bits)
        left = Signal(range(self.max_rows + 1))
        m.d.comb += [
            self.o.valid.eq(left != 0),
            self.o.payload.addr.eq(row),
            self.o.payload.data.eq(data_reg[:8 * b]),
            self.o.payload.be.eq(be_reg[:b]),
            self.idle.eq(left == 0),
        ]
        sent = self.o.valid & self.o.ready
        m.d.comb += self.i.ready.eq((left == 0) | (sent & (left == 1)))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                data_reg.eq(placed),
                be_reg.eq(placed_be),
                row.eq(seg.addr[ob:]),
                left.eq(((off + seg.nbytes - 1) >> ob) + 1),
            ]
        with m.Elif(sent):
            m.d.sync += [
                data_reg.eq(data_reg if rotate else data_reg >> (8 * b)),
                be_reg.eq(be_reg >> b),
                row.eq(row + 1),
                left.eq(left - 1),
            ]
        return m


class PanelTransposer(wiring.Component):
    """Output tiles in by rows, out by columns as segments (the A_PANEL layout).

    Parameters
    ----------
    tile_rows, cols:
        TR and C: a tile is TR rows of C lanes.
    addr_bits:
        Byte-address width of the segments.

    Ports
    -----
    i : In(stream {lanes: ArrayLayout(32, C), base: addr_bits})
        The rows of each tile in order; ``base`` (read with row 0) is the byte address of the
        tile's column 0.
    out_fmt : In(ElemFormat)
        Element size e (2 or 4 bytes); hold it while busy.
    o : Out(stream segment_layout(addr_bits, 4·C))
        For column c = 0…C−1, piece q: elements ``q·C … q·C + C − 1`` (fewer in the last
        piece) of the column at ``base + c·TR·e + q·C·e``.
    idle : Out(1)
        Nothing buffered.

    Storage: C memories (one per column) of 2·ceil(TR/C) words of C fp32 lanes: a row writes
    lane ``r mod C`` of word ``r div C`` in every column's memory, a column piece is one
    word. Two tile banks: the next tile fills while the previous one drains. A tile drains
    in C·ceil(TR/C) cycles (one piece per cycle when ``o`` is ready).
    """

    def __init__(self, tile_rows: int, cols: int, addr_bits: int) -> None:
        self.tile_rows, self.cols, self.addr_bits = tile_rows, cols, addr_bits
        self.pieces = -(-tile_rows // cols)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "lanes": data.ArrayLayout(32, cols), "base": addr_bits}))),
            "out_fmt": In(ElemFormat),
            "o": Out(stream.Signature(segment_layout(addr_bits, 4 * cols))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        tr, c_n, q_n = self.tile_rows, self.cols, self.pieces
        fp32 = self.out_fmt == ElemFormat.FP32
        mems = []
        for c in range(c_n):
            mem = Memory(shape=32 * c_n, depth=2 * q_n, init=[])
            m.submodules[f"column{c}"] = mem
            mems.append((mem.write_port(granularity=32), mem.read_port()))

        # ---- fill: row r → word r div C, lane r mod C of bank `wbank` ----------------------
        full = Signal(2)
        wbank = Signal()
        w_word = Signal(range(q_n))
        w_lane = Signal(range(c_n))
        w_row = Signal(range(tr))
        base = Array(Signal(self.addr_bits, name=f"tile_base{k}") for k in range(2))
        m.d.comb += self.i.ready.eq(~full.bit_select(wbank, 1))
        write = self.i.valid & self.i.ready
        for c, (wp, _) in enumerate(mems):
            m.d.comb += [
                wp.addr.eq(wbank * q_n + w_word),
                wp.data.eq(Cat(*[self.i.payload.lanes[c]] * c_n)),
                wp.en.eq(Mux(write, 1 << w_lane, 0)),
            ]
        set_full = Signal(2)
        with m.If(write):
            with m.If(w_row == 0):
                m.d.sync += base[wbank].eq(self.i.payload.base)
            last_row = w_row == tr - 1
            m.d.sync += [
                w_row.eq(Mux(last_row, 0, w_row + 1)),
                w_lane.eq(Mux(last_row | (w_lane == c_n - 1), 0, w_lane + 1)),
                w_word.eq(Mux(last_row, 0, Mux(w_lane == c_n - 1, w_word + 1, w_word))),
            ]
            with m.If(last_row):
                m.d.comb += set_full.eq(1 << wbank)
                m.d.sync += wbank.eq(~wbank)

        # ---- drain: column c, piece q of bank `rbank`, one sync read per piece --------------
        rbank = Signal()
        col = Signal(range(c_n))
        piece = Signal(range(q_n))
        col_off = Signal(self.addr_bits)  # c·TR·e
        piece_off = Signal(self.addr_bits)  # q·C·e
        held = Signal()  # a piece is on `o`
        held_col = Signal(range(c_n))
        held_addr = Signal(self.addr_bits)
        held_nbytes = Signal.like(self.o.payload.nbytes)
        seg = self.o.payload
        can_read = full.bit_select(rbank, 1) & (~held | self.o.ready)
        for _, rp in mems:
            m.d.comb += [rp.addr.eq(rbank * q_n + piece), rp.en.eq(can_read)]
        clear_full = Signal(2)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += held.eq(0)
        with m.If(can_read):
            last_piece = piece == q_n - 1
            elems = Mux(last_piece, tr - (q_n - 1) * c_n, c_n)
            m.d.sync += [
                held.eq(1),
                held_col.eq(col),
                held_addr.eq(base[rbank] + col_off + piece_off),
                held_nbytes.eq(Mux(fp32, elems * 4, elems * 2)),
                piece.eq(Mux(last_piece, 0, piece + 1)),
                piece_off.eq(Mux(last_piece, 0, piece_off + Mux(fp32, 4 * c_n, 2 * c_n))),
            ]
            with m.If(last_piece):
                last_col = col == c_n - 1
                m.d.sync += [
                    col.eq(Mux(last_col, 0, col + 1)),
                    col_off.eq(Mux(last_col, 0, col_off + Mux(fp32, 4 * tr, 2 * tr))),
                ]
                with m.If(last_col):
                    m.d.comb += clear_full.eq(1 << rbank)
                    m.d.sync += rbank.eq(~rbank)
        m.d.sync += full.eq((full | set_full) & ~clear_full)
        word = Array(rp.data for _, rp in mems)[held_col]
        m.d.comb += [
            self.o.valid.eq(held),
            seg.addr.eq(held_addr),
            seg.nbytes.eq(held_nbytes),
            seg.data.eq(pack_elements(
                [word[32 * k:32 * k + 32] for k in range(c_n)], self.out_fmt, 32 * c_n)),
            self.idle.eq(~full.any() & ~held & (w_row == 0)),
        ]
        return m


class _RmState(enum.Enum):
    EMPTY = 0
    READ = 1
    WAIT = 2
    MERGE = 3
    SEND = 4


class RowMaxWriter(wiring.Component):
    """Row maxima in, one segment per *line* of consecutive maxima out; UPDATE merges each
    line with the stored values first (one read of its row, ``f32_max`` lane by lane).

    A line is ``L`` consecutive fp32 slots, L = the largest power of two ≤ min(B/4, C),
    starting at a multiple of L slots from the row-aligned ``rmax`` address, so a line never
    crosses a scratchpad row and fits one segment.

    Parameters
    ----------
    beat_bytes, row_bits:
        Scratchpad rows (B bytes) and row-address width.
    seg_bytes:
        Segment width of the writer (4·C).

    Ports
    -----
    i : In(stream {addr, value, last})
        A row's maximum (fp32) and the byte address of its slot (4-byte aligned, slots in
        increasing order from a line start); ``last`` marks the instruction's last row (the
        line is written even if it is not full).
    update : In(1)
        UPDATE mode: write ``f32_max(stored, value)`` (``Fp32Compare``) instead of ``value``.
    rd : Out(stream row address)
        UPDATE's read of the line's row (the unit routes it to the scratchpad port).
    rd_valid, rd_data : In
        Its answer (one pulse; the unit delivers it only for a read of this block).
    o : Out(stream segment_layout(addr_bits, seg_bytes))
    idle : Out(1)

    Two stages: a line fills (one slot per cycle) while the previous one is read, merged
    (L cycles through one comparator) and written, so a line costs about L + 5 cycles in
    UPDATE and L + 1 in INIT, overlapped with the next line's filling.
    """

    def __init__(self, beat_bytes: int, row_bits: int, seg_bytes: int) -> None:
        self.beat = beat_bytes
        self.offset_bits = (beat_bytes - 1).bit_length()
        self.row_bits = row_bits
        fit = max(1, min(beat_bytes // 4, seg_bytes // 4))
        self.lanes = 1 << (fit.bit_length() - 1)
        addr_bits = row_bits + self.offset_bits
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(
                {"addr": addr_bits, "value": 32, "last": 1}))),
            "update": In(1),
            "rd": Out(stream.Signature(row_bits)),
            "rd_valid": In(1),
            "rd_data": In(8 * beat_bytes),
            "o": Out(stream.Signature(segment_layout(addr_bits, seg_bytes))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ob, lanes = self.offset_bits, self.lanes
        lane_bits = (lanes - 1).bit_length()
        addr_bits = self.row_bits + ob

        # ---- stage 1: fill a line -------------------------------------------------------------
        fill = Array(Signal(32, name=f"fill{k}") for k in range(lanes))
        fill_addr = Signal(addr_bits)
        fill_count = Signal(range(lanes + 1))
        fill_full = Signal()
        slot = self.i.payload.addr[2:2 + lane_bits] if lane_bits else Const(0, 1)
        m.d.comb += self.i.ready.eq(~fill_full)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [fill[slot].eq(self.i.payload.value), fill_count.eq(slot + 1)]
            with m.If(slot == 0):
                m.d.sync += fill_addr.eq(self.i.payload.addr)
            with m.If((slot == lanes - 1) | self.i.payload.last):
                m.d.sync += fill_full.eq(1)

        # ---- stage 2: read, merge, write ---------------------------------------------------------
        state = Signal(_RmState)
        vals = Signal(32 * lanes)
        old = Signal(32 * lanes)
        addr = Signal(addr_bits)
        count = Signal(range(lanes + 1))
        step = Signal(range(lanes))
        merge = m.submodules.merge = Fp32Compare(latency=0)
        m.d.comb += [merge.a.eq(old[:32]), merge.b.eq(vals[:32])]
        line_word = addr[2 + lane_bits:ob] if ob > 2 + lane_bits else Const(0, 1)
        words = self.beat // (4 * lanes)
        stored = self.rd_data.word_select(line_word, 32 * lanes) if words > 1 else \
            self.rd_data[:32 * lanes]
        m.d.comb += [
            self.rd.valid.eq(state == _RmState.READ),
            self.rd.payload.eq(addr[ob:]),
            self.o.valid.eq(state == _RmState.SEND),
            self.o.payload.addr.eq(addr),
            self.o.payload.nbytes.eq(count * 4),
            self.o.payload.data.eq(vals),
            self.idle.eq((state == _RmState.EMPTY) & ~fill_full & (fill_count == 0)),
        ]
        with m.Switch(state):
            with m.Case(_RmState.EMPTY), m.If(fill_full):
                m.d.sync += [
                    vals.eq(Cat(*fill)), addr.eq(fill_addr), count.eq(fill_count),
                    fill_full.eq(0), fill_count.eq(0),
                    state.eq(Mux(self.update, _RmState.READ, _RmState.SEND)),
                ]
            with m.Case(_RmState.READ), m.If(self.rd.ready):
                m.d.sync += state.eq(_RmState.WAIT)
            with m.Case(_RmState.WAIT), m.If(self.rd_valid):
                m.d.sync += [old.eq(stored), step.eq(0), state.eq(_RmState.MERGE)]
            with m.Case(_RmState.MERGE):
                # lane 0 of both registers through the comparator, then rotate by one lane:
                # after L steps `vals` holds the merged line in order
                m.d.sync += [
                    vals.eq(Cat(vals[32:], merge.max)),
                    old.eq(old >> 32),
                    step.eq(step + 1),
                ]
                with m.If(step == lanes - 1):
                    m.d.sync += state.eq(_RmState.SEND)
            with m.Case(_RmState.SEND), m.If(self.o.ready):
                m.d.sync += state.eq(_RmState.EMPTY)
        return m
