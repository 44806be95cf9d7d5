"""``TraceBuffer``: the engine's trace buffer of timestamped events (CSR TRACE_*).

Sources
-------
One ``trace_source_signature()`` member per name in ``engine_if.TRACE_SOURCES`` (the
dispatcher, then START and END of each queue), grouped in the ``sources`` port: a source
offers one ``TRACE_EVENT`` by holding ``valid`` high for one cycle.  Every source may fire in
every cycle.

Recording
---------
* ``clear`` (START; the engine top may also pulse it on SOFT_RESET) empties the buffer: count
  and timestamp restart at 0, events still queued are dropped, and ``mode`` is sampled — like
  the ISA simulator, which fixes the trace mode when a run starts, a TRACE_MODE write during a
  run changes nothing until the next START.  Events offered in the same cycle as ``clear``
  belong to the old run and are dropped.
* The timestamp of an event is the cycle it was *offered* (0 in the cycle after ``clear``),
  low 32 bits, not the cycle it reaches the memory.
* Mode filter (``regs.TraceMode``): OFF records nothing, MARKERS only kinds MARKER, HALT and
  ERROR, ALL every event; the undefined value 3 acts as OFF (as in ``host/model.py``).
* ``count`` (TRACE_COUNT) is the number of events offered and accepted by the filter since
  ``clear``, saturating at 2**32 − 1; the memory keeps the first ``config.trace_depth``.

Ordering rule: events are stored in the order of the cycle they were offered and, within one
cycle, in ``TRACE_SOURCES`` order (lower index first).  (The ISA simulator orders events with
equal timestamps by dispatch order instead; timestamps themselves are the RTL's own cycles.)

Structure and cycle behaviour
-----------------------------
All events accepted in one cycle form one *record* (timestamp, valid mask, the events) pushed
into a small FIFO (``fifo_depth`` records, LUT RAM via an asynchronous read port, so the wide
record never sits in flip-flops).  The head record is written to the trace memory one event
per cycle, lowest source first, and popped after its last event.  So one event per cycle is
written; bursts of simultaneous events are absorbed as long as fewer than ``fifo_depth``
records are waiting.  Only under sustained overload (more than one event per cycle for many
cycles) can the FIFO be full: then that cycle's events are lost (still counted).  An event
offered in cycle t is written to the memory at the end of cycle t + 1 at the earliest.

Read port (``read``, for the CSR block): ``entry`` is the ``TRACE_ENTRY`` at ``index``, or 0
if ``index`` is not below the number of entries already written; it reflects ``index`` and the
memory one cycle later (a synchronous block-RAM read).  ``count`` is combinational from a
register.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, ResetInserter, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..config import EngineConfig
from ..regs import TRACE_ENTRY, TraceKind, TraceMode
from .engine_if import TRACE_EVENT, TRACE_SOURCES, trace_source_signature

__all__ = ["TRACE_COUNT_MAX", "TraceBuffer", "trace_read_signature", "trace_sources_signature"]

#: TRACE_COUNT saturates here.
TRACE_COUNT_MAX = 0xFFFF_FFFF

#: Kinds recorded in MARKERS mode (TRACE markers, HALT, errors).
_MARKER_KINDS = (TraceKind.MARKER, TraceKind.HALT, TraceKind.ERROR)


def trace_sources_signature() -> wiring.Signature:
    """All trace sources, producer side: one ``trace_source_signature()`` per
    ``TRACE_SOURCES`` name (the buffer takes it flipped)."""
    return wiring.Signature({name: Out(trace_source_signature()) for name in TRACE_SOURCES})


def trace_read_signature() -> wiring.Signature:
    """Trace read-out from the reader's (CSR block's) side: ``index`` out; ``entry``
    (``TRACE_ENTRY``, 64 bits) and ``count`` (TRACE_COUNT) in."""
    return wiring.Signature({
        "index": Out(32),
        "entry": In(TRACE_ENTRY),
        "count": In(32),
    })


class TraceBuffer(wiring.Component):
    """Trace buffer of ``config.trace_depth`` 64-bit entries (see the module docstring).

    Parameters
    ----------
    config:
        The engine (``trace_depth``).
    fifo_depth:
        Records (cycles with at least one event) that may wait to be written.  Any depth up
        to 32 takes the same LUT RAM (RAM32M cells are 32 deep); measured with Yosys (xc7,
        default config): 16 → 402 LUT + 55 LUTRAM + 103 FF + 16 RAMB36, 32 → 436 LUT.

    Ports
    -----
    sources : In(trace_sources_signature())
    mode : In(TraceMode)
        Sampled on ``clear``.
    clear : In(1)
    read : In(trace_read_signature())
    """

    def __init__(self, config: EngineConfig, *, fifo_depth: int = 16) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"TraceBuffer needs an EngineConfig, not {type(config).__name__}")
        if isinstance(fifo_depth, bool) or not isinstance(fifo_depth, int) or \
                not 2 <= fifo_depth <= 256:
            raise ValueError(f"fifo_depth={fifo_depth!r} is out of range; allowed 2…256")
        self.config = config
        self.depth = config.trace_depth
        self.fifo_depth = fifo_depth
        self._record = data.StructLayout({
            "timestamp": 32,
            "valid": len(TRACE_SOURCES),
            "events": data.ArrayLayout(TRACE_EVENT, len(TRACE_SOURCES)),
        })
        super().__init__({
            "sources": In(trace_sources_signature()),
            "mode": In(TraceMode),
            "clear": In(1),
            "read": In(trace_read_signature()),
        })
        self._count = Signal(32)  # TRACE_COUNT (an attribute so a test can fast-forward it)

    def elaborate(self, platform):
        m = Module()
        n = len(TRACE_SOURCES)
        depth = self.depth
        addr_bits = exact_log2(depth)

        mode = Signal(TraceMode)  # the mode of the current run (sampled on clear)
        timestamp = Signal(32)
        count = self._count
        written = Signal(range(depth + 1))  # entries in the memory
        with m.If(self.clear):
            m.d.sync += [mode.eq(self.mode), timestamp.eq(0), count.eq(0), written.eq(0)]
        with m.Else():
            m.d.sync += timestamp.eq(timestamp + 1)

        # ----- offer: filter, count, push one record per cycle -----------------------------
        accepted = Signal(n)
        record = Signal(self._record)
        srcs = [getattr(self.sources, name) for name in TRACE_SOURCES]
        for i, src in enumerate(srcs):
            kind = src.event.kind
            is_marker = Cat(kind == k for k in _MARKER_KINDS).any()
            keep = (mode == TraceMode.ALL) | ((mode == TraceMode.MARKERS) & is_marker)
            m.d.comb += [
                accepted[i].eq(src.valid & keep & ~self.clear),
                record.events[i].eq(src.event),
            ]
        m.d.comb += [record.timestamp.eq(timestamp), record.valid.eq(accepted)]

        # popcount of at most len(TRACE_SOURCES) bits, then a saturating add
        offered = sum(accepted[i] for i in range(n))
        total = Signal(33)
        m.d.comb += total.eq(count + offered)
        with m.If(~self.clear):
            m.d.sync += count.eq(total[:32] | total[32].replicate(32))

        # Async-read FIFO: LUT RAM, and the head record is visible one cycle after the push.
        fifo = m.submodules.fifo = ResetInserter(self.clear)(
            SyncFIFO(width=self._record.size, depth=self.fifo_depth))
        m.d.comb += [fifo.w_data.eq(record), fifo.w_en.eq(accepted.any())]

        # ----- drain: one event of the head record per cycle, lowest source first -----------
        head = data.View(self._record, fifo.r_data)
        done = Signal(n)  # events of the head record already written
        pending = Signal(n)
        m.d.comb += pending.eq(head.valid & ~done & fifo.r_rdy.replicate(n))
        first = Signal(n)  # one-hot: the lowest pending source
        for i in range(n):
            m.d.comb += first[i].eq(pending[i] & ~pending[:i].any() if i else pending[0])
        chosen = Signal(TRACE_EVENT)
        for i in range(n):
            with m.If(first[i]):
                m.d.comb += chosen.eq(head.events[i])

        mem = m.submodules.mem = Memory(shape=TRACE_ENTRY, depth=depth, init=[])
        wport = mem.write_port()
        rport = mem.read_port(transparent_for=())
        full = written == depth
        m.d.comb += [
            wport.addr.eq(written[:addr_bits]),
            wport.data.timestamp.eq(head.timestamp),
            wport.data.payload.eq(chosen.payload),
            wport.data.kind.eq(chosen.kind),
            wport.data.unit.eq(chosen.unit),
            wport.en.eq(pending.any() & ~full & ~self.clear),
        ]
        with m.If(pending.any() & ~full & ~self.clear):
            m.d.sync += written.eq(written + 1)
        last = (pending & ~first) == 0
        m.d.comb += fifo.r_en.eq(pending.any() & last)
        with m.If(self.clear | (pending.any() & last)):
            m.d.sync += done.eq(0)
        with m.Elif(pending.any()):
            m.d.sync += done.eq(done | first)

        # ----- read port ------------------------------------------------------------------
        present = Signal()  # index names a written entry (aligned with the memory read)
        m.d.sync += present.eq(self.read.index < written)
        m.d.comb += [
            rport.addr.eq(self.read.index[:addr_bits]),
            self.read.entry.eq(rport.data.as_value() & present.replicate(TRACE_ENTRY.size)),
            self.read.count.eq(count),
        ]
        return m
