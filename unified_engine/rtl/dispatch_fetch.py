"""``FetchFront``: the dispatcher's side of instruction fetch, with sequential prefetch.

The dispatcher executes the instruction in its instruction register (``ir``); meanwhile the
front end keeps asking the fetch unit for the following indices (pc + 1, pc + 2, …, at most
:data:`FETCH_AHEAD` beyond the one in ``ir``), so straight-line code issues one instruction
per cycle when the fetch unit answers fast enough.  A taken branch, a stop or START
*redirects* the front end: the answers still due for the old path are counted and dropped as
they arrive (the fetch protocol answers every request, in order), and fetching resumes at the
target.  A fetch error travels with its instruction and only matters if that instruction is
executed, so prefetching past a HALT at the end of the window is harmless.

Ports
-----
fetch : Out(fetch_signature())
    To the fetch unit (instruction cache).
run : In(1)
    New requests may be issued (the dispatcher is running and not stopping).
redirect : In(1), target : In(32)
    Drop the instruction register and everything in flight; the next instruction is
    ``target``.  Takes precedence over ``ir.ready``.
ir : Out(stream.Signature(IR_LAYOUT))
    The next instruction in program order: ``word``, fetch ``error``, ``pc``; ``ready`` =
    the dispatcher retires it and continues with pc + 1.

Soft reset: wrap the front end in a ``ResetInserter`` together with the fetch unit (the
engine top resets the fetch unit on soft reset), so that no answer of the aborted run is left.

Timing: a response accepted in cycle t is in ``ir`` in cycle t + 1; ``ir`` is refilled in the
cycle it is retired when the fetch unit has the next answer ready.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..isa import INSTRUCTION_BITS
from .engine_if import fetch_signature

__all__ = ["FETCH_AHEAD", "FETCH_OUTSTANDING", "IR_LAYOUT", "FetchFront"]

#: Requests the front end keeps in flight for the instructions after ``ir``.
FETCH_AHEAD = 3
#: Requests in flight at most, including answers still to be dropped after a redirect.
FETCH_OUTSTANDING = 7

IR_LAYOUT = data.StructLayout({
    "word": unsigned(INSTRUCTION_BITS),
    "error": 1,
    "pc": unsigned(32),
})


class FetchFront(wiring.Component):
    """Instruction register with sequential prefetch (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__({
            "fetch": Out(fetch_signature()),
            "run": In(1),
            "redirect": In(1),
            "target": In(32),
            "ir": Out(stream.Signature(IR_LAYOUT)),
        })

    def elaborate(self, platform):
        m = Module()
        req, resp = self.fetch.req, self.fetch.resp

        next_pc = Signal(32)  # index of the next request
        resp_pc = Signal(32)  # index of the next answer that is kept
        live = Signal(range(FETCH_AHEAD + 1))  # requested (or about to be), answer kept
        drop = Signal(range(FETCH_OUTSTANDING + 1))  # answers to discard
        req_valid = Signal()
        req_pc = Signal(32)

        # ---- requests: a register stage, so the payload is stable until accepted ----
        m.d.comb += [req.valid.eq(req_valid), req.payload.eq(req_pc)]
        slot = ~req_valid | req.ready
        load = (self.run & ~self.redirect & slot & (live < FETCH_AHEAD)
                & (live + drop < FETCH_OUTSTANDING))
        with m.If(load):
            m.d.sync += [req_valid.eq(1), req_pc.eq(next_pc), next_pc.eq(next_pc + 1)]
        with m.Elif(req.ready):
            m.d.sync += req_valid.eq(0)

        # ---- answers: drop the stale ones, keep the others in the instruction register ----
        dropping = drop != 0
        m.d.comb += resp.ready.eq(~self.redirect & (dropping | ~self.ir.valid | self.ir.ready))
        take = resp.valid & resp.ready
        keep = take & ~dropping
        with m.If(keep):
            m.d.sync += [
                self.ir.valid.eq(1),
                self.ir.payload.word.eq(resp.payload.word),
                self.ir.payload.error.eq(resp.payload.error),
                self.ir.payload.pc.eq(resp_pc),
                resp_pc.eq(resp_pc + 1),
            ]
        with m.Elif(self.ir.ready):
            m.d.sync += self.ir.valid.eq(0)

        with m.If(self.redirect):
            # no request is loaded and no answer taken in this cycle
            m.d.sync += [
                self.ir.valid.eq(0),
                drop.eq(drop + live),
                live.eq(0),
                next_pc.eq(self.target),
                resp_pc.eq(self.target),
            ]
        with m.Else():
            m.d.sync += [
                live.eq(live + load - keep),
                drop.eq(drop - (take & dropping)),
            ]
        return m
