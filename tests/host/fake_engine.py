"""A stand-in for ``EngineTop`` that the Verilator backend tests build instead of the engine.

``FakeEngine(config)`` has exactly the members of the real top: ``axi`` (AXI4 manager),
``csr`` (AXI4-Lite subordinate), ``irq`` and ``busy``.  Behind the CSR port:

* the constant registers of ``unified_engine.regs`` (ID, VERSION, BUILD_ID, CFG_*), so
  ``Engine.open`` accepts it; writes to any other register are accepted and ignored;
* CONTROL (START, IRQ_EN kept), STATUS (BUSY, HALTED), CYCLES_LO/HI (cycles of the last run);
* a copy engine with its own registers: on START it copies ``COPY_LEN`` bytes from
  ``COPY_SRC`` to ``COPY_DST`` (beat-aligned addresses < 4 GiB, any length; the last beat is
  written with partial strobes) through AXI bursts of up to ``burst_beats`` beats that do not
  cross 4 KB, with several reads in flight (a FIFO of ``fifo_depth`` beats is reserved ahead),
  then drops ``busy``, sets HALTED and raises ``irq`` if CONTROL.IRQ_EN.
* ``FAKE_MODE`` injects protocol violations for the harness checks: bit 0 ignores the 4 KB
  boundary when splitting reads, bit 1 inverts WLAST, bit 2 makes the CSR port deaf (no
  later CSR transaction is ever answered).  An unaligned ``COPY_SRC`` is issued as is (a
  misaligned burst).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from unified_engine.config import EngineConfig
from unified_engine.regs import reg, reset_values
from unified_engine.rtl.axi import AXI_BOUNDARY, axi4_signature, axi_lite_signature
from unified_engine.rtl.engine_if import CSR_ADDR_WIDTH, ENGINE_AXI_ID_WIDTH

FAKE_COPY_SRC = 0x800
FAKE_COPY_DST = 0x804
FAKE_COPY_LEN = 0x808
FAKE_MODE = 0x80C
MODE_IGNORE_4K = 1
MODE_BAD_WLAST = 2
MODE_CSR_DEAF = 4

_READ_ID, _WRITE_ID = 0, 1


class FakeEngine(wiring.Component):
    """See the module docstring.  ``burst_beats`` ≤ 256 and ≤ ``fifo_depth``."""

    def __init__(self, config: EngineConfig, *, burst_beats: int = 8,
                 fifo_depth: int = 32) -> None:
        assert 1 <= burst_beats <= min(256, fifo_depth)
        self.config = config
        self.burst_beats = burst_beats
        self.fifo_depth = fifo_depth
        super().__init__({
            "axi": Out(axi4_signature(addr_width=config.axi_addr_width,
                                      data_width=config.axi_data_width,
                                      id_width=ENGINE_AXI_ID_WIDTH)),
            "csr": In(axi_lite_signature(addr_width=CSR_ADDR_WIDTH, data_width=32)),
            "irq": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        beat = cfg.axi_bytes
        lb = exact_log2(beat)

        control = Signal(32)
        src, dst, length = Signal(32), Signal(32), Signal(32)
        mode = Signal(3)
        busy, halted, irq = Signal(), Signal(), Signal()
        cycles = Signal(64)
        start = Signal()
        start_irq_en = Signal()  # CONTROL.IRQ_EN of the write that starts (a zero-length) copy
        irq_bit = reg("CONTROL").field("IRQ_EN").lsb

        # ----- AXI4-Lite subordinate: a write needs AW and W together; one B / R at a time.
        csr = self.csr
        b_valid, r_valid, r_data = Signal(), Signal(), Signal(32)
        m.d.comb += [csr.b.valid.eq(b_valid), csr.r.valid.eq(r_valid),
                     csr.r.payload.data.eq(r_data)]
        deaf = mode[2]
        with m.If(csr.aw.valid & csr.w.valid & ~b_valid & ~deaf):
            m.d.comb += [csr.aw.ready.eq(1), csr.w.ready.eq(1)]
            m.d.sync += b_valid.eq(1)
            value = csr.w.payload.data
            with m.Switch(csr.aw.payload.addr[2:]):
                with m.Case(reg("CONTROL").offset >> 2):
                    m.d.sync += control.eq(value & ~0b11)
                    m.d.comb += [start.eq(value[0]), start_irq_en.eq(value[irq_bit])]
                with m.Case(FAKE_COPY_SRC >> 2):
                    m.d.sync += src.eq(value)
                with m.Case(FAKE_COPY_DST >> 2):
                    m.d.sync += dst.eq(value)
                with m.Case(FAKE_COPY_LEN >> 2):
                    m.d.sync += length.eq(value)
                with m.Case(FAKE_MODE >> 2):
                    m.d.sync += mode.eq(value)
        with m.Elif(b_valid & csr.b.ready):
            m.d.sync += b_valid.eq(0)

        status = reg("STATUS")
        live = {
            reg("CONTROL").offset: control,
            status.offset: (busy << status.field("BUSY").lsb)
            | (halted << status.field("HALTED").lsb),
            reg("CYCLES_LO").offset: cycles[:32],
            reg("CYCLES_HI").offset: cycles[32:],
            FAKE_COPY_SRC: src, FAKE_COPY_DST: dst, FAKE_COPY_LEN: length, FAKE_MODE: mode,
        }
        with m.If(csr.ar.valid & ~r_valid & ~deaf):
            m.d.comb += csr.ar.ready.eq(1)
            m.d.sync += r_valid.eq(1)
            with m.Switch(csr.ar.payload.addr[2:]):
                for name, value in reset_values(cfg).items():
                    with m.Case(reg(name).offset >> 2):
                        m.d.sync += r_data.eq(value)
                for offset, value in live.items():
                    with m.Case(offset >> 2):
                        m.d.sync += r_data.eq(value)
                with m.Default():
                    m.d.sync += r_data.eq(0)
        with m.Elif(r_valid & csr.r.ready):
            m.d.sync += r_valid.eq(0)

        # ----- copy engine
        axi = self.axi
        m.submodules.fifo = buf = fifo.SyncFIFOBuffered(width=8 * beat, depth=self.fifo_depth)
        beats_total = (length + beat - 1) >> lb
        rd_addr, rd_left = Signal(32), Signal(32)
        wr_addr, wr_left = Signal(32), Signal(32)
        reserved = Signal(range(self.fifo_depth + 1))  # beats requested, not yet written
        ar_valid, aw_valid, in_burst = Signal(), Signal(), Signal()
        w_left = Signal(range(self.burst_beats + 1))
        b_pending = Signal(8)

        def burst(addr, left, ignore_4k):
            to_boundary = (AXI_BOUNDARY - addr[:12]) >> lb
            n = Mux(left < self.burst_beats, left, self.burst_beats)
            return Mux(~ignore_4k & (to_boundary < n), to_boundary, n)

        m.d.comb += [self.busy.eq(busy), self.irq.eq(irq)]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)

        # reads: issue a burst whenever the FIFO has room reserved for all of it
        rd_burst = Signal(9)
        m.d.comb += rd_burst.eq(burst(rd_addr, rd_left, mode[0]))
        issue = busy & ~ar_valid & (rd_left != 0) & (reserved + rd_burst <= self.fifo_depth)
        m.d.comb += [axi.ar.valid.eq(ar_valid), axi.ar.payload.id.eq(_READ_ID)]
        with m.If(issue):
            m.d.sync += [ar_valid.eq(1), axi.ar.payload.addr.eq(rd_addr),
                         axi.ar.payload.len.eq(rd_burst - 1),
                         rd_addr.eq(rd_addr + (rd_burst << lb)), rd_left.eq(rd_left - rd_burst)]
        with m.Elif(axi.ar.ready):
            m.d.sync += ar_valid.eq(0)
        m.d.comb += [axi.r.ready.eq(buf.w_rdy), buf.w_en.eq(axi.r.valid),
                     buf.w_data.eq(axi.r.payload.data)]

        # writes: AW of a burst, then its beats from the FIFO; B responses counted
        wr_burst = Signal(9)
        m.d.comb += wr_burst.eq(burst(wr_addr, wr_left, 0))
        w_hs = axi.w.valid & axi.w.ready
        rem = length[:lb]
        partial = ((Const(1, beat + 1) << rem) - 1)[:beat]
        final_beat = (wr_left == 0) & (w_left == 1)
        m.d.comb += [
            axi.aw.valid.eq(aw_valid), axi.aw.payload.id.eq(_WRITE_ID),
            axi.w.valid.eq(in_burst & (w_left != 0) & buf.r_rdy),
            axi.w.payload.data.eq(buf.r_data),
            axi.w.payload.strb.eq(Mux(final_beat & (rem != 0), partial, (1 << beat) - 1)),
            axi.w.payload.last.eq((w_left == 1) ^ mode[1]),
            buf.r_en.eq(w_hs),
            axi.b.ready.eq(1),
        ]
        # the burst ends in this cycle: its AW is accepted and its last beat goes now (or went)
        ending = in_burst & ~(aw_valid & ~axi.aw.ready) & (w_left == Cat(w_hs))
        with m.If(aw_valid & axi.aw.ready):
            m.d.sync += aw_valid.eq(0)
        with m.If(w_hs):
            m.d.sync += w_left.eq(w_left - 1)
        with m.If(ending):
            m.d.sync += in_burst.eq(0)
        # the next burst follows without a gap (these assignments win over the ones above)
        with m.If(busy & (~in_burst | ending) & (wr_left != 0)):
            m.d.sync += [in_burst.eq(1), aw_valid.eq(1), axi.aw.payload.addr.eq(wr_addr),
                         axi.aw.payload.len.eq(wr_burst - 1), w_left.eq(wr_burst),
                         wr_addr.eq(wr_addr + (wr_burst << lb)), wr_left.eq(wr_left - wr_burst)]
        m.d.sync += [
            reserved.eq(reserved + Mux(issue, rd_burst, 0) - w_hs),
            b_pending.eq(b_pending + (aw_valid & axi.aw.ready) - axi.b.valid),
        ]

        done = (busy & (rd_left == 0) & (wr_left == 0) & ~ar_valid & ~in_burst
                & (b_pending == 0) & (reserved == 0))
        with m.If(start & ~busy):
            m.d.sync += [halted.eq(beats_total == 0), irq.eq(start_irq_en & (beats_total == 0)),
                         busy.eq(beats_total != 0), cycles.eq(0),
                         rd_addr.eq(src), rd_left.eq(beats_total),
                         wr_addr.eq(dst), wr_left.eq(beats_total)]
        with m.Elif(done):
            m.d.sync += [busy.eq(0), halted.eq(1), irq.eq(control[irq_bit])]
        return m
