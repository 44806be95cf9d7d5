"""``AxiResetGuard``: keeps the external AXI4 bus protocol-clean across a soft reset.

A soft reset (CONTROL.SOFT_RESET) resets the engine's internal AXI managers in the middle of
whatever they were doing; the DRAM side must not notice. The guard sits between the engine's
internal manager port (``inner``) and the external port (``outer``), outside the reset, and
tracks on the *external* bus:

* every AR burst presented (``reads``, until its RLAST beat);
* every AW burst presented (``writes``, until its B response), and, in a FIFO, the length of
  each AW burst whose W beats are not all sent, with the beats sent of the oldest one.

Normal operation: every channel is passed straight through (no added latency) with two
restrictions: a W beat goes out only once its burst's AW has been presented on ``outer``
(the guard, as a subordinate, waits for AWVALID before WREADY, which AXI allows, so
``outer`` never sees W ahead of AW), one cycle after the AW at the earliest; and at most
``max_reads`` / ``max_writes`` bursts are outstanding (a further AR/AW waits).
``outer.w.last`` is formed from the AW length (the internal manager's ``last`` is not looked
at). AR, AW and W payloads shown on ``outer`` are also kept in registers, so a request whose
VALID the external bus has seen stays up, unchanged, until READY even if the internal
manager is reset under it.

``flush`` (one-cycle pulse, the soft reset) starts a drain that lasts until the bus is quiet:
requests already shown on ``outer`` complete from the held copies (a W beat shown at the
flush still writes its data); W beats still owed to presented AW bursts are sent with
``strb = 0`` (writing nothing) and the right ``last``; R beats and B responses are accepted
and dropped. Meanwhile the internal side sees no READY and no VALID (its new requests wait).
``busy`` is high from the cycle after ``flush`` until the cycle after the bus became quiet.
Transfers in the ``flush`` cycle itself still complete normally. The guard must not itself
be reset by the soft reset.

Latency: none for AR, AW, R, B; W ≥ 1 cycle after its AW first shows (none within a burst).
Throughput: every channel one transfer per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .axi import axi4_signature

__all__ = ["AxiResetGuard"]


class AxiResetGuard(wiring.Component):
    """Drain-on-reset guard between an internal AXI4 manager and the external bus.

    Parameters
    ----------
    addr_width, data_width, id_width:
        AXI4 parameters of both ports.
    max_reads, max_writes:
        Outstanding AR / AW bursts tracked (≥ 1); more wait until one completes.

    Ports: ``inner`` (subordinate side, to the internal manager), ``outer`` (manager side, to
    DRAM), ``flush`` in, ``busy`` out.
    """

    def __init__(self, *, addr_width: int, data_width: int, id_width: int,
                 max_reads: int = 16, max_writes: int = 8) -> None:
        for name, value in (("max_reads", max_reads), ("max_writes", max_writes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AxiResetGuard: {name} must be an int ≥ 1, got {value!r}")
        self.max_reads, self.max_writes = max_reads, max_writes
        sig = axi4_signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        super().__init__({"inner": In(sig), "outer": Out(sig), "flush": In(1),
                          "busy": Out(1)})

    @staticmethod
    def _request(m: Module, inner, outer, draining, room, name: str):
        """Pass an AR/AW-like stream ``inner`` → ``outer`` and hold what ``outer`` showed.

        Returns the one-cycle "a new request shows on ``outer``" strobe.
        """
        pending = Signal(name=f"{name}_pending")  # shown, not yet taken
        held = Signal.like(outer.payload, name=f"{name}_held")
        m.d.comb += [
            outer.valid.eq(pending | (~draining & inner.valid & room)),
            outer.payload.eq(Mux(pending, held, inner.payload)),
            # While pending in normal operation, inner still shows the same request.
            inner.ready.eq(~draining & outer.valid & outer.ready),
        ]
        m.d.sync += [pending.eq(outer.valid & ~outer.ready), held.eq(outer.payload)]
        shows = Signal(name=f"{name}_shows")
        m.d.comb += shows.eq(outer.valid & ~pending)
        return shows

    @staticmethod
    def _response(m: Module, inner, outer, draining) -> None:
        """Pass an R/B-like stream ``outer`` → ``inner``; while draining, take and drop it."""
        m.d.comb += [
            inner.valid.eq(outer.valid & ~draining),
            inner.payload.eq(outer.payload),
            outer.ready.eq(draining | inner.ready),
        ]

    def elaborate(self, platform) -> Module:
        m = Module()
        i, o = self.inner, self.outer
        draining = Signal()
        reads = Signal(range(self.max_reads + 1))
        writes = Signal(range(self.max_writes + 1))

        ar_shows = self._request(m, i.ar, o.ar, draining, reads < self.max_reads, "ar")
        aw_shows = self._request(m, i.aw, o.aw, draining, writes < self.max_writes, "aw")
        self._response(m, i.r, o.r, draining)
        self._response(m, i.b, o.b, draining)

        r_done = o.r.valid & o.r.ready & o.r.payload.last
        b_done = o.b.valid & o.b.ready
        m.d.sync += [
            reads.eq(reads + ar_shows - r_done),
            writes.eq(writes + aw_shows - b_done),
        ]

        # W: lengths of the AW bursts still owed beats, oldest first.
        m.submodules.owed = owed = SyncFIFO(width=8, depth=self.max_writes)
        sent = Signal(8)  # beats sent of the oldest burst
        w_pending = Signal()
        w_held = Signal.like(o.w.payload)
        last = sent == owed.r_data
        m.d.comb += [
            owed.w_en.eq(aw_shows),
            owed.w_data.eq(o.aw.payload.len),
            o.w.valid.eq(w_pending | (owed.r_rdy & (draining | i.w.valid))),
            o.w.payload.last.eq(last),
            i.w.ready.eq(~draining & owed.r_rdy & o.w.ready),
        ]
        with m.If(w_pending):
            m.d.comb += [o.w.payload.data.eq(w_held.data), o.w.payload.strb.eq(w_held.strb)]
        with m.Elif(~draining):
            m.d.comb += [o.w.payload.data.eq(i.w.payload.data),
                         o.w.payload.strb.eq(i.w.payload.strb)]
        # (draining, nothing held: data = strb = 0, a beat that writes nothing)
        m.d.sync += [w_pending.eq(o.w.valid & ~o.w.ready), w_held.eq(o.w.payload)]
        with m.If(o.w.valid & o.w.ready):
            m.d.sync += sent.eq(Mux(last, 0, sent + 1))
            m.d.comb += owed.r_en.eq(last)

        # (A subordinate answers B only after the last W, so writes == 0 implies no W owed;
        # the FIFO term keeps the drain going against one that answers early.)
        quiet = (reads == 0) & (writes == 0) & ~owed.r_rdy
        with m.If(self.flush):
            m.d.sync += draining.eq(1)
        with m.Elif(quiet):
            m.d.sync += draining.eq(0)
        m.d.comb += self.busy.eq(draining)
        return m
