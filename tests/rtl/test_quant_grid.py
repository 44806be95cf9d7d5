# amaranth: UnusedElaboratable=no
"""The encoder's quotient rounding (``rtl/quant/_grid.py``) vs ``ElementFormat.round_magnitude``.

A combinational harness divides two bf16 magnitudes (``|x|`` by a block scale, both 8-bit
significands) or, for the NVFP4 path, a bf16 magnitude by a wide divisor, and rounds the
quotient onto every grid; each code is compared with the golden grid rounding of the float64
quotient (exact, see ``round_magnitude``). Operands cover all exponent distances that matter
(quotients far below half a step, subnormal E4M3 steps, clamps far above the top), exact ties
on every midpoint, and random significands.
"""

import numpy as np
import pytest
from amaranth.hdl import Cat, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from unified_engine.numerics import fp
from unified_engine.numerics.quant_grids import FP4_E2M1, FP8_E4M3, INT4, INT8
from unified_engine.rtl.quant._grid import (
    FRAC_FP,
    FRAC_INT,
    divide_start,
    divide_steps,
    reconstruct,
    round_fp_grid,
    round_int_grid,
)

GRIDS = {"int4": INT4, "int8": INT8, "fp4": FP4_E2M1, "fp8": FP8_E4M3}


class _Rounder(wiring.Component):
    """``x`` (bf16 magnitude) / ``s`` (bf16 magnitude) onto all four grids, registered."""

    def __init__(self, div_width: int = 8):
        self.div_width = div_width
        super().__init__({
            "x": In(15), "s_sig": In(div_width), "s_exp": In(12),
            **{f"out_{k}": Out(7) for k in GRIDS},
        })

    def elaborate(self, platform):
        m = Module()
        w = self.div_width
        x_sig = Cat(self.x[0:7], 1) << (w - 8)
        d = self.x[7:15] - self.s_exp.as_signed()
        results = {}
        for key, frac in (("int", FRAC_INT), ("fp", FRAC_FP)):
            q, rem = divide_start(m, x_sig, self.s_sig, f"{key}_div")
            q, rem = divide_steps(m, q, rem, self.s_sig, 2, f"{key}_div_a")
            q, rem = divide_steps(m, q, rem, self.s_sig, frac - 2, f"{key}_div_b")
            results[key] = (q, rem != 0)
        q, sticky = results["int"]
        codes = {
            "int4": round_int_grid(m, q, sticky, d, 7, "r_int4"),
            "int8": round_int_grid(m, q, sticky, d, 127, "r_int8"),
        }
        q, sticky = results["fp"]
        codes["fp4"] = round_fp_grid(m, q, sticky, d, mant=1, emin=0, max_code=7, name="r_fp4")
        codes["fp8"] = round_fp_grid(m, q, sticky, d, mant=3, emin=-6, max_code=126,
                                     name="r_fp8")
        zero = self.x[7:15] == 0
        for key, code in codes.items():
            m.d.sync += getattr(self, f"out_{key}").eq(Mux(zero, 0, code))
        return m


def _run(dut, columns, count):
    got = {k: [] for k in GRIDS}

    async def bench(ctx):
        for i in range(count):
            for name, values in columns.items():
                ctx.set(getattr(dut, name), int(values[i]))
            await ctx.tick()
            for k in GRIDS:
                got[k].append(ctx.get(getattr(dut, f"out_{k}")))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return {k: np.array(v) for k, v in got.items()}


