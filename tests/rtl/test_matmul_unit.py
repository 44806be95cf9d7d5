# amaranth: UnusedElaboratable=no
"""MatmulUnit RTL vs the ISA simulator (``host.units.matmul``), every byte of every memory.

Each simulation runs a list of MATMUL instructions back to back on one ``MatmulUnit``: before
each one the test writes fresh operands into the reference ``Machine``'s memories and copies
them to the ``SramModel`` s that serve the unit (with random stalls and latency); after it,
the whole scratchpad and the accumulator memory must equal the machine's, and the bias and
scale memories must be untouched. The reference is ``units.matmul(machine,
machine._resolve(instruction))``, exactly what the ISA simulator runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.sim import Simulator
from fpvectors import BF16_SPECIALS, F32_SPECIALS, matmul_operands
from memmodels import SramModel

from unified_engine.config import EngineConfig
from unified_engine.host import units
from unified_engine.host.isasim import Machine
from unified_engine.isa import (
    ActKind,
    BiasMode,
    ElemFormat,
    Opcode,
    OutLayout,
    RowMaxMode,
    WeightFormat,
    isa_for,
)
from unified_engine.numerics import activation, fp
from unified_engine.rtl.engine_if import EPI_TABLE
from unified_engine.rtl.matmul_unit import MatmulUnit

SMALL = EngineConfig.preset("sim_small")
_F32_ONE = int(fp.f32_to_bits(np.float32(1.0)))


# ----- epilogue-table entries ---------------------------------------------------------------


def _bits32(x) -> int:
    return int(fp.f32_to_bits(np.float32(x)))


def epi_identity(scale=1.0) -> dict:
    return {"act": ActKind.IDENTITY, "scale": _bits32(scale), "a": 0, "b": 0, "c": 0, "d": 0}


def epi_unified(name: str, scale=1.0) -> dict:
    a, b, c, d = activation.ACTIVATIONS[name]
    return {"act": ActKind.UNIFIED, "scale": _bits32(scale),
            "a": _bits32(a), "b": _bits32(b), "c": _bits32(c), "d": _bits32(d)}


def epi_clamp(lo, hi, scale=1.0) -> dict:
    return {"act": ActKind.CLAMP, "scale": _bits32(scale), "a": _bits32(lo), "b": _bits32(hi),
            "c": 0, "d": 0}


# ----- cases --------------------------------------------------------------------------------


@dataclass
class Case:
    """One MATMUL: shape, options and operand kinds. ``fields`` overrides instruction fields."""

    mt: int = 1
    nt: int = 1
    k: int = 4
    fmt: WeightFormat = WeightFormat.BF16
    kind: str = "normal"
    acc_in: int = 0
    acc_out: int = 0
    wb: int = 1
    bias_mode: BiasMode = BiasMode.NONE
    out_fmt: ElemFormat = ElemFormat.BF16
    layout: OutLayout = OutLayout.ROW_MAJOR
    pitch: int = 0
    rowmax: RowMaxMode = RowMaxMode.NONE
    epi: dict = field(default_factory=epi_identity)
    acc: int = 0
    fields: dict = field(default_factory=dict)


def _rows(nbytes: int, beat: int) -> int:
    return -(-nbytes // beat)


def _elem_bits(fmt: WeightFormat) -> int:
    if fmt is WeightFormat.BF16:
        return 16
    return 8 if fmt in (WeightFormat.INT8, WeightFormat.FP8, WeightFormat.IF8) else 4


def _block(config, fmt) -> int:
    return 16 if fmt is WeightFormat.NVFP4 else config.quant_block


class Layouter:
    """Places one case's operands in the machine's memories and returns its fields."""

    def __init__(self, config: EngineConfig, rng: np.random.Generator) -> None:
        self.cfg, self.rng = config, rng

    def place(self, m: Machine, case: Case) -> dict:
        cfg, rng = self.cfg, self.rng
        beat, tr, cols = cfg.axi_bytes, cfg.tile_rows, cfg.cols
        big_m, big_n, k = case.mt * tr, case.nt * cols, case.k
        a_rows = _rows(k * tr * 2, beat)
        bits = _elem_bits(case.fmt)
        b_bytes = -(-k * cols * bits // 8)
        b_rows = _rows(b_bytes, beat)
        e = 4 if case.out_fmt is ElemFormat.FP32 else 2
        f = {}
        row = int(rng.integers(0, 3))
        f["a__imm"] = row
        row += case.mt * a_rows + int(rng.integers(0, 2))
        f["b__imm"] = row
        row += case.nt * b_rows + int(rng.integers(0, 2))
        f["_free"] = row
        a, b = matmul_operands(rng, big_m, k, big_n, case.kind)
        for i in range(case.mt):  # A panel: tile i = k vectors of TR
            tile = np.ascontiguousarray(a[i * tr:(i + 1) * tr].T).view(np.uint8).ravel()
            start = (f["a__imm"] + i * a_rows) * beat
            m.spad[start:start + tile.size] = tile
        for j in range(case.nt):
            start = (f["b__imm"] + j * b_rows) * beat
            if case.fmt is WeightFormat.BF16:
                raw = np.ascontiguousarray(b[:, j * cols:(j + 1) * cols]).view(np.uint8)
            else:
                raw = rng.integers(0, 256, b_bytes, dtype=np.uint16).astype(np.uint8)
                if bits == 8:  # keep most FP8 NaN codes (0x7F, 0xFF) out: finite sums
                    raw[((raw & 0x7F) == 0x7F) & (rng.random(b_bytes) < 0.9)] ^= 1
            m.spad[start:start + b_bytes] = raw.ravel()
        f["qscale"] = 0
        if case.fmt is not WeightFormat.BF16:
            f["qscale"] = int(rng.integers(0, 7))
            self._scales(m, case, f["qscale"])
        row = f["_free"]
        # output block (garbage around it must survive) and rmax vector
        f["dst__imm"] = row
        if case.layout is OutLayout.ROW_MAJOR:
            pitch = case.pitch or big_n * e
            out_bytes = (big_m - 1) * pitch + big_n * e
        elif case.layout is OutLayout.A_PANEL:
            out_bytes = case.mt * _rows(big_n * tr * e, beat) * beat
        else:
            out_bytes = case.nt * _rows(big_m * cols * e, beat) * beat
        out_bytes = max(out_bytes, 0)
        row += _rows(out_bytes, beat) + 1
        f["rmax__imm"] = row
        end = (row + _rows(4 * big_m, beat) + 1) * beat
        assert end <= m.spad.size, "case does not fit the scratchpad"
        lo = f["dst__imm"] * beat
        m.spad[lo:end] = rng.integers(0, 256, end - lo, dtype=np.uint16).astype(np.uint8)
        rmax = m.spad[f["rmax__imm"] * beat:f["rmax__imm"] * beat + 4 * big_m].view(np.uint32)
        rmax[:] = fp.f32_to_bits(rng.normal(0, 4, big_m).astype(np.float32))
        pick = rng.random(big_m) < 0.2
        rmax[pick] = rng.choice(F32_SPECIALS, pick.sum())
        # bias
        f["bias"] = int(rng.integers(0, 9))
        n_bias = {BiasMode.NONE: 0, BiasMode.ROW: big_m, BiasMode.COL: big_n,
                  BiasMode.FULL: big_m * big_n}[case.bias_mode]
        if n_bias:
            vals = fp.f32_to_bf16(rng.normal(0, 2, n_bias).astype(np.float32))
            pick = rng.random(n_bias) < 0.1
            vals[pick] = rng.choice(BF16_SPECIALS, pick.sum())
            assert (f["bias"] + n_bias) * 2 <= m.bias.size
            m.bias[f["bias"] * 2:(f["bias"] + n_bias) * 2] = vals.view(np.uint8)
        out = {key: value for key, value in f.items() if not key.startswith("_")}
        out.update(m_tiles=case.mt, n_tiles=case.nt, k=k, acc=case.acc, acc_in=case.acc_in,
                   acc_out=case.acc_out, wb=case.wb, b_fmt=case.fmt, bias_mode=case.bias_mode,
                   out_fmt=case.out_fmt, out_layout=case.layout, dst_pitch=case.pitch,
                   rowmax=case.rowmax)
        out.update(case.fields)
        return out

    def _scales(self, m: Machine, case: Case, qscale: int) -> None:
        rng, cols = self.rng, self.cfg.cols
        blocks = case.k // _block(self.cfg, case.fmt)
        count = case.nt * blocks * cols
        if case.fmt is WeightFormat.NVFP4:
            ts = np.float32(2.0 ** rng.integers(-8, 8) * rng.uniform(1, 2))
            m.scale[qscale * 2:qscale * 2 + 4] = fp.f32_to_bits(ts).reshape(1).view(np.uint8)
            codes = rng.integers(0, 0x7F, count)  # E4M3, no NaN
            junk = rng.integers(0, 256, count) << 8  # the high byte is ignored
            entries = (codes | junk).astype(np.uint16)
            start = qscale + 2
        else:
            sign = rng.integers(0, 2, count).astype(np.uint16) << 15  # IF: the INT flag
            exp = rng.integers(115, 135, count).astype(np.uint16) << 7
            entries = sign | exp | rng.integers(0, 128, count).astype(np.uint16)
            pick = rng.random(count) < 0.05
            entries[pick] = rng.choice(BF16_SPECIALS, pick.sum())
            start = qscale
        assert (start + count) * 2 <= m.scale.size
        m.scale[start * 2:(start + count) * 2] = entries.view(np.uint8)


# ----- the bench ----------------------------------------------------------------------------


@dataclass
class Result:
    cycles: list[int] = field(default_factory=list)


def run_cases(config: EngineConfig, cases: list[Case], *, seed: int = 0, stall: float = 0.2,
              latency: int = 1, jitter: int = 2, epi_index: int | None = None,
              max_cycles: int | None = None, **unit_options) -> Result:
    """Run ``cases`` on one MatmulUnit and compare every memory after each (see the module
    docstring). Returns the cycles from command acceptance to ``done`` of each case."""
    rng = np.random.default_rng(seed)
    isa = isa_for(config)
    dut = MatmulUnit(config, **unit_options)
    machine = Machine(config, np.zeros(64, np.uint8))
    # the RTL memories, kept equal to the machine's before every instruction
    spad, bias, scale = (np.zeros_like(x) for x in (machine.spad, machine.bias, machine.scale))
    beat = config.axi_bytes
    models = [
        SramModel(dut.spad, spad, beat, stall=stall, latency=latency, jitter=jitter,
                  seed=seed + 1),
        SramModel(dut.bias, bias, beat, stall=stall, latency=latency, jitter=jitter,
                  seed=seed + 2),
        SramModel(dut.scale, scale, beat, stall=stall, latency=latency, jitter=jitter,
                  seed=seed + 3),
    ]
    layouter = Layouter(config, rng)
    result = Result()
    tr, cols = config.tile_rows, config.cols
    acc_rows = dut.acc_tiles * tr

    def read_acc(ctx) -> np.ndarray:
        words = [ctx.get(dut.acc_memory.data[r]) for r in range(acc_rows)]
        out = np.array([[(w >> (32 * c)) & 0xFFFFFFFF for c in range(cols)] for w in words],
                       np.uint32)
        return out.reshape(dut.acc_tiles, tr, cols)

    async def bench(ctx):
        for n, case in enumerate(cases):
            fields = layouter.place(machine, case)
            slot = epi_index if epi_index is not None else int(rng.integers(0, 16))
            for i in range(16):  # the other entries are decoys
                machine.epi[i] = epi_identity(float(rng.normal())) if i != slot else case.epi
            fields["epi"] = slot
            spad[:], bias[:], scale[:] = machine.spad, machine.bias, machine.scale
            ins = isa.make(Opcode.MATMUL, **fields)
            ctx.set(dut.epi, EPI_TABLE.const(machine.epi))
            units.matmul(machine, machine._resolve(ins))
            ctx.set(dut.unit.cmd.payload, isa.encode(ins))
            ctx.set(dut.unit.cmd.valid, 1)
            while True:
                *_, ready = await ctx.tick().sample(dut.unit.cmd.ready)
                if ready:
                    break
            ctx.set(dut.unit.cmd.valid, 0)
            budget = max_cycles or 3000 + 12 * case.mt * case.nt * (
                config.pe_interleave * max(case.k, config.rows) + 6 * tr)
            cycles = 0
            while True:
                *_, done, collision = await ctx.tick().sample(dut.unit.done,
                                                              dut.array.debug_collision)
                cycles += 1
                assert not collision, "drain-chain collision in the array"
                if done:
                    break
                assert cycles < budget, f"case {n} ({case}) did not finish in {budget} cycles"
            result.cycles.append(cycles)
            where = f"case {n}: {case}"
            bad = np.flatnonzero(spad != machine.spad)
            assert bad.size == 0, (f"{where}: scratchpad differs at bytes {bad[:16]} "
                                   f"(rtl {spad[bad[:8]]}, model {machine.spad[bad[:8]]})")
            assert (bias == machine.bias).all() and (scale == machine.scale).all()
            if case.acc_out or n == len(cases) - 1:
                acc = read_acc(ctx)
                want = machine.acc.view(np.uint32)
                bad = np.argwhere(acc != want)
                assert bad.size == 0, (f"{where}: accumulator differs at {bad[:8].tolist()}: "
                                       f"rtl {acc[tuple(bad[0])]:#x} "
                                       f"model {want[tuple(bad[0])]:#x}")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for model in models:
        sim.add_process(model.process)
    sim.add_testbench(bench)
    sim.run()
    return result


# ----- tests: sim_small (2×2, P = 2, TR = 4, B = 8 bytes) -------------------------------------

B, F = ElemFormat.BF16, ElemFormat.FP32
RM, AP, BP = OutLayout.ROW_MAJOR, OutLayout.A_PANEL, OutLayout.B_PANEL


def test_bias_modes_layouts_and_formats():
    """Every bias mode, out_fmt and out_layout, dst_pitch (even, odd, 0), k = 1, odd k, several
    tiles, with scratchpad stalls and jitter."""
    cases = [
        Case(mt=1, nt=1, k=1),
        Case(mt=2, nt=3, k=5, bias_mode=BiasMode.ROW, out_fmt=F, epi=epi_identity(0.375)),
        Case(mt=3, nt=2, k=3, bias_mode=BiasMode.COL, layout=AP, epi=epi_identity(-1.5)),
        Case(mt=2, nt=2, k=7, bias_mode=BiasMode.FULL, layout=BP, out_fmt=F,
             epi=epi_identity(3.0)),
        Case(mt=2, nt=3, k=2, bias_mode=BiasMode.FULL, layout=AP, out_fmt=F),
        Case(mt=3, nt=1, k=4, bias_mode=BiasMode.COL, layout=BP, epi=epi_identity(0.5)),
        Case(mt=2, nt=2, k=3, pitch=13, bias_mode=BiasMode.ROW,  # odd pitch: unaligned rows
             epi=epi_identity(1.25)),
        Case(mt=2, nt=2, k=2, pitch=24, out_fmt=F, epi=epi_identity(-0.75)),
    ]
    run_cases(SMALL, cases, seed=1)


def test_rowmax_and_accumulator_chains():
    """rowmax INIT then UPDATE, acc_out → acc_in round trips (K split), acc_in + wb, every
    acc/wb combination, and k = 0 (the sums are the accumulator or +0)."""
    cases = [
        Case(mt=2, nt=3, k=3, rowmax=RowMaxMode.INIT, acc_out=1, acc=5),
        Case(mt=2, nt=3, k=4, rowmax=RowMaxMode.UPDATE, acc_in=1, acc_out=1, acc=5,
             bias_mode=BiasMode.COL),
        Case(mt=2, nt=3, k=2, acc_in=1, wb=1, acc=5, rowmax=RowMaxMode.UPDATE, out_fmt=F),
        Case(mt=1, nt=2, k=5, acc_out=1, wb=0, acc=20, kind="specials"),
        Case(mt=1, nt=2, k=0, acc_in=1, acc_out=1, acc=20),
        Case(mt=1, nt=2, k=0, acc_in=0, acc_out=1, acc=21, rowmax=RowMaxMode.INIT),
        Case(mt=1, nt=2, k=0, acc_in=1, wb=1, acc=20, bias_mode=BiasMode.ROW),
        Case(mt=2, nt=1, k=1, acc_in=1, acc_out=1, wb=0, acc=3),
        Case(mt=0, nt=3, k=4, wb=1),  # nothing at all
    ]
    run_cases(SMALL, cases, seed=2)


def test_activations_and_special_values():
    """UNIFIED (GELU, SiLU, tanh), CLAMP, a scale, NaN/Inf/subnormal operands and biases."""
    cases = [
        Case(mt=2, nt=2, k=6, kind="specials", epi=epi_unified("gelu"),
             bias_mode=BiasMode.FULL),
        Case(mt=1, nt=2, k=5, kind="wide", epi=epi_clamp(-1.5, 2.0, scale=0.5),
             rowmax=RowMaxMode.INIT),
        Case(mt=2, nt=1, k=4, kind="ties", epi=epi_unified("silu", 2.0), out_fmt=F),
        Case(mt=1, nt=1, k=3, kind="cancel", epi=epi_unified("tanh"), layout=AP),
        Case(mt=1, nt=2, k=2, kind="zeros", epi=epi_clamp(0.0, np.inf)),
    ]
    run_cases(SMALL, cases, seed=3)


def test_quantized_b():
    """Every quantized B format (k = one or two blocks, several column tiles): codes decoded
    with their own (k-block, column) scales, NVFP4's tensor scale and E4M3 block scales. A
    quant_block of 16 keeps k small; ``test_odd_geometry`` runs the preset's block of 64."""
    cfg = dataclasses.replace(SMALL, quant_block=16)
    fmts = [f for f in WeightFormat if f is not WeightFormat.BF16]
    cases = [Case(mt=1 + n % 2, nt=2 - n % 2, k=16 * (1 + (n + 1) % 2), fmt=fmt,
                  bias_mode=BiasMode.COL, out_fmt=F if n % 2 else B)
             for n, fmt in enumerate(fmts)]
    run_cases(cfg, cases, seed=10)


