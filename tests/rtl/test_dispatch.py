"""The Dispatcher against the ISA simulator (``host.isasim.Machine``), program by program.

Every program runs on the RTL (stand-in units, fetch unit, sync register and operand checker
from ``dispatchbench``) and on ``Machine``; ``dispatchbench.compare`` then checks the stop
reason, error pc, halt code, instret, all GPRs, the EPI table, the sync flags, the resolved
words every unit received (in order, on the right unit), the effective addresses given to the
checker, the trace events and the busy counters.  Each test runs several programs in one
simulation, so every test also restarts the dispatcher after halts and errors.
"""

from __future__ import annotations

import random
import struct

import pytest
from dispatchbench import UNIT_PORTS, DispatchBench

from unified_engine import EngineConfig
from unified_engine.asm import Addr, Program, gpr
from unified_engine.isa import (
    INSTRUCTION_BYTES,
    QUEUE_OPCODES,
    TOKEN_FIFO_DEPTH,
    ActKind,
    AluOp,
    ArOp,
    JumpCond,
    JumpMode,
    Opcode,
    Queue,
    VecOp,
    isa_for,
)
from unified_engine.regs import ErrorCode

SMALL = EngineConfig.preset("sim_small")
WIDE = EngineConfig(rows=2, cols=2, pe_interleave=2, lanes=4, axi_data_width=64,
                    axi_addr_width=40, scratchpad_bytes=16 * 1024, accumulator_bytes=4096,
                    bias_bytes=1024, scale_bytes=1024, gprs=8, address_registers=4)
M32 = 0xFFFFFFFF
CORNERS = [0, 1, 2, 31, 32, 33, 0x7FFFFFFF, 0x80000000, 0x80000001, M32, M32 - 1, 0x12345678]


def r(i: int):
    return gpr(i)


def words(program: Program) -> list[int]:
    blob = program.encode()
    return [int.from_bytes(blob[i:i + INSTRUCTION_BYTES], "little")
            for i in range(0, len(blob), INSTRUCTION_BYTES)]


def run_all(config: EngineConfig, steps, **bench_kw) -> tuple[DispatchBench, list]:
    """Run ``steps`` in one simulation: each a program (bytes, words or ``Program``), a
    ``(program, options)`` pair for ``DispatchBench.run``, or an ``async f(ctx, bench)``."""
    bench = DispatchBench(config, **bench_kw)
    results = []

    async def testbench(ctx):
        for step in steps:
            if callable(step):
                results.append(await step(ctx, bench))
                continue
            program, options = step if isinstance(step, tuple) else (step, {})
            results.append(await bench.run(ctx, program, **options))

    bench.simulate(testbench)
    return bench, results


# ----- scalar instructions ----------------------------------------------------------------


def alu_programs(config: EngineConfig, seed: int) -> list[Program]:
    rng = random.Random(seed)
    cases = [(op, a, b) for op in AluOp for a, b in
             [(rng.choice(CORNERS), rng.choice(CORNERS)) for _ in range(3)]]
    cases += [(op, a, 0) for op in (AluOp.DIVU, AluOp.REMU) for a in (0, 7, M32)]
    cases += [(AluOp.MULHU, M32, M32), (AluOp.MUL, M32, M32), (AluOp.SRA, 0x80000000, 31),
              (AluOp.SHL, 1, 32 + 31), (AluOp.DIVU, M32, 1), (AluOp.REMU, 100, 7)]
    rng.shuffle(cases)
    slow = (AluOp.MUL, AluOp.MULHU, AluOp.DIVU, AluOp.REMU)
    programs = []
    top = config.gprs - 1
    while cases:
        p = Program(config)
        dst = 3
        divs = 0
        while cases and dst <= top:
            op, a, b = cases.pop()
            divs += op in slow
            p.li(r(1), a)
            if rng.random() < 0.5:
                p.alu(op, r(dst), r(1), b)  # immediate form
            else:
                p.li(r(2), b)
                p.alu(op, r(dst), r(1), r(2))
            dst += 1
        p.alu("add", r(0), r(1), 5)  # writes to r0 are dropped
        p.alu("or", r(2), r(0), r(0))  # r0 reads 0
        p.halt(dst)
        programs.append(p)
    return programs