def _bf16_operands(rng, n):
    """``|x|`` and scale magnitudes: random, ties on every grid's midpoints, far exponents."""
    s = rng.integers(0x0080, 0x7F80, n)
    ex_delta = rng.integers(-12, 12, n)
    ex_delta[: n // 8] = rng.integers(-200, 200, n // 8)
    x = ((s >> 7) + ex_delta).clip(1, 254) << 7 | rng.integers(0, 128, n)
    # Exact ties: x = M·s for a midpoint M with few bits and s with ≤ 4 significant bits.
    ties = rng.random(n) < 0.3
    s_tie = (rng.integers(8, 16, n) << 4) | (rng.integers(60, 190, n) << 7)
    grid = [GRIDS[k] for k in ("int4", "int8", "fp4", "fp8")]
    mids = np.concatenate([g.midpoints for g in grid])
    mids = mids[mids * 16 == np.round(mids * 16)]  # ≤ 4 fraction bits: exact products
    mid = rng.choice(mids, n)
    s_val = fp.bf16_to_f32(s_tie.astype(np.uint16)).astype(np.float64)
    x_tie = fp.f32_to_bf16((mid * s_val).astype(np.float32))
    exact = fp.bf16_to_f32(x_tie).astype(np.float64) == mid * s_val
    use = ties & exact
    x = np.where(use, x_tie, x)
    s = np.where(use, s_tie, s)
    x[rng.random(n) < 0.03] = 0
    return x.astype(np.uint16), s.astype(np.uint16)


def _golden(x, s_value):
    q = fp.bf16_to_f32(x).astype(np.float64) / s_value
    return {k: g.round_magnitude(q).astype(int) for k, g in GRIDS.items()}


def test_round_bf16_scaled_quotients():
    rng = np.random.default_rng(1)
    x, s = _bf16_operands(rng, 2500)
    dut = _Rounder()
    got = _run(dut, {"x": x, "s_sig": (s & 0x7F) | 0x80, "s_exp": s >> 7}, len(x))
    s_value = fp.bf16_to_f32(s).astype(np.float64)
    want = _golden(x, s_value)
    q = fp.bf16_to_f32(x).astype(np.float64) / s_value
    for k, grid in GRIDS.items():  # the classes are really hit: ties, clamps, zeros
        assert np.isin(q, grid.midpoints).sum() > 20, k
        assert (want[k] == grid.max_code).sum() > 100 and (want[k] == 0).sum() > 100, k
    for k in GRIDS:
        bad = np.flatnonzero(got[k] != want[k])
        assert not len(bad), (k, [(hex(x[i]), hex(s[i]), got[k][i], want[k][i])
                                  for i in bad[:6]])


def test_round_wide_divisor_quotients():
    """28-bit divisors (NVFP4's block scale × tensor scale), E2M1 and E4M3 grids."""
    rng = np.random.default_rng(2)
    n = 1500
    d_sig = rng.integers(1 << 27, 1 << 28, n)
    d_exp = rng.integers(40, 200, n)
    x = ((d_exp + rng.integers(-12, 12, n)).clip(1, 254) << 7) | rng.integers(0, 128, n)
    # Ties: divisor with few significant bits and x = M·divisor exactly.
    ties = rng.random(n) < 0.3
    d_sig[ties] = rng.integers(8, 16, ties.sum()) << 24
    mids = np.concatenate([FP4_E2M1.midpoints, FP8_E4M3.midpoints[:40]])
    mid = rng.choice(mids, n)
    d_val = d_sig.astype(np.float64) / 2.0**27 * 2.0 ** (d_exp.astype(np.float64) - 127)
    x_tie = fp.f32_to_bf16((mid * d_val).astype(np.float32))
    use = ties & (fp.bf16_to_f32(x_tie).astype(np.float64) == mid * d_val) & (x_tie != 0)
    x = np.where(use, x_tie, x).astype(np.uint16)
    dut = _Rounder(div_width=28)
    got = _run(dut, {"x": x, "s_sig": d_sig, "s_exp": d_exp}, n)
    want = _golden(x, d_val)
    assert use.sum() > 100
    for k in ("fp4", "fp8"):
        bad = np.flatnonzero(got[k] != want[k])
        assert not len(bad), (k, [(hex(x[i]), hex(d_sig[i]), d_exp[i], got[k][i], want[k][i])
                                  for i in bad[:6]])


class _Recon(wiring.Component):
    def __init__(self):
        super().__init__({"a": In(7), "ea": In(12), "s": In(15), "out": Out(15)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.out.eq(reconstruct(m, self.a, self.ea.as_signed(), self.s, "rec"))
        return m


@pytest.mark.parametrize("kind", ["int8", "fp8"])
def test_reconstruct_wide_codes(kind):
    """``bf16(value(code) · |scale|)`` for INT8 and E4M3 magnitude codes (the IF8 metric)."""
    rng = np.random.default_rng(3)
    n = 2000
    mag = rng.integers(0, 128 if kind == "int8" else 127, n)  # E4M3: no NaN code
    s = rng.integers(0, 0x7F80, n)
    s[: n // 10] = rng.integers(0x7E00, 0x7F80, n // 10)  # overflow to Inf
    s[n // 10 : n // 5] = rng.integers(0x0080, 0x0400, n // 10)  # flush below 2**-126
    if kind == "int8":
        a, ea = mag, np.zeros(n, int)
        value = mag.astype(np.float64)
    else:
        e, mt = mag >> 3, mag & 7
        a = np.where(e == 0, mt, 8 | mt)
        ea = np.maximum(e, 1) - 10
        value = FP8_E4M3.values(mag.astype(np.uint8))
    got = []
    dut = _Recon()

    async def bench(ctx):
        for i in range(n):
            ctx.set(dut.a, int(a[i]))
            ctx.set(dut.ea, int(ea[i]) & 0xFFF)
            ctx.set(dut.s, int(s[i]))
            await ctx.tick()
            got.append(ctx.get(dut.out))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = fp.f32_to_bf16(fp.f32_mul(value.astype(np.float32),
                                     fp.bf16_to_f32(s.astype(np.uint16))))
    got = np.array(got)
    bad = np.flatnonzero(got != want)
    assert not len(bad), [(mag[i], hex(s[i]), hex(got[i]), hex(want[i])) for i in bad[:6]]
