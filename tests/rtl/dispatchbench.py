"""Test bench for the ``Dispatcher``: behavioural fetch / unit / sync-flag models, a stand-in
operand checker, and a runner that executes programs on the RTL and on ``host.isasim.Machine``
and compares everything observable.

* ``StandInChecker``: the ``InstructionChecker`` interface with 1-cycle latency.  It resolves
  the word the way ``engine_if`` specifies (each group's ``imm`` ← its effective address,
  ``ar``/``inc``/override fields ← 0) and reports ``fail_code`` for the instruction number
  ``fail_index`` it checks (so a test can reproduce a checker error of the ISA simulator).
* ``DispatchBench``: one simulation in which ``run(program)`` is called repeatedly (so every
  test also covers restarting).  One Python process models the fetch unit (random latency and
  back-pressure, FETCH_OUT_OF_WINDOW exactly as ``Machine._fetch``), the five queue units
  (accept a command when idle, finish 1…N cycles later, log it), the SoC's sync-flag register,
  and records trace events and checker inputs.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

import numpy as np
from amaranth.hdl import Module, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from unified_engine import EngineConfig
from unified_engine.host.isasim import Machine
from unified_engine.isa import (
    INSTRUCTION_BYTES,
    QUEUE_OPCODES,
    Opcode,
    Queue,
    isa_for,
)
from unified_engine.regs import ErrorCode, TraceKind, TraceMode
from unified_engine.rtl.decode import field_of
from unified_engine.rtl.dispatch import Dispatcher
from unified_engine.rtl.engine_if import (
    TRACE_EVENT,
    TRACE_SOURCES,
    address_groups,
    check_in_layout,
    check_out_layout,
)

CHECKER_ERRORS = (ErrorCode.DMA_OUT_OF_WINDOW, ErrorCode.SRAM_OUT_OF_RANGE,
                  ErrorCode.ILLEGAL_OPERAND, ErrorCode.UNSUPPORTED_FORMAT)
UNIT_PORTS = ("load", "array", "vector", "vector_move", "store")
QUEUE_OF_PORT = {"load": Queue.LOAD, "array": Queue.ARRAY, "vector": Queue.VECTOR,
                 "vector_move": Queue.VECTOR, "store": Queue.STORE}
M32 = 0xFFFFFFFF


class StandInChecker(wiring.Component):
    """``InstructionChecker`` stand-in (see the module docstring)."""

    def __init__(self, config: EngineConfig) -> None:
        self.isa = isa_for(config)
        aw = config.axi_addr_width
        super().__init__({
            "i": In(stream.Signature(check_in_layout(config))),
            "o": Out(stream.Signature(check_out_layout())),
            "window_base": In(aw + 1),
            "window_limit": In(aw + 1),
            "fail_index": In(32, init=M32),
            "fail_code": In(ErrorCode),
            "count": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        isa = self.isa
        full = Signal()
        word = Signal(256)
        err = Signal(ErrorCode)
        pc = Signal(32)
        resolved = Signal(256)
        m.d.comb += resolved.eq(self.i.payload.word)
        opcode = self.i.payload.word[:6]
        for op in QUEUE_OPCODES:
            with m.If(opcode == op.value):
                view = data.View(isa.layout(op), resolved)
                for field in ("ovr_field", "ovr_gpr"):
                    m.d.comb += field_of(isa, view, field).eq(0)
                for i, g in enumerate(address_groups(isa, op)):
                    m.d.comb += [field_of(isa, view, f"{g}.imm").eq(self.i.payload.addr[i]),
                                 field_of(isa, view, f"{g}.ar").eq(0),
                                 field_of(isa, view, f"{g}.inc").eq(0)]
        m.d.comb += [
            self.i.ready.eq(~full),
            self.o.valid.eq(full),
            self.o.payload.word.eq(word),
            self.o.payload.error.eq(err),
            self.o.payload.pc.eq(pc),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [full.eq(1), word.eq(resolved), pc.eq(self.i.payload.pc),
                         self.count.eq(self.count + 1)]
            with m.If(self.count == self.fail_index):
                m.d.sync += err.eq(self.fail_code)
            with m.Else():
                m.d.sync += err.eq(ErrorCode.NONE)
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += full.eq(0)
        return m


@dataclasses.dataclass
class Expected:
    """What ``Machine`` did with a program."""

    halted: bool
    error: ErrorCode
    error_pc: int
    halt_code: int
    instret: int
    gpr: list[int]
    epi: list[dict[str, Any]]
    sync_flags: int
    resolved: dict[Queue, list[tuple[int, Opcode, dict[str, Any]]]]  # per queue, in order
    checked: list[tuple[int, Opcode, dict[str, Any]]]  # reached the operand checks, in order
    dispatcher_events: list[tuple[TraceKind, int]]


@dataclasses.dataclass
class Observed:
    """What the RTL did."""

    status: dict[str, int]
    gpr: list[int]
    epi: list[dict[str, int]]
    sync_flags: int
    units: dict[str, list[tuple[int, int, int]]]  # port → (word, accept cycle, done cycle)
    checks: list[tuple[int, list[int]]]  # (word, addresses) given to the checker
    events: dict[str, list[tuple[int, int, int]]]  # source → (cycle, kind, payload)
    cycles: int  # from START to BUSY low


def _unpack(layout, raw: int) -> dict[str, int]:
    """The top-level members of a packed ``layout`` value as ints."""
    return {name: (raw >> f.offset) & ((1 << f.width) - 1) for name, f in layout}


def raw_fields(isa, opcode: Opcode, word: int) -> dict[str, int]:
    """Every field of ``word`` as its raw bits."""
    return {f.path: (word >> f.offset) & ((1 << f.width) - 1) for f in isa.fields(opcode)
            if f.path != "opcode"}


def expected_word_fields(isa, opcode: Opcode, f: dict[str, Any]) -> dict[str, int]:
    """Raw fields of the word the stand-in checker resolves from ``Machine._resolve``'s
    dict (effective addresses truncated to the ``imm`` field)."""
    out = {}
    for info in isa.fields(opcode):
        path = info.path
        if path == "opcode":
            continue
        group, _, leaf = path.rpartition(".")
        if leaf in ("ar", "inc") and group:
            value = 0
        elif leaf == "imm" and group:
            value = f[group]
        elif path in ("ovr_field", "ovr_gpr"):
            value = 0
        else:
            value = f[path]
        value = value.value if hasattr(value, "value") else int(value)
        out[path] = value & ((1 << info.width) - 1)
    return out


class DispatchBench:
    """A Dispatcher in a simulation that runs programs one after another.

    ``unit_min_delay``/``unit_delay``: the range of unit execution times (cycles);
    ``fetch_latency``: cycles from an accepted fetch request to its answer (plus up to
    ``fetch_jitter``); ``stall``: chance of a low ``ready`` on the fetch request and unit
    command ports.  ``real_checker`` puts the ``InstructionChecker`` in place of the stand-in
    (the errors then come from it, not from injection).
    """

    def __init__(self, config: EngineConfig, *, seed: int = 0, unit_delay: int = 6,
                 unit_min_delay: int = 0, fetch_latency: int = 1, fetch_jitter: int = 2,
                 stall: float = 0.2, dram_bytes: int = 1 << 16,
                 real_checker: bool = False) -> None:
        self.config = config
        self.isa = isa_for(config)
        self.rng = np.random.default_rng(seed)
        self.unit_delay, self.unit_min_delay, self.stall = unit_delay, unit_min_delay, stall
        self.fetch_latency, self.fetch_jitter = fetch_latency, fetch_jitter
        self.checker = None if real_checker else StandInChecker(config)
        self.dut = Dispatcher(config, checker=self.checker)
        self.checker = self.dut.checker
        self.dram = np.zeros(dram_bytes, np.uint8)
        self.machine = Machine(config, self.dram.copy())
        self.image = self.dram.copy()  # what the fetch model reads
        self.program_addr = 0
        self.window = (0, dram_bytes)
        self.flags = 0
        self._unit_reset = False

    # ----- behavioural environment (one process) ------------------------------------------

    async def environment(self, ctx) -> None:
        dut, rng = self.dut, self.rng
        fetch = dut.fetch
        word_bits = len(fetch.resp.payload.word)
        pending: deque[list[int]] = deque()  # [due cycle, word, error]
        units = {name: getattr(dut, name) for name in UNIT_PORTS}
        busy: dict[str, list[int] | None] = dict.fromkeys(UNIT_PORTS)  # [left, log index]
        traces = [getattr(dut, f"trace_{s}") for s in TRACE_SOURCES]
        chk = self.checker
        samples = [fetch.req.valid, fetch.req.payload, fetch.resp.ready,
                   dut.sync.set, dut.sync.clear, dut.control.soft_reset,
                   chk.i.valid, chk.i.ready, Value.cast(chk.i.payload)]
        for name in UNIT_PORTS:
            samples += [units[name].cmd.valid, units[name].cmd.payload]
        for t in traces:
            samples += [t.valid, Value.cast(t.event)]
        cycle = 0
        while True:
            # outputs for this cycle
            req_ready = not rng.random() < self.stall
            ctx.set(fetch.req.ready, req_ready)
            due = bool(pending) and pending[0][0] <= cycle
            ctx.set(fetch.resp.valid, due)
            if due:
                ctx.set(Value.cast(fetch.resp.payload), pending[0][1] | pending[0][2] << word_bits)
            readies = {}
            for name, port in units.items():
                state = busy[name]
                finishing = state is not None and state[0] == 0
                ctx.set(port.done, finishing)
                readies[name] = state is None and not rng.random() < self.stall
                ctx.set(port.cmd.ready, readies[name])
            ctx.set(dut.sync.flags, self.flags)
            got = await ctx.tick().sample(*samples)
            (req_valid, req_pc, resp_ready, s_set, s_clear, soft,
             c_valid, c_ready, c_payload) = got[2:11]
            rest = got[11:]
            # --- fetch ---
            if due and resp_ready:
                pending.popleft()
            if req_valid and req_ready:
                at = cycle + self.fetch_latency + int(rng.integers(0, self.fetch_jitter + 1))
                if pending:
                    at = max(at, pending[-1][0])
                pending.append([at, *self._fetch_word(req_pc)])
            # --- units ---
            for k, name in enumerate(UNIT_PORTS):
                valid, payload = rest[2 * k], rest[2 * k + 1]
                state = busy[name]
                if state is not None:
                    if state[0] == 0:
                        self.units[name][state[1]][2] = cycle
                        busy[name] = None
                    else:
                        state[0] -= 1
                if valid and readies[name]:
                    self.units[name].append([payload, cycle, None])
                    busy[name] = [int(rng.integers(self.unit_min_delay, self.unit_delay)),
                                  len(self.units[name]) - 1]
            if soft:  # the engine top resets the units and the fetch unit with the dispatcher
                busy = dict.fromkeys(UNIT_PORTS)
                pending.clear()
            # --- sync flags: the SoC register ---
            self.flags = (self.flags | s_set) & ~s_clear & M32
            # --- checker inputs, trace events ---
            if c_valid and c_ready:
                self.checks.append(c_payload)
            for k, name in enumerate(TRACE_SOURCES):
                valid, event = rest[2 * len(UNIT_PORTS) + 2 * k:2 * len(UNIT_PORTS) + 2 * k + 2]
                if valid:
                    ev = _unpack(TRACE_EVENT, event)
                    self.events[name].append((cycle, ev["kind"], ev["payload"], ev["unit"]))
            cycle += 1
            self.cycle = cycle

    def _fetch_word(self, pc: int) -> tuple[int, int]:
        addr = self.program_addr + pc * INSTRUCTION_BYTES
        lo, hi = self.window
        if addr < lo or addr + INSTRUCTION_BYTES > hi or addr + INSTRUCTION_BYTES > self.image.size:
            return 0, 1
        return int.from_bytes(self.image[addr:addr + INSTRUCTION_BYTES].tobytes(), "little"), 0

    # ----- running ------------------------------------------------------------------------

    def load(self, words: list[int] | bytes, addr: int | None = None) -> None:
        """Put a program image into the fetch model's and the Machine's DRAM."""
        if not isinstance(words, bytes | bytearray):
            words = b"".join(w.to_bytes(INSTRUCTION_BYTES, "little") for w in words)
        addr = self.program_addr if addr is None else addr
        self.program_addr = addr
        blob = np.frombuffer(bytes(words), np.uint8)
        self.image[addr:addr + blob.size] = blob
        self.machine.dram[addr:addr + blob.size] = blob

    def expect(self, budget: int = 0) -> Expected:
        """Run the loaded program on the ISA simulator."""
        m = self.machine
        resolves: list[tuple[Opcode, dict[str, Any]]] = []
        original = m._resolve

        def recording(ins):
            f = original(ins)
            resolves.append((ins.opcode, f))
            return f

        m._resolve = recording
        try:
            m.start(self.program_addr, self.window, cycle_budget=budget,
                    trace_mode=TraceMode.ALL)
            m.run(max_instructions=200_000)
        finally:
            del m._resolve
        st = m.state
        assert st.stopped, "the ISA simulator did not stop"
        done = st.timeline  # (pc, queue, start, end) of every dispatched queue instruction
        per_queue: dict[Queue, list] = {q: [] for q in Queue}
        checked = []
        for (pc, q, _, _), (op, f) in zip(done, resolves, strict=False):
            per_queue[q].append((pc, op, f))
            checked.append((pc, op, f))
        if st.error in CHECKER_ERRORS and self._opcode_at(st.error_pc) in QUEUE_OPCODES:
            checked.append((st.error_pc, *resolves[len(done)]))
        events = [(e.kind, e.payload) for e in st.events if e.unit == 15]
        return Expected(st.halted, st.error, st.error_pc, st.halt_code, st.instret,
                        list(m.gpr), [dict(e) for e in m.epi], m.sync_flags,
                        per_queue, checked, events)

    def _opcode_at(self, pc: int) -> Opcode | None:
        addr = self.program_addr + pc * INSTRUCTION_BYTES
        try:
            return Opcode(int(self.image[addr]) & 0x3F)
        except (ValueError, IndexError):
            return None

    def reset_log(self) -> None:
        self.units = {name: [] for name in UNIT_PORTS}
        self.checks = []
        self.events = {name: [] for name in TRACE_SOURCES}

    async def start_run(self, ctx, *, budget: int = 0, fail_index: int = M32,
                        fail_code: ErrorCode = ErrorCode.NONE) -> int:
        """Pulse START (the dispatcher must be idle); returns the start cycle."""
        dut = self.dut
        self.reset_log()
        if isinstance(self.checker, StandInChecker):
            base = ctx.get(self.checker.count)
            ctx.set(self.checker.fail_index,
                    (base + fail_index) & M32 if fail_index != M32 else M32)
            ctx.set(self.checker.fail_code, fail_code)
        ctx.set(dut.control.window_base, self.window[0])
        ctx.set(dut.control.window_limit, self.window[1])
        ctx.set(dut.control.program_addr, self.program_addr)
        ctx.set(dut.control.cycle_budget, budget)
        ctx.set(dut.control.start, 1)
        await ctx.tick()
        ctx.set(dut.control.start, 0)
        return self.cycle

    async def wait_idle(self, ctx, limit: int) -> int:
        for n in range(limit):
            if not ctx.get(self.dut.status.busy):
                return n
            await ctx.tick()
        raise AssertionError(f"the dispatcher is still busy after {limit} cycles")

    async def observe(self, ctx, start_cycle: int) -> Observed:
        dut = self.dut
        status = {name: ctx.get(getattr(dut.status, name)) for name, _ in dut.status.shape()}
        status["error_code"] = ErrorCode(ctx.get(dut.status.error_code.as_value()))
        gprs = []
        for i in range(self.config.gprs):
            ctx.set(dut.gpr.index, i)
            gprs.append(ctx.get(dut.gpr.rdata))
        epi = []
        for i in range(len(dut.epi)):
            e = dut.epi[i]
            epi.append({"act": ctx.get(e.act.as_value()),
                        **{n: ctx.get(e[n]) for n in ("scale", "a", "b", "c", "d")}})
        units = {name: [tuple(x) for x in log] for name, log in self.units.items()}
        layout = check_in_layout(self.config)
        addr = layout["addr"]
        width = addr.shape.elem_shape.width
        checks = []
        for payload in self.checks:
            c = _unpack(layout, payload)
            checks.append((c["word"], [(c["addr"] >> (i * width)) & ((1 << width) - 1)
                                       for i in range(addr.shape.length)]))
        return Observed(status, gprs, epi, self.flags, units, checks,
                        {k: list(v) for k, v in self.events.items()},
                        self.cycle - start_cycle)

    async def set_gprs(self, ctx, values: dict[int, int]) -> None:
        """Host writes through the GPR port (only while idle), mirrored into the Machine."""
        for index, value in values.items():
            ctx.set(self.dut.gpr.index, index)
            ctx.set(self.dut.gpr.wdata, value)
            ctx.set(self.dut.gpr.we, 1)
            await ctx.tick()
            if index:
                self.machine.gpr[index] = value & M32
        ctx.set(self.dut.gpr.we, 0)

    async def run(self, ctx, program, *, budget: int = 0, limit: int = 20000,
                  check: bool = True) -> tuple[Expected, Observed]:
        """Load ``program`` (a ``Program``, bytes or words), run it on both, compare."""
        if hasattr(program, "encode"):
            program = program.encode()
        self.load(program)
        exp = self.expect(budget)
        dispatched = sum(len(v) for v in exp.resolved.values())
        fail = dispatched if len(exp.checked) > dispatched else M32
        start = await self.start_run(ctx, budget=budget, fail_index=fail,
                                     fail_code=exp.error if fail != M32 else ErrorCode.NONE)
        await self.wait_idle(ctx, limit)
        obs = await self.observe(ctx, start)
        self.machine.sync_flags = self.flags
        if check:
            compare(self, exp, obs, budget=bool(budget))
        return exp, obs

    def simulate(self, bench) -> None:
        """Run ``bench(ctx)`` (an async testbench using this object) to completion."""
        self.reset_log()
        self.cycle = 0
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_process(self.environment)
        sim.add_testbench(bench)
        sim.run()


def compare(bench: DispatchBench, exp: Expected, obs: Observed, *, budget: bool = False) -> None:
    """Everything observable of the RTL run ``obs`` against the ISA simulator's ``exp``."""
    isa = bench.isa
    st = obs.status
    assert not st["busy"]
    assert (st["error_code"], st["error"], st["halted"]) == \
        (exp.error, int(exp.error is not ErrorCode.NONE), int(exp.halted)), \
        f"RTL stopped with {st['error_code']!r} at {st['error_pc']}, " \
        f"the ISA simulator with {exp.error!r} at {exp.error_pc}"
    if not budget:
        assert st["error_pc"] == (exp.error_pc if exp.error is not ErrorCode.NONE else 0)
        assert st["instret"] == exp.instret
    assert st["halt_code"] == (exp.halt_code if exp.halted else 0)
    assert obs.gpr == exp.gpr, _diff("GPR", obs.gpr, exp.gpr)
    exp_epi = [{"act": e["act"].value, **{n: e[n] for n in ("scale", "a", "b", "c", "d")}}
               for e in exp.epi]
    assert obs.epi == exp_epi
    assert obs.sync_flags == exp.sync_flags
    # the queue instructions each unit received, in order, resolved like the simulator
    for q in Queue:
        ports = [p for p in UNIT_PORTS if QUEUE_OF_PORT[p] is q]
        got = sorted((x for p in ports for x in obs.units[p]), key=lambda x: x[1])
        want = exp.resolved[q]
        assert len(got) == len(want), f"{q.name}: {len(got)} instructions, expected {len(want)}"
        for entry, (pc, op, f) in zip(got, want, strict=True):
            word, _, done = entry
            assert done is not None, f"{q.name}: instruction {pc} never finished"
            assert raw_fields(isa, op, word) == expected_word_fields(isa, op, f), \
                f"{q.name} instruction at pc {pc}"
            if q is Queue.VECTOR:
                move = f["op"].name in ("QUANTIZE", "DEQUANTIZE", "TRANSPOSE")
                assert entry in obs.units["vector_move" if move else "vector"]
        # START / END events carry the pcs in order; busy cycles add up
        pcs = [pc for pc, _, _ in want]
        starts = [p for _, k, p, _ in obs.events[f"{q.name.lower()}_start"]]
        ends = [p for _, k, p, _ in obs.events[f"{q.name.lower()}_end"]]
        assert starts == pcs and ends == pcs, f"{q.name} trace events"
        assert st[f"{q.name.lower()}_busy"] == sum(d - a for _, a, d in got)
    # the checker saw the effective addresses of every instruction that reached it
    assert len(obs.checks) == len(exp.checked)
    for (word, addr), (pc, op, f) in zip(obs.checks, exp.checked, strict=True):
        groups = address_groups(isa, op)
        assert addr[:len(groups)] == [f[g] for g in groups], f"addresses of pc {pc}"
        assert word & 0x3F == op.value
    # dispatcher events: markers, halt, error
    got_events = [(TraceKind(k), p) for _, k, p, _ in obs.events["dispatcher"]]
    want_events = [(k, p) for k, p in exp.dispatcher_events]
    if not budget:  # (with a budget, the RTL and the model stop after different work)
        assert got_events == want_events
    assert all(u == 15 for *_, u in obs.events["dispatcher"])
    assert st["cycles"] == obs.cycles or st["cycles"] + 1 == obs.cycles


def _diff(what: str, got: list[int], want: list[int]) -> str:
    bad = [f"{what}{i}: got {g:#x}, expected {w:#x}" for i, (g, w) in
           enumerate(zip(got, want, strict=True)) if g != w]
    return "; ".join(bad[:6])
