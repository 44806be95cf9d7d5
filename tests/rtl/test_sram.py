# amaranth: UnusedElaboratable=no
"""OnChipMemory against a Python reference memory: random multi-client traffic (every read
answered with the reference row, in order, exactly ``read_latency`` cycles later; writes with
random byte enables, same-row collisions), per-client ordering, round-robin fairness and full
throughput (one read + one write per cycle; one client streaming reads every cycle)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from amaranth.hdl import Value
from simhelpers import run

from unified_engine.config import EngineConfig
from unified_engine.rtl.engine_if import MemoryGeometry, memory_geometry
from unified_engine.rtl.sram import OnChipMemory


def _payload(port, addr: int, write: bool, data: int, be: int) -> int:
    layout = port.req.payload.shape()
    fields = {"addr": addr, "write": int(write), "data": data, "be": be}
    return sum(fields[name] << f.offset for name, f in layout)


class Traffic:
    """Drives every client port cycle by cycle and checks responses against a reference.

    ``plan(cycle, k)`` returns None (idle) or ``(write, addr, data, be)`` for a *new* request
    of client ``k``; a request not yet accepted is held unchanged (stream rule).
    """

    def __init__(self, dut: OnChipMemory, plan, cycles: int, seed: int = 0) -> None:
        self.dut, self.plan, self.cycles = dut, plan, cycles
        g = dut.geometry
        rng = np.random.default_rng(seed)
        self.ref = rng.integers(0, 256, g.rows * g.beat_bytes, dtype=np.uint8)
        self.beat = g.beat_bytes
        self.accepted: list[list[tuple[int, bool]]] = [[] for _ in dut.ports]  # (cycle, write)
        self.answered: list[list[int]] = [[] for _ in dut.ports]  # response cycles

    def _row(self, addr: int) -> int:
        return int.from_bytes(self.ref[addr * self.beat:(addr + 1) * self.beat].tobytes(),
                              "little")

    def _write(self, addr: int, data: int, be: int) -> None:
        new = data.to_bytes(self.beat, "little")
        for i in range(self.beat):
            if be >> i & 1:
                self.ref[addr * self.beat + i] = new[i]

    async def bench(self, ctx) -> None:
        dut, lat = self.dut, self.dut.read_latency
        ports = dut.ports
        for row in range(dut.geometry.rows):  # random initial contents
            ctx.set(dut.data[row], self._row(row))
        held: list[tuple | None] = [None] * len(ports)
        expect: list[deque[tuple[int, int]]] = [deque() for _ in ports]  # (due cycle, row)
        cycle = 0
        while cycle < self.cycles or any(held) or any(expect):
            assert cycle < self.cycles + 100, "the traffic does not drain"
            for k, port in enumerate(ports):
                if held[k] is None and cycle < self.cycles:
                    held[k] = self.plan(cycle, k)
                req = held[k]
                ctx.set(port.req.valid, req is not None)
                if req is not None:
                    write, addr, data, be = req
                    ctx.set(Value.cast(port.req.payload), _payload(port, addr, write, data, be))
            granted = [bool(held[k] is not None and ctx.get(p.req.ready))
                       for k, p in enumerate(ports)]
            assert sum(g and held[k][0] for k, g in enumerate(granted)) <= 1, "two writes"
            assert sum(g and not held[k][0] for k, g in enumerate(granted)) <= 1, "two reads"
            # A same-cycle read sees the write only through a transparent port.
            order = (True, False) if dut.transparent else (False, True)
            for kind in order:
                for k, g in enumerate(granted):
                    if g and held[k][0] == kind:
                        self.accepted[k].append((cycle, kind))
                        _, addr, data, be = held[k]
                        if kind:
                            self._write(addr, data, be)
                        else:
                            expect[k].append((cycle + lat, self._row(addr)))
            for k, g in enumerate(granted):
                if g:
                    held[k] = None
            for k, port in enumerate(ports):
                valid = ctx.get(port.resp.valid)
                due = bool(expect[k]) and expect[k][0][0] == cycle
                assert valid == due, f"cycle {cycle}: client {k} resp.valid={valid}, due={due}"
                if due:
                    _, row = expect[k].popleft()
                    got = ctx.get(port.resp.payload)
                    assert got == row, f"cycle {cycle}: client {k} read {got:#x}, want {row:#x}"
                    self.answered[k].append(cycle)
            await ctx.tick()
            cycle += 1


def _simulate(geometry: MemoryGeometry, clients: int, plan, cycles: int, *, latency: int = 1,
              seed: int = 0, transparent: bool = True) -> Traffic:
    dut = OnChipMemory(geometry, clients, read_latency=latency, transparent=transparent)
    traffic = Traffic(dut, plan, cycles, seed)
    run(dut, traffic.bench)
    return traffic


def _random_plan(geometry: MemoryGeometry, clients: int, seed: int, busy: float,
                 hot_rows: int = 6):
    rng = np.random.default_rng(seed)
    beat = geometry.beat_bytes

    def plan(cycle: int, k: int):
        if rng.random() >= busy:
            return None
        # Most addresses in a few hot rows (read-after-write collisions), some anywhere.
        rows = hot_rows if rng.random() < 0.7 else geometry.rows
        addr = int(rng.integers(0, rows))
        data = int.from_bytes(rng.integers(0, 256, beat, dtype=np.uint8).tobytes(), "little")
        be = int(rng.integers(0, 1 << beat)) if rng.random() < 0.6 else (1 << beat) - 1
        return bool(rng.random() < 0.4), addr, data, be

    return plan


SMALL = EngineConfig.preset("sim_small")
DEFAULT = EngineConfig()


@pytest.mark.parametrize("geometry, clients, latency, transparent", [
    (memory_geometry(SMALL)["bias"], 3, 1, True),      # 128 rows of 8 bytes
    (memory_geometry(SMALL)["spad"], 4, 1, True),      # 2048 rows
    (MemoryGeometry("t", 64 * 32, 32), 2, 2, True),    # 256-bit rows, output register
    (MemoryGeometry("t", 16 * 8, 8), 1, 1, True),      # one client
    (memory_geometry(SMALL)["scale"], 5, 2, True),
    (memory_geometry(SMALL)["bias"], 3, 1, False),     # same-cycle read gives the old row
    (MemoryGeometry("t", 64 * 32, 32), 2, 2, False),
])
def test_random_traffic(geometry, clients, latency, transparent):
    plan = _random_plan(geometry, clients, seed=clients, busy=0.7)
    t = _simulate(geometry, clients, plan, 1500, latency=latency, seed=1,
                  transparent=transparent)
    for k in range(clients):
        reads = [c for c, w in t.accepted[k] if not w]
        assert t.answered[k] == [c + latency for c in reads]  # in order, fixed latency
    assert sum(len(a) for a in t.accepted) > 900  # the test did move data


def test_fairness_no_starvation():
    """Every client asks every cycle (reads and writes mixed): each kind rotates through the
    clients that ask for it, so no client waits more than ``clients`` cycles."""
    geometry = memory_geometry(SMALL)["bias"]
    clients = 4
    rng = np.random.default_rng(3)

    def plan(cycle: int, k: int):
        data = int(rng.integers(0, 1 << 63))
        return bool(rng.random() < 0.5), int(rng.integers(0, 8)), data, 0xFF

    t = _simulate(geometry, clients, plan, 300)
    for k in range(clients):
        cycles = [c for c, _ in t.accepted[k]]
        assert len(cycles) > 300 // (2 * clients)
        # A client asks again right after each grant: its wait is at most clients cycles.
        gaps = np.diff([-1, *cycles])
        assert gaps.max() <= clients, f"client {k} waited {gaps.max()} cycles"


def test_round_robin_order():
    """Three clients reading all the time are served 0, 1, 2, 0, 1, 2, …"""
    geometry = memory_geometry(SMALL)["bias"]

    def plan(cycle: int, k: int):
        return False, k, 0, 0

    t = _simulate(geometry, 3, plan, 30)
    for k in range(3):
        assert [c for c, _ in t.accepted[k] if c < 30] == list(range(k, 30, 3))


def test_full_throughput():
    """Client 0 streams reads, client 1 streams writes, client 2 is idle: both every cycle;
    the reads see the writes of earlier cycles (and of the same cycle)."""
    geometry = memory_geometry(SMALL)["spad"]
    cycles = 200

    def plan(cycle: int, k: int):
        if k == 0:
            return False, cycle % 16, 0, 0
        if k == 1:
            return True, (cycle + 1) % 16, cycle * 0x0101010101, 0xFF ^ (1 << (cycle % 8))
        return None

    t = _simulate(geometry, 3, plan, cycles)
    assert [c for c, _ in t.accepted[0]] == list(range(cycles))
    assert [c for c, _ in t.accepted[1]] == list(range(cycles))
    assert t.answered[0] == list(range(1, cycles + 1))


def test_rejects_bad_parameters():
    geometry = memory_geometry(SMALL)["bias"]
    with pytest.raises(ValueError, match="clients"):
        OnChipMemory(geometry, 0)
    with pytest.raises(ValueError, match="read_latency"):
        OnChipMemory(geometry, 2, read_latency=3)
