"""Write side of the VECTOR execution unit: result beats → rounded elements → scratchpad rows.

:class:`OutConverter` rounds each lane to the destination format (``fp.f32_to_bf16`` or the
fp32 storage rule ``fp.ftz32``; ``RAW`` keeps the bits, for ARGMAX4's indices).
:class:`RowWriter` packs the elements of each output row into scratchpad rows and writes them
with byte enables: output row *r* starts at row ``base + r·stride`` (stride 0 = packed) and
only its ``length·e`` bytes are written, so the bytes around it keep their values.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import EngineConfig
from ..numerics.fp import F32_CANONICAL_NAN
from .engine_if import memory_geometry
from .fp import Fp32ToBf16
from .vector_exec_read import COUNT_BITS, packed_rows

__all__ = ["OutConverter", "OutMode", "RowWriter", "out_layout"]


class OutMode(enum.Enum, shape=2):
    """How :class:`OutConverter` turns an fp32 lane into a stored element."""

    BF16 = 0  #: ``fp.f32_to_bf16`` (in the low 16 bits of the lane)
    FP32 = 1  #: ``fp.ftz32``
    RAW = 2  #: unchanged 32-bit word


def out_layout(lanes: int) -> data.StructLayout:
    """A result beat: ``words`` (one per lane), ``count`` (valid lanes from lane 0),
    ``row_last`` (the output row's last beat) and ``end`` (the instruction's last beat)."""
    return data.StructLayout({
        "words": data.ArrayLayout(32, lanes),
        "count": unsigned(ceil_log2(lanes + 1)),
        "row_last": 1,
        "end": 1,
    })


class OutConverter(wiring.Component):
    """Round every lane of a result beat to the destination format: a one-register stage.

    Ports
    -----
    mode : In(OutMode)
        Hold stable while beats flow.
    i, o : stream of :func:`out_layout`
        ``o`` is ``i`` one cycle later with the words converted. ``i.ready = ~o.valid |
        o.ready`` (full throughput, no bubble).
    """

    def __init__(self, lanes: int):
        self.lanes = lanes
        super().__init__({
            "mode": In(OutMode),
            "i": In(stream.Signature(out_layout(lanes))),
            "o": Out(stream.Signature(out_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        load = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(load)
        beat = self.i.payload
        with m.If(load):
            m.d.sync += [
                self.o.valid.eq(self.i.valid),
                self.o.payload.count.eq(beat.count),
                self.o.payload.row_last.eq(beat.row_last),
                self.o.payload.end.eq(beat.end),
            ]
        for k in range(self.lanes):
            w = beat.words[k]
            rnd = Fp32ToBf16(latency=0)
            m.submodules[f"round{k}"] = rnd
            m.d.comb += rnd.a.eq(w)
            exp, man = w[23:31], w[0:23]
            ftz = Mux(exp == 0, Cat(Const(0, 31), w[31]),
                      Mux((exp == 0xFF) & (man != 0), F32_CANONICAL_NAN, w))  # fmt: skip
            word = Mux(self.mode == OutMode.BF16, rnd.result,
                       Mux(self.mode == OutMode.FP32, ftz, w))  # fmt: skip
            with m.If(load):
                m.d.sync += self.o.payload.words[k].eq(word)
        return m


class RowWriter(wiring.Component):
    """Pack result beats into scratchpad rows and issue the row writes.

    Parameters
    ----------
    config:
        ``lanes`` (L), ``axi_bytes`` (B) and the scratchpad geometry.

    Ports
    -----
    start : In(1)
        Pulse: sample ``cfg`` (the previous run must have finished).
    cfg : In(cfg_layout)
        ``base`` (row of output row 0), ``stride`` (rows between output rows, 0 = packed:
        ``ceil(length·e / B)``), ``length`` (elements per output row, for the packed stride),
        ``fp32`` (4-byte elements; else 2-byte bf16 in the low half of each word).
    i : In(stream.Signature(out_layout(L)))
        Converted beats. Every beat but an output row's last has ``count = L``.
    req : Out(stream.Signature(write layout))
        ``addr``, ``data``, ``be`` and ``end``: a registered write request, held until taken
        (``end`` marks the instruction's last write; it is not part of the memory request).

    Timing
    ------
    A row write leaves one cycle after the beat that completes the row (or ends the output
    row). A beat is taken every cycle while the request register is free (or being taken),
    except that an fp32 beat of ``4·L = 2·B`` bytes is two rows (two cycles).
    """

    def __init__(self, config: EngineConfig):
        self.config = config
        self.lanes = config.lanes
        self.beat_bytes = config.axi_bytes
        geometry = memory_geometry(config)["spad"]
        self.addr_bits = geometry.addr_bits
        self.cfg_layout = data.StructLayout({
            "base": unsigned(self.addr_bits),
            "stride": unsigned(self.addr_bits),
            "length": unsigned(COUNT_BITS),
            "fp32": 1,
        })
        self.req_layout = data.StructLayout({
            "addr": unsigned(self.addr_bits),
            "data": unsigned(8 * self.beat_bytes),
            "be": unsigned(self.beat_bytes),
            "end": 1,
        })
        super().__init__({
            "start": In(1),
            "cfg": In(self.cfg_layout),
            "i": In(stream.Signature(out_layout(self.lanes))),
            "req": Out(stream.Signature(self.req_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, bb = self.lanes, self.beat_bytes
        units = bb // 2  # 16-bit units of a row (one bf16 element, half an fp32 element)
        cfg = Signal(self.cfg_layout)
        with m.If(self.start):
            m.d.sync += cfg.eq(self.cfg)
        per_row = packed_rows(m, cfg.length, cfg.fp32, bb, self.addr_bits + 1, "per_row")
        stride = Mux(cfg.stride != 0, cfg.stride, per_row)

        # Segments: the part of a beat that goes into one row. bf16: the whole beat (L units);
        # fp32: the whole beat (2L units) if it fits a row, else each half (L/2 elements).
        split = 4 * lanes > bb
        seg_bf16 = lanes  # units
        seg_fp32 = units if split else 2 * lanes
        beat = self.i.payload
        half = Signal()  # split fp32: the beat's second row is next
        pos = Signal(range(max(2, units // seg_bf16)))  # segment slot inside the row
        slots = Mux(cfg.fp32, units // seg_fp32, units // seg_bf16)
        row_full = pos == slots - 1
        # The beat's last segment: bf16 and unsplit fp32 have one; split fp32 ends after the
        # first half if the second has no element.
        seg_last = (~cfg.fp32 | half | (beat.count <= lanes // 2)) if split else Const(1, 1)
        row_end = beat.row_last & seg_last
        emit = row_full | row_end

        # The row being assembled (data + byte enables) and the segment merged into it.
        buf = Signal(8 * bb)
        buf_be = Signal(bb)
        new = Signal(8 * bb)
        new_be = Signal(bb)
        m.d.comb += [new.eq(buf), new_be.eq(buf_be)]
        for u in range(units):
            # bf16 mode: unit u is element u % L of the segment in slot u // L.
            e_b = u % seg_bf16
            with m.If(~cfg.fp32 & (pos == u // seg_bf16)):
                m.d.comb += [
                    new[16 * u:16 * u + 16].eq(beat.words[e_b][:16]),
                    new_be[2 * u:2 * u + 2].eq(Mux(e_b < beat.count, 0b11, 0)),
                ]
            # fp32 mode: unit u is half u % 2 of element (u % seg) // 2 of the segment in
            # slot u // seg; in the split case the second row holds elements L/2 … L-1.
            e_f = (u % seg_fp32) // 2
            word = beat.words[e_f][16 * (u % 2):16 * (u % 2) + 16]
            index = e_f
            if split:
                word = Mux(half, beat.words[e_f + lanes // 2][16 * (u % 2):16 * (u % 2) + 16],
                           word)  # fmt: skip
                index = Mux(half, e_f + lanes // 2, e_f)
            with m.If(cfg.fp32 & (pos == u // seg_fp32)):
                m.d.comb += [
                    new[16 * u:16 * u + 16].eq(word),
                    new_be[2 * u:2 * u + 2].eq(Mux(index < beat.count, 0b11, 0)),
                ]

        # ---- the request register and the row addresses.
        req = self.req
        free = ~req.valid | req.ready
        take = self.i.valid & (free | ~emit)  # a segment that only fills the buffer needs no slot
        addr = Signal(self.addr_bits)  # row being assembled
        row_base = Signal(self.addr_bits)  # first row of the current output row
        with m.If(req.valid & req.ready):
            m.d.sync += req.valid.eq(0)
        with m.If(take):
            with m.If(emit):
                m.d.sync += [
                    req.valid.eq(1),
                    req.payload.addr.eq(addr),
                    req.payload.data.eq(new),
                    req.payload.be.eq(new_be),
                    req.payload.end.eq(row_end & beat.end),
                    buf_be.eq(0),
                    pos.eq(0),
                ]
                with m.If(row_end):
                    m.d.sync += [row_base.eq(row_base + stride), addr.eq(row_base + stride)]
                with m.Else():
                    m.d.sync += addr.eq(addr + 1)
            with m.Else():
                m.d.sync += [buf.eq(new), buf_be.eq(new_be), pos.eq(pos + 1)]
        # Pop the beat after its last segment.
        m.d.comb += self.i.ready.eq((free | ~emit) & seg_last)
        if split:
            with m.If(take):
                m.d.sync += half.eq(cfg.fp32 & ~seg_last)
        with m.If(self.start):
            m.d.sync += [
                addr.eq(self.cfg.base), row_base.eq(self.cfg.base), pos.eq(0), buf_be.eq(0),
            ]
            if split:
                m.d.sync += half.eq(0)
        return m
