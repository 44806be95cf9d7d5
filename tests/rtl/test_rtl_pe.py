# amaranth: UnusedElaboratable=no
"""PE RTL: P interleaved outputs, each accumulated in k order from +0 or a parked initial
value, with idle (-0 × +0) cycles in between; vs ``fp.pe_accumulate``."""

import dataclasses

import numpy as np
import pytest
from fpvectors import F32_SPECIALS, matmul_operands
from simhelpers import run

from unified_engine.config import EngineConfig
from unified_engine.numerics import fp
from unified_engine.rtl.pe import PE


def pe_for(p):
    return PE(dataclasses.replace(EngineConfig.preset("sim_small"), pe_interleave=p))


@pytest.mark.parametrize("p", [1, 2, 3, 4, 8])
def test_pe_interleaved_accumulation(p):
    rng = np.random.default_rng(p)
    dut = pe_for(p)
    assert dut.latency == p + 2
    jobs = []  # (A[P, K], B[K, 1], init or None, idle k-steps before each k)
    for n, kind in enumerate(["ties", "specials", "zeros", "cancel", "zeros", "wide"]):
        k = int(rng.integers(1, 6))
        a, b = matmul_operands(rng, p, k, 1, kind)
        init = None
        if n % 2:
            init = fp.f32_to_bits(fp.pe_accumulate(*matmul_operands(rng, p, 2, 1, "normal")))
            init[rng.random(init.shape) < 0.4] = rng.choice(F32_SPECIALS)
        jobs.append((a, b, init, rng.integers(0, 2, k)))

    schedule = []  # per cycle: (a, b, clear, last, init_take, init_value)
    idle = (0x8000, 0, 0, 0, 0, 0)
    for a, b, init, gaps in jobs:
        if init is not None:  # park the initial values one k-step ahead, slot by slot
            schedule += [(0x8000, 0, 0, 0, 1, int(init[s, 0])) for s in range(p)]
            schedule += [idle] * (p * int(rng.integers(0, 2)))
        for k in range(a.shape[1]):
            schedule += [idle] * (p * int(gaps[k]))
            for s in range(p):
                clear = int(k == 0 and init is None)
                schedule.append((int(a[s, k]), int(b[k, 0]), clear, int(k == a.shape[1] - 1), 0, 0))
    schedule += [idle] * (dut.latency + 1)

    got = []

    async def bench(ctx):
        for cycle, (a, b, clear, last, _, _) in enumerate(schedule):
            ctx.set(dut.a_in, a)
            ctx.set(dut.b_in, b)
            ctx.set(dut.clear_in, clear)
            ctx.set(dut.last_in, last)
            ctx.set(dut.init_take, 0)
            # init_take acts at the adder input, two cycles after the operand registers.
            if cycle >= 2:
                _, _, _, _, take2, value2 = schedule[cycle - 2]
                ctx.set(dut.init_take, take2)
                ctx.set(dut.init_value, value2)
            if ctx.get(dut.result_valid):
                got.append(ctx.get(dut.result))
            await ctx.tick()

    run(dut, bench)
    expected = []
    for a, b, init, _ in jobs:
        acc = None if init is None else fp.f32_from_bits(init)
        expected += fp.f32_to_bits(fp.pe_accumulate(a, b, acc))[:, 0].tolist()
    assert [f"{x:08x}" for x in got] == [f"{x:08x}" for x in expected]


def test_pe_rejects_non_config():
    with pytest.raises(TypeError, match="EngineConfig"):
        PE(4)
