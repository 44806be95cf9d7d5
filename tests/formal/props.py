"""Property building blocks shared by the formal harnesses: stream handshake rules, the DRAM
window predicates and the AXI 4 KB rule, as Amaranth expressions and ``Assert``/``Assume``
statements added to a harness module.

Conventions: an *obligation* of the design under test is an ``Assert``; a rule the
environment (the AXI subordinate, an on-chip memory, the dispatcher) must keep is an
``Assume``.  Arithmetic is done at full width (Amaranth widens ``+`` and ``*``), so nothing
here wraps: an address past the top of the address space is simply a large number.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Module, Signal, Value

from unified_engine.rtl.axi import AXI_BOUNDARY

__all__ = [
    "beats_in_window",
    "byte_in_window",
    "in_4k_page",
    "stream_rules",
]


def stream_rules(m: Module, stream, name: str, *, environment: bool = False) -> None:
    """The ``lib.stream`` / AXI handshake rules for ``stream``: once VALID is high without
    READY, VALID stays high and the payload stays the same in the next cycle.

    ``environment``: the stream is driven by the environment (``Assume``), else by the
    design under test (``Assert``).
    """
    check = Assume if environment else Assert
    payload = Value.cast(stream.payload)
    waited = Signal(name=f"{name}_waited")  # valid & ~ready in the previous cycle
    before = Signal.like(payload, name=f"{name}_before")
    m.d.sync += [waited.eq(stream.valid & ~stream.ready), before.eq(payload)]
    m.d.comb += [
        check(~waited | stream.valid, f"{name}: VALID held until READY"),
        check(~waited | (payload == before), f"{name}: payload stable while VALID & ~READY"),
    ]


def beats_in_window(addr, length, beat_log2: int, base, limit):
    """Every beat of the burst ``addr`` (byte address of its first beat, beat aligned),
    ``length`` (beats − 1) holds at least one byte of the window ``[base, limit)``.

    Beat ``k`` covers bytes ``[k·B, (k+1)·B)``; it meets the window iff ``k·B < limit`` and
    ``(k+1)·B > base`` (⟺ ``k ≥ base // B``).  Beats are contiguous, so checking the first and
    the last beat covers all of them; an empty window (``limit ≤ base``) allows nothing.
    """
    first = addr >> beat_log2
    last = first + length  # beat index of the last beat, no wrap
    return (limit > base) & (first >= (base >> beat_log2)) & ((last << beat_log2) < limit)


def byte_in_window(addr, base, limit):
    """Byte ``addr`` is inside ``[base, limit)``."""
    return (addr >= base) & (addr < limit)


def in_4k_page(addr, length, beat_log2: int):
    """The burst's first and last byte are in the same 4 KB page (AXI A3.4.1)."""
    page = AXI_BOUNDARY.bit_length() - 1
    last_byte = addr + ((length + 1) << beat_log2) - 1
    return (addr >> page) == (last_byte >> page)
