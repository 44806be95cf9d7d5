"""``InstructionChecker`` against the ISA simulator's own operand checks (``host/units.py``).

Random LOAD/STORE/MATMUL/VECTOR instructions (fields biased towards small values and range
edges, random effective addresses and windows) go through the RTL checker; MATMUL and VECTOR
operands are often placed on top of or next to each other, or exactly in place, to exercise
the operand-overlap rule (docs/isa.md "Operand overlap").  The reference is
the error code ``host.units`` raises when it executes the same resolved instruction on a
``Machine``.  The resolved word must carry the effective addresses with the address registers,
increments and override fields cleared.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from unified_engine.config import EngineConfig
from unified_engine.host import units
from unified_engine.host.isasim import Machine
from unified_engine.host.units import Stop
from unified_engine.isa import Opcode, isa_for
from unified_engine.regs import ErrorCode
from unified_engine.rtl.checks import InstructionChecker
from unified_engine.rtl.engine_if import address_groups, check_in_layout

_DRAM = 1 << 16


def _value(rng, info):
    if info.kind == "enum":
        return rng.choice(list(info.enum))
    high = info.high
    r = rng.random()
    if r < 0.35:
        return int(rng.integers(0, min(high, 4) + 1))
    if r < 0.6:
        return int(rng.integers(0, min(high, 64) + 1))
    if r < 0.8:
        return int(rng.integers(max(0, high - 8), high + 1))
    return int(rng.integers(0, high + 1))


def _in_place(rng, values):
    """Make a VECTOR's dst the exact in-place twin of src0 or a TENSOR src1 (sometimes with
    one detail off: format, stride or start)."""
    src = "src1" if rng.random() < 0.3 else "src0"
    if src == "src1":
        values["bcast"] = "TENSOR"
    values["dst_fmt"] = values[f"{src}_fmt"]
    values["dst_stride"] = values[f"{src}_stride"]
    values["dst.imm"] = values[f"{src}.imm"]
    r = rng.random()
    if r < 0.1:
        values["dst_stride"] = int(rng.integers(0, 4))
    elif r < 0.2:
        values["dst.imm"] = values[f"{src}.imm"] + 1


def _random_instruction(rng, isa, op, overlap=False):
    limits = {"m_tiles": 5, "n_tiles": 5, "k": 300, "rows": 300, "length": 300}
    if overlap:  # small operands, so that most overlapping cases pass the range checks
        limits = {"m_tiles": 3, "n_tiles": 3, "k": 64, "rows": 12, "length": 40,
                  "src0_stride": 8, "src1_stride": 8, "dst_stride": 8, "dst_pitch": 96}
    while True:
        values = {}
        for info in isa.fields(op):
            if info.path in ("opcode", "wait", "signal", "ovr_field", "ovr_gpr"):
                continue
            v = _value(rng, info)
            if info.path in limits and rng.random() < 0.9:
                v = int(rng.integers(0, limits[info.path] + 1))
            if info.path.endswith(".ar") or info.path.endswith(".inc"):
                v = 0
            if overlap and info.path.endswith(".imm"):
                v = int(rng.integers(0, 48))
            values[info.path] = v
        if overlap and op is Opcode.MATMUL:  # mostly instructions that pass the other rules
            if rng.random() < 0.8:
                values["b_fmt"] = "BF16"
            values["wb"] = int(rng.random() < 0.85)
            values["acc_in"] = values["acc_out"] = 0
        if overlap and op is Opcode.VECTOR:
            if rng.random() < 0.85:
                values["accumulate"] = 0
            if rng.random() < 0.4:
                _in_place(rng, values)
        try:
            return isa.make(op, **values)
        except ValueError:
            continue


def _effective(rng, isa, ins, config, overlap=False):
    groups = address_groups(isa, ins.opcode)
    mask = (1 << config.axi_addr_width) - 1
    out = []
    for g in groups:
        imm = ins[f"{g}.imm"]
        r = rng.random()
        ar = 0 if r < 0.7 or overlap else int(rng.integers(0, 64)) if r < 0.9 else \
            int(rng.integers(0, 1 << config.axi_addr_width))
        out.append((imm + ar) & mask)
    if overlap and rng.random() < 0.5:  # one operand at / next to another one's start
        i, j = rng.choice(len(out), 2, replace=False)
        out[j] = max(0, out[i] + int(rng.integers(-3, 4)))
    return out


def _reference(config, ins, addrs, window) -> ErrorCode:
    isa = isa_for(config)
    machine = Machine(config, np.zeros(_DRAM, np.uint8))
    machine.window = window
    machine.scale[:] = np.frombuffer(np.full(machine.scale.size // 2, 0x3F80, np.uint16)
                                     .tobytes(), np.uint8)
    f = dict(ins.fields)
    for g, a in zip(address_groups(isa, ins.opcode), addrs, strict=True):
        del f[f"{g}.ar"], f[f"{g}.inc"], f[f"{g}.imm"]
        f[g] = a
    try:
        if ins.opcode is Opcode.MATMUL:
            units.matmul(machine, f)
        elif ins.opcode is Opcode.VECTOR:
            units.vector(machine, f)
        else:
            units.dma(machine, f, store=ins.opcode is Opcode.STORE)
    except Stop as stop:
        return stop.code
    return ErrorCode.NONE


def _run(config, cases):
    """cases: (instruction, effective addresses, window) → [(error, resolved word)]."""
    isa = isa_for(config)
    dut = InstructionChecker(config)
    results = []
    layout = check_in_layout(config)

    async def bench(ctx):
        for ins, addrs, window in cases:
            value = {"word": isa.encode(ins), "addr": addrs + [0] * (4 - len(addrs)), "pc": 7}
            ctx.set(dut.window_base, window[0])
            ctx.set(dut.window_limit, window[1])
            ctx.set(dut.i.payload, layout.const(value))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 1)
            word, err, pc = await ctx.tick().sample(
                dut.o.payload.word, dut.o.payload.error, dut.o.payload.pc).until(dut.o.valid)
            results.append((ErrorCode(err), int(word), int(pc)))
            ctx.set(dut.o.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def _cases(config, count, seed):
    rng = np.random.default_rng(seed)
    isa = isa_for(config)
    cases = []
    for n in range(count):
        op = (Opcode.LOAD, Opcode.STORE, Opcode.MATMUL, Opcode.VECTOR)[n % 4]
        overlap = op in (Opcode.MATMUL, Opcode.VECTOR) and rng.random() < 0.5
        ins = _random_instruction(rng, isa, op, overlap)
        addrs = _effective(rng, isa, ins, config, overlap)
        lo = int(rng.integers(0, _DRAM // 2))
        window = (lo, int(rng.integers(lo, _DRAM + 1)))
        if rng.random() < 0.3 and op in (Opcode.LOAD, Opcode.STORE):
            window = (0, _DRAM)
        cases.append((ins, addrs, window))
    return cases


def _check(config, cases):
    isa = isa_for(config)
    got = _run(config, cases)
    seen = set()
    for (ins, addrs, window), (err, word, pc) in zip(cases, got, strict=True):
        expected = _reference(config, ins, addrs, window)
        seen.add(expected)
        assert err == expected, f"{ins.opcode.name} {dict(ins.fields)} addrs={addrs} " \
            f"window={window}: RTL {err.name}, simulator {expected.name}"
        assert pc == 7
        if expected is ErrorCode.NONE:
            def field(path, word=word, op=ins.opcode):
                info = isa.field_info(op, path)
                return (word >> info.offset) & ((1 << info.width) - 1)

            for g, a in zip(address_groups(isa, ins.opcode), addrs, strict=True):
                assert field(f"{g}.ar") == 0 and field(f"{g}.inc") == 0
                width = isa.field_info(ins.opcode, f"{g}.imm").width
                assert field(f"{g}.imm") == a & ((1 << width) - 1)
            assert field("ovr_field") == 0 and field("ovr_gpr") == 0
            others = [i for i in isa.fields(ins.opcode) if not i.path.endswith(
                (".imm", ".ar", ".inc")) and i.path not in ("ovr_field", "ovr_gpr")]
            original = isa.encode(ins)
            for info in others:
                mask = ((1 << info.width) - 1) << info.offset
                assert word & mask == original & mask, f"{info.path} changed"
    return seen


def test_checker_matches_simulator_sim_small():
    seen = _check(EngineConfig.preset("sim_small"), _cases(EngineConfig.preset("sim_small"),
                                                           400, seed=1))
    # the random mix must exercise every code the checker can raise
    assert {ErrorCode.NONE, ErrorCode.DMA_OUT_OF_WINDOW, ErrorCode.SRAM_OUT_OF_RANGE,
            ErrorCode.ILLEGAL_OPERAND} <= seen


def test_checker_matches_simulator_default():
    config = EngineConfig()
    _check(config, _cases(config, 120, seed=2))


def test_unsupported_format():
    config = EngineConfig.preset("sim_small")
    import dataclasses

    small = dataclasses.replace(config, formats=("bf16", "int4"))
    isa = isa_for(small)
    mm = isa.make(Opcode.MATMUL, m_tiles=1, n_tiles=1, k=64, b_fmt="fp4")
    vq = isa.make(Opcode.VECTOR, op="QUANTIZE", rows=1, length=64, qfmt="int8")
    got = _run(small, [(mm, [0, 0, 0, 0], (0, _DRAM)), (vq, [0, 0, 0], (0, _DRAM))])
    assert [g[0] for g in got] == [ErrorCode.UNSUPPORTED_FORMAT] * 2
    assert _reference(small, mm, [0, 0, 0, 0], (0, _DRAM)) is ErrorCode.UNSUPPORTED_FORMAT


@pytest.mark.slow
def test_checker_matches_simulator_many():
    for seed in range(3, 8):
        config = EngineConfig.preset("sim_small")
        _check(config, _cases(config, 1000, seed=seed))


def test_overlap_edges_sim_small():
    """Hand-placed operands at the edges of the overlap rule (sim_small: 8-byte rows; a
    k = 4 tile has A = 4 rows, B = 2 rows, a 2-row ROW_MAJOR bf16 output and 2 rows of
    maxima; a 3 × 4 bf16 VECTOR operand is 3 rows).  Expected codes follow from that
    geometry; the checker must agree with them and with the simulator."""
    config = EngineConfig.preset("sim_small")
    isa = isa_for(config)
    bad, ok = ErrorCode.ILLEGAL_OPERAND, ErrorCode.NONE

    def mm(a=0, b=8, dst=16, rmax=24, **kw):
        fields = {"m_tiles": 1, "n_tiles": 1, "k": 4, "wb": 1} | kw
        return isa.make(Opcode.MATMUL, **fields), [a, b, dst, rmax]

    def vec(dst=0, src0=0, src1=8, **kw):
        fields = {"op": "ADD", "rows": 3, "length": 4} | kw
        return isa.make(Opcode.VECTOR, **fields), [dst, src0, src1]

    table = [
        (mm(), ok), (mm(dst=3), bad), (mm(dst=4), ok), (mm(dst=6), ok), (mm(dst=7), bad),
        (mm(dst=0, wb=0), ok), (mm(k=0, dst=0), ok),
        (mm(rowmax="INIT", rmax=17), bad), (mm(rowmax="INIT", rmax=18), ok),
        (mm(rowmax="UPDATE", rmax=9), bad), (mm(rowmax="UPDATE", rmax=10), ok),
        (mm(dst_pitch=3), bad), (mm(dst_pitch=4), ok), (mm(dst_pitch=7, out_fmt="FP32"), bad),
        (mm(dst_pitch=3, out_layout="B_PANEL"), ok),
        (mm(a=2044, dst=2047), ErrorCode.SRAM_OUT_OF_RANGE),
        (vec(), ok), (vec(dst=8), ok), (vec(src1=0), ok), (vec(dst_stride=1), ok),
        (vec(rows=1, dst_stride=3), ok), (vec(dst=1), bad), (vec(dst=2), bad),
        (vec(dst=3, src1=16), ok), (vec(dst=5), ok), (vec(dst=6), bad),
        (vec(dst_fmt="FP32", src1=16), bad), (vec(dst_stride=2, src1=16), bad),
        (vec(length=8, src0_stride=1, dst_stride=1, src1=16), bad),
        (vec(bcast="ROW", src1=4, dst=4, src0=8), bad),
        (vec(bcast="COL", src1=5, dst=4, src0=8), bad),
        (vec(bcast="SCALAR", src1=0, src0=8), ok), (vec(op="FILL"), ok),
        (vec(op="RSUM", dst=2, dst_fmt="FP32"), bad), (vec(op="RSUM", dst=3, dst_fmt="FP32"), ok),
        (vec(op="RSUM", dst=3, dst_fmt="FP32", accumulate=1), ok),
        (vec(op="TRANSPOSE", rows=4), bad), (vec(op="TRANSPOSE", rows=4, dst=4), ok),
        (vec(op="TRANSPOSE", rows=8, dst=8, dst_stride=1), bad),
        (vec(op="TRANSPOSE", rows=8, dst=8, dst_stride=2), ok),
        (vec(op="TRANSPOSE", rows=8, length=1, dst=8, dst_stride=1), ok),
        (vec(op="QUANTIZE", rows=1, length=64, qfmt="INT8"), bad),
        (vec(op="QUANTIZE", rows=1, length=64, qfmt="INT8", dst=16), ok),
    ]
    window = (0, _DRAM)
    got = _run(config, [(ins, addrs, window) for (ins, addrs), _ in table])
    for ((ins, addrs), want), (err, _, _) in zip(table, got, strict=True):
        what = f"{ins.opcode.name} {dict(ins.fields)} addrs={addrs}"
        assert _reference(config, ins, addrs, window) is want, f"simulator: {what}"
        assert err is want, f"RTL {err.name}: {what}"
