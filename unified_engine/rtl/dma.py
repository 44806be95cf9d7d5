"""The DMA units: ``LoadUnit`` (LOAD, DRAM → on-chip) and ``StoreUnit`` (STORE, on-chip → DRAM).

Semantics are ``host/units.py: dma``: a 2-D strided copy of ``rows`` rows of ``row_bytes``
bytes, byte granular on both sides, rows in order (where rows overlap, later rows win).  Each
unit takes one resolved instruction at a time on ``unit`` (``engine_if.UnitSignature``) and is
built from four blocks::

    DmaCommand ──start/job──► BurstIssuer (AXI addresses)   ──► AR / AW
        (window check)        BurstIssuer (on-chip reads, STORE only)
                              Realigner (source → destination byte alignment)

LOAD:  AR bursts ─► R ─► read buffer (FIFO) ─► Realigner ─► on-chip writes (byte enables)
STORE: on-chip reads ─► response FIFO ─► Realigner ─► W (strobes) ;  AW bursts ;  B counted

AXI rules kept: INCR bursts of whole beats (``size`` = the bus width, see ``rtl/axi.py``),
beat-aligned addresses, at most ``max_burst`` beats, never across a 4 KB boundary (bursts
are the beats of one row inside one aligned chunk of ``min(max_burst·B, 4096)`` bytes), ID 0.
STORE strobes enable exactly the bytes of the rows, so no byte outside ``[dram, last)`` is
written; a LOAD reads whole beats and discards the bytes around its rows.  A command that
leaves ``[window_base, window_limit)`` is refused by ``DmaCommand`` before any AXI request:
``error`` rises (until the next command) and ``done`` pulses.

Performance (B = AXI bytes per beat; cycles counted from the command's acceptance):

* fixed cost: the first AR/AW is presented in cycle 4 (window check, 3 cycles); ``done``
  pulses one cycle after the data path drains (LOAD: the last on-chip write accepted; STORE:
  the last B response received).  Measured without stalls (``tests/rtl/test_dma.py``): a
  contiguous LOAD of n beats takes n + 7 + (AR → first R latency) cycles from acceptance to
  ``done`` (read buffer 2, realigner 1, done 1), a STORE n + 9 with B one cycle after the
  last W (on-chip read 1 + response FIFO 2, realigner 1); 4 KB on the default engine
  (128 beats, DRAM latency 8): 143 / 137 cycles.
* LOAD keeps up to ``read_buffer`` beats of reads outstanding (credit-based: a burst is only
  requested when the read buffer has room for all of its beats, so R is never back-pressured
  and a slow on-chip memory never blocks the shared AXI read channel), so a contiguous LOAD
  streams at 1 beat/cycle whenever the DRAM latency is below ``read_buffer`` cycles.
* STORE keeps up to ``sram_buffer`` on-chip reads in flight and ``max_outstanding`` write
  bursts without B response; W runs at 1 beat/cycle.
* rows pipeline: the address issuer, the on-chip side and the realigner each walk the rows
  on their own.  A row costs ``max(DRAM beats, on-chip beats)`` realigner cycles plus at most
  one flush cycle (never when DRAM and on-chip offsets inside a beat are equal), and one burst
  per chunk on AXI.  Packed transfers (``dram_stride = sram_stride = row_bytes``) are merged
  into one row, so their bursts are full chunks whatever ``row_bytes`` is.

Cost (yosys ``synth_xilinx`` estimate, xc7, default engine): LoadUnit 2.6 K LUT, 1.2 K FF,
4 BRAM36 (the 256 × 256-bit read buffer), 2 DSP (window check); StoreUnit 3.0 K LUT, 1.6 K FF,
2 DSP.  The realigner (its byte shifter above all) is the largest part: 1.8 K LUT of each.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..config import EngineConfig
from ..isa import MemTarget
from .axi import AXI_BOUNDARY, AXI_MAX_BURST, axi4_signature
from .dma_align import Realigner
from .dma_command import DmaCommand, job_layout
from .dma_walk import BurstIssuer
from .engine_if import ENGINE_AXI_ID_WIDTH, UnitSignature, memory_geometry, sram_port_signature

__all__ = ["MEMORIES", "LoadUnit", "StoreUnit"]

#: The on-chip memory ports of a DMA unit and the ``mem`` value that selects each.
MEMORIES = (("spad", MemTarget.SCRATCHPAD), ("bias", MemTarget.BIAS),
            ("scale", MemTarget.SCALE))


def _check_pow2(name: str, value: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or \
            value & (value - 1) or value > high:
        raise ValueError(f"{name}={value!r} must be a power of two from 1 to {high}")


class _DmaUnit(wiring.Component):
    """Ports and command front end shared by the two units."""

    def __init__(self, config: EngineConfig, max_burst: int) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"a DMA unit needs an EngineConfig, not {type(config).__name__}")
        _check_pow2("max_burst", max_burst, AXI_MAX_BURST)
        self._config = config
        self.beat_bytes = config.axi_bytes
        #: Beats per burst chunk: bursts never cross a multiple of it (nor 4 KB).
        self.chunk_beats = min(max_burst, AXI_BOUNDARY // config.axi_bytes)
        geometry = memory_geometry(config)
        aw = config.axi_addr_width
        super().__init__({
            "unit": Out(UnitSignature()),
            "axi": Out(axi4_signature(addr_width=aw, data_width=config.axi_data_width,
                                      id_width=ENGINE_AXI_ID_WIDTH)),
            **{name: Out(sram_port_signature(geometry[name])) for name, _ in MEMORIES},
            "window_base": In(aw + 1),
            "window_limit": In(aw + 1),
            "error": Out(1),
        })

    def _front(self, m: Module) -> DmaCommand:
        m.submodules.command = front = DmaCommand(self._config)
        wiring.connect(m, wiring.flipped(self.unit), front.unit)
        m.d.comb += [
            front.window_base.eq(self.window_base),
            front.window_limit.eq(self.window_limit),
            self.error.eq(front.error),
        ]
        return front

    def _issuer(self, m: Module, name: str, front: DmaCommand, side: str,
                chunk_beats: int) -> BurstIssuer:
        job = job_layout(self._config)
        issuer = BurstIssuer(side=job[side].shape, rows_width=job["rows"].width,
                             beat_bytes=self.beat_bytes, chunk_beats=chunk_beats)
        m.submodules[name] = issuer
        m.d.comb += [issuer.start.eq(front.start), issuer.rows.eq(front.job.rows),
                     issuer.side.eq(getattr(front.job, side))]
        return issuer

    def _realigner(self, m: Module, front: DmaCommand, src: str, dst: str) -> Realigner:
        job = job_layout(self._config)
        m.submodules.realign = align = Realigner(
            beat_bytes=self.beat_bytes, src=job[src].shape, dst=job[dst].shape,
            rows_width=job["rows"].width)
        m.d.comb += [align.start.eq(front.start), align.rows.eq(front.job.rows),
                     align.src.eq(getattr(front.job, src)),
                     align.dst.eq(getattr(front.job, dst))]
        return align


class LoadUnit(_DmaUnit):
    """LOAD: DRAM → scratchpad / bias / scale memory (module docstring for the contract).

    Parameters
    ----------
    config:
        The engine.
    max_burst:
        Longest AR burst in beats (a power of two ≤ 256; bursts are also cut at 4 KB).
    read_buffer:
        Beats of the read buffer = the most read beats requested and not yet realigned.

    Ports: ``unit``, ``axi`` (ar/r used; aw/w idle, b.ready high), ``spad``/``bias``/
    ``scale`` (writes only), ``window_base``, ``window_limit``, ``error``.
    """

    def __init__(self, config: EngineConfig, *, max_burst: int = 64,
                 read_buffer: int = 256) -> None:
        super().__init__(config, max_burst)
        if isinstance(read_buffer, bool) or not isinstance(read_buffer, int) or \
                read_buffer < self.chunk_beats:
            raise ValueError(f"read_buffer={read_buffer!r} must be an int ≥ one burst "
                             f"({self.chunk_beats} beats)")
        self.read_buffer = read_buffer

    def elaborate(self, platform) -> Module:
        m = Module()
        lb = exact_log2(self.beat_bytes)
        axi = self.axi
        front = self._front(m)
        issuer = self._issuer(m, "issuer", front, "dram", self.chunk_beats)
        m.submodules.buffer = buffer = SyncFIFOBuffered(width=8 * self.beat_bytes,
                                                        depth=self.read_buffer)
        align = self._realigner(m, front, "dram", "sram")

        # AR, with credit: beats requested and not yet taken out of the buffer.
        reserved = Signal(range(self.read_buffer + 1))
        popped = buffer.r_en & buffer.r_rdy
        m.d.comb += [
            axi.ar.valid.eq(issuer.bursts.valid),
            axi.ar.payload.id.eq(0),
            axi.ar.payload.addr.eq(issuer.bursts.payload.beat << lb),
            axi.ar.payload.len.eq(issuer.bursts.payload.len),
            issuer.bursts.ready.eq(axi.ar.ready),
            issuer.allow.eq(reserved + issuer.beats <= self.read_buffer),
        ]
        m.d.sync += reserved.eq(reserved + Mux(issuer.issue, issuer.beats, 0) - popped)

        # R (in order: one ID) → buffer → realigner → the selected on-chip memory.
        m.d.comb += [
            buffer.w_data.eq(axi.r.payload.data),
            buffer.w_en.eq(axi.r.valid),
            axi.r.ready.eq(buffer.w_rdy),
        ]
        wiring.connect(m, buffer.r_stream, align.inp)
        out = align.out
        for name, target in MEMORIES:
            port = getattr(self, name)
            selected = front.job.mem == target
            m.d.comb += [
                port.req.valid.eq(out.valid & selected),
                port.req.payload.addr.eq(out.payload.beat),
                port.req.payload.write.eq(1),
                port.req.payload.data.eq(out.payload.data),
                port.req.payload.be.eq(out.payload.be),
            ]
            with m.If(selected):
                m.d.comb += out.ready.eq(port.req.ready)

        m.d.comb += [
            front.busy.eq(issuer.busy | align.busy),
            axi.aw.valid.eq(0),
            axi.w.valid.eq(0),
            axi.b.ready.eq(1),
        ]
        return m


class StoreUnit(_DmaUnit):
    """STORE: scratchpad / bias / scale memory → DRAM (module docstring for the contract).

    Parameters
    ----------
    config:
        The engine.
    max_burst:
        Longest AW burst in beats (a power of two ≤ 256; bursts are also cut at 4 KB).
    sram_buffer:
        Depth of the on-chip response FIFO = the most on-chip reads in flight (must cover
        the memory's read latency for one beat per cycle).
    max_outstanding:
        Most write bursts issued whose B response has not arrived.

    Ports: ``unit``, ``axi`` (aw/w/b used; ar idle, r.ready high), ``spad``/``bias``/
    ``scale`` (reads only), ``window_base``, ``window_limit``, ``error``.
    """

    def __init__(self, config: EngineConfig, *, max_burst: int = 64, sram_buffer: int = 8,
                 max_outstanding: int = 16) -> None:
        super().__init__(config, max_burst)
        for name, value in (("sram_buffer", sram_buffer), ("max_outstanding", max_outstanding)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an int ≥ 1")
        self.sram_buffer = sram_buffer
        self.max_outstanding = max_outstanding

    def elaborate(self, platform) -> Module:
        m = Module()
        lb = exact_log2(self.beat_bytes)
        cb = exact_log2(self.chunk_beats)
        axi = self.axi
        front = self._front(m)
        aw = self._issuer(m, "aw_issuer", front, "dram", self.chunk_beats)
        rd = self._issuer(m, "read_issuer", front, "sram", 1)
        m.submodules.responses = responses = SyncFIFOBuffered(width=8 * self.beat_bytes,
                                                              depth=self.sram_buffer)
        align = self._realigner(m, front, "sram", "dram")

        # AW, limited to max_outstanding bursts without a B response.
        outstanding = Signal(range(self.max_outstanding + 1))
        responded = axi.b.valid & axi.b.ready
        m.d.comb += [
            axi.aw.valid.eq(aw.bursts.valid),
            axi.aw.payload.id.eq(0),
            axi.aw.payload.addr.eq(aw.bursts.payload.beat << lb),
            axi.aw.payload.len.eq(aw.bursts.payload.len),
            aw.bursts.ready.eq(axi.aw.ready),
            aw.allow.eq(outstanding < self.max_outstanding),
            axi.b.ready.eq(1),
        ]
        m.d.sync += outstanding.eq(outstanding + aw.issue - responded)

        # On-chip reads, with credit: reads issued whose beat is not yet taken out of the
        # response FIFO (responses cannot be refused).
        in_flight = Signal(range(self.sram_buffer + 1))
        popped = responses.r_en & responses.r_rdy
        m.d.comb += rd.allow.eq(in_flight < self.sram_buffer)
        m.d.sync += in_flight.eq(in_flight + rd.issue - popped)
        for name, target in MEMORIES:
            port = getattr(self, name)
            selected = front.job.mem == target
            m.d.comb += [
                port.req.valid.eq(rd.bursts.valid & selected),
                port.req.payload.addr.eq(rd.bursts.payload.beat),
                port.req.payload.write.eq(0),
            ]
            with m.If(selected):
                m.d.comb += [
                    rd.bursts.ready.eq(port.req.ready),
                    responses.w_en.eq(port.resp.valid),
                    responses.w_data.eq(port.resp.payload),
                ]
        wiring.connect(m, responses.r_stream, align.inp)

        # W: a burst ends on the last beat of a row or of a chunk, as the AW bursts do.
        out = align.out
        chunk_end = out.payload.beat[:cb].all() if cb else 1
        m.d.comb += [
            axi.w.valid.eq(out.valid),
            axi.w.payload.data.eq(out.payload.data),
            axi.w.payload.strb.eq(out.payload.be),
            axi.w.payload.last.eq(out.payload.row_last | chunk_end),
            out.ready.eq(axi.w.ready),
        ]

        m.d.comb += [
            front.busy.eq(aw.busy | rd.busy | align.busy | (outstanding != 0)),
            axi.ar.valid.eq(0),
            axi.r.ready.eq(1),
        ]
        return m
