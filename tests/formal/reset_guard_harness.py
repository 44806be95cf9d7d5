"""Formal harness of the soft-reset drain: ``AxiResetGuard`` (``rtl/axi_guard.py``) between a
*free* internal manager and a protocol-keeping AXI subordinate.

The internal manager is the part a soft reset cuts off mid-transfer, so it is left completely
free: every VALID, payload and READY it drives may change in any cycle (it may drop a request
before READY, change an address under VALID, stop sending W beats).  ``flush`` (the soft
reset) is free too, so a drain may start in any reachable state, also during another drain.
The external subordinate keeps the protocol (``Assume``): stream rules on R and B; R beats
only for accepted AR bursts, in order, with RLAST exactly on the last beat of each; B only for
a burst whose last W beat was accepted; and it answers in bounded time (no READY, R or B held
back for ``patience`` or more cycles while it is due).  Burst lengths are limited to
``max_len`` + 1 beats (``Assume`` on the free manager's AR/AW ``len``) so the drain bound is a
small number; the guard's logic does not depend on the length beyond the beat counter.

Properties (``Assert``) on the external port:

* **handshake**: AR, AW, W: VALID held until READY, payload stable while VALID and not READY
  (whatever the internal manager does);
* **W follows AW**: a W beat only for an AW burst already shown, WLAST exactly on its last
  beat (so the subordinate never sees more or fewer W beats than the AW lengths promise);
* **drain**: while ``busy``, the internal side sees no READY and no response, no new AR / AW
  burst is shown outside, and every W beat newly shown writes nothing (``strb = 0``);
* **bounded drain**: ``busy`` ends fewer than ``drain_bound`` cycles after the last
  ``flush`` (a flush held high keeps the guard draining);
* **quiet after**: when ``busy`` falls, no AR burst without its last R beat, no AW burst
  without its B and no W beat owed is left on the external bus.

Test of the test: ``mutant="reset_guard"`` puts the guard inside the soft-reset domain (a
``ResetInserter`` on ``flush``), which ``axi_guard.py`` forbids; it must fail.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unified_engine.rtl.axi import axi4_signature
from unified_engine.rtl.axi_guard import AxiResetGuard

from .props import stream_rules

__all__ = ["LenQueue", "ResetGuardHarness"]


class LenQueue:
    """A shadow FIFO of burst lengths (registers, ``depth`` entries) and a beat counter of
    the oldest burst: ``last`` is high while the next beat of the oldest burst is its last.

    ``push(m, cond, length)`` and ``beat(m, cond)`` (a beat of the oldest burst is
    transferred) are called once each.
    """

    def __init__(self, name: str, depth: int, width: int) -> None:
        self.depth = depth
        self.entries = [Signal(width, name=f"{name}_len{i}") for i in range(depth)]
        self.count = Signal(range(depth + 1), name=f"{name}_count")
        self.beats = Signal(width, name=f"{name}_beats")
        self.last = Signal(name=f"{name}_last")
        self._name = name

    def build(self, m: Module, push, length, beat) -> None:
        head = self.entries[0]
        m.d.comb += self.last.eq((self.count != 0) & (self.beats == head))
        done = beat & self.last
        with m.If(beat):
            m.d.sync += self.beats.eq(Mux(self.last, 0, self.beats + 1))
        # shift out the oldest on its last beat, append at the end on a push
        new_count = self.count + push - done
        m.d.sync += self.count.eq(new_count)
        for i, entry in enumerate(self.entries):
            src = self.entries[i + 1] if i + 1 < self.depth else entry
            index_after_pop = self.count - done
            with m.If(done):
                m.d.sync += entry.eq(src)
            with m.If(push & (index_after_pop == i)):
                m.d.sync += entry.eq(length)
        m.d.comb += Assert(~push | (self.count - done < self.depth),
                           f"{self._name}: shadow queue overflow")


class ResetGuardHarness(wiring.Component):
    """``AxiResetGuard`` with a free internal manager (module docstring).

    Parameters: ``addr_width``, ``data_width``, ``max_reads``, ``max_writes`` (the guard's);
    ``max_len`` (longest burst − 1), ``patience`` (subordinate response bound),
    ``drain_bound`` (asserted bound on ``busy``), ``mutant`` (``None`` or ``"reset_guard"``).
    """

    def __init__(self, *, addr_width: int = 12, data_width: int = 32, max_reads: int = 2,
                 max_writes: int = 2, max_len: int = 3, patience: int = 2,
                 drain_bound: int | None = None, mutant: str | None = None) -> None:
        if mutant not in (None, "reset_guard"):
            raise ValueError(f"unknown mutant {mutant!r}")
        self.guard = AxiResetGuard(addr_width=addr_width, data_width=data_width, id_width=1,
                                   max_reads=max_reads, max_writes=max_writes)
        self.max_reads, self.max_writes = max_reads, max_writes
        self.max_len, self.patience, self.mutant = max_len, patience, mutant
        # R and W drain in parallel, each beat within `patience` cycles, then one B; plus the
        # cycle busy needs to fall.  (Measured tight for 1 burst of 2 beats, patience 2: a
        # bound of 7 fails, the formula's 9 holds.)
        beats = max(max_reads, max_writes) * (max_len + 1)
        self.drain_bound = drain_bound if drain_bound is not None else \
            patience * (beats + 1) + 3
        sig = axi4_signature(addr_width=addr_width, data_width=data_width, id_width=1)
        super().__init__({"inner": In(sig), "outer": Out(sig), "flush": In(1),
                          "busy": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        guard = self.guard
        if self.mutant == "reset_guard":
            m.submodules.guard = ResetInserter(self.flush)(guard)
        else:
            m.submodules.guard = guard
        wiring.connect(m, wiring.flipped(self.inner), guard.inner)
        wiring.connect(m, guard.outer, wiring.flipped(self.outer))
        m.d.comb += [guard.flush.eq(self.flush), self.busy.eq(guard.busy)]
        i, o = self.inner, self.outer
        busy = guard.busy

        # ---- the free manager: only its burst lengths are bounded ----
        m.d.comb += [Assume(i.ar.payload.len <= self.max_len),
                     Assume(i.aw.payload.len <= self.max_len)]

        # ---- the subordinate (environment) ----
        stream_rules(m, o.r, "r", environment=True)
        stream_rules(m, o.b, "b", environment=True)
        ar_hs = o.ar.valid & o.ar.ready
        aw_hs = o.aw.valid & o.aw.ready
        w_hs = o.w.valid & o.w.ready
        r_hs = o.r.valid & o.r.ready
        b_hs = o.b.valid & o.b.ready
        # R: in order, RLAST exactly on the last beat of the oldest accepted AR burst.
        reads = LenQueue("rd", self.max_reads + 1, 8)
        reads.build(m, ar_hs, o.ar.payload.len, r_hs)
        m.d.comb += [Assume(~o.r.valid | (reads.count != 0)),
                     Assume(~o.r.valid | (o.r.payload.last == reads.last))]
        # W beats owed: AW bursts shown on the external port, oldest first.
        aw_waited = Signal()
        w_waited = Signal()
        m.d.sync += [aw_waited.eq(o.aw.valid & ~o.aw.ready),
                     w_waited.eq(o.w.valid & ~o.w.ready)]
        aw_shows = o.aw.valid & ~aw_waited
        w_new = o.w.valid & ~w_waited
        owed = LenQueue("wr", self.max_writes + 1, 8)
        owed.build(m, aw_shows, o.aw.payload.len, w_hs)
        # B: only for an accepted AW whose last W beat was accepted.
        aw_open = Signal(range(self.max_writes + 2))  # AW accepted, no B yet
        w_done = Signal(range(self.max_writes + 2))  # bursts whose last W was accepted, no B
        w_last_hs = w_hs & o.w.payload.last
        m.d.sync += [aw_open.eq(aw_open + aw_hs - b_hs), w_done.eq(w_done + w_last_hs - b_hs)]
        m.d.comb += Assume(~o.b.valid | ((w_done != 0) & (aw_open != 0)))
        # Bounded response: READY / R / B not held back `patience` cycles while due.
        for name, due, given in (
            ("ar", o.ar.valid, o.ar.ready), ("aw", o.aw.valid, o.aw.ready),
            ("w", o.w.valid, o.w.ready), ("r", reads.count != 0, o.r.valid),
            ("b", (w_done != 0) & (aw_open != 0), o.b.valid),
        ):
            waited = Signal(range(self.patience + 1), name=f"{name}_patience")
            with m.If(due & ~given):
                m.d.sync += waited.eq(waited + 1)
            with m.Else():
                m.d.sync += waited.eq(0)
            m.d.comb += Assume(waited < self.patience)

        # ---- properties ----
        for name in ("ar", "aw", "w"):
            stream_rules(m, getattr(o, name), name)
        m.d.comb += [
            Assert(~o.w.valid | (owed.count != 0), "w: a W beat only for an AW shown"),
            Assert(~o.w.valid | (o.w.payload.last == owed.last),
                   "w: WLAST exactly on the last beat of its AW burst"),
        ]
        flushed = Signal()  # a flush happened (the first cycles have nothing to drain)
        with m.If(self.flush):
            m.d.sync += flushed.eq(1)
        m.d.comb += Assert(
            ~busy | ~(i.ar.ready | i.aw.ready | i.w.ready | i.r.valid | i.b.valid),
            "drain: the internal side sees no READY and no response")
        ar_waited = Signal()
        m.d.sync += ar_waited.eq(o.ar.valid & ~o.ar.ready)
        m.d.comb += [
            Assert(~busy | ~(o.ar.valid & ~ar_waited), "drain: no new AR burst shown"),
            Assert(~busy | ~aw_shows, "drain: no new AW burst shown"),
            Assert(~(busy & w_new) | (o.w.payload.strb == 0),
                   "drain: every W beat shown while draining writes nothing"),
        ]
        # cycles since the last flush (a flush held high keeps the guard draining, by design)
        length = Signal(range(self.drain_bound + 1))
        with m.If(busy & ~self.flush):
            m.d.sync += length.eq(length + 1)
        with m.Else():
            m.d.sync += length.eq(0)
        m.d.comb += Assert(length < self.drain_bound, "drain: busy ends within the bound")
        was_busy = Signal()
        m.d.sync += was_busy.eq(busy)
        ended = was_busy & ~busy
        m.d.comb += Assert(~ended | ((reads.count == 0) & (aw_open == 0) & (owed.count == 0)),
                           "drain: nothing outstanding when busy falls")

        # ---- covers: the interesting drains are reachable ----
        m.d.comb += [
            Cover(ended & flushed, "a drain ends"),
            Cover(busy & w_new & (o.w.payload.strb == 0) & owed.last,
                  "a drained (strb 0) last W beat"),
            Cover(busy & r_hs & (reads.count == 2), "drain drops R beats of two bursts"),
            Cover(ended & (length >= 6), "a drain of 6 cycles or more ends"),
        ]
        return m
