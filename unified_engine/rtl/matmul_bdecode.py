"""``BOperand``: the B panel's k-steps as C bf16 values, decoding quantized formats on the way.

A B k-step is C elements in ``b_fmt``: bf16 (passed through) or 4/8-bit codes whose column c
has its own block scale (scale-memory entry of column c for the current k-block). The
existing ``QuantDecoder`` gives all its lanes one scale per block along the lanes, so here
each column gets its own 2-lane decoder (only lane 0 is used; synthesis drops lane 1, whose
outputs go nowhere) fed with that column's code and scale. All C decoders run in lockstep.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import WeightFormat
from .quant.decode import QuantDecoder
from .quant.layout import EIGHT_BIT_FORMATS, QuantGeometry

__all__ = ["BOperand"]

_NVFP4_BLOCK = 16


class BOperand(wiring.Component):
    """B k-steps (raw chunks) plus per-k-block column scales in, C bf16 per k-step out.

    Parameters
    ----------
    config:
        ``cols`` (C), ``quant_block`` and the built ``formats`` are used.

    Ports
    -----
    chunk : In(stream {data: 16·C, first: 1})
        One k-step of the B panel in ``fmt`` (C elements of 16, 8 or 4 bits in the low
        bits, element 0 lowest); ``first`` marks a tile's first k-step.
    scales : In(stream ArrayLayout(16, C))
        Quantized formats only: for each k-block of each tile, the C scale entries (column c
        in element c); one is consumed per ``block`` k-steps (16 for NVFP4, else
        ``quant_block``). Not read for BF16.
    fmt : In(WeightFormat)
        ``b_fmt``; hold it while the unit runs.
    tensor_scale : In(32)
        NVFP4's fp32 tensor scale (valid before the first NVFP4 k-step).
    o : Out(stream ArrayLayout(16, C))
        The k-step as bf16.

    Timing: BF16 passes through combinationally (``o`` is ``chunk``); quantized k-steps take
    ``QuantDecoder.LATENCY`` (3) cycles, one per cycle.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.cols = config.cols
        self.formats = QuantGeometry.from_config(config).formats
        super().__init__({
            "chunk": In(stream.Signature(data.StructLayout({"data": 16 * config.cols,
                                                            "first": 1}))),
            "scales": In(stream.Signature(data.ArrayLayout(16, config.cols))),
            "fmt": In(WeightFormat),
            "tensor_scale": In(32),
            "o": Out(stream.Signature(data.ArrayLayout(16, config.cols))),
        })

    def elaborate(self, platform):
        m = Module()
        c_n = self.cols
        chunk, o = self.chunk, self.o
        bf16 = self.fmt == WeightFormat.BF16
        if not self.formats:  # bf16-only engine: a wire
            m.d.comb += [o.valid.eq(chunk.valid), o.payload.as_value().eq(chunk.payload.data),
                         chunk.ready.eq(o.ready), self.scales.ready.eq(0)]
            return m

        # One 2-lane decoder per column (see the module docstring).
        dec_config = dataclasses.replace(self.config, lanes=2)
        decoders = [QuantDecoder(dec_config) for _ in range(c_n)]
        for c, dec in enumerate(decoders):
            m.submodules[f"decode{c}"] = dec
        d0 = decoders[0]
        eight = Cat(*(self.fmt == f for f in EIGHT_BIT_FORMATS if f in self.formats)).any()
        code_bits = d0.geometry.code_bits

        block = Mux(self.fmt == WeightFormat.NVFP4, _NVFP4_BLOCK, self.config.quant_block)
        pos = Signal(range(max(self.config.quant_block, _NVFP4_BLOCK)))  # k-step in its block
        feed = ~bf16 & chunk.valid & self.scales.valid
        taken = feed & d0.i.ready
        with m.If(taken):
            m.d.sync += pos.eq(Mux(pos + 1 == block, 0, pos + 1))
        for c, dec in enumerate(decoders):
            code = Mux(eight, chunk.payload.data[8 * c:8 * c + 8],
                       chunk.payload.data[4 * c:4 * c + 4])
            m.d.comb += [
                dec.i.valid.eq(feed),
                dec.i.payload.codes.eq(Cat(code, Const(0, 2 * code_bits))[:2 * code_bits]),
                dec.i.payload.scales[0].eq(self.scales.payload[c]),
                dec.fmt.eq(self.fmt),
                dec.o.ready.eq(o.ready & ~bf16),
            ]
            if hasattr(dec, "tensor_scale"):
                m.d.comb += dec.tensor_scale.eq(self.tensor_scale)
        m.d.comb += [
            self.scales.ready.eq(taken & (pos + 1 == block)),
            chunk.ready.eq(Mux(bf16, o.ready, taken)),
            o.valid.eq(Mux(bf16, chunk.valid, d0.o.valid)),
            o.payload.as_value().eq(Mux(bf16, chunk.payload.data,
                                        Cat(*(dec.o.payload[0] for dec in decoders)))),
        ]
        return m