def test_alu_ops_and_corner_values():
    run_all(SMALL, alu_programs(SMALL, seed=1))


def control_flow_program(config: EngineConfig) -> Program:
    p = Program(config)
    p.li(r(1), 0)
    p.li(r(2), -3 & M32)
    p.li(r(3), 5)
    # every condition, taken and not taken, on negative, zero and positive values
    for rs in (r(1), r(2), r(3)):
        for cond in JumpCond:
            label = f"c{p.here}"
            p.jump(label, cond, rs=rs if cond is not JumpCond.ALWAYS else None)
            p.add(r(4), r(4), 1)  # counts not-taken jumps
            p.label(label)
    # absolute jump, register jump with a negative offset, call / return with link
    p.li(r(5), p.here + 5)
    p.jump(r(5))  # to the instruction after the next three
    p.add(r(6), r(6), 100)
    p.add(r(6), r(6), 100)
    p.add(r(6), r(6), 100)
    p.call("sub", link=r(7))
    p.add(r(6), r(6), 1)
    p.jump("after_sub")
    p.label("sub")
    p.add(r(6), r(6), 10)
    p.ret(r(7))
    p.label("after_sub")
    # nested counted loops, and a GPR-counted loop that runs zero times
    with p.loop(3), p.loop(2):
        p.add(r(8), r(8), 1)
    p.li(r(9), 0)
    with p.loop(r(9)):
        p.add(r(8), r(8), 1000)
    p.li(r(9), 4)
    with p.loop(r(9), counter=r(10)):
        p.add(r(11), r(11), r(10))
    p.jump(p.here + 2, relative=False)  # ABS
    p.halt(1)
    p.halt(2)
    return p


def reg_jump_words(config: EngineConfig) -> list[int]:
    """JUMP REG with a negative offset, and a backward REL jump (not expressible in
    ``Program``'s helpers)."""
    isa = isa_for(config)
    p = Program(config)
    p.li(r(5), 5)
    head = words(p)
    jump = isa.encode(isa.make(Opcode.JUMP, mode=JumpMode.REG, rt=5, offset=-2, link=6))
    tail = Program(config)
    tail.halt(1)  # 2: skipped
    tail.add(r(7), r(7), 1)  # 3: the target (5 - 2)
    tail.li(r(1), 2)
    tail.sub(r(1), r(1), 1)  # 5
    tail.bnez(r(1), 5)  # 6: backward to 5 (ABS) ...
    body = words(tail)
    back = isa.encode(isa.make(Opcode.JUMP, cond=JumpCond.GTZ, mode=JumpMode.REL, rs=1,
                               offset=-3))  # 7: ... and REL -3 → 4 while r1 > 0
    return [*head, jump, *body, back, isa.encode(isa.make(Opcode.HALT, code=3))]


def test_jumps_loops_and_links():
    run_all(SMALL, [control_flow_program(SMALL), reg_jump_words(SMALL)])


# ----- address registers, overrides, queue instructions -------------------------------------


def _zero_size(rng: random.Random, kind: str, p: Program, **extra):
    """A queue instruction that moves no data (so the simulator never faults on it)."""
    groups = {"load": ("dram", "sram"), "store": ("dram", "sram"),
              "matmul": ("a", "b", "dst"), "vector": ("dst",)}[kind]
    for g in groups:
        extra.setdefault(g, 0)
    if kind == "load" or kind == "store":
        getattr(p, kind)(rows=0 if rng.random() < 0.5 else rng.randrange(1 << 20),
                         row_bytes=0, dram_stride=rng.getrandbits(32),
                         sram_stride=rng.getrandbits(24), mem=rng.choice(["scratchpad", "bias"]),
                         **extra)
    elif kind == "matmul":
        p.matmul(k=rng.randrange(1 << 20), m_tiles=0, n_tiles=rng.randrange(1 << 16),
                 acc=rng.randrange(isa_for(p.config).widths.acc_tiles),
                 epi=rng.randrange(16), dst_pitch=rng.randrange(1 << 20), **extra)
    else:
        op = rng.choice(list(VecOp))
        p.vector(op.name.lower(), length=rng.randrange(1 << 20), rows=0,
                 imm=rng.getrandbits(32), src0_stride=rng.randrange(8), **extra)


