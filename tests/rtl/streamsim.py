"""Drive an ``amaranth.lib.stream`` component in an async testbench and check the protocol.

``stream_transfer`` plays both ends of a one-in, one-out streaming unit cycle by cycle: it
offers the input payloads (with optional random idle cycles between them), drives the output's
``ready`` (optionally stalling at random), and records the cycle of every input and output
transfer, so tests can check values, ordering, throughput and latency. It also checks the
stream rules on the DUT's output: once ``valid`` is high it stays high, with the same payload,
until a transfer happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator


@dataclass
class StreamLog:
    """Cycle numbers of the input transfers, and (cycle, payload) of the output transfers."""

    accepted: list[int] = field(default_factory=list)
    delivered: list[tuple[int, int]] = field(default_factory=list)

    @property
    def outputs(self) -> list[int]:
        return [payload for _, payload in self.delivered]


def simulate_stream(
    dut,
    payloads: Sequence[int],
    expected_outputs: int,
    *,
    seed: int = 0,
    gap_probability: float = 0.0,
    stall_probability: float = 0.0,
    max_cycles: int | None = None,
) -> StreamLog:
    """Push ``payloads`` (whole-payload integers) into ``dut.i`` and collect
    ``expected_outputs`` payloads from ``dut.o``.

    ``gap_probability`` is the chance of an idle cycle before each input (valid low), and
    ``stall_probability`` the chance that ``o.ready`` is low in a cycle. Both 0 means full
    throughput. The run fails if it needs more than ``max_cycles`` cycles.
    """
    rng = np.random.default_rng(seed)
    log = StreamLog()
    limit = max_cycles or 10 * (len(payloads) + expected_outputs) + 100
    in_payload, out_payload = Value.cast(dut.i.payload), Value.cast(dut.o.payload)

    async def bench(ctx):
        pending = list(reversed(payloads))
        current = None  # payload offered and not yet taken
        held = None  # output payload seen with valid & ~ready: must persist
        cycle = 0
        while len(log.delivered) < expected_outputs:
            assert cycle < limit, f"no progress after {limit} cycles: {len(log.delivered)} out"
            if current is None and pending and not rng.random() < gap_probability:
                current = pending.pop()
            ctx.set(dut.i.valid, current is not None)
            if current is not None:
                ctx.set(in_payload, current)
            ready = not rng.random() < stall_probability
            ctx.set(dut.o.ready, ready)
            _, _, i_ready, o_valid, o_payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, out_payload
            )
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
        # A few more cycles: nothing further may come out.
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(4):
            _, _, o_valid = await ctx.tick().sample(dut.o.valid)
            assert not o_valid, "the unit produced more outputs than expected"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(log.accepted) == len(payloads), "not every input was accepted"
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
