"""The four instruction queues: ``QueueController`` (FIFO + issue in front of a unit) and
``TokenCounters`` (the dependency-token channels between the queues).

A queue instruction reaches its queue from the dispatcher fully resolved (see
``engine_if.UnitSignature``) together with its pc and its ``wait``/``signal`` masks.  The
controller keeps up to :data:`QUEUE_DEPTH` of them in order and issues the head to its unit
when every channel it waits on holds a token (VTA-style dependency tokens, generalised to four
queues: channel *s → q* counts tokens pushed by queue *s* for queue *q*):

* issue: the head's ``cmd`` is offered once all of its ``wait`` channels are non-zero and the
  unit has finished the previous instruction; on the transfer the controller pops one token
  from each ``wait`` channel (``token_pop``) and emits a START trace event;
* finish: on the unit's ``done`` pulse it pushes one token on each ``signal`` channel
  (``token_push``) and emits an END trace event (payload = pc, low 24 bits).

The dispatcher counts tokens again at dispatch, in program order, and never dispatches an
instruction whose waits no earlier instruction can satisfy or whose signals would overflow a
channel; so these runtime counters need no checks, only width (:data:`RUNTIME_TOKEN_BITS`).
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Const, Module, Mux, ResetInserter, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..isa import INSTRUCTION_BITS, TOKEN_FIFO_DEPTH, Queue, VecOp, isa_for
from ..regs import TraceKind
from .engine_if import UnitSignature, trace_source_signature

__all__ = [
    "QUEUE_DEPTH",
    "QUEUE_ENTRY",
    "RUNTIME_TOKEN_BITS",
    "QueueController",
    "TokenCounters",
    "vector_move_route",
]

#: Instructions a queue holds that have not started (the ISA simulator's
#: ``TimingParams.queue_depth``: a slot frees when its instruction starts).
QUEUE_DEPTH = 8
#: One queue entry: the resolved word, its pc and its token masks.
QUEUE_ENTRY = data.StructLayout({
    "word": unsigned(INSTRUCTION_BITS),
    "pc": unsigned(32),
    "wait": unsigned(len(Queue)),
    "signal": unsigned(len(Queue)),
})
#: Width of a runtime token counter.  At dispatch a channel holds at most TOKEN_FIFO_DEPTH
#: unconsumed pushes; at run time the pops of up to QUEUE_DEPTH dispatched but not yet issued
#: instructions may still be outstanding, so a counter can reach the sum.
RUNTIME_TOKEN_BITS = (TOKEN_FIFO_DEPTH + QUEUE_DEPTH).bit_length()

_QUEUES = len(Queue)


class TokenCounters(wiring.Component):
    """One counter per channel *src → dst* (``src ≠ dst``), ``width`` bits, wrapping.

    Ports
    -----
    push : In(ArrayLayout(4, 4))
        ``push[src]``: one token onto each channel ``src → dst`` whose bit ``dst`` is set.
    pop : In(ArrayLayout(4, 4))
        ``pop[dst]``: one token off each channel ``src → dst`` whose bit ``src`` is set.
    count : Out(ArrayLayout(ArrayLayout(width, 4), 4))
        ``count[src][dst]`` (registered; a push and a pop in one cycle cancel).  The diagonal
        is always 0.
    clear : In(1)
        Set every counter to 0 (takes precedence).
    """

    def __init__(self, width: int) -> None:
        self.width = width
        mask = unsigned(_QUEUES)
        super().__init__({
            "push": In(data.ArrayLayout(mask, _QUEUES)),
            "pop": In(data.ArrayLayout(mask, _QUEUES)),
            "count": Out(data.ArrayLayout(data.ArrayLayout(self.width, _QUEUES), _QUEUES)),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        for src in range(_QUEUES):
            for dst in range(_QUEUES):
                if src == dst:
                    continue
                count = self.count[src][dst]
                with m.If(self.clear):
                    m.d.sync += count.eq(0)
                with m.Else():
                    m.d.sync += count.eq(count + self.push[src][dst] - self.pop[dst][src])
        return m


def vector_move_route(config) -> Callable[[Value], Value]:
    """Route of the VECTOR queue: 1 for the data-movement unit (QUANTIZE, DEQUANTIZE,
    TRANSPOSE), 0 for the element-wise unit; takes the resolved word."""
    isa = isa_for(config)

    def route(word: Value) -> Value:
        op = data.View(isa.layouts["vector"], word).op.as_value()
        return op.matches(VecOp.QUANTIZE, VecOp.DEQUANTIZE, VecOp.TRANSPOSE)

    return route


class QueueController(wiring.Component):
    """The FIFO of one queue and the issue logic in front of its unit(s).

    Parameters
    ----------
    queue:
        Which queue (the trace events' ``unit`` and the token channels it uses).
    route:
        Optional: a second unit port ``unit_alt`` exists, and ``route(word)`` (a 1-bit value
        of the resolved word) sends an instruction to it instead of ``unit``.  Both units
        share the queue: still one instruction at a time, in order.

    Ports
    -----
    push : In(stream.Signature(QUEUE_ENTRY))
        From the dispatcher; ``ready`` while the FIFO has a free slot.
    free : Out(1)
        The FIFO has a free slot (``push.ready``, as a status the dispatcher may test before
        it offers an entry).
    unit (, unit_alt) : In(UnitSignature())
        The unit's command port: the controller drives ``cmd`` and watches ``done``.
    avail : In(4)
        Bit ``s``: channel ``s → queue`` holds a token.
    token_pop, token_push : Out(4)
        One-cycle masks of the channels ``s → queue`` popped (at issue) and
        ``queue → d`` pushed (at done); wired to :class:`TokenCounters`.
    idle : Out(1)
        Nothing queued, nothing executing.
    busy_cycles, stall_cycles : Out(64)
        Cycles the unit executed an instruction of this queue (from the cycle after issue to
        its ``done``), and cycles the head waited for tokens while the unit was free.
    trace_start, trace_end : Out(trace_source_signature())
        START at issue, END at done; payload = pc.
    flush : In(1)
        Drop every queued instruction and forget the executing one (START, soft reset).
    clear : In(1)
        Zero the cycle counters (START).

    Timing: an entry pushed in cycle t can issue in cycle t + 2 (FIFO); back-to-back
    instructions issue in the cycle of the previous one's ``done`` if the unit is ready then.
    """

    def __init__(self, queue: Queue, *, route: Callable[[Value], Value] | None = None) -> None:
        self.queue = Queue(queue)
        self.route = route
        members = {
            "push": In(stream.Signature(QUEUE_ENTRY)),
            "free": Out(1),
            "unit": In(UnitSignature()),
            "avail": In(_QUEUES),
            "token_pop": Out(_QUEUES),
            "token_push": Out(_QUEUES),
            "idle": Out(1),
            "busy_cycles": Out(64),
            "stall_cycles": Out(64),
            "trace_start": Out(trace_source_signature()),
            "trace_end": Out(trace_source_signature()),
            "flush": In(1),
            "clear": In(1),
        }
        if route is not None:
            members["unit_alt"] = In(UnitSignature())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        fifo = SyncFIFOBuffered(width=QUEUE_ENTRY.size, depth=QUEUE_DEPTH)
        m.submodules.fifo = ResetInserter(self.flush)(fifo)
        m.d.comb += [
            fifo.w_data.eq(self.push.payload),
            fifo.w_en.eq(self.push.valid),
            self.push.ready.eq(fifo.w_rdy),
            self.free.eq(fifo.w_rdy),
        ]
        head = data.View(QUEUE_ENTRY, fifo.r_data)
        units = [self.unit] + ([self.unit_alt] if self.route is not None else [])

        executing = Signal()
        exec_pc = Signal(32)
        exec_signal = Signal(_QUEUES)
        done = Signal()
        for u in units:
            done = done | u.done
        tokens_ok = (head.wait & ~self.avail) == 0
        # The head may go once the previous instruction is done (possibly in this very cycle).
        offer = fifo.r_rdy & tokens_ok & (~executing | done)
        alt = self.route(head.word) if self.route is not None else Const(0, 1)
        issued = Signal()
        for k, u in enumerate(units):
            mine = alt if k else ~alt
            m.d.comb += [u.cmd.valid.eq(offer & mine), u.cmd.payload.eq(head.word)]
            issued = issued | (u.cmd.valid & u.cmd.ready)
        m.d.comb += fifo.r_en.eq(issued)

        # A unit could finish in its issue cycle; then the done belongs to the new instruction.
        done_old = done & executing
        done_new = done & ~executing & issued
        m.d.comb += [
            self.token_pop.eq(Mux(issued, head.wait, 0)),
            self.token_push.eq(Mux(done_old, exec_signal, Mux(done_new, head.signal, 0))),
            self.trace_start.valid.eq(issued),
            self.trace_start.event.kind.eq(TraceKind.START),
            self.trace_start.event.unit.eq(self.queue.value),
            self.trace_start.event.payload.eq(head.pc),
            self.trace_end.valid.eq(done_old | done_new),
            self.trace_end.event.kind.eq(TraceKind.END),
            self.trace_end.event.unit.eq(self.queue.value),
            self.trace_end.event.payload.eq(Mux(done_old, exec_pc, head.pc)),
            self.idle.eq(~executing & (fifo.level == 0)),
        ]
        with m.If(self.flush):
            m.d.sync += executing.eq(0)
        with m.Elif(issued):
            m.d.sync += [executing.eq(~done_new), exec_pc.eq(head.pc),
                         exec_signal.eq(head.signal)]
        with m.Elif(done_old):
            m.d.sync += executing.eq(0)

        with m.If(self.clear):
            m.d.sync += [self.busy_cycles.eq(0), self.stall_cycles.eq(0)]
        with m.Else():
            with m.If(executing):
                m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)
            with m.If(fifo.r_rdy & ~tokens_ok & ~executing):
                m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
        return m