def _addr(rng: random.Random, config: EngineConfig, space: str) -> int | Addr:
    isa = isa_for(config)
    top = {"dram": (1 << isa.widths.dram) - 1, "spad": isa.widths.spad_rows - 1,
           "sram": min(isa.widths.bias_entries, isa.widths.spad_rows) - 1}[space]
    imm = rng.choice([0, top, rng.randrange(top + 1)])
    ar = rng.randrange(config.address_registers)
    if ar == 0:
        return imm
    return Addr(imm, ar=ar, inc=rng.random() < 0.6)


def resolve_program(config: EngineConfig, seed: int) -> Program:
    """AREG in every form, then queue instructions with address registers (several groups
    on one register), post-increments and GPR overrides of every overridable field."""
    rng = random.Random(seed)
    isa = isa_for(config)
    mask = (1 << isa.widths.dram) - 1
    p = Program(config)
    nar = config.address_registers
    # a negative GPR: INC_GPR sign-extends it, SET_GPR / ADD_GPR zero-extend it
    p.li(r(1), -8 & M32)
    p.ar_inc_gpr(1, r(1), 0)
    p.ar_set_gpr(1, r(1), 0x10)
    p.ar_add_gpr(1, r(1), 0)
    for _ in range(2):
        p.load(dram=Addr(0, ar=1, inc=True), sram=Addr(0, ar=1, inc=True), row_bytes=0,
               rows=0)
    for g in range(1, config.gprs):
        p.li(r(g), rng.choice([0, 1, 5, 0x40, M32, 0x80000000, rng.getrandbits(32)]))
    for ar in range(1, nar):
        p.ar_set(ar, value=rng.choice([0, mask, rng.getrandbits(isa.widths.dram)]),
                 inc=rng.choice([-64 & mask, 32, mask, rng.getrandbits(isa.widths.dram)]))
    for _ in range(3):
        ar = rng.randrange(1, nar)
        src = r(rng.randrange(config.gprs))
        imm = rng.getrandbits(isa.widths.dram)
        form = rng.randrange(3)
        if form == 0:
            p.ar_set_gpr(ar, src, imm)
        elif form == 1:
            p.ar_add_gpr(ar, src, imm)
        else:
            p.ar_inc_gpr(ar, src, imm)
    zero = r(config.gprs - 1)
    p.li(zero, 0)
    for _ in range(24):
        kind = rng.choice(["load", "store", "matmul", "vector"])
        op = {"load": Opcode.LOAD, "store": Opcode.STORE, "matmul": Opcode.MATMUL,
              "vector": Opcode.VECTOR}[kind]
        extra = {}
        if kind in ("load", "store"):
            extra["dram"] = _addr(rng, config, "dram")
            extra["sram"] = _addr(rng, config, "sram")
        elif kind == "matmul":
            for g in ("a", "b", "dst", "rmax"):
                extra[g] = _addr(rng, config, "spad")
        else:
            for g in ("src0", "src1", "dst"):
                extra[g] = _addr(rng, config, "spad")
        if rng.random() < 0.6:
            fields = [f for f in isa.overridable(op)]
            f = rng.choice(fields)
            size = f.path in ("rows", "row_bytes", "m_tiles", "length")
            reg = zero if size else r(rng.randrange(1, config.gprs - 1))
            if not size:  # a value that fits (FIELD_OVERFLOW has its own test)
                high = min(f.high, M32)
                p.li(reg, rng.choice([0, high, rng.randrange(high + 1)]))
            path = f.path[:-4] if f.path.endswith(".imm") else f.path
            extra["override"] = (path, reg)
        _zero_size(rng, kind, p, **extra)
        if rng.random() < 0.3:
            ar = rng.randrange(1, nar)
            p.ar_add_gpr(ar, r(rng.randrange(config.gprs)), rng.getrandbits(8))
    p.halt(3)
    return p


