"""The ISA simulator: executes a program image from DRAM, bit-exact, with a cycle count.

:class:`Machine` holds the architectural state of one engine (GPRs, address registers, the
epilogue table, the on-chip memories, sync flags) and runs programs with :meth:`Machine.run`.
The dispatcher executes instructions in program order: dispatcher instructions (ALU, JUMP,
LOOP, AREG, SYNC, TRACE, EPI, NOP, HALT) immediately, queue instructions (LOAD, MATMUL, VECTOR,
STORE) by resolving their fields at dispatch (GPR override, address registers, post-increment)
and applying their effect through ``host.units``.  Data effects therefore happen in program
order; the timing model (``host.timing``) schedules each queue instruction on its queue,
honouring dependency tokens, and a race detector reports queue instructions whose memory
footprints conflict while their execution intervals are not ordered by tokens, which is where
the RTL could produce different results.

Errors stop the run with the :class:`~unified_engine.regs.ErrorCode` and the index of the
faulting instruction, as the RTL reports them in STATUS/ERROR_PC.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from typing import Any

import numpy as np

from unified_engine.config import EngineConfig
from unified_engine.isa import (
    EPI_ENTRIES,
    INSTRUCTION_BYTES,
    QUEUE_OPCODES,
    SYNC_FLAGS,
    TOKEN_FIFO_DEPTH,
    ActKind,
    AluOp,
    ArOp,
    IllegalInstruction,
    Instruction,
    JumpCond,
    JumpMode,
    Opcode,
    Queue,
    SyncOp,
    isa_for,
)
from unified_engine.numerics import fp
from unified_engine.regs import TRACE_UNIT_DISPATCHER, ErrorCode, TraceKind, TraceMode

from . import units
from .timing import TimingParams
from .units import Span, Stop

__all__ = ["Hazard", "Machine", "RunState", "TraceEvent"]

_MASK32 = 0xFFFFFFFF
_EVENT_LIMIT = 1 << 20
_ADDRESS_GROUPS = ("dram", "sram", "a", "b", "dst", "rmax", "src0", "src1")


def _s32(value: int) -> int:
    value &= _MASK32
    return value - (1 << 32) if value >> 31 else value


@dataclasses.dataclass(frozen=True)
class TraceEvent:
    """One trace-buffer event (``unit`` is a Queue number or ``TRACE_UNIT_DISPATCHER``)."""

    timestamp: int
    kind: TraceKind
    unit: int
    payload: int


@dataclasses.dataclass(frozen=True)
class Hazard:
    """Two queue instructions whose memory accesses conflict without token ordering."""

    first_pc: int
    second_pc: int
    first_queue: Queue
    second_queue: Queue
    space: str
    detail: str


#: Queue instructions per queue the race detector remembers (older ones are forgotten).
RACE_WINDOW = 1024


@dataclasses.dataclass
class _Done:
    """A queue instruction kept for race detection until nothing new can be unordered to it.

    ``seq`` counts the instructions of its queue (from 1); ``vc`` is its vector clock: for each
    queue, the highest sequence number it is ordered after (by queue order, tokens and
    fences), itself included.
    """

    pc: int
    queue: Queue
    seq: int
    vc: tuple[int, ...]
    reads: list[Span]
    writes: list[Span]


@dataclasses.dataclass
class RunState:
    """Per-run state and results: clocks, counters, stop reason, trace."""

    pc: int = 0
    t: int = 0  # dispatcher clock: cycle of the next dispatch
    fetch_req: int = 0  # cycle the fetch unit was asked for the instruction at pc
    instret: int = 0
    halted: bool = False
    error: ErrorCode = ErrorCode.NONE
    error_pc: int = 0
    error_detail: str = ""
    halt_code: int = 0
    cycles: int = 0
    busy: dict[Queue, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(Queue, 0))
    stall: dict[Queue, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(Queue, 0))
    dispatch_stall: int = 0
    unit_free: dict[Queue, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(Queue, 0))
    starts: dict[Queue, deque] = dataclasses.field(
        default_factory=lambda: {q: deque() for q in Queue})
    # token channel (src, dst) → deque of (push time, vector clock of the pusher)
    tokens: dict[tuple[Queue, Queue], deque] = dataclasses.field(default_factory=dict)
    seq: list[int] = dataclasses.field(default_factory=lambda: [0] * len(Queue))
    floor: list[int] = dataclasses.field(default_factory=lambda: [0] * len(Queue))
    events: list[TraceEvent] = dataclasses.field(default_factory=list)
    event_count: int = 0
    timeline: list[tuple[int, Queue, int, int]] = dataclasses.field(default_factory=list)
    hazards: list[Hazard] = dataclasses.field(default_factory=list)
    hazard_pairs: set[tuple[int, int]] = dataclasses.field(default_factory=set)
    live: dict[Queue, list[_Done]] = dataclasses.field(
        default_factory=lambda: {q: [] for q in Queue})
    queue_last: dict[Queue, _Done | None] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(Queue))
    icache: dict[int, int] = dataclasses.field(default_factory=dict)
    # the shared AXI read data channel: (AR cycle, cycle after the last R beat) of the latest
    # LOAD and of the latest fetch fill (R beats are returned in AR order)
    load_read: tuple[int, int] = (0, 0)
    fill_read: tuple[int, int] = (0, 0)

    @property
    def stopped(self) -> bool:
        return self.halted or self.error is not ErrorCode.NONE


class Machine:
    """One engine's architectural state and the program runner.

    Parameters
    ----------
    config:
        The engine.
    dram:
        The DRAM image (``numpy.uint8`` array, shared with the device model).
    timing:
        Cycle-cost parameters (default ``TimingParams.for_config(config)``).
    """

    def __init__(self, config: EngineConfig, dram: np.ndarray,
                 timing: TimingParams | None = None) -> None:
        self.config = config
        self.isa = isa_for(config)
        self.dram = dram
        self.timing = timing or TimingParams.for_config(config)
        self.spad = np.zeros(config.scratchpad_bytes, np.uint8)
        self.bias = np.zeros(config.bias_bytes, np.uint8)
        self.scale = np.zeros(config.scale_bytes, np.uint8)
        acc_tiles = self.isa.widths.acc_tiles
        self.acc = np.zeros((acc_tiles, config.tile_rows, config.cols), np.float32)
        self.gpr = [0] * config.gprs
        self.ar_width = self.isa.widths.dram
        self.ar = [0] * config.address_registers
        self.ar_inc = [0] * config.address_registers
        one = int(fp.f32_to_bits(np.float32(1.0)))
        self.epi: list[dict[str, Any]] = [
            {"act": ActKind.IDENTITY, "scale": one, "a": 0, "b": 0, "c": 0, "d": 0}
            for _ in range(EPI_ENTRIES)
        ]
        self.sync_flags = 0
        #: the SoC's shared flag word when this engine is one of several (``host.multi_model``):
        #: SYNC SET/CLEAR go to it and it decides when a WAIT retires (:meth:`finish_wait`);
        #: ``None`` for a single engine, whose flags only it and the host change
        self.flag_bus: Any = None
        self.window = (0, 0)
        self.state: RunState | None = None
        self._program_addr = 0
        self._budget = 0
        self._trace_mode = TraceMode.OFF
        self._decoded: dict[int, Instruction] = {}

    # ----- run control ----------------------------------------------------------------------

    def start(self, program_addr: int, window: tuple[int, int], cycle_budget: int = 0,
              trace_mode: TraceMode = TraceMode.OFF) -> None:
        """Begin a run at ``program_addr`` (call :meth:`run` to execute)."""
        self._program_addr = program_addr
        self.window = window
        self._budget = cycle_budget
        self._trace_mode = trace_mode
        self._decoded = {}
        self.state = RunState()

    def abort(self) -> None:
        """Soft reset: drop the run; registers, tables and memories keep their contents."""
        self.state = None

    def run(self, max_instructions: int | None = None, deadline: float | None = None) -> bool:
        """Execute until the run stops, ``max_instructions`` are dispatched, or the
        wall-clock ``deadline`` (``time.monotonic()``) passes.  Returns True once stopped."""
        st = self.state
        if st is None:
            raise RuntimeError("Machine.run called without Machine.start")
        count = 0
        while not st.stopped:
            if max_instructions is not None and count >= max_instructions:
                return False
            if deadline is not None and time.monotonic() > deadline:
                return False
            count += 1
            pc = st.pc
            try:
                self._step(st)
            except Stop as stop:
                self._fail(st, stop.code, pc, stop.detail)
            except IllegalInstruction as exc:
                self._fail(st, ErrorCode.ILLEGAL_INSTRUCTION, pc, str(exc))
        st.events.sort(key=lambda e: e.timestamp)
        del st.events[self.config.trace_depth:]
        return True

    def _fail(self, st: RunState, code: ErrorCode, pc: int, detail: str) -> None:
        st.error, st.error_pc, st.error_detail = code, pc, detail
        st.cycles = max(st.t, st.cycles)
        self._event(st, TraceKind.ERROR, TRACE_UNIT_DISPATCHER, pc, st.cycles, always=True)

    def _event(self, st: RunState, kind: TraceKind, unit: int, payload: int, t: int,
               always: bool = False) -> None:
        mode = self._trace_mode
        if mode is TraceMode.OFF or (mode is TraceMode.MARKERS and not always):
            return
        st.event_count += 1
        # Events are generated in dispatch order; the buffer holds the first trace_depth in
        # time order, so collect (bounded) and sort when the run stops.
        if len(st.events) < _EVENT_LIMIT:
            st.events.append(TraceEvent(t, kind, unit, payload & 0xFFFFFF))

    # ----- fetch / dispatch -----------------------------------------------------------------

    def _fetch(self, st: RunState) -> Instruction:
        pc = st.pc
        tm = self.timing
        # lines are aligned blocks of DRAM (the cache is indexed by address, rtl/fetch.py)
        line = self._line(pc)
        sets = max(1, self.config.icache_instructions // tm.icache_line)
        if st.icache.get(line % sets) != line:
            st.icache[line % sets] = line
            # the fetch unit asked for this word when the previous instruction was accepted,
            # so a miss overlaps that instruction's dispatch (the InstructionChecker above all)
            ready = st.fetch_req + tm.fetch_miss()
            ar = st.fetch_req + tm.fetch_ar_delay
            first = ar + tm.dram_latency  # first R beat, unless an earlier burst holds R
            load_ar, load_end = st.load_read
            if load_ar <= ar and load_end > first:
                ready += load_end - first
                first = load_end
            st.fill_read = (ar, first + tm.fill_beats())
            if ready > st.t:
                st.dispatch_stall += ready - st.t
                st.t = ready
        ins = self._decoded.get(pc)
        if ins is None:
            addr = self._program_addr + pc * INSTRUCTION_BYTES
            if addr < self.window[0] or addr + INSTRUCTION_BYTES > self.window[1] or \
                    addr + INSTRUCTION_BYTES > self.dram.size:
                raise Stop(ErrorCode.FETCH_OUT_OF_WINDOW,
                           f"instruction {pc} at DRAM {addr:#x} is outside the window "
                           f"[{self.window[0]:#x}, {self.window[1]:#x})")
            word = int.from_bytes(self.dram[addr:addr + INSTRUCTION_BYTES].tobytes(), "little")
            ins = self.isa.decode(word)
            self._decoded[pc] = ins
        return ins

    def _line(self, pc: int) -> int:
        """The instruction-cache line of ``pc`` (lines are aligned blocks of DRAM)."""
        return (self._program_addr // INSTRUCTION_BYTES + pc) // self.timing.icache_line

    def _next_fill_ar(self, st: RunState, accepted: int, retired: int, until: int
                      ) -> int | None:
        """AR cycle of the first fetch fill the front end starts, no later than ``until``,
        while the queue instruction at ``st.pc`` (in ``ir`` from ``accepted``, retired at
        ``retired``) dispatches; None without one.  The front end asks for pc + 1 at
        ``accepted``, for pc + 2 at ``retired`` and (taking the instructions after as
        one-cycle ones) for pc + k one cycle later each."""
        tm = self.timing
        sets = max(1, self.config.icache_instructions // tm.icache_line)
        ahead, asked = 1, accepted
        while asked + tm.fetch_ar_delay <= until:
            line = self._line(st.pc + ahead)
            if st.icache.get(line % sets) != line:
                return asked + tm.fetch_ar_delay
            if ahead == 1:
                asked = retired
            else:  # pc + ahead − 1 dispatches: a queue instruction holds the checker
                ins = self._peek(st.pc + ahead - 1)
                if ins is None or ins.opcode in (Opcode.JUMP, Opcode.LOOP, Opcode.HALT,
                                                 Opcode.SYNC, Opcode.EPI):
                    return None  # a branch or a wait: the rest is not worth predicting
                asked += tm.check_cycles(ins.opcode) if ins.opcode in QUEUE_OPCODES else 1
            ahead += 1
        return None

    def _peek(self, pc: int) -> Instruction | None:
        """The instruction at ``pc`` if it decodes (no side effects, no stop)."""
        ins = self._decoded.get(pc)
        if ins is not None:
            return ins
        addr = self._program_addr + pc * INSTRUCTION_BYTES
        if addr < self.window[0] or addr + INSTRUCTION_BYTES > min(self.window[1],
                                                                   self.dram.size):
            return None
        word = int.from_bytes(self.dram[addr:addr + INSTRUCTION_BYTES].tobytes(), "little")
        try:
            return self.isa.decode(word)
        except Exception:  # an illegal word: the run will stop there (or branch away)
            return None

    def _step(self, st: RunState) -> None:
        if self._budget and st.t > self._budget:
            raise Stop(ErrorCode.CYCLE_BUDGET, f"the run passed its budget of {self._budget} "
                       "cycles")
        ins = self._fetch(st)
        st.instret += 1
        op = ins.opcode
        pc, accepted = st.pc, st.t
        if op in QUEUE_OPCODES:
            self._dispatch_queue(st, ins)
            st.pc += 1
        else:
            handler = getattr(self, f"_op_{op.name.lower()}")
            handler(st, ins)
        # sequential fetch runs ahead of dispatch; a taken branch redirects it afterwards
        st.fetch_req = accepted if st.pc == pc + 1 else st.t

    # ----- dispatcher instructions ------------------------------------------------------------

    def _op_nop(self, st: RunState, ins: Instruction) -> None:
        st.t += 1
        st.pc += 1

    def _drain(self, st: RunState, queues=tuple(Queue)) -> None:
        ready = max([st.t, *(st.unit_free[q] for q in queues)])
        st.dispatch_stall += ready - st.t
        st.t = ready
        # everything dispatched so far on those queues is ordered before all later work
        for q in queues:
            st.floor[q.value] = st.seq[q.value]

    def _op_halt(self, st: RunState, ins: Instruction) -> None:
        # STATUS.DONE halt_latency cycles after dispatch, or the cycle after the last unit
        # became idle (unit_free already includes the unit's idle handshake)
        t = st.t + self.timing.halt_latency - 1
        self._drain(st)
        st.t = max(st.t, t) + 1
        st.cycles = st.t
        if self._budget and st.cycles > self._budget:
            raise Stop(ErrorCode.CYCLE_BUDGET, f"the run took {st.cycles} cycles, past its "
                       f"budget of {self._budget}")
        st.halted = True
        st.halt_code = ins["code"]
        self._event(st, TraceKind.HALT, TRACE_UNIT_DISPATCHER, st.pc, st.t, always=True)

    def _set_gpr(self, index: int, value: int) -> None:
        if index:
            self.gpr[index] = value & _MASK32

    def _op_alu(self, st: RunState, ins: Instruction) -> None:
        a = self.gpr[ins["rs1"]]
        b = ins["imm"] if ins["use_imm"] else self.gpr[ins["rs2"]]
        op = ins["op"]
        extra = 0
        if op is AluOp.ADD:
            r = a + b
        elif op is AluOp.SUB:
            r = a - b
        elif op is AluOp.AND:
            r = a & b
        elif op is AluOp.OR:
            r = a | b
        elif op is AluOp.XOR:
            r = a ^ b
        elif op is AluOp.SHL:
            r = a << (b & 31)
        elif op is AluOp.SHR:
            r = a >> (b & 31)
        elif op is AluOp.SRA:
            r = _s32(a) >> (b & 31)
        elif op is AluOp.MUL:
            r = a * b
        elif op is AluOp.MULHU:
            r = (a * b) >> 32
            extra = self.timing.mul_latency - 1
        elif op in (AluOp.DIVU, AluOp.REMU):
            if b == 0:
                r = _MASK32 if op is AluOp.DIVU else a
            else:
                r = a // b if op is AluOp.DIVU else a % b
            extra = self.timing.div_latency - 1
        elif op is AluOp.MIN:
            r = min(_s32(a), _s32(b))
        elif op is AluOp.MAX:
            r = max(_s32(a), _s32(b))
        elif op is AluOp.MINU:
            r = min(a, b)
        elif op is AluOp.MAXU:
            r = max(a, b)
        elif op is AluOp.SLT:
            r = int(_s32(a) < _s32(b))
        elif op is AluOp.SLTU:
            r = int(a < b)
        else:  # SEQ
            r = int(a == b)
        self._set_gpr(ins["rd"], r)
        st.t += 1 + extra
        st.pc += 1

    def _op_jump(self, st: RunState, ins: Instruction) -> None:
        v = _s32(self.gpr[ins["rs"]])
        taken = {
            JumpCond.ALWAYS: True, JumpCond.EQZ: v == 0, JumpCond.NEZ: v != 0,
            JumpCond.LTZ: v < 0, JumpCond.GEZ: v >= 0, JumpCond.GTZ: v > 0, JumpCond.LEZ: v <= 0,
        }[ins["cond"]]
        st.t += 1
        if not taken:
            st.pc += 1
            return
        mode = ins["mode"]
        if mode is JumpMode.ABS:
            target = ins["offset"]
        elif mode is JumpMode.REL:
            target = st.pc + _s32(ins["offset"])
        else:
            target = self.gpr[ins["rt"]] + _s32(ins["offset"])
        self._set_gpr(ins["link"], st.pc + 1)
        st.pc = target & _MASK32
        st.t += self.timing.branch_penalty

    def _op_loop(self, st: RunState, ins: Instruction) -> None:
        rc = ins["rc"]
        value = (self.gpr[rc] - 1) & _MASK32
        self._set_gpr(rc, value)
        st.t += 1
        if value != 0:
            st.pc = (st.pc + ins["offset"]) & _MASK32
            st.t += self.timing.branch_penalty
        else:
            st.pc += 1

    def _op_areg(self, st: RunState, ins: Instruction) -> None:
        mask = (1 << self.ar_width) - 1
        ar, op = ins["ar"], ins["op"]
        rs = self.gpr[ins["rs"]]
        if ar:
            if op is ArOp.SET:
                self.ar[ar], self.ar_inc[ar] = ins["value"], ins["inc"]
            elif op is ArOp.SET_GPR:
                self.ar[ar] = (rs + ins["value"]) & mask
            elif op is ArOp.ADD_GPR:
                self.ar[ar] = (self.ar[ar] + rs + ins["value"]) & mask
            else:  # INC_GPR
                self.ar_inc[ar] = (_s32(rs) + ins["inc"]) & mask
        st.t += 1
        st.pc += 1

    def _op_sync(self, st: RunState, ins: Instruction) -> None:
        op, mask = ins["op"], ins["mask"]
        if op is SyncOp.WAIT:
            if self.flag_bus is not None:
                # other engines may still change the flags: the bus retires or times out the
                # WAIT later (finish_wait); until then pc stays on it
                self.flag_bus.park(self, st, ins)
                return
            if (self.sync_flags ^ ins["value"]) & mask:
                # Only this engine (or the host, before START) changes the flags in the
                # single-engine model, so an unmet condition can only time out.
                st.dispatch_stall += ins["timeout"]
                st.t += ins["timeout"]
                raise Stop(ErrorCode.SYNC_TIMEOUT,
                           f"sync flags {self.sync_flags:#010x} did not match value "
                           f"{ins['value']:#010x} under mask {mask:#010x} within "
                           f"{ins['timeout']} cycles")
        else:
            self._drain(st)
            if self.flag_bus is not None:
                self.flag_bus.pulse(self, st.t, op, mask)
            elif op is SyncOp.SET:
                self.sync_flags |= mask
            elif op is SyncOp.CLEAR:
                self.sync_flags &= ~mask & ((1 << SYNC_FLAGS) - 1)
        st.t += 1
        st.pc += 1

    def finish_wait(self, matched_at: int | None, flags: int) -> None:
        """Complete the SYNC WAIT at ``pc`` that the flag bus parked: the flags (``flags``)
        matched at cycle ``matched_at`` (≥ the WAIT's dispatch cycle; it retires the cycle
        after), or never within its timeout (``None``: SYNC_TIMEOUT, as a single engine)."""
        st = self.state
        if st is None or st.stopped:
            raise RuntimeError("finish_wait without a parked SYNC WAIT")
        ins = self._decoded[st.pc]
        if matched_at is None:
            st.dispatch_stall += ins["timeout"]
            st.t += ins["timeout"]
            self._fail(st, ErrorCode.SYNC_TIMEOUT, st.pc,
                       f"sync flags {flags:#010x} did not match value {ins['value']:#010x} "
                       f"under mask {ins['mask']:#010x} within {ins['timeout']} cycles")
            st.events.sort(key=lambda e: e.timestamp)
            del st.events[self.config.trace_depth:]
            return
        st.dispatch_stall += matched_at - st.t
        st.t = matched_at + 1
        st.pc += 1

    def _op_trace(self, st: RunState, ins: Instruction) -> None:
        self._event(st, TraceKind.MARKER, TRACE_UNIT_DISPATCHER, ins["marker"], st.t,
                    always=True)
        st.t += 1
        st.pc += 1

    def _op_epi(self, st: RunState, ins: Instruction) -> None:
        act = ins["act"]
        a, b, c, d = (fp.f32_from_bits(np.uint32(ins[n])) for n in "abcd")
        if act is ActKind.UNIFIED and not all(np.isfinite(v) for v in (a, b, c, d)):
            raise Stop(ErrorCode.ILLEGAL_OPERAND, "EPI UNIFIED parameters must be finite")
        if act is ActKind.CLAMP and (np.isnan(a) or np.isnan(b) or
                                     fp.f32_order_key(a) > fp.f32_order_key(b)):
            raise Stop(ErrorCode.ILLEGAL_OPERAND, "EPI CLAMP needs a ≤ b (and no NaN)")
        self._drain(st, (Queue.ARRAY, Queue.VECTOR))
        self.epi[ins["index"]] = {n: ins[n] for n in ("act", "scale", "a", "b", "c", "d")}
        st.t += 1
        st.pc += 1

    # ----- queue instructions -----------------------------------------------------------------

    def _resolve(self, ins: Instruction) -> dict[str, Any]:
        """Fields as the queue sees them: override applied, addresses effective."""
        f = dict(ins.fields)
        if f["ovr_field"]:
            info = self.isa.overridable(ins.opcode)[f["ovr_field"] - 1]
            value = self.gpr[f["ovr_gpr"]]
            if value > info.high:
                raise Stop(ErrorCode.FIELD_OVERFLOW,
                           f"r{f['ovr_gpr']}={value} does not fit {info.path} "
                           f"(0…{info.high})")
            f[info.path] = value
        mask = (1 << self.ar_width) - 1
        bump = set()
        for group in _ADDRESS_GROUPS:
            if f"{group}.imm" not in f:
                continue
            ar = f.pop(f"{group}.ar")
            inc = f.pop(f"{group}.inc")
            f[group] = (f.pop(f"{group}.imm") + self.ar[ar]) & mask
            if inc and ar:
                bump.add(ar)
        for ar in bump:
            self.ar[ar] = (self.ar[ar] + self.ar_inc[ar]) & mask
        return f

    def _cost(self, ins: Instruction, f: dict[str, Any]) -> int:
        return self.timing.cost(self.config, ins.opcode, f)

    def _dispatch_queue(self, st: RunState, ins: Instruction) -> None:
        q = QUEUE_OPCODES[ins.opcode]
        pc = st.pc
        accepted = st.t  # in the instruction register (the front end asks for pc + 1)
        # a free queue slot: the instruction queue_depth places earlier must have started
        starts = st.starts[q]
        depth = self.timing.queue_depth
        if len(starts) >= depth:
            ready = starts[-depth]
            if ready > st.t:
                st.dispatch_stall += ready - st.t
                st.t = ready
        f = self._resolve(ins)
        # the dispatcher is held while InstructionChecker runs; the unit gets the command
        # issue_latency cycles later
        issue = st.t + self.timing.check_cycles(ins.opcode, f) + self.timing.issue_latency
        # tokens, counted at dispatch (program order)
        arrivals = [issue, st.unit_free[q]]
        vc = list(st.floor)
        prev = st.queue_last[q]
        if prev is not None:
            vc = [max(x, y) for x, y in zip(vc, prev.vc, strict=True)]
        for src in Queue:
            if ins["wait"] >> src.value & 1:
                fifo = st.tokens.get((src, q))
                if not fifo:
                    raise Stop(ErrorCode.TOKEN_UNDERFLOW,
                               f"{ins.opcode.name} waits for a token from {src.name} but no "
                               "earlier instruction pushed one")
                t_push, token_vc = fifo[0]
                arrivals.append(t_push)
                vc = [max(x, y) for x, y in zip(vc, token_vc, strict=True)]
        for dst in Queue:
            if ins["signal"] >> dst.value & 1 and \
                    len(st.tokens.get((q, dst), ())) >= TOKEN_FIFO_DEPTH:
                raise Stop(ErrorCode.TOKEN_OVERFLOW,
                           f"channel {q.name}→{dst.name} already holds {TOKEN_FIFO_DEPTH} "
                           "unconsumed tokens")
        # functional effect (program order); a fault leaves the tokens untouched
        if ins.opcode is Opcode.MATMUL:
            reads, writes = units.matmul(self, f)
        elif ins.opcode is Opcode.VECTOR:
            reads, writes = units.vector(self, f)
        else:
            reads, writes = units.dma(self, f, store=ins.opcode is Opcode.STORE)
        for src in Queue:
            if ins["wait"] >> src.value & 1:
                st.tokens[(src, q)].popleft()
        start = max(arrivals)
        st.stall[q] += start - max(issue, st.unit_free[q])
        cost = self._cost(ins, f)
        if q is Queue.LOAD and cost > 1:
            # its R beats wait behind a fetch fill that asked first: the one in flight, or
            # the one the front end starts for the next instructions while this dispatches
            ar = start + self.timing.load_ar_delay
            first = ar + self.timing.dram_latency
            fill_ar, fill_end = st.fill_read
            ahead = self._next_fill_ar(st, accepted, st.t + self.timing.check_cycles(
                ins.opcode, f), ar)
            if ahead is not None:
                fill_ar, fill_end = ahead, ahead + self.timing.dram_latency + \
                    self.timing.fill_beats()
            if fill_ar <= ar and fill_end > first:
                cost += fill_end - first
            st.load_read = (ar, start + cost - (self.timing.load_overhead
                                                - self.timing.load_ar_delay))
        end = start + cost
        st.unit_free[q] = end + self.timing.unit_gap
        st.busy[q] += cost
        starts.append(start)
        if len(starts) > depth:
            starts.popleft()
        st.t += self.timing.check_cycles(ins.opcode, f)
        st.timeline.append((pc, q, start, end))
        self._event(st, TraceKind.START, q.value, pc, start)
        self._event(st, TraceKind.END, q.value, pc, end)
        st.seq[q.value] += 1
        vc[q.value] = st.seq[q.value]
        done = _Done(pc, q, st.seq[q.value], tuple(vc), reads, writes)
        for dst in Queue:
            if ins["signal"] >> dst.value & 1:
                st.tokens.setdefault((q, dst), deque()).append((end, done.vc))
        self._check_races(st, done)
        st.queue_last[q] = done

    def _check_races(self, st: RunState, new: _Done) -> None:
        """Record a Hazard for every remembered instruction that conflicts with ``new`` and is
        not ordered before it (by its queue, a token chain or a fence)."""
        for queue, remembered in st.live.items():
            if queue is new.queue or not remembered:
                continue
            # sequence numbers in `remembered` are consecutive: skip the ordered prefix
            first_unordered = new.vc[queue.value] - remembered[0].seq + 1
            for i in range(max(0, first_unordered), len(remembered)):
                old = remembered[i]
                if (old.pc, new.pc) in st.hazard_pairs:
                    continue  # this pair of instructions (e.g. in a loop) is already reported
                for a_list, b_list, kind in ((old.writes, new.reads, "write/read"),
                                             (old.reads, new.writes, "read/write"),
                                             (old.writes, new.writes, "write/write")):
                    hit = next(((x, y) for x in a_list for y in b_list if x.overlaps(y)), None)
                    if hit:
                        st.hazard_pairs.add((old.pc, new.pc))
                        st.hazards.append(Hazard(
                            old.pc, new.pc, old.queue, new.queue, hit[0].space,
                            f"{kind} conflict on {hit[0].space} between instruction {old.pc} "
                            f"({old.queue.name}) and {new.pc} ({new.queue.name}) without a "
                            "dependency token ordering them"))
                        break
        mine = st.live[new.queue]
        mine.append(new)
        # Forget what a fence ordered before everything, and beyond the window.
        floor = st.floor[new.queue.value]
        drop = max(len(mine) - RACE_WINDOW, floor - mine[0].seq + 1, 0)
        if drop:
            del mine[:drop]
