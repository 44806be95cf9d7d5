"""VECTOR DEQUANTIZE engine of ``VectorMove``: packed codes and block scales → bf16/fp32 rows.

Semantics: ``host/units.py: _vector_quant`` (DEQUANTIZE), bit-exact through ``QuantDecoder``.
Row ``r``'s codes at ``src0 + r·stride`` (4-bit formats two per byte, low nibble first) are
cut into decoder beats of ``E`` codes; block ``b`` of row ``r`` reads scale-memory entry
``qscale (+2 for NVFP4) + r·blocks + b`` (NVFP4: the E4M3 code in the entry's low byte and
the tensor scale ``imm``). The decoded bf16 values are written to ``dst + r·dst_stride`` as
bf16 or, for ``dst_fmt = FP32``, widened exactly (the decoder's outputs are never subnormal
and NaN is canonical, so widening is the golden ``bf16_to_f32`` followed by ``ftz32``).

Timing: the scratchpad port carries the code reads and the output writes (one request per
cycle): per row ``ceil(code_bytes/B)`` reads and ``ceil(length·e/B)`` writes; the decoder takes
``length / E`` cycles per row (twice that for fp32 output, whose beats are written in halves).
The scale entries are read ahead through the scale port (one memory row per ``B/2`` entries).
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import ElemFormat, WeightFormat, isa_for
from ..numerics.quant_blocks import NVFP4_BLOCK
from .engine_if import memory_geometry, sram_port_signature
from .quant.decode import QuantDecoder
from .quant.layout import EIGHT_BIT_FORMATS
from .vector_move_quant import packed_rows
from .vector_move_stream import COUNT_BITS, ChunkPacker, ChunkSplitter, PortMerge, RowReader

__all__ = ["DequantizeEngine", "EntryUnpacker"]


def _log2(value: int) -> int:
    assert value & (value - 1) == 0
    return value.bit_length() - 1


class EntryUnpacker(wiring.Component):
    """Scale-memory rows → ``count`` consecutive 16-bit entries, from entry ``offset`` of the
    first row on (``restart`` pulse while idle samples ``offset`` and ``count``)."""

    def __init__(self, beat_bytes: int):
        self.per_row = beat_bytes // 2
        super().__init__({
            "restart": In(1),
            "offset": In(range(self.per_row)),
            "count": In(COUNT_BITS),
            "i": In(stream.Signature(8 * beat_bytes)),
            "o": Out(stream.Signature(16)),
        })

    def elaborate(self, platform):
        m = Module()
        k = Signal(range(self.per_row))
        left = Signal(COUNT_BITS)
        take = self.o.valid & self.o.ready
        row_end = (k == self.per_row - 1) | (left == 1)
        m.d.comb += [
            self.o.valid.eq(self.i.valid & (left != 0)),
            self.o.payload.eq(self.i.payload.word_select(k, 16)),
            self.i.ready.eq(take & row_end),
        ]
        with m.If(self.restart):
            m.d.sync += [k.eq(self.offset), left.eq(self.count)]
        with m.Elif(take):
            m.d.sync += [k.eq(Mux(row_end, 0, k + 1)), left.eq(left - 1)]
        return m


class DequantizeEngine(wiring.Component):
    """DEQUANTIZE for ``VectorMove`` (see the module docstring).

    Parameters
    ----------
    config:
        The engine configuration (its block formats are built into the decoder).
    lanes:
        Decoder width ``E``: a power of two ≤ ``config.lanes`` and ≤ 16.

    Ports: as ``QuantizeEngine`` (``start``, ``ins``, ``done``, ``spad``, ``scale``); the scale
    port only reads here.
    """

    def __init__(self, config: EngineConfig, *, lanes: int):
        geometry = memory_geometry(config)
        self.config, self.lanes = config, lanes
        self.decoder = QuantDecoder(dataclasses.replace(config, lanes=lanes))
        self._spad_geom, self._scale_geom = geometry["spad"], geometry["scale"]
        super().__init__({
            "start": In(1),
            "ins": In(isa_for(config).layouts["vector"]),
            "done": Out(1),
            "spad": Out(sram_port_signature(geometry["spad"])),
            "scale": Out(sram_port_signature(geometry["scale"])),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, e_lanes = self.config, self.lanes
        beat = cfg.axi_bytes
        ins = self.ins
        dec = m.submodules.decoder = self.decoder
        m.submodules.reader = reader = RowReader(self._spad_geom)
        m.submodules.splitter = splitter = ChunkSplitter(beat, e_lanes)
        m.submodules.packer = packer = ChunkPacker(self._spad_geom, 2 * e_lanes)
        m.submodules.merge = merge = PortMerge(self._spad_geom)
        wiring.connect(m, reader.req, merge.rd)
        wiring.connect(m, merge.rd_resp, reader.resp)
        wiring.connect(m, packer.o, merge.wr)
        wiring.connect(m, merge.port, wiring.flipped(self.spad))
        wiring.connect(m, reader.o, splitter.i)
        # Scale entries: a reader on the scale port (reads only) and the entry unpacker.
        m.submodules.scale_reader = s_reader = RowReader(self._scale_geom)
        m.submodules.entries = entries = EntryUnpacker(beat)
        wiring.connect(m, s_reader.o, entries.i)
        m.d.comb += [
            self.scale.req.valid.eq(s_reader.req.valid),
            self.scale.req.payload.addr.eq(s_reader.req.payload),
            self.scale.req.payload.write.eq(0),
            s_reader.req.ready.eq(self.scale.req.ready),
            s_reader.resp.valid.eq(self.scale.resp.valid),
            s_reader.resp.payload.eq(self.scale.resp.payload),
        ]

        # ---- setup ----
        fmt = ins.qfmt
        nvfp4 = fmt == WeightFormat.NVFP4
        wide = Cat(*(fmt == f for f in EIGHT_BIT_FORMATS)).any()
        fp32 = ins.dst_fmt == ElemFormat.FP32
        length, rows = ins.length, ins.rows
        code_bytes = Mux(wide, length, length >> 1)
        src_beats = packed_rows(code_bytes, beat)
        dst_beats = packed_rows(Mux(fp32, length << 2, length << 1), beat)
        chunks = length >> _log2(e_lanes)  # decoder beats per row
        blocks = Mux(nvfp4, length >> _log2(NVFP4_BLOCK), length >> _log2(cfg.quant_block))
        first = ins.qscale + Mux(nvfp4, 2, 0)
        # Scale entries to read: rows · blocks per row. The product (one per instruction) is
        # registered at start and the scale reader starts a cycle later.
        count = Signal(COUNT_BITS)
        s_start = Signal()
        m.d.sync += s_start.eq(self.start)
        with m.If(self.start):
            m.d.sync += count.eq(rows * blocks)
        per_row = _log2(beat // 2)
        scale_rows = ((first + count - 1) >> per_row) - (first >> per_row) + 1
        m.d.comb += [
            reader.start.eq(self.start),
            reader.base.eq(ins.src0.imm),
            reader.stride.eq(Mux(ins.src0_stride != 0, ins.src0_stride, src_beats)),
            reader.rows.eq(rows),
            reader.beats.eq(src_beats),
            splitter.restart.eq(self.start),
            splitter.half.eq(~wide),
            splitter.chunks_per_row.eq(chunks),
            packer.start.eq(self.start),
            packer.half.eq(0),
            packer.base.eq(ins.dst.imm),
            packer.stride.eq(Mux(ins.dst_stride != 0, ins.dst_stride, dst_beats)),
            s_reader.start.eq(s_start),
            s_reader.base.eq(first >> per_row),
            s_reader.stride.eq(0),
            s_reader.rows.eq(1),
            s_reader.beats.eq(scale_rows),
            entries.restart.eq(s_start),
            entries.offset.eq(first[:per_row]),
            entries.count.eq(count),
        ]
        block_beats = Signal(range(cfg.quant_block // e_lanes + 1))
        rows_left = Signal(COUNT_BITS)
        busy = Signal()
        with m.If(self.start):
            m.d.sync += [
                busy.eq(1),
                rows_left.eq(rows),
                block_beats.eq(Mux(nvfp4, NVFP4_BLOCK, cfg.quant_block) >> _log2(e_lanes)),
            ]

        # ---- decoder in: E codes and the block's scale entry ----
        in_beat = Signal.like(block_beats)  # beat inside its block
        both = splitter.o.valid & entries.o.valid
        m.d.comb += [
            dec.i.valid.eq(both),
            dec.i.payload.codes.eq(splitter.o.payload.data),
            dec.fmt.eq(fmt),
            splitter.o.ready.eq(dec.i.ready & entries.o.valid),
            entries.o.ready.eq(dec.i.ready & splitter.o.valid & (in_beat == block_beats - 1)),
        ]
        for k in range(dec.geometry.scale_slots):
            m.d.comb += dec.i.payload.scales[k].eq(entries.o.payload)
        if hasattr(dec, "tensor_scale"):
            m.d.comb += dec.tensor_scale.eq(ins.imm)
        with m.If(self.start):
            m.d.sync += in_beat.eq(0)
        with m.Elif(dec.i.valid & dec.i.ready):
            m.d.sync += in_beat.eq(Mux(in_beat == block_beats - 1, 0, in_beat + 1))

        # ---- decoder out: bf16 chunks, or fp32 in two halves, to the packer ----
        values = [dec.o.payload[k] for k in range(e_lanes)]
        widened = [Cat(Const(0, 16), v) for v in values]
        half = Signal()  # fp32: the second half of the beat is next
        out_chunk = Signal(COUNT_BITS)  # decoder beat inside its row
        row_last = out_chunk == chunks - 1
        second = Cat(*widened[e_lanes // 2:])
        m.d.comb += [
            packer.i.valid.eq(dec.o.valid),
            packer.i.payload.data.eq(Mux(fp32, Mux(half, second, Cat(*widened[: e_lanes // 2])),
                                         Cat(*values))),
            packer.i.payload.last.eq(row_last & (~fp32 | half)),
            dec.o.ready.eq(packer.i.ready & (~fp32 | half)),
        ]
        with m.If(self.start):
            m.d.sync += [half.eq(0), out_chunk.eq(0)]
        with m.Elif(packer.i.valid & packer.i.ready):
            m.d.sync += half.eq(fp32 & ~half)
            with m.If(~fp32 | half):
                m.d.sync += out_chunk.eq(Mux(row_last, 0, out_chunk + 1))

        # ---- completion ----
        with m.If(packer.rows_done):
            m.d.sync += rows_left.eq(rows_left - 1)
        finished = busy & ~self.start & (rows_left == 0)
        m.d.comb += self.done.eq(finished)
        with m.If(finished):
            m.d.sync += busy.eq(0)
        return m
