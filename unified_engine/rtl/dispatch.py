"""``Dispatcher``: runs a program — fetch, decode, scalar instructions, dependency tokens,
operand checks and the four instruction queues (DESIGN.md §3 "Control").

Behaviour is that of ``host/isasim.py`` (``Machine.run``), instruction by instruction, in
program order:

* Every fetched word is decoded (:class:`~.decode.Decoder`): a fetch outside the window stops
  the engine with FETCH_OUT_OF_WINDOW, an undecodable word with ILLEGAL_INSTRUCTION.
* NOP, TRACE (a MARKER event), ALU, JUMP, LOOP and AREG execute here
  (:class:`~.scalar.ScalarUnit`).
* HALT, SYNC SET / CLEAR / FENCE wait until every queue is idle (nothing queued, nothing
  executing); HALT then stops the run (HALTED, HALT_CODE, a HALT event), SYNC SET / CLEAR
  pulse ``sync.set`` / ``sync.clear``.  SYNC WAIT tests ``(flags ^ value) & mask == 0`` once
  per cycle for up to ``timeout`` more cycles (0: test once), then SYNC_TIMEOUT.
* EPI checks its parameters (ILLEGAL_OPERAND, :class:`~.dispatch_epi.EpiTable`), waits until
  the ARRAY and VECTOR queues are idle and writes the table entry.
* LOAD / STORE / MATMUL / VECTOR: wait for a free slot in the queue; GPR override
  (FIELD_OVERFLOW), effective addresses and post-increments (``ScalarUnit``); dispatch-time
  token accounting — TOKEN_UNDERFLOW if a waited channel holds no unconsumed push of an
  earlier instruction, TOKEN_OVERFLOW if a signalled channel already holds
  ``TOKEN_FIFO_DEPTH``; the :class:`~.checks.InstructionChecker` (its error code); then the
  resolved word enters the queue (:class:`~.queues.QueueController`) and the dispatch-time
  counters take its pops and pushes.  The queues run concurrently, each in order, ordered
  among each other by the runtime tokens.

An error stops dispatching at the faulting instruction; the instructions already in the
queues finish (so memory ends as in the ISA simulator), then STATUS reports ERROR with its
code and ERROR_PC, BUSY drops and an ERROR event is emitted.  With ``cycle_budget`` ≠ 0 a run
whose cycle count passes the budget stops with CYCLE_BUDGET at the instruction waiting to be
dispatched (the budget is tested between instructions and while an instruction waits: for
its fetch, a queue slot, idle queues or sync flags — never half-way through one).

Run control: ``control.start`` (ignored while busy) starts at pc 0 and clears STATUS, the
counters, the queues and the tokens; GPRs, address registers and the EPI table keep their
values.  ``control.soft_reset`` returns to idle in the next cycle from any state, clears the
queues, tokens and STATUS (counters, GPRs, address registers and the EPI table are kept); the
engine top resets the fetch unit and the queue units in the same cycle.  The host's GPR
writes (``gpr``) take effect only while not busy.  ``window_base``/``window_limit`` go to the
checker as they are; the CSR block keeps them constant during a run.

Counters (64-bit, cleared by START): ``cycles`` (every cycle while BUSY), ``instret``
(decoded instructions that started executing), ``dispatch_stall`` (cycles waiting for a queue
slot, for idle queues, or for sync flags), and per queue ``busy`` / ``stall`` (see
``QueueController``).

Ports
-----
fetch : Out(fetch_signature())
control : In(control_signature(config))
status : Out(status_layout())
gpr : In(gpr_port_signature(config))
sync : Out(sync_signature())
epi : Out(EPI_TABLE)
load, array, store, vector, vector_move : In(UnitSignature())
    The queue units; the VECTOR queue sends QUANTIZE / DEQUANTIZE / TRANSPOSE to
    ``vector_move`` and every other VECTOR op to ``vector`` (routing inside the controller,
    :func:`~.queues.vector_move_route`), one instruction at a time.
trace_<source> : Out(trace_source_signature()), one per ``engine_if.TRACE_SOURCES`` entry
    ``trace_dispatcher`` (MARKER, HALT, ERROR) and ``trace_<queue>_start`` /
    ``trace_<queue>_end``.  Every event is emitted; the trace buffer applies TRACE_MODE.

Parameters
----------
config:
    The engine.
checker:
    The operand checker component (``i``/``o`` streams, ``window_base``/``window_limit``);
    default a new :class:`~.checks.InstructionChecker` (tests pass a stand-in).

Timing: a dispatcher instruction takes 1 cycle (MUL/MULHU 2, DIVU/REMU 34, a taken branch
adds the fetch latency); a queue instruction about 5 + the checker's latency.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import QUEUE_OPCODES, TOKEN_FIFO_DEPTH, Opcode, Queue, SyncOp, isa_for
from ..regs import TRACE_UNIT_DISPATCHER, ErrorCode, TraceKind
from .decode import Decoder
from .dispatch_epi import EPI_RESET, EpiTable
from .dispatch_fetch import FetchFront
from .engine_if import (
    EPI_TABLE,
    TRACE_SOURCES,
    UnitSignature,
    control_signature,
    fetch_signature,
    gpr_port_signature,
    status_layout,
    sync_signature,
    trace_source_signature,
)
from .queues import RUNTIME_TOKEN_BITS, QueueController, TokenCounters, vector_move_route
from .scalar import ScalarUnit

__all__ = ["Dispatcher"]

_UNIT_PORTS = {Queue.LOAD: "load", Queue.ARRAY: "array", Queue.VECTOR: "vector",
               Queue.STORE: "store"}


class Dispatcher(wiring.Component):
    """The engine's control core (see the module docstring)."""

    def __init__(self, config: EngineConfig, *, checker: wiring.Component | None = None
                 ) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"Dispatcher needs an EngineConfig, not {type(config).__name__}")
        self.config = config
        self.isa = isa_for(config)
        if checker is None:
            from .checks import InstructionChecker
            checker = InstructionChecker(config)
        self.checker = checker
        members = {
            "fetch": Out(fetch_signature()),
            "control": In(control_signature(config)),
            "status": Out(status_layout()),
            "gpr": In(gpr_port_signature(config)),
            "sync": Out(sync_signature()),
            "epi": Out(EPI_TABLE, init=EPI_RESET),
            **{name: In(UnitSignature()) for name in
               ("load", "array", "store", "vector", "vector_move")},
            **{f"trace_{name}": Out(trace_source_signature()) for name in TRACE_SOURCES},
        }
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg, isa = self.config, self.isa
        ctl = self.control
        soft = ctl.soft_reset

        # Everything the soft reset returns to its initial state lives in `core` (the run
        # state machine and STATUS) or in a reset-wrapped block; the counters, the EPI table
        # and the register files (memories) are outside and keep their values.
        core = Module()
        m.submodules.core = ResetInserter(soft)(core)

        front = FetchFront()
        m.submodules.front = ResetInserter(soft)(front)
        wiring.connect(m, wiring.flipped(self.fetch), front.fetch)
        ir = front.ir.payload

        m.submodules.decoder = dec = Decoder(cfg)
        scalar = ScalarUnit(cfg)
        m.submodules.scalar = ResetInserter(soft)(scalar)
        checker = self.checker
        m.submodules.checker = ResetInserter(soft)(checker)
        m.submodules.epi_table = epi = EpiTable(cfg)
        wiring.connect(m, wiring.flipped(self.gpr), scalar.gpr)
        m.d.comb += [
            dec.word.eq(ir.word),
            scalar.word.eq(ir.word),
            scalar.pc.eq(ir.pc),
            epi.word.eq(ir.word),
            self.epi.eq(epi.table),
            checker.window_base.eq(ctl.window_base),
            checker.window_limit.eq(ctl.window_limit),
            checker.i.payload.eq(scalar.check),
        ]

        # ---- queues and tokens ----
        busy = Signal()
        start = Signal()
        m.d.comb += [start.eq(ctl.start & ~busy & ~soft), scalar.host_access.eq(~busy)]
        m.submodules.dispatch_tokens = dtok = TokenCounters(TOKEN_FIFO_DEPTH.bit_length())
        m.submodules.runtime_tokens = rtok = TokenCounters(RUNTIME_TOKEN_BITS)
        m.d.comb += [dtok.clear.eq(start | soft), rtok.clear.eq(start | soft)]
        queues: dict[Queue, QueueController] = {}
        for q in Queue:
            route = vector_move_route(cfg) if q is Queue.VECTOR else None
            qc = queues[q] = QueueController(q, route=route)
            m.submodules[f"queue_{q.name.lower()}"] = qc
            name = _UNIT_PORTS[q]
            wiring.connect(m, wiring.flipped(getattr(self, name)), qc.unit)
            if route is not None:
                wiring.connect(m, wiring.flipped(self.vector_move), qc.unit_alt)
            for edge in ("start", "end"):
                wiring.connect(m, getattr(qc, f"trace_{edge}"),
                               wiring.flipped(getattr(self, f"trace_{name}_{edge}")))
            m.d.comb += [
                rtok.push[q.value].eq(qc.token_push),
                rtok.pop[q.value].eq(qc.token_pop),
                qc.avail.eq(Cat(rtok.count[s][q.value] != 0 for s in range(len(Queue)))),
                qc.flush.eq(start | soft),
                qc.clear.eq(start),
            ]
            for kind in ("busy", "stall"):
                m.d.comb += self.status[f"{q.name.lower()}_{kind}"].eq(
                    getattr(qc, f"{kind}_cycles"))
        all_idle = Signal()
        m.d.comb += all_idle.eq(Cat(qc.idle for qc in queues.values()).all())

        # ---- counters (kept by soft reset) ----
        count_instret = Signal()
        count_stall = Signal()
        for name, enable in (("cycles", busy), ("instret", count_instret),
                             ("dispatch_stall", count_stall)):
            counter = self.status[name]
            with m.If(start):
                m.d.sync += counter.eq(0)
            with m.Elif(enable):
                m.d.sync += counter.eq(counter + 1)

        self._run(core, cfg, isa, front, dec, scalar, checker, epi, queues, dtok,
                  busy=busy, start=start, all_idle=all_idle, count_instret=count_instret,
                  count_stall=count_stall)
        return m

    def _run(self, m, cfg, isa, front, dec, scalar, checker, epi, queues, dtok, *, busy,
             start, all_idle, count_instret, count_stall) -> None:
        """The run state machine and STATUS (all reset by a soft reset)."""
        ctl, status = self.control, self.status
        ir = front.ir.payload
        ins = data.View(isa.instruction, ir.word)
        header = data.View(isa.header, ir.word[:isa.header.size])
        opcode = dec.opcode

        pc = Signal(32)  # the instruction to dispatch next
        halted = Signal()
        error = Signal()
        error_code = Signal(ErrorCode)
        error_pc = Signal(32)
        halt_code = Signal(16)
        stop_code = Signal(ErrorCode)  # the error being reported once the queues drain
        stop_pc = Signal(32)
        poll = Signal(32)
        m.d.comb += [
            status.busy.eq(busy),
            status.halted.eq(halted),
            status.error.eq(error),
            status.error_code.eq(error_code),
            status.error_pc.eq(error_pc),
            status.halt_code.eq(halt_code),
        ]
        budget = ctl.cycle_budget
        over_budget = (budget != 0) & (status.cycles > budget)
        event = self.trace_dispatcher

        def emit(kind: TraceKind, payload) -> None:
            m.d.comb += [event.valid.eq(1), event.event.kind.eq(kind),
                         event.event.unit.eq(TRACE_UNIT_DISPATCHER),
                         event.event.payload.eq(payload)]

        def retire(taken=None, target=None) -> None:
            """Finish the instruction in ``ir``; continue at ``target`` if ``taken``."""
            if taken is None:
                m.d.comb += front.ir.ready.eq(1)
                m.d.sync += pc.eq(pc + 1)
                return
            with m.If(taken):
                m.d.comb += [front.redirect.eq(1), front.target.eq(target)]
                m.d.sync += pc.eq(target)
            with m.Else():
                m.d.comb += front.ir.ready.eq(1)
                m.d.sync += pc.eq(pc + 1)

        def fail(code) -> None:
            """Stop dispatching; report ``code`` at ``pc`` once the queues have drained."""
            m.d.comb += front.redirect.eq(1)  # drop the prefetched instructions
            m.d.sync += [stop_code.eq(code), stop_pc.eq(pc)]
            m.next = "STOP"

        # per-queue view of the instruction in ir
        q_free = Signal()
        underflow = Signal()
        overflow = Signal()
        wait, signal = header.wait, header.signal
        with m.Switch(dec.queue):
            for q in Queue:
                with m.Case(q):
                    m.d.comb += q_free.eq(queues[q].free)
                    others = [s for s in range(len(Queue)) if s != q.value]
                    m.d.comb += [
                        underflow.eq(Cat(wait[s] & (dtok.count[s][q.value] == 0)
                                         for s in others).any()),
                        overflow.eq(Cat(signal[d] & (dtok.count[q.value][d] >= TOKEN_FIFO_DEPTH)
                                        for d in others).any()),
                    ]

        def begin_resolve() -> None:
            """The queue has room: override, addresses and post-increments (ScalarUnit)."""
            m.d.comb += scalar.start.eq(1)
            with m.If(scalar.done):  # the override did not fit
                fail(scalar.error)
            with m.Else():
                m.next = "RESOLVE"

        def offer_check() -> None:
            m.d.comb += checker.i.valid.eq(1)
            with m.If(checker.i.ready):
                m.next = "ENQUEUE"
            with m.Else():
                m.next = "CHECK"

        sync = ins.sync
        epi_drain_done = queues[Queue.ARRAY].idle & queues[Queue.VECTOR].idle

        with m.FSM(name="dispatch") as fsm:
            with m.State("IDLE"), m.If(start):
                m.d.comb += [front.redirect.eq(1), front.target.eq(0)]
                m.d.sync += [busy.eq(1), pc.eq(0), halted.eq(0), error.eq(0),
                             error_code.eq(ErrorCode.NONE), error_pc.eq(0), halt_code.eq(0)]
                m.next = "RUN"

            with m.State("RUN"):
                with m.If(over_budget):
                    fail(ErrorCode.CYCLE_BUDGET)
                with m.Elif(front.ir.valid):
                    with m.If(ir.error):
                        fail(ErrorCode.FETCH_OUT_OF_WINDOW)
                    with m.Elif(dec.illegal):
                        fail(ErrorCode.ILLEGAL_INSTRUCTION)
                    with m.Else():
                        m.d.comb += count_instret.eq(1)
                        self._execute(m, opcode, scalar, epi, sync, ins, retire, fail, emit,
                                      poll)
                        with m.If(dec.queue_op & q_free):  # skip SLOT when there is room
                            begin_resolve()

            with m.State("SCALAR"), m.If(scalar.done):
                retire(scalar.taken, scalar.target)
                m.next = "RUN"

            with m.State("DRAIN"):
                ready = Mux(opcode == Opcode.EPI, epi_drain_done, all_idle)
                with m.If(over_budget):
                    fail(ErrorCode.CYCLE_BUDGET)
                with m.Elif(ready), m.Switch(opcode):
                    with m.Case(Opcode.HALT):
                        m.d.comb += front.redirect.eq(1)
                        m.d.sync += [busy.eq(0), halted.eq(1),
                                     halt_code.eq(ins.halt.code)]
                        emit(TraceKind.HALT, pc)
                        m.next = "IDLE"
                    with m.Case(Opcode.EPI):
                        m.d.comb += epi.write.eq(1)
                        retire()
                        m.next = "RUN"
                    with m.Default():  # SYNC SET / CLEAR / FENCE
                        with m.If(sync.op == SyncOp.SET):
                            m.d.comb += self.sync.set.eq(sync.mask)
                        with m.If(sync.op == SyncOp.CLEAR):
                            m.d.comb += self.sync.clear.eq(sync.mask)
                        retire()
                        m.next = "RUN"
                with m.Else():
                    m.d.comb += count_stall.eq(1)

            with m.State("SYNC_WAIT"):
                with m.If(over_budget):
                    fail(ErrorCode.CYCLE_BUDGET)
                with m.Elif(((self.sync.flags ^ sync.value) & sync.mask) == 0):
                    retire()
                    m.next = "RUN"
                with m.Elif(poll >= sync.timeout):
                    fail(ErrorCode.SYNC_TIMEOUT)
                with m.Else():
                    m.d.comb += count_stall.eq(1)
                    m.d.sync += poll.eq(poll + 1)

            with m.State("SLOT"):  # a queue instruction: wait for room in its queue
                with m.If(over_budget):
                    fail(ErrorCode.CYCLE_BUDGET)
                with m.Elif(q_free):
                    begin_resolve()
                with m.Else():
                    m.d.comb += count_stall.eq(1)

            with m.State("RESOLVE"), m.If(scalar.done):
                # the simulator's order: override, post-increment, tokens, operand checks
                with m.If(underflow):
                    fail(ErrorCode.TOKEN_UNDERFLOW)
                with m.Elif(overflow):
                    fail(ErrorCode.TOKEN_OVERFLOW)
                with m.Else():
                    offer_check()

            with m.State("CHECK"):
                offer_check()

            with m.State("ENQUEUE"):
                result = checker.o.payload
                m.d.comb += checker.o.ready.eq(1)
                with m.If(checker.o.valid):
                    with m.If(result.error != ErrorCode.NONE):
                        fail(result.error)
                    with m.Else():
                        # RUN or SLOT saw room and only this state pushes: the push is taken
                        for q, qc in queues.items():
                            with m.If(dec.queue == q):
                                m.d.comb += [
                                    qc.push.valid.eq(1),
                                    qc.push.payload.word.eq(result.word),
                                    qc.push.payload.pc.eq(pc),
                                    qc.push.payload.wait.eq(wait),
                                    qc.push.payload.signal.eq(signal),
                                    dtok.pop[q.value].eq(wait),
                                    dtok.push[q.value].eq(signal),
                                ]
                        retire()
                        m.next = "RUN"

            with m.State("STOP"), m.If(all_idle):
                m.d.sync += [busy.eq(0), error.eq(1), error_code.eq(stop_code),
                             error_pc.eq(stop_pc)]
                emit(TraceKind.ERROR, stop_pc)
                m.next = "IDLE"

        m.d.comb += front.run.eq(busy & ~fsm.ongoing("STOP"))

    def _execute(self, m, opcode, scalar, epi, sync, ins, retire, fail, emit, poll) -> None:
        """Start the decoded instruction in ``ir`` (state RUN)."""
        with m.Switch(opcode):
            with m.Case(Opcode.NOP):
                retire()
            with m.Case(Opcode.TRACE):
                emit(TraceKind.MARKER, ins.trace.marker)
                retire()
            with m.Case(Opcode.ALU, Opcode.JUMP, Opcode.LOOP, Opcode.AREG):
                m.d.comb += scalar.start.eq(1)
                with m.If(scalar.done):
                    retire(scalar.taken, scalar.target)
                with m.Else():
                    m.next = "SCALAR"
            with m.Case(Opcode.HALT):
                m.next = "DRAIN"
            with m.Case(Opcode.EPI):
                with m.If(epi.illegal):
                    fail(ErrorCode.ILLEGAL_OPERAND)
                with m.Else():
                    m.next = "DRAIN"
            with m.Case(Opcode.SYNC):
                with m.If(sync.op == SyncOp.WAIT):
                    m.d.sync += poll.eq(0)
                    m.next = "SYNC_WAIT"
                with m.Else():
                    m.next = "DRAIN"
            with m.Case(*QUEUE_OPCODES):
                m.next = "SLOT"
