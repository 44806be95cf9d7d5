"""Behavioural memories for RTL testbenches: an on-chip memory behind an ``SramPort`` and a DRAM
behind an AXI4 subordinate port, both backed by ``numpy.uint8`` arrays the test inspects.

Both are Amaranth async *processes* (``sim.add_process(model.process)``) that serve the DUT
cycle by cycle, with optional random back-pressure and latency, and assert the protocol rules
the DUT must keep (stream stability, AXI alignment, 4 KB boundary, burst length, an optional
address window).
"""

from __future__ import annotations

from collections import deque

import numpy as np
from amaranth.hdl import Value

from unified_engine.rtl.axi import AXI_BOUNDARY


class SramModel:
    """Serve one ``sram_port_signature`` client port (``port`` is the DUT's client port).

    ``mem`` is the memory (uint8, rows × beat_bytes bytes, modified in place);
    ``stall`` is the probability that ``req.ready`` is low in a cycle; ``latency`` ≥ 1 is the
    number of cycles from an accepted read to its response (random extra delay up to
    ``jitter`` cycles, responses stay in order).
    """

    def __init__(self, port, mem: np.ndarray, beat_bytes: int, *, stall: float = 0.0,
                 latency: int = 1, jitter: int = 0, seed: int = 0) -> None:
        if latency < 1:
            raise ValueError(f"latency={latency} must be ≥ 1")
        if mem.dtype != np.uint8 or mem.size % beat_bytes:
            raise ValueError("mem must be a uint8 array of whole rows")
        self.port, self.mem, self.beat = port, mem, beat_bytes
        self.stall, self.latency, self.jitter = stall, latency, jitter
        self.rng = np.random.default_rng(seed)
        self.reads = 0
        self.writes = 0

    def _row(self, addr: int) -> slice:
        assert 0 <= addr * self.beat < self.mem.size, f"row {addr} is past the memory"
        return slice(addr * self.beat, (addr + 1) * self.beat)

    async def process(self, ctx) -> None:
        port = self.port
        payload = Value.cast(port.req.payload)
        pending: deque[tuple[int, int]] = deque()  # (due cycle, data)
        cycle = 0
        last_due = 0
        while True:
            ready = not self.rng.random() < self.stall
            ctx.set(port.req.ready, ready)
            due = pending and pending[0][0] <= cycle
            ctx.set(port.resp.valid, bool(due))
            if due:
                ctx.set(Value.cast(port.resp.payload), pending[0][1])
            _, _, valid, raw = await ctx.tick().sample(port.req.valid, payload)
            if due:
                pending.popleft()
            if valid and ready:
                addr = raw & ((1 << len(port.req.payload.addr)) - 1)
                write = (raw >> len(port.req.payload.addr)) & 1
                shift = len(port.req.payload.addr) + 1
                data = (raw >> shift) & ((1 << (8 * self.beat)) - 1)
                be = raw >> (shift + 8 * self.beat)
                row = self._row(addr)
                if write:
                    self.writes += 1
                    new = np.frombuffer(data.to_bytes(self.beat, "little"), np.uint8)
                    mask = np.array([(be >> i) & 1 for i in range(self.beat)], bool)
                    self.mem[row][mask] = new[mask]
                else:
                    self.reads += 1
                    value = int.from_bytes(self.mem[row].tobytes(), "little")
                    at = max(cycle + self.latency + int(self.rng.integers(0, self.jitter + 1)),
                             last_due)
                    last_due = at
                    pending.append((at, value))
            cycle += 1