def ar0_words(config: EngineConfig) -> list[int]:
    """AREG on AR0 is dropped and AR0 never post-increments (raw words: the assembler refuses
    both)."""
    isa = isa_for(config)

    def load(**values):
        return isa.encode(isa.make(Opcode.LOAD, **values))

    return [
        isa.encode(isa.make(Opcode.AREG, op=ArOp.SET, ar=0, value=0x1234, inc=8)),
        isa.encode(isa.make(Opcode.AREG, op=ArOp.SET, ar=2, value=0x100, inc=8)),
        load(**{"dram.imm": 4, "dram.ar": 0, "dram.inc": 1}),
        load(**{"dram.imm": 4, "dram.ar": 0, "dram.inc": 1, "sram.ar": 2, "sram.inc": 1}),
        load(**{"dram.imm": 4, "dram.ar": 2, "dram.inc": 0, "sram.ar": 2, "sram.inc": 1}),
        isa.encode(isa.make(Opcode.HALT)),
    ]


@pytest.mark.parametrize("config", [SMALL, WIDE], ids=["small", "wide"])
def test_address_registers_overrides_and_resolve(config):
    run_all(config, [ar0_words(config)] + [resolve_program(config, seed) for seed in range(3)],
            seed=5)


def test_vector_routing_and_all_queues():
    p = Program(SMALL)
    for op in VecOp:
        p.vector(op.name.lower(), dst=op.value, length=3, rows=0)
    p.load(dram=0x100, sram=1, row_bytes=0, rows=0)
    p.matmul(a=1, b=2, dst=3, k=0, m_tiles=0)
    p.store(dram=0x200, sram=4, row_bytes=0, rows=0)
    p.halt()
    _bench, [(_, obs)] = run_all(SMALL, [p])
    moved = [w & 0x3F for w, *_ in obs.units["vector_move"]]
    assert len(obs.units["vector_move"]) == 3 and len(obs.units["vector"]) == len(VecOp) - 3
    assert set(moved) == {Opcode.VECTOR.value}


def test_full_queue_stalls_dispatch():
    """Slow units: the LOAD queue fills up (QUEUE_DEPTH waiting + one executing) and the
    dispatcher waits for a slot, while other work continues."""
    p = Program(SMALL)
    for i in range(14):
        p.load(dram=0x40 * i, sram=i, row_bytes=0, rows=0)
    p.add(r(1), r(1), 1)
    p.store(dram=0, sram=0, row_bytes=0, rows=0)
    p.halt()
    _, [(_, obs)] = run_all(SMALL, [p], unit_min_delay=25, unit_delay=30, stall=0.0)
    assert obs.status["dispatch_stall"] > 4 * 25
    assert obs.status["load_busy"] >= 14 * 25


# ----- tokens ---------------------------------------------------------------------------------


def pipeline_program(config: EngineConfig, iterations: int) -> Program:
    """The VTA idiom: LOAD → MATMUL → VECTOR → STORE with buffer-free tokens back."""
    p = Program(config)
    p.ar_set(1, value=0x1000, inc=64)
    p.token("array", "load")
    p.token("array", "load")
    p.token("store", "vector")
    with p.loop(iterations):
        p.load(dram=Addr(ar=1, inc=True), sram=0, row_bytes=0, rows=0, wait="array",
               signal="array")
        p.matmul(a=0, b=0, dst=0, k=0, m_tiles=0, wait="load", signal=["load", "vector"])
        p.vector("exp", dst=0, length=0, wait=["array", "store"], signal="store")
        p.store(dram=Addr(8, ar=1), sram=0, row_bytes=0, rows=0, wait="vector",
                signal="vector")
    p.halt(4)
    return p


