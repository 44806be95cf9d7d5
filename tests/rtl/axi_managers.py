"""Scripted AXI4 / AXI4-Lite managers for async testbenches (SoC and shell-adapter tests).

``LiteManager`` performs single AXI4-Lite reads and writes.  ``BurstManager`` performs AXI4
write and read bursts one at a time on a manager port and checks every read beat against a
reference copy of memory it keeps itself (``expect``), so several managers on disjoint address
ranges can run concurrently against one subordinate.  Both drive the port from the manager side
(the DUT's subordinate port, or an undriven placeholder's manager port) in their own clock
domain, with optional random gaps and back-pressure.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Value


def pack(stream, **fields: int) -> int:
    """The payload integer of ``stream`` (a ``StructLayout`` payload) with ``fields``."""
    out = 0
    for name, field in stream.payload.shape():
        out |= (int(fields.get(name, 0)) & ((1 << field.width) - 1)) << field.offset
    return out


def unpack(stream, value: int) -> dict[str, int]:
    """The fields of a payload integer of ``stream``."""
    return {name: (int(value) >> f.offset) & ((1 << f.width) - 1)
            for name, f in stream.payload.shape()}


async def send(ctx, stream, domain: str = "sync", **fields: int) -> int:
    """Offer one payload on ``stream`` until it is accepted; returns the cycles it waited."""
    ctx.set(stream.valid, 1)
    ctx.set(Value.cast(stream.payload), pack(stream, **fields))
    waited = 0
    while True:
        _, _, ready = await ctx.tick(domain).sample(stream.ready)
        if ready:
            break
        waited += 1
    ctx.set(stream.valid, 0)
    return waited


async def receive(ctx, stream, domain: str = "sync", rng=None, stall: float = 0.0,
                  limit: int = 5000) -> dict[str, int]:
    """Take one payload from ``stream`` (READY low with probability ``stall`` per cycle)."""
    for _ in range(limit):
        ready = not (rng is not None and rng.random() < stall)
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick(domain).sample(stream.valid,
                                                             Value.cast(stream.payload))
        if valid and ready:
            ctx.set(stream.ready, 0)
            return unpack(stream, payload)
    raise AssertionError(f"no response within {limit} cycles")


class LiteManager:
    """AXI4-Lite reads and writes on ``bus`` (the DUT's subordinate port)."""

    def __init__(self, bus, domain: str = "sync") -> None:
        self.bus, self.domain = bus, domain

    async def write(self, ctx, addr: int, data: int, strb: int = 0xF) -> int:
        """One write (AW and W offered together); returns BRESP."""
        bus, d = self.bus, self.domain
        ctx.set(bus.aw.valid, 1)
        ctx.set(Value.cast(bus.aw.payload), pack(bus.aw, addr=addr))
        ctx.set(bus.w.valid, 1)
        ctx.set(Value.cast(bus.w.payload), pack(bus.w, data=data, strb=strb))
        aw_done = w_done = False
        while not (aw_done and w_done):
            _, _, aw_ready, w_ready = await ctx.tick(d).sample(bus.aw.ready, bus.w.ready)
            aw_done |= bool(aw_ready)
            w_done |= bool(w_ready)
            if aw_done:
                ctx.set(bus.aw.valid, 0)
            if w_done:
                ctx.set(bus.w.valid, 0)
        return (await receive(ctx, bus.b, d))["resp"]

    async def read(self, ctx, addr: int) -> tuple[int, int]:
        """One read; returns (RDATA, RRESP)."""
        await send(ctx, self.bus.ar, self.domain, addr=addr)
        r = await receive(ctx, self.bus.r, self.domain)
        return r["data"], r["resp"]


class BurstManager:
    """AXI4 bursts on ``bus``, one at a time, checked against ``expect`` (a uint8 array the
    manager updates on every write, standing for what memory must hold).

    ``ids``: the AXI IDs to use (chosen at random per burst; responses must carry them back).
    ``narrow``: bytes per beat of this port.
    """

    def __init__(self, bus, expect: np.ndarray, *, domain: str = "sync", seed: int = 0,
                 ids: tuple[int, ...] = (0,), stall: float = 0.0) -> None:
        self.bus, self.expect, self.domain = bus, expect, domain
        self.rng = np.random.default_rng(seed)
        self.ids, self.stall = ids, stall
        self.beat = len(bus.w.payload.data) // 8
        self.reads = self.writes = 0

    async def write(self, ctx, addr: int, data: bytes, strb: list[int] | None = None) -> None:
        """Write ``data`` (a whole number of beats) at beat-aligned ``addr``."""
        beats = len(data) // self.beat
        ident = int(self.rng.choice(self.ids))
        bus, d = self.bus, self.domain
        await send(ctx, bus.aw, d, id=ident, addr=addr, len=beats - 1)
        for k in range(beats):
            chunk = data[k * self.beat:(k + 1) * self.beat]
            mask = (1 << self.beat) - 1 if strb is None else strb[k]
            while self.rng.random() < self.stall:
                await ctx.tick(d)
            await send(ctx, bus.w, d, data=int.from_bytes(chunk, "little"), strb=mask,
                       last=int(k == beats - 1))
            for i in range(self.beat):
                if mask >> i & 1:
                    self.expect[addr + k * self.beat + i] = chunk[i]
        b = await receive(ctx, bus.b, d, self.rng, self.stall)
        assert b["id"] == ident, f"B id {b['id']} != {ident}"
        assert b["resp"] == 0, f"BRESP {b['resp']}"
        self.writes += 1

    async def read(self, ctx, addr: int, beats: int) -> None:
        """Read ``beats`` beats at beat-aligned ``addr`` and check them against ``expect``."""
        ident = int(self.rng.choice(self.ids))
        bus, d = self.bus, self.domain
        await send(ctx, bus.ar, d, id=ident, addr=addr, len=beats - 1)
        for k in range(beats):
            r = await receive(ctx, bus.r, d, self.rng, self.stall)
            want = self.expect[addr + k * self.beat:addr + (k + 1) * self.beat].tobytes()
            got = r["data"].to_bytes(self.beat, "little")
            assert got == want, (f"read {addr:#x} beat {k}: got {got.hex()} want "
                                 f"{want.hex()}")
            assert r["id"] == ident, f"R id {r['id']} != {ident}"
            assert r["last"] == int(k == beats - 1), f"RLAST wrong on beat {k}"
            assert r["resp"] == 0
        self.reads += 1

    async def random_traffic(self, ctx, base: int, size: int, count: int,
                             max_beats: int = 16) -> None:
        """``count`` random bursts (writes, then reads of written areas) in
        ``[base, base + size)``; bursts never cross 4 KB."""
        for _ in range(count):
            beats = int(self.rng.integers(1, max_beats + 1))
            span = beats * self.beat
            addr = base + int(self.rng.integers(0, (size - span) // self.beat + 1)) * self.beat
            if addr // 4096 != (addr + span - 1) // 4096:
                addr = (addr + span - 1) // 4096 * 4096
                if addr + span > base + size:
                    continue
            if self.rng.random() < 0.5:
                data = self.rng.integers(0, 256, span, dtype=np.uint8).tobytes()
                strb = [int(self.rng.integers(0, 1 << self.beat)) for _ in range(beats)]
                await self.write(ctx, addr, data, strb)
            else:
                await self.read(ctx, addr, beats)