def test_full_rate_without_stalls():
    """With an ideal memory the array gets a k-step every P cycles: a multi-tile instruction
    costs P·k per tile plus a fixed overhead (documented in the MatmulUnit docstring)."""
    cfg = dataclasses.replace(SMALL, formats=("bf16",))  # also: an engine without quant
    k, mt, nt = 12, 2, 2
    res = run_cases(cfg, [Case(mt=mt, nt=nt, k=k), Case(mt=1, nt=1, k=k)], seed=4, stall=0.0,
                    jitter=0)
    per_tile = (res.cycles[0] - res.cycles[1]) / (mt * nt - 1)
    assert per_tile <= cfg.pe_interleave * k + 2, res.cycles
    assert res.cycles[1] <= cfg.pe_interleave * k + 120, res.cycles


def test_narrow_epilogue():
    """A 4-column engine whose epilogue is 2 lanes wide: each row passes in two parts (bias
    lanes per part, ROW bias in lane 0 of both, the row maximum across both parts and all
    column tiles)."""
    cfg = dataclasses.replace(SMALL, cols=4)
    cases = [
        Case(mt=2, nt=2, k=3, bias_mode=BiasMode.COL, rowmax=RowMaxMode.INIT,
             epi=epi_unified("gelu", 0.5)),
        Case(mt=1, nt=3, k=2, bias_mode=BiasMode.ROW, rowmax=RowMaxMode.UPDATE, layout=AP),
        Case(mt=2, nt=1, k=5, bias_mode=BiasMode.FULL, out_fmt=F, layout=BP,
             epi=epi_clamp(-2.0, 3.0, 1.5)),
    ]
    run_cases(cfg, cases, seed=8, epilogue_lanes=2)