def _token_order_ok(obs, program_words, isa):
    """Runtime tokens: the k-th pop of a channel starts after the k-th push has finished."""
    # (pc order per queue) → accept/done cycles from the unit logs
    per_queue = {q: sorted((x for p in UNIT_PORTS if p.startswith(q.name.lower())
                            for x in obs.units[p]), key=lambda x: x[1]) for q in Queue}
    cursor = dict.fromkeys(Queue, 0)
    pushes: dict[tuple[Queue, Queue], list[int]] = {}
    pops: dict[tuple[Queue, Queue], list[int]] = {}
    for _pc, word in program_words:
        op = Opcode(word & 0x3F)
        q = QUEUE_OPCODES[op]
        _, accept, done = per_queue[q][cursor[q]]
        cursor[q] += 1
        ins = isa.decode(word)
        for other in Queue:
            if ins["wait"] >> other.value & 1:
                pops.setdefault((other, q), []).append(accept)
            if ins["signal"] >> other.value & 1:
                pushes.setdefault((q, other), []).append(done)
    for channel, accepts in pops.items():
        for k, accept in enumerate(accepts):
            assert accept > pushes[channel][k], f"channel {channel}: pop {k} too early"


def test_tokens_order_the_queues():
    config = SMALL
    isa = isa_for(config)
    p = pipeline_program(config, 6)
    _bench, [(exp, obs)] = run_all(config, [p], unit_delay=12, stall=0.3, seed=2)
    # the dispatched queue instructions in program order, from the simulator
    ws = words(p)
    dispatched = [(pc, ws[pc]) for pc, *_ in exp.checked]
    _token_order_ok(obs, dispatched, isa)
    assert sum(obs.status[f"{q}_stall"] for q in ("load", "array", "vector", "store")) > 0


def test_token_underflow_and_overflow():
    config = SMALL
    under = Program(config)
    under.token("load", "store")
    under.store(dram=0, sram=0, row_bytes=0, rows=0, wait="load")
    under.store(dram=0, sram=0, row_bytes=0, rows=0, wait="load")  # nothing left: underflow
    under.halt()
    # a channel holds TOKEN_FIFO_DEPTH; the extra push faults even though the units are fast
    over = Program(config)
    with over.loop(TOKEN_FIFO_DEPTH + 1):
        over.token("vector", "array")
    over.halt()
    drained = Program(config)  # popping in between keeps the channel below its depth
    with drained.loop(TOKEN_FIFO_DEPTH + 4):
        drained.token("vector", "array")
        drained.matmul(a=0, b=0, dst=0, k=0, m_tiles=0, wait="vector")
    drained.halt(5)
    _, results = run_all(config, [under, over, drained], unit_delay=3)
    assert [exp.error for exp, _ in results] == [ErrorCode.TOKEN_UNDERFLOW,
                                                 ErrorCode.TOKEN_OVERFLOW, ErrorCode.NONE]


# ----- errors, budget, sync, EPI --------------------------------------------------------------


def _epi_word(config, **values) -> int:
    isa = isa_for(config)
    for k in ("scale", "a", "b", "c", "d"):
        v = values.get(k, 0.0)
        if isinstance(v, float):
            values[k] = struct.unpack("<I", struct.pack("<f", v))[0]
    return isa.encode(isa.make(Opcode.EPI, **values))


