"""Formal harness of the control core: the real ``Dispatcher`` (``rtl/dispatch.py``: fetch front
end, ``Decoder``, scalar unit, EPI table, token counters, the four queue controllers) in a
free-but-legal environment.

Environment (free inputs, ``Assume`` where a rule binds them):

* **fetch unit**: answers every request of the front end in order, each with a *free* 256-bit
  word and a free fetch-error bit; the payload is held while VALID and not READY; an answer
  that is due is not held back ``patience`` or more cycles;
* **queue units** (LOAD, MATMUL, VECTOR, VECTOR_MOVE, STORE): READY while idle, then ``done``
  after a free delay shorter than ``patience`` cycles;
* **operand checker**: a stand-in for ``InstructionChecker`` (whose multipliers are out of
  reach of a SAT solver over long traces) with the same stream handshake: it takes the
  instruction, answers the next cycle with a *free* error code (``NONE``: the instruction is
  queued);
* START, SOFT_RESET and the sync flags are free; CYCLE_BUDGET is 0 (no watchdog: liveness
  must not rely on it); the host does not write GPRs;
* a soft reset also resets the fetch unit and the queue units (as the engine top does);
* bounds that keep the proof short: a SYNC WAIT word's ``timeout`` is below ``sync_timeout``
  (the wait is a counter compare; a larger timeout only waits longer), and, unless
  ``long_ops``, ALU DIVU / REMU (33 cycles, one quotient bit per cycle) are excluded.

Properties (``Assert``):

* **never hangs** (bounded liveness): while BUSY, an instruction in the instruction register
  is consumed (retired, or dropped by a jump, a stop or HALT) within ``bound`` cycles, and an
  empty instruction register is filled, or BUSY falls, within ``bound`` cycles;
* **illegal words stop the engine**: a fetched word the ISA's rule table rejects (a reference
  ``Decoder`` in the harness) is never executed: in the cycle it is in the instruction
  register the dispatcher stops, and when BUSY falls STATUS reports ERROR with
  ILLEGAL_INSTRUCTION at that word's pc (a fetch error takes precedence:
  FETCH_OUT_OF_WINDOW);
* **soft reset**: in the cycle after SOFT_RESET, BUSY is low and no unit command, fetch
  request or trace event is offered, whatever state the run was in.

``mutant`` (tests of the tests): ``"nop_hangs"`` (NOP never retires: liveness must fail),
``"lax_decoder"`` (the decoder never flags a word: the illegal-word property must fail),
``"late_reset"`` (the SOFT_RESET pulse reaches the dispatcher one cycle late: the reset
property must fail).
"""

from __future__ import annotations

from unittest import mock

from amaranth.hdl import Assert, Assume, Cover, Fragment, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from unified_engine.config import EngineConfig
from unified_engine.isa import INSTRUCTION_BITS, AluOp, Opcode, SyncOp, isa_for
from unified_engine.regs import ErrorCode
from unified_engine.rtl import dispatch as dispatch_module
from unified_engine.rtl.decode import Decoder
from unified_engine.rtl.dispatch import Dispatcher
from unified_engine.rtl.engine_if import TRACE_SOURCES, check_in_layout, check_out_layout

__all__ = ["DispatchHarness", "ProbedDispatcher"]

UNITS = ("load", "array", "store", "vector", "vector_move")
MUTANTS = (None, "nop_hangs", "lax_decoder", "late_reset")


class ProbedDispatcher(Dispatcher):
    """The real ``Dispatcher`` with read-only probes of its instruction register: ``consume``
    (``ir.ready | redirect``), ``ir_valid``, ``ir_error``, ``ir_pc``, ``ir_word``.  Nothing of
    the design changes (``mutant="nop_hangs"`` aside)."""

    def __init__(self, config: EngineConfig, *, checker, mutant: str | None = None) -> None:
        super().__init__(config, checker=checker)
        self.mutant = mutant
        self.consume = Signal()
        self.ir_valid = Signal()
        self.ir_error = Signal()
        self.ir_pc = Signal(32)
        self.ir_word = Signal(INSTRUCTION_BITS)

    def _run(self, m, cfg, isa, front, dec, *args, **kw) -> None:
        m.d.comb += [
            self.consume.eq(front.ir.ready | front.redirect),
            self.ir_valid.eq(front.ir.valid),
            self.ir_error.eq(front.ir.payload.error),
            self.ir_pc.eq(front.ir.payload.pc),
            self.ir_word.eq(front.ir.payload.word),
        ]
        super()._run(m, cfg, isa, front, dec, *args, **kw)

    def _execute(self, m, opcode, *args) -> None:
        if self.mutant == "nop_hangs":
            with m.If(opcode != Opcode.NOP):
                super()._execute(m, opcode, *args)
        else:
            super()._execute(m, opcode, *args)


