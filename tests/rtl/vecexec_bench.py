"""Testbench for ``VectorExec``: run VECTOR instructions on the RTL and on the ISA simulator.

``run_program`` builds a ``host.isasim.Machine`` and a scratchpad image, runs every
instruction through ``host.units.vector`` (the reference) and through the DUT (one
simulation, instructions back to back, the scratchpad served by ``SramModel`` with random
stalls and latency), and compares every scratchpad byte after every instruction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator
from memmodels import SramModel

from unified_engine.host.isasim import Machine
from unified_engine.host.units import vector as vector_golden
from unified_engine.isa import ActKind, ElemFormat, Opcode, VecBcast, VecOp, isa_for
from unified_engine.numerics import fp
from unified_engine.rtl.engine_if import EPI_TABLE

BF16_SPECIALS = np.array(
    [0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x7F81, 0x0001, 0x8040, 0x007F,
     0x7F7F, 0xFF7F, 0x0080, 0x8080, 0x3F80, 0xBF80],
    np.uint16,
)  # fmt: skip


#: Operations of ``VectorMove``; ``VectorExec`` finishes them without touching memory.
MOVE_OPS = (VecOp.QUANTIZE, VecOp.DEQUANTIZE, VecOp.TRANSPOSE)


def scratchpad_image(rng, nbytes: int, special: float = 0.02) -> np.ndarray:
    """Scratchpad bytes whose 16-bit halves are bf16 values of moderate size (exponents
    around 1) with a fraction ``special`` of corner patterns (±0, ±Inf, NaNs with payloads,
    subnormals, the largest finite, the smallest normal, ±1). Read as fp32, the upper halves
    give the same classes and the lower halves random low significand bits."""
    count = nbytes // 2
    sign = rng.integers(0, 2, count, dtype=np.uint16) << 15
    exp = rng.integers(120, 134, count, dtype=np.uint16) << 7
    man = rng.integers(0, 128, count, dtype=np.uint16)
    values = sign | exp | man
    pick = rng.random(count) < special
    values[pick] = BF16_SPECIALS[rng.integers(0, len(BF16_SPECIALS), int(pick.sum()))]
    return values.view(np.uint8).copy()


def epi_entry(act: ActKind = ActKind.IDENTITY, scale: float = 1.0, a: float = 0.0,
              b: float = 0.0, c: float = 0.0, d: float = 0.0) -> dict:
    """An EPI-table entry as ``Machine.epi`` holds it (fp32 values as bit patterns)."""
    bits = {n: int(fp.f32_to_bits(np.float32(v))) for n, v in
            zip(("scale", "a", "b", "c", "d"), (scale, a, b, c, d), strict=True)}
    return {"act": act, **bits}


@dataclass
class Result:
    cycles: list[int] = field(default_factory=list)  # cmd accepted → done, per instruction
    reads: list[int] = field(default_factory=list)  # port reads, per instruction
    writes: list[int] = field(default_factory=list)  # port writes (both ports), per instruction


def vector_instruction(config, **fields):
    """A validated VECTOR instruction; address operands as ``src0=`` … (row numbers)."""
    isa = isa_for(config)
    values = {}
    for key, value in fields.items():
        if key in ("src0", "src1", "dst"):
            values[f"{key}.imm"] = value
        else:
            values[key] = value
    return isa.make(Opcode.VECTOR, **values)


def run_program(dut, config, program, *, seed: int = 0, image=None, epi=None,
                stall: float = 0.0, latency: int = 1, jitter: int = 0,
                max_cycles: int = 20000, idle: int = 0) -> Result:
    """Run ``program`` (a list of VECTOR ``Instruction`` s) on ``dut`` and on the ISA simulator;
    assert that the scratchpad matches byte for byte after every instruction.

    ``image`` is the initial scratchpad (default: :func:`scratchpad_image`), ``epi`` entries
    of the epilogue table ({index: :func:`epi_entry`}), ``stall`` / ``latency`` / ``jitter``
    the ``SramModel`` behaviour, ``idle`` cycles between instructions. Returns the cycles of
    each instruction (command transfer to ``done``) and its port reads and writes.
    """
    rng = np.random.default_rng(seed)
    isa = isa_for(config)
    machine = Machine(config, np.zeros(64, np.uint8))
    machine.spad[:] = scratchpad_image(rng, config.scratchpad_bytes) if image is None else image
    if epi is not None:
        for k, entry in epi.items():
            machine.epi[k] = dict(entry)
    table = EPI_TABLE.const([
        {n: e[n] for n in ("act", "scale", "a", "b", "c", "d")} for e in machine.epi])
    mem = machine.spad.copy()
    expected = []
    for ins in program:
        assert all(ins[f"{g}.ar"] == 0 for g in ("src0", "src1", "dst"))
        if ins["op"] not in MOVE_OPS:  # VectorMove's: VectorExec leaves memory alone
            vector_golden(machine, machine._resolve(ins))
        expected.append(machine.spad.copy())
    words = [isa.encode(ins) for ins in program]
    beat = config.axi_bytes
    model = SramModel(dut.spad, mem, beat, stall=stall, latency=latency, jitter=jitter,
                      seed=seed + 1)
    wmodel = None
    if getattr(dut, "write_port", False):
        wmodel = SramModel(dut.spad_w, mem, beat, stall=stall, seed=seed + 2)
    result = Result()
    cmd = dut.unit.cmd

    async def bench(ctx):
        ctx.set(dut.epi, table)
        for k, word in enumerate(words):
            for _ in range(idle):
                await ctx.tick()
            ctx.set(cmd.payload, word)
            ctx.set(cmd.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(cmd.ready)
                if ready:
                    break
            ctx.set(cmd.valid, 0)
            cycles = 0
            while True:
                _, _, done = await ctx.tick().sample(dut.unit.done)
                cycles += 1
                assert cycles < max_cycles, f"instruction {k} ({program[k]}) did not finish"
                if done:
                    break
            result.cycles.append(cycles)
            await ctx.tick()  # let the memory model apply the last write
            result.reads.append(model.reads - sum(result.reads))
            writes = model.writes + (wmodel.writes if wmodel else 0)
            result.writes.append(writes - sum(result.writes))
            check(k, mem, expected[k], program[k], config)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(model.process)
    if wmodel is not None:
        sim.add_process(wmodel.process)
    sim.run()
    return result


def check(k: int, got: np.ndarray, want: np.ndarray, ins, config) -> None:
    if np.array_equal(got, want):
        return
    bad = np.flatnonzero(got != want)
    beat = config.axi_bytes
    rows = sorted({int(b) // beat for b in bad})[:6]
    lines = [f"instruction {k}: {ins.fields['op'].name} {dict(ins.fields)}",
             f"{bad.size} bytes differ, first at {bad[0]} (row {bad[0] // beat})"]
    for r in rows:
        lo = r * beat
        lines.append(f"row {r}: got  {got[lo:lo + beat].tobytes().hex()}")
        lines.append(f"row {r}: want {want[lo:lo + beat].tobytes().hex()}")
    raise AssertionError("\n".join(lines))




# ----- random programs ----------------------------------------------------------------------

ELEMENT_OPS = (VecOp.COPY, VecOp.FILL, VecOp.ADD, VecOp.SUB, VecOp.MUL, VecOp.MAX, VecOp.MIN)
FUNCTION_OPS = (VecOp.EXP, VecOp.RECIP, VecOp.RSQRT, VecOp.ACTIVATE)
REDUCE_OPS = (VecOp.RSUM, VecOp.RMAX, VecOp.RSUMSQ, VecOp.ARGMAX4)
BINARY_OPS = (VecOp.ADD, VecOp.SUB, VecOp.MUL, VecOp.MAX, VecOp.MIN)


def _rows_for(nbytes: int, beat: int) -> int:
    return -(-nbytes // beat)


def random_imm(rng) -> int:
    if rng.random() < 0.15:
        return int(BF16_SPECIALS[rng.integers(0, len(BF16_SPECIALS))]) << 16
    return (int(rng.integers(0, 2)) << 31) | (int(rng.integers(122, 132)) << 23) | \
        int(rng.integers(0, 1 << 23))


def random_length(rng, lanes: int, max_len: int) -> int:
    pick = rng.random()
    if pick < 0.4:  # around beat and row edges
        return int(max(1, min(max_len, lanes * int(rng.integers(1, 4)) + int(rng.integers(-1, 2)))))
    return int(rng.integers(1, max_len + 1))


def random_vector(rng, config, op: VecOp, *, max_len: int = 40, max_rows: int = 5,
                  epi_entries: int = 1, **force):
    """A random VECTOR instruction of ``op`` whose operands lie in disjoint thirds of the
    scratchpad (src0 in the first, src1 in the second, dst in the last)."""
    beat, lanes = config.axi_bytes, config.lanes
    third = config.scratchpad_rows // 3
    fmts = [ElemFormat(int(x)) for x in rng.integers(0, 2, 3)]
    length = force.pop("length", random_length(rng, lanes, max_len))
    rows = force.pop("rows", int(rng.integers(1, max_rows + 1)))
    fields = dict(op=op, length=length, rows=rows, src0_fmt=fmts[0], src1_fmt=fmts[1],
                  dst_fmt=fmts[2], imm=random_imm(rng))

    def stride_for(nbytes: int) -> int:
        packed = _rows_for(nbytes, beat)
        return 0 if rng.random() < 0.5 else packed + int(rng.integers(0, 3))

    def place(region: int, row_bytes: int, stride: int, count: int) -> int:
        span = (count - 1) * (stride or _rows_for(row_bytes, beat)) + _rows_for(row_bytes, beat)
        assert span <= third, "operand too large for its third of the scratchpad"
        return region * third + int(rng.integers(0, third - span + 1))

    e = {f: 2 if fmt is ElemFormat.BF16 else 4
         for f, fmt in zip(("src0", "src1", "dst"), fmts, strict=True)}
    fields["src0_stride"] = stride_for(length * e["src0"])
    fields["src0"] = place(0, length * e["src0"], fields["src0_stride"], rows)
    if op in BINARY_OPS:
        bcast = force.pop("bcast", VecBcast(int(rng.integers(0, 4))))
        fields["bcast"] = bcast
        if bcast is VecBcast.TENSOR:
            fields["src1_stride"] = stride_for(length * e["src1"])
            fields["src1"] = place(1, length * e["src1"], fields["src1_stride"], rows)
        elif bcast is VecBcast.ROW:
            fields["src1"] = place(1, rows * e["src1"], 0, 1)
        elif bcast is VecBcast.COL:
            fields["src1"] = place(1, length * e["src1"], 0, 1)
    if op in REDUCE_OPS:
        per_row = 32 if op is VecOp.ARGMAX4 else e["dst"]
        fields["dst"] = place(2, rows * per_row, 0, 1)
        if op is not VecOp.ARGMAX4:
            fields["accumulate"] = int(rng.integers(0, 2))
    else:
        fields["dst_stride"] = stride_for(length * e["dst"])
        fields["dst"] = place(2, length * e["dst"], fields["dst_stride"], rows)
    if op is VecOp.ACTIVATE:
        fields["epi"] = int(rng.integers(0, epi_entries))
    fields.update(force)
    return vector_instruction(config, **fields)