def error_programs(config: EngineConfig) -> list:
    isa = isa_for(config)
    steps = []
    # FIELD_OVERFLOW (rows is 20 bits), after a fitting override at the field's maximum
    p = Program(config)
    p.li(r(1), (1 << 20) - 1)
    p.li(r(2), 0)
    p.load(dram=0, sram=0, row_bytes=0, rows=0, override=("dram_stride", r(1)))
    p.vector("copy", dst=0, length=0, rows=0, override=("src0", r(1)))  # past the spad rows
    p.halt()
    steps.append(p)
    # ILLEGAL_INSTRUCTION: a reserved bit, then opcode 0
    p = Program(config)
    p.li(r(3), 9)
    p.nop()
    p.halt()
    ws = words(p)
    steps.append([*ws[:2], ws[1] | 1 << 255, *ws[2:]])
    steps.append([*ws[:1], 0])
    # ILLEGAL_OPERAND from EPI: non-finite UNIFIED, CLAMP a > b, NaN, -0/+0 and subnormals
    inf, nan, tiny = float("inf"), float("nan"), 1e-40
    good = [_epi_word(config, index=1, act=ActKind.UNIFIED, scale=2.0, a=1.0, b=1.702, c=0.5),
            _epi_word(config, index=2, act=ActKind.CLAMP, a=-0.0, b=0.0),
            _epi_word(config, index=3, act=ActKind.CLAMP, a=tiny, b=0.0),
            _epi_word(config, index=15, act=ActKind.CLAMP, a=-inf, b=inf)]
    halt_word = isa.encode(isa.make(Opcode.HALT, code=6))
    for bad in (_epi_word(config, index=4, act=ActKind.UNIFIED, d=inf),
                _epi_word(config, index=4, act=ActKind.UNIFIED, b=nan),
                _epi_word(config, index=4, act=ActKind.CLAMP, a=2.0, b=1.0),
                _epi_word(config, index=4, act=ActKind.CLAMP, a=nan, b=1.0),
                _epi_word(config, index=4, act=ActKind.CLAMP, a=0.0, b=-0.0),
                _epi_word(config, index=4, act=ActKind.CLAMP, a=tiny, b=-0.0)):
        steps.append([*good, bad, halt_word])
    # SYNC: SET then a satisfied WAIT, CLEAR, then a WAIT that times out
    p = Program(config)
    p.sync("set", mask=0x0000_00F0)
    p.sync("wait", mask=0xF0, value=0xF0, timeout=0)
    p.sync("clear", mask=0x0000_0030)
    p.sync("wait", mask=0xF0, value=0xC0)
    p.sync("wait", mask=0x1, value=0x1, timeout=7)
    p.halt()
    steps.append(p)
    # a checker error (the simulator's DMA_OUT_OF_WINDOW) after dispatched work
    p = Program(config)
    p.token("load", "store")
    p.store(dram=0, sram=0, row_bytes=0, rows=0, wait="load")
    p.load(dram=0xFFFF_FF00, sram=0, row_bytes=64, rows=2)
    p.halt()
    steps.append(p)
    return steps


def test_error_codes_and_restart():
    config = SMALL
    _, results = run_all(config, error_programs(config))
    codes = [exp.error for exp, _ in results]
    assert codes == [ErrorCode.FIELD_OVERFLOW, ErrorCode.ILLEGAL_INSTRUCTION,
                     ErrorCode.ILLEGAL_INSTRUCTION] + [ErrorCode.ILLEGAL_OPERAND] * 6 + \
        [ErrorCode.SYNC_TIMEOUT, ErrorCode.DMA_OUT_OF_WINDOW]


def test_fetch_window_program_address_and_prefetch():
    """A program placed at 0x400 in a window that ends right after it: a HALT on the last
    word halts (the prefetches past it are out of the window); running off the end faults."""
    config = SMALL
    p = Program(config)
    p.li(r(1), 11)
    with p.loop(2):
        p.add(r(2), r(2), r(1))
    p.halt(8)
    ws = words(p)
    falls_off = Program(config)
    falls_off.li(r(3), 1)
    falls_off.nop()

    def at(program_words, addr):
        async def step(ctx, bench):
            bench.program_addr = addr
            bench.window = (addr, addr + len(program_words) * INSTRUCTION_BYTES)
            result = await bench.run(ctx, program_words)
            bench.window = (0, bench.dram.size)
            return result
        return step

    _, results = run_all(config, [at(ws, 0x400), at(words(falls_off), 0x800)])
    assert results[0][0].halted and results[0][1].status["halt_code"] == 8
    assert results[1][0].error is ErrorCode.FETCH_OUT_OF_WINDOW
    assert results[1][1].status["error_pc"] == 2