class _LaxDecoder(Decoder):
    """Mutant: accepts every word."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.illegal.eq(0)  # the last assignment wins
        return m


class FreeChecker(wiring.Component):
    """``InstructionChecker`` stand-in: one instruction at a time, answered the cycle after
    it is taken with the free error code ``verdict`` (sampled when taken)."""

    def __init__(self, config: EngineConfig, verdict: Signal) -> None:
        self._verdict = verdict
        aw = config.axi_addr_width
        super().__init__({
            "i": In(stream.Signature(check_in_layout(config))),
            "o": Out(stream.Signature(check_out_layout())),
            "window_base": In(aw + 1),
            "window_limit": In(aw + 1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        full = Signal()
        m.d.comb += [self.i.ready.eq(~full), self.o.valid.eq(full)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [full.eq(1), self.o.payload.word.eq(self.i.payload.word),
                         self.o.payload.pc.eq(self.i.payload.pc),
                         self.o.payload.error.eq(self._verdict)]
        with m.Elif(self.o.ready):
            m.d.sync += full.eq(0)
        return m


class DispatchHarness(wiring.Component):
    """The dispatcher in its free environment (module docstring).

    Parameters: ``config``; ``bound`` (cycles without consuming the instruction register);
    ``patience`` (environment answer bound); ``sync_timeout``; ``long_ops`` (allow DIVU /
    REMU); ``liveness`` / ``illegal`` / ``reset`` (which properties to assert); ``mutant``;
    ``probe_waits``: covers "an instruction waits k cycles" / "no instruction for k cycles"
    for each k (to measure the longest legal waits).
    """

    def __init__(self, config: EngineConfig, *, bound: int = 16, patience: int = 2,
                 sync_timeout: int = 2, long_ops: bool = False, liveness: bool = True,
                 illegal: bool = True, reset: bool = True, mutant: str | None = None,
                 probe_waits: tuple[int, ...] = ()) -> None:
        if mutant not in MUTANTS:
            raise ValueError(f"unknown mutant {mutant!r}; allowed: {MUTANTS}")
        self.config = config
        self.isa = isa_for(config)
        self.bound, self.patience, self.sync_timeout = bound, patience, sync_timeout
        self.long_ops, self.mutant = long_ops, mutant
        self.probe_waits = probe_waits
        self.checks = {"liveness": liveness, "illegal": illegal, "reset": reset}
        super().__init__({
            "start": In(1),
            "soft_reset": In(1),
            "sync_flags": In(4),
            "fetch_word": In(INSTRUCTION_BITS),
            "fetch_error": In(1),
            "fetch_go": In(1),
            "unit_go": In(len(UNITS)),
            "verdict": In(ErrorCode),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        checker = FreeChecker(cfg, self.verdict)
        dut = ProbedDispatcher(cfg, checker=checker, mutant=self.mutant)
        decoder = _LaxDecoder if self.mutant == "lax_decoder" else Decoder
        with mock.patch.object(dispatch_module, "Decoder", decoder):
            m.submodules.dut = Fragment.get(dut, platform)
        soft = self.soft_reset
        ctl = dut.control
        core_soft = soft
        if self.mutant == "late_reset":
            core_soft = Signal()
            m.d.sync += core_soft.eq(soft)
        m.d.comb += [ctl.start.eq(self.start), ctl.soft_reset.eq(core_soft),
                     ctl.cycle_budget.eq(0), ctl.window_base.eq(0),
                     ctl.window_limit.eq(1 << cfg.axi_addr_width),
                     dut.sync.flags.eq(self.sync_flags), dut.gpr.we.eq(0)]
        status = dut.status
        busy = status.busy

        # ---- fetch unit: in-order answers with free words ----
        req, resp = dut.fetch.req, dut.fetch.resp
        pending = Signal(4)  # requests accepted, not answered
        m.d.comb += req.ready.eq(1)
        m.d.comb += resp.valid.eq((pending != 0) & self.fetch_go)
        m.d.comb += [resp.payload.word.eq(self.fetch_word),
                     resp.payload.error.eq(self.fetch_error)]
        waited = Signal()
        held = Signal.like(resp.payload)
        m.d.sync += [waited.eq(resp.valid & ~resp.ready & ~soft), held.eq(resp.payload)]
        m.d.comb += [Assume(~waited | resp.valid), Assume(~waited | (resp.payload == held))]
        with m.If(soft):
            m.d.sync += pending.eq(0)  # the engine top resets the fetch unit too
        with m.Else():
            m.d.sync += pending.eq(pending + (req.valid & req.ready) - (resp.valid & resp.ready))
        self._patience(m, "fetch", pending != 0, self.fetch_go, soft)

        # ---- the words: SYNC WAIT bounded; no DIVU / REMU unless long_ops ----
        isa = self.isa
        sync_view = data.View(isa.layout(Opcode.SYNC), self.fetch_word)
        alu_view = data.View(isa.layout(Opcode.ALU), self.fetch_word)
        opcode = self.fetch_word[:6]
        m.d.comb += Assume(~((opcode == Opcode.SYNC) & (sync_view.op == SyncOp.WAIT))
                           | (sync_view.timeout < self.sync_timeout))
        if not self.long_ops:
            m.d.comb += Assume(~((opcode == Opcode.ALU)
                                 & ((alu_view.op == AluOp.DIVU) | (alu_view.op == AluOp.REMU))))

        # ---- queue units ----
        for index, name in enumerate(UNITS):
            unit = getattr(dut, name)
            running = Signal(name=f"{name}_running")
            go = self.unit_go[index]
            m.d.comb += [unit.cmd.ready.eq(~running), unit.done.eq(running & go)]
            with m.If(soft):
                m.d.sync += running.eq(0)
            with m.Elif(unit.cmd.valid & unit.cmd.ready):
                m.d.sync += running.eq(1)
            with m.Elif(unit.done):
                m.d.sync += running.eq(0)
            self._patience(m, name, running, go, soft)

        # ---- properties ----
        consume = dut.consume
        if self.checks["liveness"]:
            # waiting: an instruction is in the register and not consumed;
            # starving: the register is empty (fetch latency, or a stop draining the queues)
            waiting = Signal(range(self.bound + 1))
            starving = Signal(range(self.bound + 1))
            with m.If(busy & dut.ir_valid & ~consume):
                m.d.sync += waiting.eq(waiting + 1)
            with m.Else():
                m.d.sync += waiting.eq(0)
            with m.If(busy & ~dut.ir_valid):
                m.d.sync += starving.eq(starving + 1)
            with m.Else():
                m.d.sync += starving.eq(0)
            m.d.comb += [
                Assert(waiting < self.bound,
                       "never hangs: an instruction is consumed within the bound"),
                Assert(starving < self.bound,
                       "never hangs: an instruction arrives or BUSY falls within the bound"),
            ]
            for k in self.probe_waits:
                m.d.comb += [Cover(waiting == k, f"an instruction waits {k} cycles"),
                             Cover(starving == k, f"no instruction for {k} cycles")]

        if self.checks["illegal"]:
            # The verdict comes from a Decoder of the harness's own (the specification: the
            # ISA's rule table; that it equals Isa.decode is tested in tests/rtl/test_decode.py),
            # so a dispatcher whose own decoder is broken is caught.
            m.submodules.reference = reference = Decoder(cfg)
            m.d.comb += reference.word.eq(dut.ir_word)
            bad = busy & dut.ir_valid & ~dut.ir_error & reference.illegal
            stopping = Signal()
            stop_pc = Signal(32)
            was_busy = Signal()
            m.d.sync += was_busy.eq(busy)
            with m.If(soft | (self.start & ~busy)):  # (START is ignored while busy)
                m.d.sync += stopping.eq(0)
            with m.Elif(bad & ~stopping):
                m.d.sync += [stopping.eq(1), stop_pc.eq(dut.ir_pc)]
            m.d.comb += [
                Assert(~bad | consume, "an illegal word is dropped the cycle it is seen"),
                Assert(~(stopping & was_busy & ~busy) | (
                    status.error & (status.error_code == ErrorCode.ILLEGAL_INSTRUCTION)
                    & (status.error_pc == stop_pc)),
                    "an illegal word stops with ILLEGAL_INSTRUCTION at its pc"),
                Cover(stopping & was_busy & ~busy, "an illegal word stops the run"),
            ]

        if self.checks["reset"]:
            after = Signal()
            m.d.sync += after.eq(soft)
            quiet = ~busy & ~req.valid
            for name in UNITS:
                quiet = quiet & ~getattr(dut, name).cmd.valid
            for name in TRACE_SOURCES:
                quiet = quiet & ~getattr(dut, f"trace_{name}").valid
            m.d.comb += Assert(~after | quiet, "soft reset: idle and quiet the next cycle")
            m.d.comb += Cover(after & (status.instret != 0), "a soft reset after a run")

        m.d.comb += [
            Cover(status.halted & ~busy, "a HALT ends a run"),
            Cover(busy & (status.instret >= 4), "four instructions executed"),
        ]
        return m

    def _patience(self, m: Module, name: str, due, given, soft) -> None:
        """Assume ``given`` is not withheld ``patience`` cycles in a row while ``due``."""
        count = Signal(range(self.patience + 1), name=f"{name}_patience")
        with m.If(due & ~given & ~soft):
            m.d.sync += count.eq(count + 1)
        with m.Else():
            m.d.sync += count.eq(0)
        m.d.comb += Assume(count < self.patience)
