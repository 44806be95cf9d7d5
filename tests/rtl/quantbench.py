"""Test-bench helpers for the block-quant RTL (``unified_engine.rtl.quant``).

``run_stream`` plays both ends of a one-in, one-out stream component: it offers input beats
(setting side inputs such as ``fmt`` together with each beat), optionally inserting random
idle cycles before inputs and random ``ready`` stalls on the output, records the cycle of
every transfer, and checks the stream rule on the output (a valid beat stays, unchanged,
until it is taken). Golden-model wrappers turn beat lists into expected outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator

from unified_engine.config import EngineConfig
from unified_engine.isa import WeightFormat
from unified_engine.numerics import fp
from unified_engine.numerics import quant_blocks as qb

SIM_SMALL = EngineConfig.preset("sim_small")


def config(lanes: int, quant_block: int, formats=None) -> EngineConfig:
    """``sim_small`` with ``lanes`` (AXI width raised to fit) and ``quant_block``."""
    fields = dict(lanes=lanes, quant_block=quant_block,
                  axi_data_width=max(SIM_SMALL.axi_data_width, 16 * lanes))
    if formats is not None:
        fields["formats"] = formats
    return dataclasses.replace(SIM_SMALL, **fields)


@dataclasses.dataclass
class StreamLog:
    """Cycle numbers of the accepted inputs and (cycle, payload) of the delivered outputs."""

    accepted: list[int] = dataclasses.field(default_factory=list)
    delivered: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    watched: list[tuple[int, ...]] = dataclasses.field(default_factory=list)

    @property
    def outputs(self) -> list[int]:
        return [payload for _, payload in self.delivered]


def run_stream(
    dut,
    beats: Sequence[dict],
    expected_outputs: int,
    *,
    seed: int = 0,
    gap_probability: float = 0.0,
    stall_probability: float = 0.0,
    max_cycles: int | None = None,
    watch=(),
    watch_when=None,
) -> StreamLog:
    """Offer ``beats`` on ``dut.i`` and collect ``expected_outputs`` beats from ``dut.o``.

    Each beat is a dict: ``"payload"`` (the whole payload as an integer) plus any number of
    ``port name → value`` side inputs, set while the beat is offered (they keep their value
    afterwards). The values of the signals ``watch`` are recorded in ``log.watched`` in every
    cycle in which ``watch_when`` is 1. Returns the log; fails on a protocol violation, on
    extra outputs or when the run needs more than ``max_cycles``.
    """
    rng = np.random.default_rng(seed)
    log = StreamLog()
    limit = max_cycles or 20 * (len(beats) + expected_outputs) + 200
    in_payload, out_payload = Value.cast(dut.i.payload), Value.cast(dut.o.payload)

    async def bench(ctx):
        pending = list(reversed(beats))
        current = None
        held = None
        cycle = 0
        while len(log.delivered) < expected_outputs:
            assert cycle < limit, f"no progress after {limit} cycles: {len(log.delivered)} out"
            if current is None and pending and not rng.random() < gap_probability:
                current = pending.pop()
                for name, value in current.items():
                    ctx.set(in_payload if name == "payload" else getattr(dut, name), value)
            ctx.set(dut.i.valid, current is not None)
            ready = not rng.random() < stall_probability
            ctx.set(dut.o.ready, ready)
            watching = () if watch_when is None else (watch_when, *watch)
            _, _, i_ready, o_valid, o_payload, *seen = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, out_payload, *watching
            )
            if seen and seen[0]:
                log.watched.append(tuple(seen[1:]))
            if held is not None:
                assert o_valid and o_payload == held, (
                    f"cycle {cycle}: output changed while stalled ({held:#x} -> "
                    f"{o_payload:#x}, valid={o_valid})"
                )
            held = o_payload if o_valid and not ready else None
            if current is not None and i_ready:
                log.accepted.append(cycle)
                current = None
            if o_valid and ready:
                log.delivered.append((cycle, o_payload))
            cycle += 1
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(6):
            _, _, o_valid = await ctx.tick().sample(dut.o.valid)
            assert not o_valid, "the unit produced more outputs than expected"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(log.accepted) == len(beats), "not every input beat was accepted"
    return log


def pack(values, width: int) -> int:
    """Concatenate ``values`` (element 0 in the low bits) into one integer."""
    out = 0
    for k, value in enumerate(values):
        out |= (int(value) & ((1 << width) - 1)) << (k * width)
    return out


def unpack(value: int, width: int, count: int) -> list[int]:
    """Split an integer into ``count`` fields of ``width`` bits (inverse of ``pack``)."""
    mask = (1 << width) - 1
    return [(value >> (k * width)) & mask for k in range(count)]


def assert_beats_equal(got: np.ndarray, expected: np.ndarray, what: str, context=None) -> None:
    """Compare ``[beats, lanes]`` arrays; report the first mismatching beats in hex."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} vs {expected.shape}"
    bad = np.argwhere(got != expected)
    if len(bad):
        lines = []
        for beat, lane in bad[:8]:
            extra = f" {context(beat)}" if context else ""
            lines.append(f"  beat {beat} lane {lane}: got {int(got[beat, lane]):#06x}, "
                         f"expected {int(expected[beat, lane]):#06x}{extra}")
        raise AssertionError(f"{what}: {len(bad)} mismatching element(s)\n" + "\n".join(lines))


# ----- golden models, per element --------------------------------------------------------------

BF16_DECODERS = {
    WeightFormat.INT4: qb.decode_int4,
    WeightFormat.FP4: qb.decode_fp4,
    WeightFormat.IF4: qb.decode_if4,
    WeightFormat.INT8: qb.decode_int8,
    WeightFormat.FP8: qb.decode_fp8,
    WeightFormat.IF8: qb.decode_if8,
}


def golden_decode(fmt: WeightFormat, codes: np.ndarray, scales: np.ndarray,
                  tensor_scale_bits: int) -> np.ndarray:
    """bf16 of each element: ``codes`` uint8 ``[n]`` and the scale entry of each element
    ``[n]`` (bf16 bits, or the E4M3 byte for NVFP4)."""
    codes = np.asarray(codes, np.uint8)[:, None]  # every element as a block of one
    if fmt == WeightFormat.NVFP4:
        ts = fp.f32_from_bits(np.uint32(tensor_scale_bits))[()]
        return qb.decode_nvfp4(codes, np.asarray(scales, np.uint8), np.float32(ts))[:, 0]
    return BF16_DECODERS[fmt](codes, np.asarray(scales, np.uint16))[:, 0]