def test_cycle_budget():
    config = SMALL
    spin = Program(config)
    spin.li(r(1), 1)
    spin.label("top")
    spin.trace(5)
    spin.jump("top")
    slow_halt = Program(config)  # the budget passes while HALT waits for a long VECTOR
    slow_halt.vector("copy", dst=0, length=0, rows=0)
    slow_halt.halt()
    _, results = run_all(config, [(spin, {"budget": 300}), (slow_halt, {"budget": 20})],
                         unit_min_delay=30, unit_delay=40)
    (_, spin_obs), (_, halt_obs) = results
    assert spin_obs.status["error_code"] is ErrorCode.CYCLE_BUDGET
    assert spin_obs.status["error_pc"] in (1, 2)
    assert 300 < spin_obs.status["cycles"] < 300 + 60
    assert halt_obs.status["error_code"] is ErrorCode.CYCLE_BUDGET
    assert halt_obs.status["error_pc"] == 1


# ----- run control: soft reset, host GPR access ----------------------------------------------


def test_soft_reset_mid_run_and_gpr_port():
    config = SMALL
    long = Program(config)
    long.li(r(4), 77)
    long.ar_set(1, value=0x40, inc=8)
    with long.loop(1000):
        long.load(dram=Addr(ar=1, inc=True), sram=0, row_bytes=0, rows=0, signal="store")
        long.alu("divu", r(5), r(4), 3)
        long.store(dram=0, sram=0, row_bytes=0, rows=0, wait="load")
    long.halt()
    after = Program(config)
    after.ar_set(1, value=0x80, inc=16)
    after.load(dram=Addr(ar=1, inc=True), sram=0, row_bytes=0, rows=0, signal="store")
    after.store(dram=0, sram=0, row_bytes=0, rows=0, wait="load")
    after.alu("add", r(6), r(4), r(5))
    after.halt(12)

    async def abort(ctx, bench):
        dut = bench.dut
        bench.load(long.encode())
        await bench.set_gprs(ctx, {3: 0xABCD, 0: 5})
        await bench.start_run(ctx)
        for _ in range(150):
            await ctx.tick()
        assert ctx.get(dut.status.busy)
        # START while busy is ignored (the cycle counter keeps counting)
        before = ctx.get(dut.status.cycles)
        ctx.set(dut.control.start, 1)
        await ctx.tick()
        ctx.set(dut.control.start, 0)
        assert ctx.get(dut.status.cycles) == before + 1 and ctx.get(dut.status.busy)
        # the host cannot write GPRs while a program runs
        ctx.set(dut.gpr.index, 3)
        ctx.set(dut.gpr.wdata, 1)
        ctx.set(dut.gpr.we, 1)
        await ctx.tick()
        ctx.set(dut.gpr.we, 0)
        ctx.set(dut.control.soft_reset, 1)
        await ctx.tick()
        ctx.set(dut.control.soft_reset, 0)
        assert not ctx.get(dut.status.busy)
        for name in ("halted", "error", "error_pc", "halt_code"):
            assert ctx.get(getattr(dut.status, name)) == 0
        await ctx.tick().repeat(3)
        assert all(not ctx.get(getattr(dut, p).cmd.valid) for p in UNIT_PORTS)
        gprs = []
        for i in range(config.gprs):
            ctx.set(dut.gpr.index, i)
            gprs.append(ctx.get(dut.gpr.rdata))
        assert gprs[0] == 0 and gprs[3] == 0xABCD and gprs[4] == 77
        assert gprs[5] in (0, 25)
        bench.machine.gpr = gprs  # the run was cut short: continue from the RTL's registers
        return gprs

    _, results = run_all(config, [abort, after, after], unit_delay=20)
    assert results[1][1].status["halt_code"] == 12
    assert results[1][1].gpr[6] == 77 + results[0][5]


# ----- random programs ------------------------------------------------------------------------


