"""``AxiReadMux``: several AXI4 read managers on one AXI4 port, plus one writer's channels.

The engine has one AXI4 manager port to DRAM and several internal managers that read it
(instruction fetch, LOAD DMA) and one that writes (STORE DMA). This block merges their read
channels and lets the writer's write channels through:

* **AR**: round-robin among the managers whose ``ar.valid`` is high; the chosen request goes
  out with ``id`` = the manager's index (the managers' own ``ar.id`` is ignored: each manager
  is one AXI ID on the bus, so its bursts come back in order). A request that waits for
  ``bus.ar.ready`` keeps the port (AXI payload stability) until accepted.
* **R**: each beat goes to the manager named by its ``id`` (beats of different managers may
  interleave, as AXI allows between IDs); the manager sees ``id`` = its own index. A beat
  whose ``id`` names no manager is accepted and dropped (a subordinate bug; it cannot hang
  the bus).
* **AW / W / B**: manager ``writer`` is connected straight through (its own IDs); the other
  managers must not write (their ``aw``/``w`` are never ready, their ``b`` never valid).

Latency: none (every path is combinational). Throughput: one AR per cycle, every R beat and
W beat in the cycle it is offered.
"""

from __future__ import annotations

from functools import reduce

from amaranth.hdl import Cat, Module, Mux, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ._arbiter import round_robin
from .axi import axi4_signature

__all__ = ["AxiReadMux"]


def _pick(index: Value, values: list[Value]) -> Value:
    """``values[index]`` as a plain mux tree over the manager index."""
    out = Value.cast(values[-1])
    for k in range(len(values) - 2, -1, -1):
        out = Mux(index == k, values[k], out)
    return out


class AxiReadMux(wiring.Component):
    """Merge the read channels of ``n`` AXI4 managers onto ``bus``; pass one writer through.

    Parameters
    ----------
    n:
        Number of managers (ports ``m0 … m{n-1}``, subordinate side), ≥ 1.
    addr_width, data_width, id_width:
        AXI4 parameters of every port (managers and ``bus``); ``id_width`` must hold ``n − 1``.
    writer:
        Index of the manager whose AW/W/B channels reach ``bus``; None for a read-only mux
        (``bus.aw``/``bus.w`` stay idle, ``bus.b`` is always ready).
    """

    def __init__(self, n: int, *, addr_width: int, data_width: int, id_width: int,
                 writer: int | None = None) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"AxiReadMux: n must be an int ≥ 1, got {n!r}")
        if bits_for(n - 1) > id_width:
            raise ValueError(f"AxiReadMux: id_width={id_width} cannot name {n} managers")
        if writer is not None and not (isinstance(writer, int) and 0 <= writer < n):
            raise ValueError(f"AxiReadMux: writer={writer!r} is not a manager index 0…{n - 1}")
        self.n, self.writer = n, writer
        sig = axi4_signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        super().__init__({
            **{f"m{k}": In(sig) for k in range(n)},
            "bus": Out(sig),
        })
        self.managers = [getattr(self, f"m{k}") for k in range(n)]

    def elaborate(self, platform) -> Module:
        m = Module()
        mans, o = self.managers, self.bus

        # AR: sticky round-robin, so a waiting request keeps the port until accepted.
        asking = Cat(*(man.ar.valid for man in mans))
        taken = o.ar.valid & o.ar.ready
        choice = round_robin(m, asking, taken, "ar", sticky=True)
        m.d.comb += [
            o.ar.valid.eq(choice.any),
            o.ar.payload.id.eq(choice.index),
            o.ar.payload.addr.eq(_pick(choice.index, [man.ar.payload.addr for man in mans])),
            o.ar.payload.len.eq(_pick(choice.index, [man.ar.payload.len for man in mans])),
        ]
        for k, man in enumerate(mans):
            m.d.comb += man.ar.ready.eq(o.ar.ready & choice.grant[k])

        # R: route by ID.
        for k, man in enumerate(mans):
            m.d.comb += [
                man.r.valid.eq(o.r.valid & (o.r.payload.id == k)),
                man.r.payload.eq(o.r.payload),
            ]
        known = reduce(lambda a, b: a | b, [o.r.payload.id == k for k in range(self.n)])
        m.d.comb += o.r.ready.eq(
            ~known | _pick(o.r.payload.id, [man.r.ready for man in mans]))

        # Writes: one manager straight through.
        if self.writer is None:
            m.d.comb += o.b.ready.eq(1)
        else:
            w = mans[self.writer]
            m.d.comb += [
                o.aw.valid.eq(w.aw.valid), o.aw.payload.eq(w.aw.payload),
                w.aw.ready.eq(o.aw.ready),
                o.w.valid.eq(w.w.valid), o.w.payload.eq(w.w.payload),
                w.w.ready.eq(o.w.ready),
                w.b.valid.eq(o.b.valid), w.b.payload.eq(o.b.payload),
                o.b.ready.eq(w.b.ready),
            ]
        return m
