"""Stream testbench for the lane units (``VectorUnit``, ``Epilogue``): several input streams,
one output stream, optional random idle cycles and back-pressure, protocol checks.

``run_streams`` offers each input stream's payloads in order (each stream with its own random
gaps), drives ``o.ready`` (random stalls), and records the cycle of every transfer. It checks
the stream rule on the output (a payload offered with ``valid`` stays until it is taken) and
that nothing extra comes out afterwards. Payloads are whole packed integers, set in one go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator


@dataclass
class Phase:
    """A batch of input payloads per stream (name → list of packed ints), the number of
    outputs it produces, and static port values set (with the unit idle) before it starts."""

    inputs: dict[str, Sequence[int]]
    outputs: int
    static: Sequence[tuple[Value, int]] = ()
    #: stream name → (signal, values): ``values[n]`` is driven on ``signal`` while the
    #: stream's n-th payload is offered (a side-band operand sampled with the transfer), and
    #: random bits while nothing is offered.
    sideband: dict[str, tuple[Value, Sequence[int]]] = field(default_factory=dict)


@dataclass
class StreamLog:
    accepted: dict[str, list[int]] = field(default_factory=dict)
    delivered: list[tuple[int, int]] = field(default_factory=list)
    #: (cycle, values of ``run_streams(watch=...)``) for every cycle of the phase
    watched: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)

    @property
    def outputs(self) -> list[int]:
        return [payload for _, payload in self.delivered]

    @property
    def out_cycles(self) -> list[int]:
        return [cycle for cycle, _ in self.delivered]


def run_streams(
    dut,
    phases: Sequence[Phase],
    *,
    seed: int = 0,
    gap_probability: float = 0.0,
    stall_probability: float = 0.0,
    idle_check: Callable | None = None,
    watch: Sequence[Value] = (),
) -> list[StreamLog]:
    """Simulate ``dut`` (streams named as in ``Phase.inputs``, output ``dut.o``) phase by phase.

    Between phases the unit is drained (all outputs taken) before the next phase's static
    values are set; ``idle_check(ctx)`` (optional) is called then and may assert on the DUT.
    ``watch`` lists extra signals sampled every cycle (``StreamLog.watched``). Returns one
    ``StreamLog`` per phase (cycles count from the start of the simulation).
    """
    rng = np.random.default_rng(seed)
    logs = [StreamLog() for _ in phases]
    out_payload = Value.cast(dut.o.payload)

    async def bench(ctx):
        cycle = 0
        for phase, log in zip(phases, logs, strict=True):
            for sig, value in phase.static:
                ctx.set(sig, value)
            streams = {}
            for name, payloads in phase.inputs.items():
                port = getattr(dut, name)
                order = list(reversed(range(len(payloads))))
                streams[name] = [port, Value.cast(port.payload), order, None, payloads, name]
                log.accepted[name] = []
            limit = cycle + 20 * (max(map(len, phase.inputs.values()), default=0)
                                  + phase.outputs) + 200
            held = None
            while len(log.delivered) < phase.outputs:
                assert cycle < limit, f"no progress: {len(log.delivered)} of {phase.outputs} out"
                for st in streams.values():
                    port, payload, pending, current, values, name = st
                    if current is None and pending and not rng.random() < gap_probability:
                        st[3] = current = pending.pop()
                    ctx.set(port.valid, current is not None)
                    if current is not None:
                        ctx.set(payload, values[current])
                    if name in phase.sideband:
                        # The side-band value is only valid with its payload: garbage
                        # otherwise, so a unit that samples it at the wrong time fails.
                        sig, side = phase.sideband[name]
                        garbage = int(rng.integers(0, 1 << 32)) & ((1 << len(sig)) - 1)
                        ctx.set(sig, side[current] if current is not None else garbage)
                ready = not rng.random() < stall_probability
                ctx.set(dut.o.ready, ready)
                samples = await ctx.tick().sample(
                    dut.o.valid, out_payload, *watch, *(st[0].ready for st in streams.values())
                )
                o_valid, o_payload = samples[2:4]
                readies = samples[4 + len(watch):]
                log.watched.append((cycle, tuple(samples[4:4 + len(watch)])))
                if held is not None:
                    assert o_valid and o_payload == held, (
                        f"cycle {cycle}: output changed while stalled "
                        f"({held:#x} -> {o_payload:#x}, valid={o_valid})"
                    )
                held = o_payload if o_valid and not ready else None
                for (name, st), rdy in zip(streams.items(), readies, strict=True):
                    if st[3] is not None and rdy:
                        log.accepted[name].append(cycle)
                        st[3] = None
                if o_valid and ready:
                    log.delivered.append((cycle, o_payload))
                cycle += 1
            for name, st in streams.items():
                assert st[3] is None and not st[2], f"stream {name!r}: not every input taken"
                ctx.set(st[0].valid, 0)
            ctx.set(dut.o.ready, 1)
            for _ in range(3):  # nothing further may come out
                (o_valid,) = (await ctx.tick().sample(dut.o.valid))[2:]
                cycle += 1
                assert not o_valid, "the unit produced more outputs than inputs"
            if idle_check is not None:
                idle_check(ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return logs


def pack(values, width: int) -> int:
    """Concatenate ``values`` (element 0 in the low bits) into one integer."""
    out = 0
    mask = (1 << width) - 1
    for k, value in enumerate(values):
        out |= (int(value) & mask) << (k * width)
    return out


def unpack(value: int, width: int, count: int) -> list[int]:
    """Split an integer into ``count`` fields of ``width`` bits (inverse of ``pack``)."""
    mask = (1 << width) - 1
    return [(value >> (k * width)) & mask for k in range(count)]


def pack_struct(layout, **fields) -> int:
    """Pack a ``data.StructLayout`` payload from field values (ints, enum members, or lists
    of ints for ``ArrayLayout`` fields of equal-width elements)."""
    out = 0
    for name, member in layout:
        value = fields.get(name, 0)
        shape = member.shape
        if isinstance(value, list | tuple | np.ndarray):
            elem = shape.elem_shape
            width = elem if isinstance(elem, int) else elem.width
            value = pack(value, width)
        elif hasattr(value, "value"):  # enum member
            value = value.value
        out |= (int(value) & ((1 << member.width) - 1)) << member.offset
    return out


def field_of(layout, payload: int, name: str) -> int:
    """The raw bits of field ``name`` of a packed ``StructLayout`` payload."""
    member = layout[name]
    return (payload >> member.offset) & ((1 << member.width) - 1)
