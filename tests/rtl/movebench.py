"""Test bench for ``VectorMove``: run VECTOR instructions on the RTL and on the ISA simulator.

``MoveBench`` holds a scratchpad and a scale memory (numpy), and a ``host.isasim.Machine``
with copies of them. ``run(instructions)`` resolves each instruction as the dispatcher does
(``Machine._resolve``), applies ``host.units.vector`` to the machine's memories in order, and
runs the same resolved words on ``VectorMove`` in one simulation (``SramModel``s on both
ports, optional stalls and latency), one command after the previous ``done``; afterwards every
byte of both memories must match. It also checks that ``done`` pulses once per command and
records the cycles from each command to its ``done``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator
from memmodels import SramModel

from unified_engine.config import EngineConfig
from unified_engine.host import units
from unified_engine.host.isasim import Machine
from unified_engine.isa import ElemFormat, Opcode, VecOp, WeightFormat, isa_for
from unified_engine.numerics import fp
from unified_engine.numerics import quant_blocks as qb
from unified_engine.rtl.vector_move import VectorMove

SIM_SMALL = EngineConfig.preset("sim_small")


@dataclasses.dataclass
class Result:
    cycles: list[int]
    spad_reads: int
    spad_writes: int


def make(config: EngineConfig, op: VecOp, **fields):
    """A VECTOR instruction (addresses as immediates; ``src0=``, ``dst=`` are rows)."""
    isa = isa_for(config)
    values = {"op": op}
    for key, value in fields.items():
        values[f"{key}.imm" if key in ("src0", "src1", "dst") else key] = value
    return isa.make(Opcode.VECTOR, **values)


class MoveBench:
    """Memories, reference machine and simulation of one ``VectorMove``."""

    def __init__(self, config: EngineConfig = SIM_SMALL, *, seed: int = 0, **dut_kw):
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.dut_kw = dut_kw
        self.spad = self.rng.integers(0, 256, config.scratchpad_bytes).astype(np.uint8)
        self.scale = self.rng.integers(0, 256, config.scale_bytes).astype(np.uint8)
        self.machine = Machine(config, np.zeros(64, np.uint8))

    def run(self, instructions, *, stall: float = 0.0, latency: int = 1, jitter: int = 0,
            max_cycles: int = 20_000) -> Result:
        cfg = self.config
        isa = isa_for(cfg)
        m = self.machine
        m.spad, m.scale = self.spad.copy(), self.scale.copy()
        words = []
        for ins in instructions:
            fields = m._resolve(ins)
            units.vector(m, fields)  # the reference, in program order
            words.append(isa.encode(ins))
        if any(ins.fields["rows"] and ins.fields["length"] for ins in instructions):
            # A real comparison: the reference changed the memories it was given.
            assert (m.spad != self.spad).any(), "the reference wrote nothing"
        dut = VectorMove(cfg, **self.dut_kw)
        spad, scale = self.spad.copy(), self.scale.copy()
        beat = cfg.axi_bytes
        spad_model = SramModel(dut.spad, spad, beat, stall=stall, latency=latency,
                               jitter=jitter, seed=1)
        scale_model = SramModel(dut.scale, scale, beat, stall=stall, latency=latency,
                                jitter=jitter, seed=2)
        cycles = []

        async def bench(ctx):
            cmd = dut.unit.cmd
            total = 0
            for word in words:
                ctx.set(Value.cast(cmd.payload), word)
                ctx.set(cmd.valid, 1)
                count = 0
                while True:  # offer until taken
                    _, _, ready = await ctx.tick().sample(cmd.ready)
                    count += 1
                    if ready:
                        break
                ctx.set(cmd.valid, 0)
                done = 0
                while not done:
                    done, ready = ctx.get(dut.unit.done), ctx.get(cmd.ready)
                    assert not ready or done, "ready again before done"
                    if done:
                        break
                    await ctx.tick()
                    count += 1
                    total += 1
                    assert total < max_cycles, "no done"
                cycles.append(count)
                await ctx.tick()
                assert not ctx.get(dut.unit.done), "done pulsed for more than one cycle"
            for _ in range(8):  # nothing happens after the last done
                await ctx.tick()
                assert not ctx.get(dut.unit.done)

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.add_process(spad_model.process)
        sim.add_process(scale_model.process)
        sim.add_process(stream_monitor(dut.spad.req, "spad"))
        sim.add_process(stream_monitor(dut.scale.req, "scale"))
        sim.run()
        compare(spad, m.spad, "scratchpad", beat)
        compare(scale, m.scale, "scale memory", beat)
        self.spad, self.scale = spad, scale
        return Result(cycles, spad_model.reads, spad_model.writes)


def stream_monitor(req, name: str):
    """A process asserting the stream rule on a request port: an offer that is not taken
    stays offered, unchanged, in the next cycle."""
    payload = Value.cast(req.payload)

    async def process(ctx):
        held = None
        async for _, _, valid, ready, value in ctx.tick().sample(req.valid, req.ready, payload):
            if held is not None:
                assert valid and value == held, f"{name}: request withdrawn or changed"
            held = value if valid and not ready else None

    return process


def compare(got: np.ndarray, want: np.ndarray, what: str, beat: int) -> None:
    bad = np.flatnonzero(got != want)
    if len(bad):
        rows = sorted({int(b) // beat for b in bad})[:6]
        lines = [f"  row {r}: got {got[r * beat:(r + 1) * beat].tobytes().hex()} "
                 f"expected {want[r * beat:(r + 1) * beat].tobytes().hex()}" for r in rows]
        raise AssertionError(f"{what}: {len(bad)} bytes differ (first at {bad[0]:#x})\n"
                             + "\n".join(lines))


# ----- operand contents ------------------------------------------------------------------------


def bf16_rows(rng, count: int) -> np.ndarray:
    """bf16 bit patterns for QUANTIZE sources: Gaussian blocks of varied scale, with ±0,
    subnormals and (rarely) Inf/NaN mixed in; ``count`` values."""
    scale = 2.0 ** rng.integers(-20, 20, (count + 15) // 16).repeat(16)[:count]
    x = fp.f32_to_bf16((rng.standard_normal(count) * scale).astype(np.float32))
    special = rng.random(count)
    x[special < 0.03] = rng.choice([0x0000, 0x8000, 0x0001, 0x807F], (special < 0.03).sum())
    x[special > 0.998] = rng.choice([0x7F80, 0xFFC0, 0x7F7F], (special > 0.998).sum())
    return x.astype(np.uint16)


def element_bits(rng, count: int, fmt: ElemFormat) -> np.ndarray:
    """Random bf16/fp32 bit patterns (as bytes) rich in the conversion corner cases: ±0,
    subnormals, ±Inf, NaNs with any payload, the largest finite values, fp32 → bf16 ties."""
    if fmt == ElemFormat.BF16:
        x = rng.integers(0, 1 << 16, count).astype(np.uint16)
        special = np.array([0x0000, 0x8000, 0x0001, 0x807F, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1,
                            0x7F81, 0x7F7F], np.uint16)
        exp_mask = np.uint16(0x7F80)
    else:
        x = rng.integers(0, 1 << 32, count, dtype=np.uint64).astype(np.uint32)
        special = np.array([0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F800000,
                            0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x7F7FFFFF,
                            0x3F808000, 0x3F818000, 0x7F7F8000, 0x00808000], np.uint32)
        exp_mask = np.uint32(0x7F800000)
    pick = rng.random(count)
    x[pick < 0.3] = rng.choice(special, (pick < 0.3).sum())
    sub = (pick >= 0.3) & (pick < 0.4)  # subnormals with random payloads
    x[sub] &= ~exp_mask
    return x.view(np.uint8)


def write_bytes(mem: np.ndarray, row: int, beat: int, payload: np.ndarray, stride_rows: int,
                rows: int) -> None:
    """Write ``rows`` equal parts of ``payload`` (bytes) at ``row + r·stride_rows``."""
    per = payload.size // rows
    for r in range(rows):
        start = (row + r * stride_rows) * beat
        mem[start:start + per] = payload[r * per:(r + 1) * per]


def rows_of(nbytes: int, beat: int) -> int:
    return -(-nbytes // beat)


def block_of(config: EngineConfig, fmt: WeightFormat) -> int:
    return qb.NVFP4_BLOCK if fmt == WeightFormat.NVFP4 else config.quant_block


def elem_bytes(fmt: ElemFormat) -> int:
    return 2 if fmt == ElemFormat.BF16 else 4


def tensor_scale_bits(rng, x_bits: np.ndarray) -> int:
    """A valid NVFP4 tensor scale (``imm``): the tensor's own, or one far off."""
    finite = np.isfinite(fp.bf16_to_f32(x_bits)).all()
    ts = qb.nvfp4_tensor_scale(x_bits) if finite else np.float32(1.0)
    ts = float(ts) * 2.0 ** int(rng.choice([0, 0, -8, 9]))
    return int(fp.f32_to_bits(np.float32(min(max(ts, 2.0**-126), 2.0**120))))
