"""``OnChipMemory``: one simple-dual-port RAM shared by several ``SramPort`` clients.

The scratchpad, the bias memory and the scale memory are each one of these (geometry from
``engine_if.memory_geometry``). The storage is a single ``lib.memory.Memory`` of
``geometry.rows`` rows of one AXI beat with one write port (byte enables) and one synchronous
read port, which is what one block RAM column offers; clients share it through two
independent round-robin arbiters, one for reads and one for writes, so a read of one client
and a write of another go in the same cycle.

Contract (``engine_if``, memory side of ``sram_port_signature``)
-----------------------------------------------------------------
* ``c{k}.req`` is accepted (``ready``) in the cycle the arbiter of its kind grants client
  ``k``; a client whose request waits keeps priority until granted (a waiting client is
  granted within ``clients`` grants of its kind).
* ``c{k}.resp``: the row of each accepted read, exactly ``read_latency`` cycles after the
  request was accepted (so always in request order); ``resp`` has no ``ready``.
* A write accepted in an earlier cycle than a read is seen by that read. A write and a read of
  the same row accepted in the *same* cycle give the new data with ``transparent`` (default),
  the old data without (the ``engine_if`` contract leaves that case open; the bypass costs
  one register and one LUT per data bit).

Throughput: one read and one write per cycle in total; one client alone streams one read
(or one write) per cycle. Latency: ``read_latency`` = 1 (RAM output straight to the clients)
or 2 (one more register after the RAM, for large memories that span many block RAMs).
"""

from __future__ import annotations

from functools import reduce

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In

from ._arbiter import round_robin
from .engine_if import MemoryGeometry, sram_port_signature

__all__ = ["OnChipMemory"]


def _onehot_mux(select: Value, values: list[Value]) -> Value:
    """The value whose ``select`` bit is set (0 when none): an AND-OR, no priority chain."""
    width = len(Value.cast(values[0]))
    terms = [Value.cast(v) & select[k].replicate(width) for k, v in enumerate(values)]
    return reduce(lambda a, b: a | b, terms)


class OnChipMemory(wiring.Component):
    """A shared on-chip memory with ``clients`` ports ``c0 … c{clients-1}``.

    Parameters
    ----------
    geometry:
        Rows and row width (``engine_if.MemoryGeometry``).
    clients:
        Number of client ports, ≥ 1.
    read_latency:
        Cycles from an accepted read to its response: 1 or 2 (see the module docstring).
    transparent:
        A read sees a write to its row accepted in the same cycle.
    """

    def __init__(self, geometry: MemoryGeometry, clients: int, *, read_latency: int = 1,
                 transparent: bool = True) -> None:
        if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
            raise ValueError(f"OnChipMemory: clients must be an int ≥ 1, got {clients!r}")
        if read_latency not in (1, 2):
            raise ValueError(f"OnChipMemory: read_latency={read_latency!r}; allowed 1, 2")
        self.geometry = geometry
        self.read_latency = read_latency
        self.transparent = transparent
        super().__init__({f"c{k}": In(sram_port_signature(geometry)) for k in range(clients)})
        self.ports = [getattr(self, f"c{k}") for k in range(clients)]
        #: The RAM contents (a testbench may preload rows with ``ctx.set(data[row], value)``).
        self.data = MemoryData(shape=8 * geometry.beat_bytes, depth=geometry.rows, init=[])

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.mem = mem = Memory(self.data)
        wp = mem.write_port(granularity=8)
        rp = mem.read_port(domain="sync", transparent_for=(wp,) if self.transparent else ())

        reqs = [port.req for port in self.ports]
        reading = Cat(*(r.valid & ~r.payload.write for r in reqs))
        writing = Cat(*(r.valid & r.payload.write for r in reqs))
        # Every grant is taken in the cycle it is made (ready = grant), so the rotation
        # advances whenever anyone asks.
        rd = round_robin(m, reading, reading.any(), "read")
        wr = round_robin(m, writing, writing.any(), "write")
        for k, r in enumerate(reqs):
            m.d.comb += r.ready.eq(rd.grant[k] | wr.grant[k])

        m.d.comb += [
            rp.addr.eq(_onehot_mux(rd.grant, [r.payload.addr for r in reqs])),
            rp.en.eq(rd.any),
            wp.addr.eq(_onehot_mux(wr.grant, [r.payload.addr for r in reqs])),
            wp.data.eq(_onehot_mux(wr.grant, [r.payload.data for r in reqs])),
            # No write grant selects no byte enables, so the write port is idle.
            wp.en.eq(_onehot_mux(wr.grant, [r.payload.be for r in reqs])),
        ]

        # Responses: the RAM answers one cycle after the read; remember whose read it was.
        owner = Signal(len(reqs), name="resp_owner")
        m.d.sync += owner.eq(rd.grant)
        data = rp.data
        if self.read_latency == 2:
            late_owner = Signal(len(reqs), name="resp_owner_late")
            late_data = Signal.like(rp.data, name="resp_data_late", reset_less=True)
            m.d.sync += [late_owner.eq(owner), late_data.eq(rp.data)]
            owner, data = late_owner, late_data
        for k, port in enumerate(self.ports):
            m.d.comb += [port.resp.valid.eq(owner[k]), port.resp.payload.eq(data)]
        return m
