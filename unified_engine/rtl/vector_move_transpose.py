"""VECTOR TRANSPOSE engine of ``VectorMove``: ``rows × length`` → ``length × rows``.

Semantics: ``host/units.py: _vector_transpose``. Source row ``r`` (``length`` elements of
``src0_fmt``) starts at ``src0 + r·src0_stride``; destination row ``j`` (``rows`` elements of
``dst_fmt``) at ``dst + j·dst_stride`` (strides in rows, 0 = packed). Equal formats move the
bits unchanged; bf16 → fp32 widens (``bf16_to_f32``: subnormals to signed zero, NaN to the
canonical NaN), fp32 → bf16 rounds (``f32_to_bf16`` of the flushed value).

Tiles: ``T`` source rows × one source beat (``Ps = B / e_src`` elements) are read into a
register buffer (``T`` rows of ``B`` bytes; fp32 → bf16 rounds on the way in), then written
as ``Ps`` destination segments of ``T`` elements, one per destination row (a segment is
``T·e_dst`` bytes at its aligned place in the destination beat, written with byte enables; the
data is the segment repeated across the beat). ``T = tile_rows``, or ``B/4`` rows for fp32
destinations if that is smaller. The buffer is plain flip-flops loaded a row at a time; the
column is picked from every row by a ``Ps``-way multiplexer.

Timing (one scratchpad port): per tile ``T`` reads, one cycle for the last answer (with a
one-cycle memory) and ``Ps`` writes; for bf16 with ``T = lanes = B/2`` that is about
``2·length·ceil(rows/T)`` cycles for the whole instruction. ``done`` one cycle after the last
write is accepted.

Rows of the destination that overlap each other (``dst_stride`` below a row's size) are
written tile by tile, not row by row, so their overlapping bytes may differ from the model
(which writes whole rows in order); operands that overlap the destination are not supported
either (the model reads everything first). Such instructions are refused at dispatch with
ILLEGAL_OPERAND (docs/isa.md "Operand overlap").
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import ElemFormat, isa_for
from .engine_if import memory_geometry, sram_port_signature
from .fp.to_bf16 import Fp32ToBf16
from .vector_move_quant import packed_rows
from .vector_move_stream import COUNT_BITS

__all__ = ["TransposeEngine"]

_F32_NAN = 0x7FC00000


def _log2(value: int) -> int:
    assert value & (value - 1) == 0
    return value.bit_length() - 1


def _widen(x):
    """fp32 bits of ``bf16_to_f32(x)``: FTZ and the canonical NaN."""
    exp, frac = x[7:15], x[0:7]
    return Mux(exp == 0, Cat(Const(0, 31), x[15]),
               Mux((exp == 0xFF) & (frac != 0), _F32_NAN, Cat(Const(0, 16), x)))


class TransposeEngine(wiring.Component):
    """TRANSPOSE for ``VectorMove`` (see the module docstring).

    Parameters
    ----------
    config:
        The engine configuration.
    tile_rows:
        Source rows per tile ``T`` (a power of two ≤ ``B/2``; default ``min(lanes, 16)``).
        The buffer costs ``T·B·8`` flip-flops.

    Ports: ``start``, ``ins``, ``done``, ``spad`` as ``QuantizeEngine``.
    """

    @staticmethod
    def default_tile_rows(config: EngineConfig) -> int:
        """``min(lanes, 16)``: the timing model's ``lanes`` rows per tile, at most 16 rows
        (the buffer grows with ``T·B``)."""
        return min(config.lanes, 16)

    @staticmethod
    def check_tile_rows(config: EngineConfig, tile_rows) -> None:
        """Raise ``ValueError`` unless ``tile_rows`` is a power of two in 2…B/2."""
        beat = config.axi_bytes
        if isinstance(tile_rows, bool) or not isinstance(tile_rows, int) or not (
                2 <= tile_rows <= beat // 2 and tile_rows & (tile_rows - 1) == 0):
            raise ValueError(f"TransposeEngine: tile_rows={tile_rows!r} must be a power of two "
                             f"in 2…{beat // 2} (half a {beat}-byte row)")

    def __init__(self, config: EngineConfig, *, tile_rows: int | None = None):
        tile_rows = self.default_tile_rows(config) if tile_rows is None else tile_rows
        self.check_tile_rows(config, tile_rows)
        geometry = memory_geometry(config)
        self.config, self.tile_rows = config, tile_rows
        self._geom = geometry["spad"]
        super().__init__({
            "start": In(1),
            "ins": In(isa_for(config).layouts["vector"]),
            "done": Out(1),
            "spad": Out(sram_port_signature(geometry["spad"])),
        })

    def elaborate(self, platform):
        m = Module()
        beat, tiles = self.config.axi_bytes, self.tile_rows
        aw = self._geom.addr_bits
        ins = self.ins
        port = self.spad
        t32 = min(tiles, beat // 4)  # rows per tile for fp32 destinations

        # ---- parameters, registered at start ----
        src32 = Signal()
        dst32 = Signal()
        rows_left = Signal(COUNT_BITS)  # source rows from this group on
        length = Signal(COUNT_BITS)
        src_stride, dst_stride = Signal(aw), Signal(aw)
        src_group, dst_col = Signal(aw), Signal(aw)  # group's first row; tile's first column
        cols_left = Signal(COUNT_BITS)  # source columns from this tile on
        col_beat = Signal(aw)  # source beat of this tile inside its row
        seg_off = Signal(range(beat))  # the group's byte offset inside a destination beat
        seg_beat = Signal(aw)  # ... and its beat inside a destination row
        s32, d32 = ins.src0_fmt == ElemFormat.FP32, ins.dst_fmt == ElemFormat.FP32
        rows, n = ins.rows, ins.length
        src_beats = packed_rows(Mux(s32, n << 2, n << 1), beat)
        dst_beats = packed_rows(Mux(d32, rows << 2, rows << 1), beat)
        with m.If(self.start):
            m.d.sync += [
                src32.eq(s32), dst32.eq(d32), rows_left.eq(rows), length.eq(n),
                src_stride.eq(Mux(ins.src0_stride != 0, ins.src0_stride, src_beats)),
                dst_stride.eq(Mux(ins.dst_stride != 0, ins.dst_stride, dst_beats)),
                src_group.eq(ins.src0.imm), dst_col.eq(ins.dst.imm), cols_left.eq(n),
                col_beat.eq(0), seg_off.eq(0), seg_beat.eq(0),
            ]
        tile = Mux(dst32, t32, tiles)  # rows per tile
        per_beat = Mux(src32, beat // 4, beat // 2)  # source elements per beat (Ps)
        t_rows = Signal(range(tiles + 1))  # rows of this tile
        m.d.comb += t_rows.eq(Mux(rows_left < tile, rows_left, tile))
        t_cols = Mux(cols_left < per_beat, cols_left, per_beat)  # columns of this tile
        seg_bytes = Mux(dst32, 4 * t32, 2 * tiles)

        # ---- the tile buffer: row t holds source row t's beat (loaded, never shifted) ----
        # fp32 → bf16 rounds on the way in (Ps converters), so a row then holds bf16 values;
        # only fp32 → fp32 keeps 32-bit elements (two 16-bit units each).
        units32 = Signal()  # the buffer's elements are fp32
        m.d.comb += units32.eq(src32 & dst32)
        buf = [Signal(8 * beat, name=f"buf{t}", reset_less=True) for t in range(tiles)]
        rd_addr, wr_addr = Signal(aw), Signal(aw)
        issued = Signal(range(tiles + 1))
        answered = Signal(range(tiles + 1))
        column = Signal(range(beat // 2 + 1))  # column of the tile being written
        rounded = []
        for k in range(beat // 4):
            to_bf16 = m.submodules[f"to_bf16_{k}"] = Fp32ToBf16(latency=0)
            m.d.comb += to_bf16.a.eq(port.resp.payload.word_select(k, 32))
            rounded.append(to_bf16.result)
        loaded = Mux(src32 & ~dst32, Cat(*rounded), port.resp.payload)
        with m.If(port.resp.valid):
            m.d.sync += answered.eq(answered + 1)
            for t in range(tiles):
                with m.If(answered == t):
                    m.d.sync += buf[t].eq(loaded)

        # The tile's column: one 16-bit unit of every row (two for fp32), converted; the
        # destination segment is repeated over the beat (the byte enables pick its place).
        unit = Mux(units32, column << 1, column)
        seg16, seg32 = [], []
        for t in range(tiles):
            low = buf[t].word_select(unit, 16)
            seg16.append(low)
            if t < t32:
                high = buf[t].word_select(unit | 1, 16)
                seg32.append(Mux(units32, Cat(low, high), _widen(low)))
        seg16, seg32 = Cat(*seg16), Cat(*seg32)
        word = Mux(dst32, Cat(*([seg32] * (8 * beat // len(seg32)))),
                   Cat(*([seg16] * (8 * beat // len(seg16)))))
        be_mask = (Const(1, 2 * beat + 1) << Mux(dst32, t_rows << 2, t_rows << 1)) - 1

        accepted = port.req.valid & port.req.ready
        with m.FSM(name="transpose"):
            with m.State("IDLE"), m.If(self.start):
                m.d.sync += [rd_addr.eq(ins.src0.imm), issued.eq(0), answered.eq(0)]
                m.next = "READ"
            with m.State("READ"):
                m.d.comb += [port.req.valid.eq(1), port.req.payload.addr.eq(rd_addr),
                             port.req.payload.write.eq(0)]
                with m.If(accepted):
                    m.d.sync += [rd_addr.eq(rd_addr + src_stride), issued.eq(issued + 1)]
                    with m.If(issued == t_rows - 1):
                        m.next = "WAIT"
            with m.State("WAIT"), m.If(port.resp.valid & (answered == t_rows - 1)):
                m.d.sync += [wr_addr.eq(dst_col + seg_beat), column.eq(0)]
                m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [
                    port.req.valid.eq(1),
                    port.req.payload.addr.eq(wr_addr),
                    port.req.payload.write.eq(1),
                    port.req.payload.data.eq(word),
                    port.req.payload.be.eq((be_mask << seg_off)[:beat]),
                ]
                with m.If(accepted):
                    m.d.sync += [wr_addr.eq(wr_addr + dst_stride), column.eq(column + 1)]
                    with m.If(column == t_cols - 1):
                        m.d.sync += [issued.eq(0), answered.eq(0)]
                        last_tile = cols_left <= per_beat
                        with m.If(~last_tile):  # next tile of this group: the next column beat
                            m.d.sync += [
                                col_beat.eq(col_beat + 1),
                                rd_addr.eq(src_group + col_beat + 1),
                                cols_left.eq(cols_left - per_beat),
                                dst_col.eq(dst_col + Mux(src32, dst_stride << _log2(beat // 4),
                                                         dst_stride << _log2(beat // 2))),
                            ]
                            m.next = "READ"
                        with m.Elif(rows_left > tile):  # next group of rows
                            next_group = src_group + Mux(
                                dst32, src_stride << _log2(t32), src_stride << _log2(tiles))
                            wrap = seg_off + seg_bytes >= beat
                            m.d.sync += [
                                rows_left.eq(rows_left - tile),
                                src_group.eq(next_group), rd_addr.eq(next_group),
                                col_beat.eq(0), cols_left.eq(length),
                                dst_col.eq(ins.dst.imm),
                                seg_off.eq(Mux(wrap, 0, seg_off + seg_bytes)),
                                seg_beat.eq(seg_beat + wrap),
                            ]
                            m.next = "READ"
                        with m.Else():
                            m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
