"""``InstructionChecker`` against the ISA simulator's own operand checks (``host/units.py``).

Random LOAD/STORE/MATMUL/VECTOR instructions (fields biased towards small values and range
edges, random effective addresses and windows) go through the RTL checker; the reference is
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


def _random_instruction(rng, isa, op):
    limits = {"m_tiles": 5, "n_tiles": 5, "k": 300, "rows": 300, "length": 300}
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
            values[info.path] = v
        try:
            return isa.make(op, **values)
        except ValueError:
            continue


def _effective(rng, isa, ins, config):
    groups = address_groups(isa, ins.opcode)
    mask = (1 << config.axi_addr_width) - 1
    out = []
    for g in groups:
        imm = ins[f"{g}.imm"]
        r = rng.random()
        ar = 0 if r < 0.7 else int(rng.integers(0, 64)) if r < 0.9 else \
            int(rng.integers(0, 1 << config.axi_addr_width))
        out.append((imm + ar) & mask)
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
        ins = _random_instruction(rng, isa, op)
        addrs = _effective(rng, isa, ins, config)
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
