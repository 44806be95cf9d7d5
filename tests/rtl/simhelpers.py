"""Small helpers for Amaranth async testbenches used by the RTL tests.

* ``run(dut, *benches)`` builds a simulator with a 100 MHz clock and runs the benches.
* ``drive_pipeline`` feeds one operand set per cycle into a fixed-latency unit and returns
  what came out ``latency`` cycles later (full throughput, no bubbles).
* ``pack`` / ``unpack`` convert between lists of fields and the flat integer of an
  ``ArrayLayout`` port (much faster than setting array elements one by one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

from amaranth.hdl import Value
from amaranth.lib import data
from amaranth.sim import Simulator


def run(dut, *benches: Callable, processes: Sequence[Callable] = (), vcd: str | None = None):
    """Simulate ``dut`` with the given async testbenches until they all return.

    Set ``RTL_VCD=dir`` in the environment to dump every simulation to ``dir/<name>.vcd``.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-8, if_exists=True)  # 100 MHz; purely combinational DUTs have none
    for bench in benches:
        sim.add_testbench(bench)
    for proc in processes:
        sim.add_process(proc)
    vcd_dir = os.environ.get("RTL_VCD")
    if vcd is None and vcd_dir:
        vcd = os.path.join(vcd_dir, f"{type(dut).__name__}.vcd")
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def as_value(port):
    """The plain Amaranth value under a port (unwraps ``data.View`` for packed access)."""
    return port.as_value() if isinstance(port, data.View) else port


def pack(values: Iterable[int], width: int) -> int:
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


async def drive_pipeline(
    ctx,
    inputs: Sequence[tuple[Value, Sequence[int]]],
    outputs: Sequence[Value],
    latency: int,
) -> list[list[int]]:
    """Present ``values[c]`` on each ``(port, values)`` of ``inputs`` in cycle ``c``; sample
    ``outputs`` ``latency`` cycles later (Amaranth signals are not hashable, hence pairs).

    Returns one list per output port, aligned with the inputs (entry ``c`` is the result of
    the operands presented in cycle ``c``).
    """
    count = len(inputs[0][1])
    # Array/struct views take the packed integer through their underlying value.
    inputs = [(as_value(port), values) for port, values in inputs]
    results: list[list[int]] = [[] for _ in outputs]
    for cycle in range(count + latency):
        if cycle < count:
            for port, values in inputs:
                ctx.set(port, int(values[cycle]))
        if cycle >= latency:
            for k, port in enumerate(outputs):
                results[k].append(ctx.get(port))
        if latency:
            await ctx.tick()
        else:
            await ctx.delay(1e-8)  # a combinational unit has no clock domain
    return results


def assert_bits_equal(got, expected, *operands, name: str = "result", width: int = 8) -> None:
    """Assert two bit-pattern sequences are equal; report the first mismatches in hex."""
    import numpy as np

    got = np.asarray(got, dtype=np.uint64)
    expected = np.asarray(expected, dtype=np.uint64)
    assert got.shape == expected.shape, f"{name}: {got.shape} results, expected {expected.shape}"
    bad = np.flatnonzero(got != expected)
    if len(bad):
        lines = []
        for k in bad[:8]:
            ops = ", ".join(f"{int(np.asarray(op)[k]):0{width}x}" for op in operands)
            lines.append(
                f"  [{k}] ({ops}) -> got {int(got[k]):0{width}x}, "
                f"expected {int(expected[k]):0{width}x}"
            )
        raise AssertionError(f"{name}: {len(bad)} of {len(got)} mismatch(es):\n" + "\n".join(lines))
