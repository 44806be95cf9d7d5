"""Round-robin choice among requesters (used by the on-chip memory and the AXI read mux).

The requester granted last has the lowest priority in the next choice, so every waiting
requester is granted within ``n`` grants (no starvation). The choice is combinational (one
mask, two lowest-set-bit pickers); only the last grant's index is a register.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.utils import ceil_log2

__all__ = ["Choice", "round_robin"]


class Choice:
    """Result of :func:`round_robin`: ``grant`` (one-hot, n bits), ``index``, ``any``."""

    def __init__(self, grant: Value, index: Value, any_: Value) -> None:
        self.grant, self.index, self.any = grant, index, any_


def _lowest(bits: Value) -> Value:
    # x & -x keeps the lowest set bit (two's complement trick).
    return (bits & (~bits + 1))[: len(bits)]


def _encode(onehot: Value) -> Value:
    n = len(onehot)
    width = max(1, ceil_log2(n))
    return Cat(*(Cat(*(onehot[k] for k in range(n) if k >> b & 1)).any() for b in range(width)))


def round_robin(m: Module, requests: Value, advance: Value, name: str, *,
                sticky: bool = False) -> Choice:
    """Choose one of the set bits of ``requests`` (bit k = requester k wants a grant).

    ``advance`` says the grant was used this cycle; only then does the rotation move on. With
    ``advance`` high whenever anyone asks, a requester that keeps asking is granted at least
    once every ``len(requests)`` cycles.

    ``sticky``: a grant offered but not used (``advance`` low) is kept in the next cycles
    even if another requester of higher priority arrives; the granted requester must keep
    asking until it is used (a stream source keeps ``valid``). Needed where the grant drives
    a stream's payload, which must not change while it waits for ``ready``.
    """
    requests = Value.cast(requests)
    n = len(requests)
    if n == 1:
        return Choice(requests, Const(0, 1), requests[0])
    last = Signal(range(n), name=f"{name}_last", init=n - 1)
    # Requesters after the last grant first; wrap around to all requesters if none.
    after = Cat(*(last < k for k in range(n)))
    first = _lowest(requests & after)
    wrap = _lowest(requests)
    grant = Signal(n, name=f"{name}_grant")
    m.d.comb += grant.eq(Mux((requests & after).any(), first, wrap))
    if sticky:
        offered = Signal(name=f"{name}_offered")
        kept = Signal(n, name=f"{name}_kept")
        m.d.sync += offered.eq(requests.any() & ~advance)
        with m.If(~offered):
            m.d.sync += kept.eq(grant)
        fresh, grant = grant, Signal(n, name=f"{name}_grant_held")
        m.d.comb += grant.eq(Mux(offered, kept, fresh))
    index = Signal(range(n), name=f"{name}_index")
    m.d.comb += index.eq(_encode(grant))
    with m.If(advance & requests.any()):
        m.d.sync += last.eq(index)
    return Choice(grant, index, requests.any())