def random_program(config: EngineConfig, seed: int, length: int = 60) -> Program:
    """Random straight-line code with short forward jumps and loops, mixing every
    dispatcher instruction with zero-size queue instructions and consistent tokens."""
    rng = random.Random(seed)
    isa = isa_for(config)
    p = Program(config)
    pushed: dict[tuple[str, str], int] = {}
    names = ["load", "array", "vector", "store"]
    loop_reg = r(config.gprs - 1)
    for _ in range(length):
        kind = rng.random()
        if kind < 0.3:
            op = rng.choice(list(AluOp))
            src2 = rng.choice([r(rng.randrange(config.gprs - 1)), rng.choice(CORNERS)])
            p.alu(op, r(rng.randrange(1, config.gprs - 1)), r(rng.randrange(config.gprs - 1)),
                  src2)
        elif kind < 0.4:
            label = f"skip{p.here}"
            cond = rng.choice(list(JumpCond))
            p.jump(label, cond, rs=None if cond is JumpCond.ALWAYS else
                   r(rng.randrange(config.gprs)))
            p.alu("xor", r(1), r(1), rng.getrandbits(32))
            p.label(label)
        elif kind < 0.5:
            ar = rng.randrange(1, config.address_registers)
            form = rng.randrange(4)
            if form == 0:
                p.ar_set(ar, value=rng.getrandbits(isa.widths.dram),
                         inc=rng.getrandbits(isa.widths.dram))
            else:
                getattr(p, ["", "ar_set_gpr", "ar_add_gpr", "ar_inc_gpr"][form])(
                    ar, r(rng.randrange(config.gprs)), rng.getrandbits(16))
        elif kind < 0.55:
            p.trace(rng.getrandbits(24))
        elif kind < 0.6:
            p.epi(rng.randrange(16), rng.choice(["identity", "unified", "clamp"]),
                  scale=rng.uniform(-2, 2), a=-1.0, b=rng.uniform(0, 4), c=0.5, d=0.25)
        elif kind < 0.63:
            rng.choice([p.fence, lambda: p.sync("set", rng.getrandbits(32)),
                        lambda: p.sync("clear", rng.getrandbits(32)),
                        lambda: p.sync("wait", 0, timeout=3)])()
        elif kind < 0.68:
            with p.loop(rng.randint(1, 3), counter=loop_reg):
                p.add(r(2), r(2), 3)
                _zero_size(rng, rng.choice(["load", "vector"]), p)
        else:
            src = rng.choice(names)
            wait = [q for q in names if q != src and pushed.get((q, src), 0) and
                    rng.random() < 0.5]
            signal = [q for q in names if q != src and pushed.get((src, q), 0) < 20 and
                      rng.random() < 0.3]
            for q in wait:
                pushed[(q, src)] -= 1
            for q in signal:
                pushed[(src, q)] = pushed.get((src, q), 0) + 1
            kind_name = {"array": "matmul"}.get(src, src)
            extra = {"wait": wait, "signal": signal}
            if kind_name in ("load", "store"):
                extra.update(dram=_addr(rng, config, "dram"), sram=_addr(rng, config, "sram"))
            _zero_size(rng, kind_name, p, **extra)
    p.halt(rng.getrandbits(16))
    return p


def _run_random(config, programs, **bench_kw):
    _, results = run_all(config, programs, **bench_kw)
    isa = isa_for(config)
    for p, (exp, obs) in zip(programs, results, strict=True):
        ws = words(p)
        _token_order_ok(obs, [(pc, ws[pc]) for pc, *_ in exp.checked], isa)


def test_random_programs():
    _run_random(SMALL, [random_program(SMALL, seed) for seed in range(4)], seed=11)


@pytest.mark.slow
@pytest.mark.parametrize("config", [SMALL, WIDE, EngineConfig()], ids=["small", "wide", "default"])
def test_random_programs_sweep(config):
    _run_random(config, [random_program(config, seed, length=150) for seed in range(20)],
                seed=7, unit_delay=10, fetch_latency=3, stall=0.4)


def test_with_the_instruction_checker():
    """The real ``InstructionChecker`` in place of the stand-in: random programs, and a
    program whose operands the simulator rejects, give the same results."""
    config = SMALL
    bad = Program(config)
    bad.token("load", "store")
    bad.store(dram=0, sram=0, row_bytes=0, rows=0, wait="load")
    bad.load(dram=0x100, sram=2040, row_bytes=64, rows=2, sram_stride=128)  # past the spad
    bad.halt()
    _, results = run_all(config, [random_program(config, 21), bad], real_checker=True)
    assert results[1][0].error is ErrorCode.SRAM_OUT_OF_RANGE
