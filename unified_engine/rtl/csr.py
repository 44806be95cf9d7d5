"""``CsrBlock``: the engine's register file behind an AXI4-Lite subordinate port.

Every offset, field and constant comes from ``unified_engine.regs``; the behaviour follows the
model backend (``host/model.py``, ``ModelDevice.csr_read`` / ``csr_write``), which is the
reference.  The block refuses to elaborate if ``regs.REGISTERS`` holds a register it does not
know, so a register-map change cannot be silently left out.

Bus
---
* AW and W are each taken into a one-entry holding register (in any order, in the same or
  different cycles); the write is performed in the first cycle both are held and B is free, and
  B is valid from the next cycle.  AR is held likewise; the register is read in the first cycle
  R is free, and R is valid from the next cycle.  So B comes 2 cycles after the later of AW and
  W, R 2 cycles after AR (without back-pressure); one transaction per channel is in flight at
  a time.  Responses are always OKAY.  Address bits 1:0 are ignored (registers are words).
* Unmapped offsets read 0 and ignore writes (OKAY, not SLVERR, as a plain 4 KB register
  window; the host checks offsets against the map itself).  Writes to read-only registers are
  ignored.
* ``strb``: a write changes only the enabled bytes (read-modify-write of the current value);
  for W1 registers and fields only the enabled bytes trigger.

Registers (see ``regs.py`` for the map)
---------------------------------------
* ID, VERSION, BUILD_ID, CFG_*: constants from ``regs.reset_values(config, engine_index)``.
* CONTROL: START and SOFT_RESET are write-1 pulses on ``control.start`` /
  ``control.soft_reset`` (one cycle, the cycle after the write, so that they coincide with the
  TRACE_MODE written in the same word); both set: only SOFT_RESET, as in the model.  START is
  ignored while the engine is busy and also resets TRACE_INDEX to 0.  TRACE_MODE and IRQ_EN are
  stored; the other bits read 0.
* STATUS, ERROR_PC, HALT_CODE and the 64-bit counters read ``status``.  Between a START and the
  first cycle the core reports ``status.busy`` (the core must raise it at least once per START),
  STATUS reads BUSY = 1 and HALTED = ERROR = ERROR_CODE = 0, as the model reports
  immediately after START; a host that polls STATUS after START's B response therefore never
  sees the previous run's stop.  A SOFT_RESET ends that window.
* 64-bit read-only counters and TRACE_DATA: a read of ``X_LO`` also latches ``X_HI`` of the
  same snapshot into one shared 32-bit register tagged with X; a read of ``X_HI`` returns the
  latch while the tag is X (until another pair's ``_LO`` is read) and the live value otherwise.
* PROGRAM_ADDR, WINDOW_BASE, WINDOW_LIMIT, CYCLE_BUDGET are 64-bit RW pairs that store only
  the bits the engine uses (other bits read back 0): PROGRAM_ADDR bits ``axi_addr_width−1 … 5``
  (``control.program_addr`` is 32-byte aligned, as in the model); WINDOW_BASE / WINDOW_LIMIT
  bits ``axi_addr_width−1 … 0`` plus bit ``axi_addr_width`` = the OR of every higher bit
  written, so a value past the address space stays past it (a window limit of 2**40 still
  covers all of a 34-bit space; a partial-strobe write of a ``_HI`` word merges with that
  folded value); CYCLE_BUDGET all 64 bits.
* SYNC_FLAGS reads ``sync.flags``; a write sets the written 1 bits and clears the written 0
  bits (``sync.set`` / ``sync.clear``, combinational one-cycle requests).  SYNC_SET /
  SYNC_CLEAR: write 1s to set / clear; read 0.
* GPR_INDEX (32 bits) selects the GPR on ``gpr.index``; GPR_DATA reads ``gpr.rdata`` and a
  write pulses ``gpr.we`` (combinational) unless the engine is busy; an index ≥ ``gprs`` reads
  0 and ignores writes.
* TRACE_COUNT reads ``trace.count``; TRACE_INDEX (32 bits) drives ``trace.index``;
  TRACE_DATA reads ``trace.entry`` (which follows the index one cycle later: a read issued
  after the B of a TRACE_INDEX write sees the new entry).
* ``irq`` (registered) = IRQ_EN and the engine has stopped since the last START: not busy and
  HALTED or ERROR (outside the START window above).

Wiring: the engine top connects ``trace`` to ``TraceBuffer.read`` (``rtl/trace.py``) and
drives ``TraceBuffer.clear`` from ``control.start`` and ``TraceBuffer.mode`` from
``control.trace_mode``.  Size (Yosys ``synth_xilinx``, xc7, default config): ~940 LUT, 366 FF,
most of the LUTs in the read mux over the eleven 64-bit counters.
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import SYNC_FLAGS
from ..regs import REGISTERS, reg, reset_values
from .axi import AxiResp, axi_lite_signature
from .engine_if import (
    CSR_ADDR_WIDTH,
    control_signature,
    gpr_port_signature,
    status_layout,
    sync_signature,
)
from .trace import trace_read_signature

__all__ = ["CsrBlock"]

#: RW 64-bit pairs held in the block (everything else RW is handled by name).
_RW_PAIRS = ("PROGRAM_ADDR", "WINDOW_BASE", "WINDOW_LIMIT", "CYCLE_BUDGET")
#: Registers with their own behaviour (besides the constants and the pairs).
_SPECIAL = ("CONTROL", "STATUS", "ERROR_PC", "HALT_CODE", "SYNC_FLAGS", "SYNC_SET",
            "SYNC_CLEAR", "GPR_INDEX", "GPR_DATA", "TRACE_COUNT", "TRACE_INDEX")


def _word(name: str) -> int:
    """Word index (offset / 4) of a register."""
    return reg(name).offset >> 2


def _pair_base(name: str) -> str | None:
    if name.endswith(("_LO", "_HI")):
        return name[:-3]
    return None


class CsrBlock(wiring.Component):
    """The CSR register file of one engine (see the module docstring for the behaviour).

    Parameters
    ----------
    config:
        The engine (widths, constants of the config descriptor).
    engine_index:
        Value of CFG_ENGINE_INDEX (0 … ``config.engines`` − 1).

    Ports
    -----
    bus : In(axi_lite_signature(addr_width=CSR_ADDR_WIDTH, data_width=32))
        AXI4-Lite subordinate.
    control : Out(control_signature(config))
    status : In(status_layout())
    gpr : Out(gpr_port_signature(config))
    sync : Out(sync_signature())
    trace : Out(trace_read_signature())
    irq : Out(1)
    """

    def __init__(self, config: EngineConfig, engine_index: int = 0) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"CsrBlock needs an EngineConfig, not {type(config).__name__}")
        self.config = config
        self.engine_index = engine_index
        self._const = reset_values(config, engine_index)  # validates engine_index
        status_fields = {name for name, _ in status_layout()}
        # Read-only 64-bit pairs with a live value: the status counters and TRACE_DATA.
        self._latched: list[str] = []
        for r in REGISTERS:
            base = _pair_base(r.name)
            if r.name in self._const or r.name in _SPECIAL or base in _RW_PAIRS:
                continue
            if r.name.endswith("_LO") and r.access.value == "r" and \
                    (base.lower() in status_fields or base == "TRACE_DATA"):
                if r.offset % 8:  # the read mux hands over _HI by 64-bit slot
                    raise NotImplementedError(f"CsrBlock needs {r.name} 8-byte aligned")
                self._latched.append(base)
            elif not (r.name.endswith("_HI") and base in self._latched):
                raise NotImplementedError(f"CsrBlock does not implement register {r.name}")
        super().__init__({
            "bus": In(axi_lite_signature(addr_width=CSR_ADDR_WIDTH, data_width=32)),
            "control": Out(control_signature(config)),
            "status": In(status_layout()),
            "gpr": Out(gpr_port_signature(config)),
            "sync": Out(sync_signature()),
            "trace": Out(trace_read_signature()),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus, status = self.bus, self.status
        aw = self.config.axi_addr_width
        word_bits = CSR_ADDR_WIDTH - 2

        # ----- write channel: hold AW and W, perform, answer B --------------------------------
        aw_full = Signal()
        aw_word = Signal(word_bits)
        w_full = Signal()
        w_data = Signal(32)
        w_strb = Signal(4)
        b_valid = Signal()
        m.d.comb += [
            bus.aw.ready.eq(~aw_full),
            bus.w.ready.eq(~w_full),
            bus.b.valid.eq(b_valid),
            bus.b.payload.resp.eq(AxiResp.OKAY),
        ]
        with m.If(bus.aw.valid & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_word.eq(bus.aw.payload.addr[2:])]
        with m.If(bus.w.valid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.w.payload.data),
                         w_strb.eq(bus.w.payload.strb)]
        do_write = Signal()
        m.d.comb += do_write.eq(aw_full & w_full & (~b_valid | bus.b.ready))
        with m.If(do_write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), b_valid.eq(1)]
        with m.Elif(bus.b.ready):
            m.d.sync += b_valid.eq(0)

        wmask = Cat(w_strb[i].replicate(8) for i in range(4))
        written = w_data & wmask  # the enabled bytes (what a W1 register triggers on)

        def merge(old: Value) -> Value:
            """``old`` with the enabled bytes replaced by the written data."""
            # Byte muxes, not AND/OR masks: Yosys turns a register's feedback mux into the
            # flip-flop's clock enable (measured: ~250 LUTs fewer for the whole block).
            return Cat(Mux(w_strb[i], w_data[8 * i:8 * i + 8], old[8 * i:8 * i + 8])
                       for i in range(4))

        def hit(name: str) -> Value:
            return do_write & (aw_word == _word(name))

        reads: dict[int, Value] = {_word(n): Const(v, 32) for n, v in self._const.items()}

        # ----- run control and status ---------------------------------------------------------
        ctrl = reg("CONTROL")
        f_start, f_reset = ctrl.field("START"), ctrl.field("SOFT_RESET")
        f_mode, f_irq = ctrl.field("TRACE_MODE"), ctrl.field("IRQ_EN")
        irq_en = Signal()
        starting = Signal()  # START issued, status.busy not yet seen
        running = status.busy | starting
        start = hit("CONTROL") & written[f_start.lsb] & ~written[f_reset.lsb] & ~running
        soft_reset = hit("CONTROL") & written[f_reset.lsb]
        control_word = Signal(32)
        m.d.comb += [
            control_word[f_mode.lsb:f_mode.lsb + f_mode.width].eq(self.control.trace_mode),
            control_word[f_irq.lsb].eq(irq_en),
        ]
        reads[_word("CONTROL")] = control_word
        with m.If(hit("CONTROL")):
            new = merge(control_word)
            m.d.sync += [
                self.control.trace_mode.eq(new[f_mode.lsb:f_mode.lsb + f_mode.width]),
                irq_en.eq(new[f_irq.lsb]),
            ]
        # Registered pulses: they coincide with the TRACE_MODE written in the same word.
        m.d.sync += [self.control.start.eq(start), self.control.soft_reset.eq(soft_reset)]
        with m.If(start):
            m.d.sync += starting.eq(1)
        with m.Elif(status.busy | soft_reset):
            m.d.sync += starting.eq(0)

        st = reg("STATUS")
        status_word = Signal(32)
        for fname, value in (("BUSY", running), ("HALTED", status.halted & ~starting),
                             ("ERROR", status.error & ~starting),
                             ("ERROR_CODE", Mux(starting, 0, status.error_code.as_value()))):
            f = st.field(fname)
            m.d.comb += status_word[f.lsb:f.lsb + f.width].eq(value)
        reads[_word("STATUS")] = status_word
        reads[_word("ERROR_PC")] = status.error_pc
        reads[_word("HALT_CODE")] = status.halt_code
        m.d.sync += self.irq.eq(irq_en & ~running & (status.halted | status.error))

        # ----- RW 64-bit pairs ------------------------------------------------------------------
        prog = Signal(aw - 5)  # PROGRAM_ADDR is 32-byte aligned: bits 4:0 are not stored
        base = Signal(aw + 1)
        limit = Signal(aw + 1)
        budget = Signal(64)
        m.d.comb += [
            self.control.program_addr.eq(Cat(Const(0, 5), prog)),
            self.control.window_base.eq(base),
            self.control.window_limit.eq(limit),
            self.control.cycle_budget.eq(budget),
        ]

        def window(value: Value) -> Value:
            # bit aw: the OR of every bit from aw up (a value past the address space stays so)
            return Cat(value[:aw], value[aw:].any())

        pairs: dict[str, tuple[Value, Callable[[Value], object]]] = {
            "PROGRAM_ADDR": (Cat(Const(0, 5), prog), lambda v: prog.eq(v[5:aw])),
            "WINDOW_BASE": (base, lambda v: base.eq(window(v))),
            "WINDOW_LIMIT": (limit, lambda v: limit.eq(window(v))),
            "CYCLE_BUDGET": (budget, lambda v: budget.eq(v)),
        }
        for name, (value, store) in pairs.items():
            value64 = Signal(64, name=f"{name.lower()}_rb")
            m.d.comb += value64.eq(value)
            lo, hi = value64[:32], value64[32:]
            reads[_word(f"{name}_LO")] = lo
            reads[_word(f"{name}_HI")] = hi
            with m.If(hit(f"{name}_LO")):
                m.d.sync += store(Cat(merge(lo), hi))
            with m.If(hit(f"{name}_HI")):
                m.d.sync += store(Cat(lo, merge(hi)))

        # ----- sync flags -----------------------------------------------------------------------
        reads[_word("SYNC_FLAGS")] = self.sync.flags
        set_bits = Mux(hit("SYNC_FLAGS") | hit("SYNC_SET"), written, 0)
        clear_bits = (Mux(hit("SYNC_FLAGS"), ~w_data & wmask, 0) |
                      Mux(hit("SYNC_CLEAR"), written, 0))
        m.d.comb += [self.sync.set.eq(set_bits[:SYNC_FLAGS]),
                     self.sync.clear.eq(clear_bits[:SYNC_FLAGS])]

        # ----- GPR access -------------------------------------------------------------------------
        gpr_index = Signal(32)
        index_bits = self.config.gpr_index_bits
        gpr_ok = gpr_index[index_bits:] == 0  # GPR_INDEX < gprs (gprs is a power of two)
        gpr_data = Mux(gpr_ok, self.gpr.rdata, 0)
        reads[_word("GPR_INDEX")] = gpr_index
        reads[_word("GPR_DATA")] = gpr_data
        with m.If(hit("GPR_INDEX")):
            m.d.sync += gpr_index.eq(merge(gpr_index))
        m.d.comb += [
            self.gpr.index.eq(gpr_index[:index_bits]),
            self.gpr.we.eq(hit("GPR_DATA") & gpr_ok & ~running),
            self.gpr.wdata.eq(merge(gpr_data)),
        ]

        # ----- trace read-out ---------------------------------------------------------------------
        trace_index = Signal(32)
        reads[_word("TRACE_COUNT")] = self.trace.count
        reads[_word("TRACE_INDEX")] = trace_index
        with m.If(start):
            m.d.sync += trace_index.eq(0)
        with m.Elif(hit("TRACE_INDEX")):
            m.d.sync += trace_index.eq(merge(trace_index))
        m.d.comb += self.trace.index.eq(trace_index)

        # ----- read channel: hold AR, read the register, answer R ---------------------------------
        ar_full = Signal()
        ar_word = Signal(word_bits)
        r_valid = Signal()
        r_data = Signal(32)
        m.d.comb += [
            bus.ar.ready.eq(~ar_full),
            bus.r.valid.eq(r_valid),
            bus.r.payload.data.eq(r_data),
            bus.r.payload.resp.eq(AxiResp.OKAY),
        ]
        with m.If(bus.ar.valid & ~ar_full):
            m.d.sync += [ar_full.eq(1), ar_word.eq(bus.ar.payload.addr[2:])]
        do_read = Signal()
        m.d.comb += do_read.eq(ar_full & (~r_valid | bus.r.ready))
        with m.If(do_read):
            m.d.sync += [ar_full.eq(0), r_valid.eq(1)]
        with m.Elif(bus.r.ready):
            m.d.sync += r_valid.eq(0)

        # The read mux is one tree over 64-bit slots (word pairs), which also hands the _HI half
        # of a latched pair to the latch when its _LO is read.  (A Switch per word became a
        # parallel-case mux in Yosys: 1.6 K instead of 1.2 K LUTs for the block.)
        for name in self._latched:
            live = (self.trace.entry.as_value() if name == "TRACE_DATA"
                    else getattr(status, name.lower()))
            reads[_word(f"{name}_LO")] = live[:32]
            reads[_word(f"{name}_HI")] = live[32:]
        slot_bits = max(1, (max(reads) >> 1).bit_length())
        def word(index: int) -> Value:  # zero-extended to 32 bits
            value = Value.cast(reads.get(index, Const(0, 32)))
            return Cat(value, Const(0, 32 - len(value)))

        table = Cat(Cat(word(2 * s), word(2 * s + 1)) for s in range(1 << slot_bits))
        latchable = Const(sum(1 << (_word(f"{n}_LO") >> 1) for n in self._latched),
                          1 << slot_bits)
        slot = ar_word[1:1 + slot_bits]
        is_hi = ar_word[0]
        mapped = ar_word[1 + slot_bits:] == 0
        slot_value = Signal(64)
        m.d.comb += slot_value.eq(Mux(mapped, table.word_select(slot, 64), 0))

        latch = Signal(32)  # _HI of the pair whose _LO was read last
        latch_slot = Signal(slot_bits)
        latch_valid = Signal()
        with m.If(do_read & mapped & ~is_hi & latchable.bit_select(slot, 1)):
            m.d.sync += [latch.eq(slot_value[32:]), latch_slot.eq(slot), latch_valid.eq(1)]
        latched_hi = latch_valid & (latch_slot == slot)
        rdata = Mux(is_hi, Mux(latched_hi, latch, slot_value[32:]), slot_value[:32])
        with m.If(do_read):
            m.d.sync += r_data.eq(rdata)
        return m