class AxiSlaveModel:
    """Serve an AXI4 manager port (``axi4_signature``) from ``dram`` (uint8, modified in place).

    Every burst must start on a beat boundary, have ``len`` ≤ 255 and not cross 4 KB; with
    ``window = (base, limit)`` every byte touched must lie inside it.  ``latency`` is the
    cycles from AR acceptance to the first R beat, ``b_latency`` the cycles from the last W
    beat to its B response (default 0: the next cycle); ``stall`` the probability of a low
    READY / VALID in a cycle.  ``max_outstanding`` bounds accepted, unfinished reads.
    Violations raise ``AssertionError`` (the test fails).
    """

    def __init__(self, bus, dram: np.ndarray, *, latency: int = 4, stall: float = 0.0,
                 window: tuple[int, int] | None = None, max_outstanding: int = 8,
                 seed: int = 0, b_latency: int = 0) -> None:
        self.bus, self.dram = bus, dram
        self.beat = len(bus.w.payload.data) // 8
        self.latency, self.stall, self.window = latency, stall, window
        self.max_outstanding = max_outstanding
        self.b_latency = b_latency
        self.rng = np.random.default_rng(seed)
        self.read_bursts: list[tuple[int, int]] = []  # (addr, beats)
        self.write_bursts: list[tuple[int, int]] = []

    def _check_burst(self, addr: int, length: int, kind: str) -> None:
        beats = length + 1
        assert addr % self.beat == 0, f"{kind} burst at {addr:#x} is not beat-aligned"
        end = addr + beats * self.beat
        assert addr // AXI_BOUNDARY == (end - 1) // AXI_BOUNDARY, (
            f"{kind} burst {addr:#x}+{beats} beats crosses a 4 KB boundary")
        assert end <= self.dram.size, f"{kind} burst {addr:#x}…{end:#x} is past DRAM"
        if self.window is not None:
            lo, hi = self.window
            # the burst may cover bytes outside the window only if they are masked (writes)
            # or discarded (reads) — the beat containing a window byte is allowed.
            assert addr >= lo - lo % self.beat and end <= -(-hi // self.beat) * self.beat, (
                f"{kind} burst {addr:#x}…{end:#x} leaves the window [{lo:#x}, {hi:#x})")

    def _fields(self, value: int, layout) -> dict[str, int]:
        out = {}
        for name, field in layout:
            out[name] = (value >> field.offset) & ((1 << field.width) - 1)
        return out

    async def process(self, ctx) -> None:
        bus = self.bus
        ar_layout = bus.ar.payload.shape()
        aw_layout = bus.aw.payload.shape()
        w_layout = bus.w.payload.shape()
        r_layout = bus.r.payload.shape()
        b_layout = bus.b.payload.shape()
        reads: deque[list[int]] = deque()  # [due, addr, beats left, id]
        writes: deque[list[int]] = deque()  # [addr, beats left, id]
        responses: deque[tuple[int, int]] = deque()  # (due cycle, B id)
        held = {}
        cycle = 0
        while True:
            rnd = self.rng.random
            ar_ready = len(reads) < self.max_outstanding and not rnd() < self.stall
            aw_ready = len(writes) < 4 and not rnd() < self.stall
            w_ready = bool(writes) and not rnd() < self.stall
            r_valid = bool(reads) and reads[0][0] <= cycle and not rnd() < self.stall
            b_valid = bool(responses) and responses[0][0] <= cycle
            ctx.set(bus.ar.ready, ar_ready)
            ctx.set(bus.aw.ready, aw_ready)
            ctx.set(bus.w.ready, w_ready)
            ctx.set(bus.r.valid, r_valid)
            ctx.set(bus.b.valid, b_valid)
            if r_valid:
                _, addr, left, ident = reads[0]
                word = int.from_bytes(self.dram[addr:addr + self.beat].tobytes(), "little")
                fields = {"id": ident, "data": word, "resp": 0, "last": int(left == 1)}
                ctx.set(Value.cast(bus.r.payload), sum(fields[n] << f.offset for n, f in r_layout))
            if b_valid:
                b_fields = {"id": responses[0][1], "resp": 0}
                ctx.set(Value.cast(bus.b.payload),
                        sum(b_fields[n] << f.offset for n, f in b_layout))
            sampled = await ctx.tick().sample(
                bus.ar.valid, Value.cast(bus.ar.payload), bus.aw.valid,
                Value.cast(bus.aw.payload), bus.w.valid, Value.cast(bus.w.payload),
                bus.r.ready, bus.b.ready)
            ar_v, ar_p, aw_v, aw_p, w_v, w_p, r_rdy, b_rdy = sampled[2:]
            for name, valid, pay, ready in (("ar", ar_v, ar_p, ar_ready),
                                            ("aw", aw_v, aw_p, aw_ready),
                                            ("w", w_v, w_p, w_ready)):
                if name in held:
                    assert valid and int(pay) == held[name], (
                        f"cycle {cycle}: {name} changed or dropped VALID before READY")
                held.pop(name, None)
                if valid and not ready:
                    held[name] = int(pay)
            if ar_v and ar_ready:
                f = self._fields(int(ar_p), ar_layout)
                self._check_burst(f["addr"], f["len"], "read")
                self.read_bursts.append((f["addr"], f["len"] + 1))
                reads.append([cycle + self.latency, f["addr"], f["len"] + 1, f["id"]])
            if aw_v and aw_ready:
                f = self._fields(int(aw_p), aw_layout)
                self._check_burst(f["addr"], f["len"], "write")
                self.write_bursts.append((f["addr"], f["len"] + 1))
                writes.append([f["addr"], f["len"] + 1, f["id"]])
            if w_v and w_ready:
                f = self._fields(int(w_p), w_layout)
                addr, left, ident = writes[0]
                data = f["data"].to_bytes(self.beat, "little")
                for i in range(self.beat):
                    if f["strb"] >> i & 1:
                        if self.window is not None:
                            assert self.window[0] <= addr + i < self.window[1], (
                                f"write of byte {addr + i:#x} outside the window")
                        self.dram[addr + i] = data[i]
                assert f["last"] == int(left == 1), f"cycle {cycle}: WLAST wrong"
                writes[0][0] += self.beat
                writes[0][1] -= 1
                if writes[0][1] == 0:
                    writes.popleft()
                    responses.append((cycle + 1 + self.b_latency, ident))
            if r_valid and r_rdy:
                reads[0][1] += self.beat
                reads[0][2] -= 1
                if reads[0][2] == 0:
                    reads.popleft()
            if b_valid and b_rdy:
                responses.popleft()
            cycle += 1
