"""``DmaCommand``: the command front end shared by the LOAD and STORE units.

It takes a resolved LOAD/STORE instruction (``UnitSignature``), computes the transfer's DRAM
extent, refuses it if it leaves the DRAM window, and otherwise starts the unit's data path
with a *job* (:func:`job_layout`) and waits for it to finish.

Semantics (``host/units.py: dma``): row ``r`` (``0 ≤ r < rows``) is DRAM bytes
``[dram + r·dram_stride, + row_bytes)`` and on-chip bytes ``[sram·unit + r·sram_stride,
+ row_bytes)`` (unit = ``axi_bytes`` for the scratchpad, 2 for the bias and scale memories;
``sram_stride`` 0 means ``row_bytes``).  ``rows = 0`` or ``row_bytes = 0`` moves nothing.

Window check (defence in depth; the dispatcher has checked already): the transfer's bytes
``[dram, last)``, ``last = dram + (rows − 1)·dram_stride + row_bytes`` computed without
wrapping, must lie in ``[window_base, window_limit)``; otherwise no job starts, ``error``
rises (it stays high until the next command is accepted) and ``done`` pulses.

Job: ``rows`` and, for each side, the first and last byte address of row 0 and the stride.
When both sides are packed (``dram_stride = sram_stride = row_bytes``) the transfer is one
contiguous run, and the job is a single row of ``rows·row_bytes`` bytes, so that the data path
runs whole bursts instead of one short burst per row.

Cycle behaviour: the command is accepted in cycle 0 (``cmd.ready`` only while idle); the
products of the window check are registered in cycle 0, summed in cycle 1 and checked in
cycle 2, where ``start`` pulses (or ``done``/``error`` for a refused command).  An empty
command pulses ``done`` in cycle 1.  After a start, ``done`` pulses in the first cycle in
which ``busy`` (the data path) is low, and the unit is idle again the cycle after.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..config import EngineConfig
from ..isa import MemTarget, isa_for
from .dma_walk import side_layout
from .engine_if import UnitSignature, memory_geometry

__all__ = ["DmaCommand", "job_layout", "sram_byte_width"]


def sram_byte_width(config: EngineConfig) -> int:
    """Bits of an on-chip byte address (the largest of the three memories)."""
    geometry = memory_geometry(config).values()
    return max(g.addr_bits for g in geometry) + exact_log2(config.axi_bytes)


def job_layout(config: EngineConfig) -> data.StructLayout:
    """What the front end hands the data path: memory, rows, DRAM side, on-chip side."""
    dma = isa_for(config).layouts["dma"]
    return data.StructLayout({
        "mem": MemTarget,
        "rows": unsigned(dma["rows"].width),
        "dram": side_layout(config.axi_addr_width, dma["dram_stride"].width),
        "sram": side_layout(sram_byte_width(config), dma["sram_stride"].width),
    })


class DmaCommand(wiring.Component):
    """Command front end of a DMA unit (module docstring).

    Ports: ``unit`` (the unit's command port: ``cmd`` in, ``done`` out), ``window_base``,
    ``window_limit`` (in), ``error`` (out, sticky), ``start`` (out pulse) with ``job`` (out,
    :func:`job_layout`, valid while ``start``; ``job.mem`` stays valid until ``done``),
    ``busy`` (in: the data path has work left).
    """

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._layout = isa_for(config).layouts["dma"]
        aw = config.axi_addr_width
        super().__init__({
            "unit": Out(UnitSignature()),
            "window_base": In(aw + 1),
            "window_limit": In(aw + 1),
            "error": Out(1),
            "start": Out(1),
            "job": Out(job_layout(config)),
            "busy": In(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        config, layout = self._config, self._layout
        lb = exact_log2(config.axi_bytes)
        cmd = self.unit.cmd
        fields = data.View(layout, cmd.payload)
        job = self.job

        mem = Signal(MemTarget)
        dram = Signal(config.axi_addr_width)
        sram = Signal(job.sram.first.shape())
        rows = Signal(layout["rows"].width)
        length = Signal(layout["row_bytes"].width)
        dram_stride = Signal(layout["dram_stride"].width)
        sram_stride = Signal(layout["sram_stride"].width)
        # (rows − 1)·dram_stride as two half-width products (one DSP each), added to
        # dram + row_bytes and to row_bytes in the next cycle.
        half = (len(dram_stride) + 1) // 2
        prod_lo = Signal(len(rows) + half)
        prod_hi = Signal(len(rows) + len(dram_stride) - half)
        base = Signal(max(config.axi_addr_width, len(length)) + 1)  # dram + row_bytes
        span_width = max(len(base), len(rows) + len(dram_stride)) + 1
        last = Signal(span_width)  # one past the transfer's last DRAM byte (no wrap)
        span = Signal(span_width)  # (rows − 1)·dram_stride + row_bytes
        merged = Signal()
        error = Signal()
        m.d.comb += self.error.eq(error)

        count = Mux(merged, span, length)  # bytes of each row of the job
        m.d.comb += [
            job.mem.eq(mem),
            job.rows.eq(Mux(merged, 1, rows)),
            job.dram.first.eq(dram),
            job.dram.last.eq(dram + count - 1),
            job.dram.stride.eq(dram_stride),
            job.sram.first.eq(sram),
            job.sram.last.eq(sram + count - 1),
            job.sram.stride.eq(sram_stride),
        ]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += cmd.ready.eq(1)
                with m.If(cmd.valid):
                    rows_m1 = (fields.rows - 1)[:len(rows)]
                    m.d.sync += [
                        error.eq(0),
                        mem.eq(fields.mem),
                        dram.eq(fields.dram.imm),
                        sram.eq(Mux(fields.mem == MemTarget.SCRATCHPAD,
                                    fields.sram.imm << lb, fields.sram.imm << 1)),
                        rows.eq(fields.rows),
                        length.eq(fields.row_bytes),
                        dram_stride.eq(fields.dram_stride),
                        sram_stride.eq(Mux(fields.sram_stride == 0, fields.row_bytes,
                                           fields.sram_stride)),
                        prod_lo.eq(rows_m1 * fields.dram_stride[:half]),
                        prod_hi.eq(rows_m1 * fields.dram_stride[half:]),
                        base.eq(fields.dram.imm + fields.row_bytes),
                    ]
                    m.next = "SUM"
            with m.State("SUM"):
                with m.If((rows == 0) | (length == 0)):
                    m.d.comb += self.unit.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [
                        span.eq(length + prod_lo + (prod_hi << half)),
                        last.eq(base + prod_lo + (prod_hi << half)),
                        merged.eq((dram_stride == length) & (sram_stride == length)),
                    ]
                    m.next = "CHECK"
            with m.State("CHECK"):
                # a limit above the address space must not let a transfer wrap past its top
                top = 1 << self._config.axi_addr_width
                with m.If((dram < self.window_base) | (last > self.window_limit) | (last > top)):
                    m.d.sync += error.eq(1)
                    m.d.comb += self.unit.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.start.eq(1)
                    m.next = "RUN"
            with m.State("RUN"), m.If(~self.busy):
                m.d.comb += self.unit.done.eq(1)
                m.next = "IDLE"
        return m