def test_epilogue_lanes_must_divide_cols():
    with pytest.raises(ValueError, match="epilogue_lanes"):
        MatmulUnit(dataclasses.replace(SMALL, cols=4), epilogue_lanes=3)


# ----- default configuration (8×8, P = 4, TR = 32, B = 32 bytes) ------------------------------


def test_default_config_bf16():
    """One default-config case: ROW bias, GELU, rowmax, acc_out (the array runs 4 cycles per
    k-step; checks the 2-row A k-steps and half-row B k-steps)."""
    cfg = EngineConfig()
    run_cases(cfg, [Case(mt=1, nt=2, k=9, bias_mode=BiasMode.ROW, epi=epi_unified("gelu"),
                         rowmax=RowMaxMode.INIT, acc_out=1, acc=3)], seed=5)


@pytest.mark.slow
def test_default_config_sweep():
    """Default config: quantized B, every layout, acc round trips."""
    cfg = EngineConfig()
    cases = [
        Case(mt=2, nt=2, k=64, fmt=WeightFormat.INT4, bias_mode=BiasMode.FULL, layout=AP),
        Case(mt=1, nt=3, k=16, fmt=WeightFormat.NVFP4, out_fmt=F, layout=BP, acc_out=1),
        Case(mt=1, nt=3, k=17, acc_in=1, rowmax=RowMaxMode.UPDATE, pitch=70),
        Case(mt=2, nt=1, k=64, fmt=WeightFormat.IF8, epi=epi_clamp(-1.0, 1.0)),
    ]
    run_cases(cfg, cases, seed=6)


def test_odd_geometry():
    """A 2×3 array with P = 5 (TR = 10: A k-steps of 20 bytes straddle 8-byte rows; 3 columns:
    12-bit 4-bit B k-steps; A_PANEL pieces of 3, 3, 3, 1 elements), unaligned everything,
    the preset's quant block of 64, and only two formats built (bf16 and int4)."""
    cfg = dataclasses.replace(SMALL, rows=2, cols=3, pe_interleave=5, formats=("bf16", "int4"))
    cases = [
        Case(mt=2, nt=2, k=5, bias_mode=BiasMode.FULL, pitch=19),
        Case(mt=1, nt=1, k=64, fmt=WeightFormat.INT4, layout=AP, out_fmt=F,
             rowmax=RowMaxMode.INIT),
        Case(mt=2, nt=1, k=3, layout=BP, bias_mode=BiasMode.ROW, acc_out=1, acc=7),
    ]
    run_cases(cfg, cases, seed=7)
