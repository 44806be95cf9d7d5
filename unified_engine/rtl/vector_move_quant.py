"""VECTOR QUANTIZE engine of ``VectorMove``: bf16 rows → packed codes and block scales.

Semantics: ``host/units.py: _vector_quant`` (QUANTIZE), bit-exact through ``QuantEncoder``.
Row ``r`` of ``length`` bf16 values at ``src0 + r·stride`` is cut into encoder beats of ``E``
values (``E`` = the encoder's lanes), encoded, and its codes (4-bit formats: two per byte, the
even element in the low nibble; 8-bit: one per byte) are written to ``dst + r·dst_stride``
(strides in rows, 0 = packed). Block ``b`` of row ``r`` gets scale-memory entry
``qscale (+2 for NVFP4) + r·blocks + b``: bf16 bits with the INT flag, or the E4M3 code in the
low byte; NVFP4 also stores the fp32 tensor scale ``imm`` at entries ``qscale`` (low half)
and ``qscale + 1``.

Timing: the scratchpad port carries both the row reads and the code writes (one request per
cycle), so a row costs ``ceil(2·length/B)`` reads plus ``ceil(code_bytes/B)`` writes, and the
encoder takes ``length / E`` cycles per row (IF blocks with a narrower metric more); the
slower of the two sets the pace. Scale entries are written through the scale port, one per
block, in parallel. ``done`` follows the last write by one cycle; the pipeline latency
(about the encoder's ``latency`` plus 4 cycles) is paid once per instruction.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import WeightFormat, isa_for
from ..numerics.quant_blocks import NVFP4_BLOCK
from .engine_if import memory_geometry, sram_port_signature
from .quant.encode import QuantEncoder
from .quant.layout import EIGHT_BIT_FORMATS
from .vector_move_stream import COUNT_BITS, ChunkPacker, ChunkSplitter, PortMerge, RowReader

__all__ = ["QuantizeEngine", "entry_write", "packed_rows"]


def _log2(value: int) -> int:
    assert value & (value - 1) == 0
    return value.bit_length() - 1


def packed_rows(nbytes, beat: int):
    """``ceil(nbytes / beat)`` (memory rows of a packed operand row), as a value."""
    return (nbytes + (beat - 1)) >> _log2(beat)


def entry_write(m: Module, req, index, value, beat: int) -> None:
    """Drive a scale-memory write request ``req`` (payload) of 16-bit entry ``index``."""
    per_row = beat // 2
    m.d.comb += [
        req.addr.eq(index >> _log2(per_row)),
        req.write.eq(1),
        req.data.eq(Cat(*([value] * per_row))),
        req.be.eq(Const(3, beat) << (Cat(Const(0, 1), index[: _log2(per_row)]))),
    ]


class QuantizeEngine(wiring.Component):
    """QUANTIZE for ``VectorMove`` (see the module docstring).

    Parameters
    ----------
    config:
        The engine configuration (its block formats are built into the encoder).
    lanes:
        Encoder width ``E`` (values per cycle): a power of two ≤ ``config.lanes``, ≤ 16.
    metric_lanes:
        The encoder's IF metric width (default ``lanes``).

    Ports
    -----
    start : In(1)
        One-cycle pulse while idle: run the instruction on ``ins`` (held until ``done``).
    ins : In(vector layout)
        The resolved VECTOR word (``isa_for(config).layouts["vector"]``), rows and length ≥ 1.
    done : Out(1)
        One-cycle pulse once every code and scale write has been accepted.
    spad, scale : Out(sram_port_signature)
        Scratchpad (reads and code writes) and scale memory (entry writes).
    """

    def __init__(self, config: EngineConfig, *, lanes: int, metric_lanes: int | None = None):
        geometry = memory_geometry(config)
        self.config, self.lanes = config, lanes
        self.encoder = QuantEncoder(dataclasses.replace(config, lanes=lanes),
                                    metric_lanes=metric_lanes)
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
        enc = m.submodules.encoder = self.encoder
        code_bits = enc.geometry.code_bits
        m.submodules.reader = reader = RowReader(self._spad_geom)
        m.submodules.splitter = splitter = ChunkSplitter(beat, 2 * e_lanes)
        m.submodules.packer = packer = ChunkPacker(self._spad_geom, e_lanes)
        m.submodules.merge = merge = PortMerge(self._spad_geom)
        wiring.connect(m, reader.req, merge.rd)
        wiring.connect(m, merge.rd_resp, reader.resp)
        wiring.connect(m, packer.o, merge.wr)
        wiring.connect(m, merge.port, wiring.flipped(self.spad))
        wiring.connect(m, reader.o, splitter.i)

        # ---- setup: operand geometry from the instruction (registered at start) ----
        fmt = ins.qfmt
        nvfp4 = fmt == WeightFormat.NVFP4
        wide = Cat(*(fmt == f for f in EIGHT_BIT_FORMATS)).any()
        length, rows = ins.length, ins.rows
        src_beats = packed_rows(length << 1, beat)
        code_bytes = Mux(wide, length, length >> 1)
        dst_beats = packed_rows(code_bytes, beat)
        block_beats = Signal(range(cfg.quant_block // e_lanes + 1))
        rows_left = Signal(COUNT_BITS)
        busy = Signal()
        m.d.comb += [
            reader.start.eq(self.start),
            reader.base.eq(ins.src0.imm),
            reader.stride.eq(Mux(ins.src0_stride != 0, ins.src0_stride, src_beats)),
            reader.rows.eq(rows),
            reader.beats.eq(src_beats),
            splitter.restart.eq(self.start),
            splitter.half.eq(0),
            splitter.chunks_per_row.eq(length >> _log2(e_lanes)),
            packer.start.eq(self.start),
            packer.half.eq(~wide),
            packer.base.eq(ins.dst.imm),
            packer.stride.eq(Mux(ins.dst_stride != 0, ins.dst_stride, dst_beats)),
        ]
        with m.If(self.start):
            m.d.sync += [
                busy.eq(1),
                rows_left.eq(rows),
                block_beats.eq(Mux(nvfp4, NVFP4_BLOCK, cfg.quant_block) >> _log2(e_lanes)),
            ]

        # ---- encoder in: the splitter's chunks are E bf16 values ----
        m.d.comb += [
            enc.i.valid.eq(splitter.o.valid),
            enc.i.payload.eq(splitter.o.payload.data),
            splitter.o.ready.eq(enc.i.ready),
            enc.fmt.eq(fmt),
        ]
        if hasattr(enc, "tensor_scale"):
            m.d.comb += enc.tensor_scale.eq(ins.imm)

        # ---- encoder out: codes to the packer, a scale entry per block to the entry FIFO ----
        entry = data.StructLayout({"index": len(ins.qscale), "value": 16})
        m.submodules.entries = entries = SyncFIFOBuffered(width=entry.size, depth=4)
        ts_pending = Signal(2)  # NVFP4: tensor-scale halves still to be queued
        out_beat = Signal(range(cfg.quant_block // e_lanes + 1))  # beat inside its block
        out_chunk = Signal(COUNT_BITS)  # chunk inside its row
        next_entry = Signal(len(ins.qscale))
        row_last = out_chunk == (length >> _log2(e_lanes)) - 1
        block_first = out_beat == 0
        entry_ok = ~block_first | (entries.w_rdy & (ts_pending == 0))
        codes = enc.o.payload.codes
        m.d.comb += [
            packer.i.valid.eq(enc.o.valid & entry_ok),
            packer.i.payload.data.eq(codes if code_bits == 8 else Cat(codes, Const(0, len(codes)))),
            packer.i.payload.last.eq(row_last),
            enc.o.ready.eq(packer.i.ready & entry_ok),
        ]
        out_taken = enc.o.valid & enc.o.ready
        entry_in = Signal(entry)
        with m.If(ts_pending != 0):
            m.d.comb += [
                entry_in.index.eq(ins.qscale + (ts_pending == 1)),
                entry_in.value.eq(Mux(ts_pending == 2, ins.imm[:16], ins.imm[16:])),
                entries.w_en.eq(1),
            ]
            with m.If(entries.w_rdy):
                m.d.sync += ts_pending.eq(ts_pending - 1)
        with m.Else():
            m.d.comb += [
                entry_in.index.eq(next_entry),
                entry_in.value.eq(enc.o.payload.scales[0]),
                entries.w_en.eq(out_taken & block_first),
            ]
        m.d.comb += entries.w_data.eq(entry_in)
        with m.If(self.start):
            m.d.sync += [out_beat.eq(0), out_chunk.eq(0), ts_pending.eq(Mux(nvfp4, 2, 0)),
                         next_entry.eq(ins.qscale + Mux(nvfp4, 2, 0))]
        with m.Elif(out_taken):
            m.d.sync += [
                out_beat.eq(Mux(out_beat == block_beats - 1, 0, out_beat + 1)),
                out_chunk.eq(Mux(row_last, 0, out_chunk + 1)),
            ]
            with m.If(block_first):
                m.d.sync += next_entry.eq(next_entry + 1)

        # ---- scale port: one entry write per cycle ----
        head = data.View(entry, entries.r_data)
        entry_write(m, self.scale.req.payload, head.index, head.value, beat)
        m.d.comb += [
            self.scale.req.valid.eq(entries.r_rdy),
            entries.r_en.eq(self.scale.req.ready),
        ]

        # ---- completion: every row written and every entry written ----
        with m.If(packer.rows_done):
            m.d.sync += rows_left.eq(rows_left - 1)
        finished = busy & ~self.start & (rows_left == 0) & ~entries.r_rdy & (ts_pending == 0)
        m.d.comb += self.done.eq(finished)
        with m.If(finished):
            m.d.sync += busy.eq(0)
        return m
