"""``AxiRam``: an on-chip AXI4 subordinate over one ``lib.memory.Memory`` (block RAM).

The open-toolchain board (``ulx3s``) has no DDR controller of ours, so its self-test image
keeps the engine's program and data in block RAM behind this port.  It serves one burst at a
time (reads before writes when both wait), two cycles per read beat and one per write beat:
a bring-up memory, not a fast one.  Addresses wrap modulo the memory size (the engine's DRAM
window keeps its accesses inside); every response is OKAY.

Ports
-----
axi : In(axi4_signature(addr_width, data_width, id_width))
    The subordinate side of the engine's (or SoC's) AXI4 manager port.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In
from amaranth.utils import ceil_log2, exact_log2

from unified_engine.rtl.axi import AxiResp, axi4_signature

__all__ = ["AxiRam"]


class AxiRam(wiring.Component):
    """``depth`` words of ``data_width`` bits, initialised from ``init`` (words, LSB first)."""

    def __init__(self, *, depth: int, addr_width: int, data_width: int, id_width: int,
                 init: Sequence[int] = ()) -> None:
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth={depth!r} must be a power of two ≥ 2")
        if len(init) > depth:
            raise ValueError(f"{len(init)} initial words do not fit in {depth}")
        self.depth = depth
        self.init = list(init)
        self._beat_shift = exact_log2(data_width // 8)
        super().__init__({"axi": In(axi4_signature(addr_width=addr_width,
                                                    data_width=data_width,
                                                    id_width=id_width))})

    def elaborate(self, platform) -> Module:
        m = Module()
        bus = self.axi
        width = len(bus.w.payload.data)
        m.submodules.mem = mem = Memory(shape=width, depth=self.depth, init=self.init)
        rd = mem.read_port(transparent_for=())
        wr = mem.write_port(granularity=8)
        index_bits = ceil_log2(self.depth)
        index = Signal(index_bits)
        beats_left = Signal(8)
        burst_id = Signal.like(bus.ar.payload.id)

        def word(addr):
            return addr[self._beat_shift:self._beat_shift + index_bits]

        m.d.comb += [rd.addr.eq(index), wr.addr.eq(index),
                     bus.r.payload.data.eq(rd.data), bus.r.payload.id.eq(burst_id),
                     bus.r.payload.resp.eq(AxiResp.OKAY), bus.r.payload.last.eq(beats_left == 0),
                     bus.b.payload.id.eq(burst_id), bus.b.payload.resp.eq(AxiResp.OKAY),
                     wr.data.eq(bus.w.payload.data)]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += bus.ar.ready.eq(1)
                m.d.comb += bus.aw.ready.eq(~bus.ar.valid)
                with m.If(bus.ar.valid):
                    m.d.sync += [index.eq(word(bus.ar.payload.addr)),
                                 beats_left.eq(bus.ar.payload.len),
                                 burst_id.eq(bus.ar.payload.id)]
                    m.next = "READ_ADDR"
                with m.Elif(bus.aw.valid):
                    m.d.sync += [index.eq(word(bus.aw.payload.addr)),
                                 burst_id.eq(bus.aw.payload.id)]
                    m.next = "WRITE"
            with m.State("READ_ADDR"):  # the read port's data is valid one cycle later
                m.next = "READ_DATA"
            with m.State("READ_DATA"):
                m.d.comb += [bus.r.valid.eq(1), rd.en.eq(0)]
                with m.If(bus.r.ready):
                    m.d.sync += [index.eq(index + 1), beats_left.eq(beats_left - 1)]
                    m.next = "READ_ADDR"
                    with m.If(beats_left == 0):
                        m.next = "IDLE"
            with m.State("WRITE"):
                m.d.comb += bus.w.ready.eq(1)
                with m.If(bus.w.valid):
                    m.d.comb += wr.en.eq(bus.w.payload.strb)
                    m.d.sync += index.eq(index + 1)
                    with m.If(bus.w.payload.last):
                        m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += bus.b.valid.eq(1)
                with m.If(bus.b.ready):
                    m.next = "IDLE"
        return m
