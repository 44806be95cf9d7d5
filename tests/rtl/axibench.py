"""Helpers for testbenches that play AXI4 managers: pack channel payloads, and a scripted
read manager that issues bursts and checks the returned beats against a DRAM array."""

from __future__ import annotations

from collections import deque

import numpy as np
from amaranth.hdl import Value


def pack(port, **fields: int) -> int:
    """The integer of a stream port's ``StructLayout`` payload with the given fields."""
    layout = port.payload.shape()
    out = 0
    for name, field in layout:
        value = fields.get(name, 0)
        out |= (int(value) & ((1 << field.width) - 1)) << field.offset
    return out


def unpack(port, value: int) -> dict[str, int]:
    """The fields of a stream port's ``StructLayout`` payload integer."""
    return {name: (value >> f.offset) & ((1 << f.width) - 1) for name, f in port.payload.shape()}


class ReadManager:
    """A testbench read manager on one AXI4 port (``bus`` = the DUT's subordinate-side port).

    ``bursts``: ``(addr, beats)`` to read, in order, at most ``outstanding`` in flight;
    ``stall``: chance of ``r.ready`` low in a cycle; ``gap``: chance of waiting a cycle
    before offering the next burst. Call :meth:`drive` before and
    :meth:`observe` after every clock edge (with the values sampled at the edge).
    """

    def __init__(self, bus, dram: np.ndarray, bursts: list[tuple[int, int]], *,
                 outstanding: int = 4, stall: float = 0.0, gap: float = 0.0, seed: int = 0,
                 expect_id: int | None = None) -> None:
        self.bus, self.dram = bus, dram
        self.beat = len(bus.r.payload.data) // 8
        self.todo = deque(bursts)
        self.outstanding, self.stall, self.gap = outstanding, stall, gap
        self.rng = np.random.default_rng(seed)
        self.expect_id = expect_id
        self.current: tuple[int, int] | None = None
        self.pending: deque[list[int]] = deque()  # [next beat addr, beats left]
        self.r_ready = False
        self.issued: list[int] = []  # cycles of AR acceptances
        self.beats = 0

    @property
    def done(self) -> bool:
        return not self.todo and self.current is None and not self.pending

    def drive(self, ctx) -> None:
        if self.current is None and self.todo and len(self.pending) < self.outstanding \
                and not self.rng.random() < self.gap:
            self.current = self.todo.popleft()
        ctx.set(self.bus.ar.valid, self.current is not None)
        if self.current is not None:
            addr, beats = self.current
            # a junk ID: the mux replaces it with the manager index
            ctx.set(Value.cast(self.bus.ar.payload),
                    pack(self.bus.ar, addr=addr, len=beats - 1, id=addr >> 5))
        self.r_ready = not self.rng.random() < self.stall
        ctx.set(self.bus.r.ready, self.r_ready)

    def signals(self) -> tuple:
        """What :meth:`observe` needs sampled at the clock edge."""
        return (self.bus.ar.ready, self.bus.r.valid, Value.cast(self.bus.r.payload))

    def observe(self, cycle: int, ar_ready: int, r_valid: int, r_payload: int) -> None:
        if self.current is not None and ar_ready:
            self.pending.append(list(self.current))
            self.issued.append(cycle)
            self.current = None
        if r_valid and self.r_ready:
            assert self.pending, f"cycle {cycle}: R beat with no read outstanding"
            f = unpack(self.bus.r, int(r_payload))
            addr, left = self.pending[0]
            want = int.from_bytes(self.dram[addr:addr + self.beat].tobytes(), "little")
            assert f["data"] == want, f"cycle {cycle}: beat of {addr:#x} is {f['data']:#x}"
            assert f["last"] == int(left == 1), f"cycle {cycle}: RLAST wrong at {addr:#x}"
            if self.expect_id is not None:
                assert f["id"] == self.expect_id, f"cycle {cycle}: R id {f['id']}"
            self.beats += 1
            self.pending[0] = [addr + self.beat, left - 1]
            if left == 1:
                self.pending.popleft()


class WriteManager:
    """A testbench write manager: ``bursts`` of ``(addr, data bytes)`` (whole beats).

    AW and W run independently (W of a burst may be offered before its AW: ``aw_delay``
    cycles hold each AW back), ``stall`` is the chance of an idle W cycle and of ``b.ready``
    low. :meth:`drive` before and :meth:`observe` after every clock edge.
    """

    def __init__(self, bus, bursts: list[tuple[int, bytes]], *, aw_delay: int = 0,
                 stall: float = 0.0, seed: int = 0) -> None:
        self.bus = bus
        self.beat = len(bus.w.payload.data) // 8
        self.rng = np.random.default_rng(seed)
        self.aws = deque((addr, len(data) // self.beat) for addr, data in bursts)
        self.ws: deque[tuple[int, int, int, int]] = deque()  # (data, strb, last, addr)
        for addr, data in bursts:
            beats = len(data) // self.beat
            for k in range(beats):
                word = int.from_bytes(data[k * self.beat:(k + 1) * self.beat], "little")
                self.ws.append((word, (1 << self.beat) - 1, int(k == beats - 1),
                                addr + k * self.beat))
        #: (address, bytes) of every W beat the DUT accepted
        self.accepted: list[tuple[int, bytes]] = []
        self.aw_delay, self.stall = aw_delay, stall
        self.bursts = len(bursts)
        self.wait = aw_delay
        self.aw_on = self.w_on = False
        self.b_ready = False
        self.responses = 0

    @property
    def done(self) -> bool:
        return self.responses == self.bursts

    def drive(self, ctx) -> None:
        bus = self.bus
        if not self.aw_on and self.aws:
            if self.wait > 0:
                self.wait -= 1
            else:
                self.aw_on = True
        ctx.set(bus.aw.valid, self.aw_on)
        if self.aw_on:
            addr, beats = self.aws[0]
            ctx.set(Value.cast(bus.aw.payload), pack(bus.aw, addr=addr, len=beats - 1, id=1))
        if not self.w_on and self.ws:
            self.w_on = not self.rng.random() < self.stall
        ctx.set(bus.w.valid, self.w_on)
        if self.w_on:
            data, strb, last, _ = self.ws[0]
            ctx.set(Value.cast(bus.w.payload), pack(bus.w, data=data, strb=strb, last=last))
        self.b_ready = not self.rng.random() < self.stall
        ctx.set(bus.b.ready, self.b_ready)

    def signals(self) -> tuple:
        return (self.bus.aw.ready, self.bus.w.ready, self.bus.b.valid)

    def observe(self, cycle: int, aw_ready: int, w_ready: int, b_valid: int) -> None:
        if self.aw_on and aw_ready:
            self.aws.popleft()
            self.aw_on = False
            self.wait = self.aw_delay
        if self.w_on and w_ready:
            data, _, _, addr = self.ws.popleft()
            self.accepted.append((addr, data.to_bytes(self.beat, "little")))
            self.w_on = False
        if b_valid and self.b_ready:
            self.responses += 1
            assert self.responses <= self.bursts, f"cycle {cycle}: a B too many"
