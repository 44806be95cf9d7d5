"""``LoopNest``: nested iteration counters with affine addresses, for the MATMUL unit's sequencers.

Every sequencer of ``MatmulUnit`` walks a loop nest such as ``for i < m_tiles: for j <
n_tiles: for r < rows`` and needs one or more addresses of the form ``base + Σ idx_l · S_l``.
Instead of multiplying, the nest keeps one *partial sum* per level,
``P_l = base + Σ_{q ≤ l} idx_q · S_q``: when level ``l`` increments (all inner levels wrap),
``P_l ← P_l + S_l`` and every inner partial restarts from that new value. The innermost partial
is the address of the current iteration. One adder per level and address, no multiplier.

Arithmetic is modulo ``2**width``: a caller that truncates its strides to ``width`` bits still
gets exact addresses as long as every address it *uses* is below ``2**width`` (a partial sum
is always the address of some iteration, so it never needs more bits).

This is a code generator for a ``Module``, not a component: the caller drives ``start`` and
``step`` (combinational, one-cycle strobes) and reads ``idx``, ``last``, ``final``, ``running``
and ``addr``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value

__all__ = ["LoopNest"]


class LoopNest:
    """Nested counters, outermost first, and affine addresses over them.

    Parameters
    ----------
    m:
        The module the logic is built in (``sync`` domain).
    name:
        Prefix of the signal names.
    counts:
        Trip count of each level (values, outermost first); each must be ≥ 1 at ``start``
        and stable while the nest runs.
    addresses:
        ``{name: (width, base, strides)}``: an address of ``width`` bits equal to
        ``base + Σ idx_l · strides[l]`` (``strides`` one value per level; ``base`` and the
        strides stable while the nest runs).

    Attributes
    ----------
    start, step : Signal
        Inputs (drive them combinationally). ``start`` loads the first iteration and sets
        ``running``; ``step`` (while ``running``) moves to the next iteration, or clears
        ``running`` after the last one.
    running : Signal
        Registered: an iteration is current.
    idx, last : list[Signal]
        Per level: the index and ``idx == count - 1``.
    final : Signal
        The current iteration is the last one of the whole nest.
    carry : list[Signal]
        Per level: ``step`` finishes this level's inner loop (all inner levels are ``last``),
        so the level advances or wraps in this cycle.
    addr : dict[str, Signal]
        The current iteration's addresses (registered).
    """

    def __init__(self, m: Module, name: str, counts, addresses=None) -> None:
        addresses = addresses or {}
        levels = len(counts)
        self.start = Signal(name=f"{name}_start")
        self.step = Signal(name=f"{name}_step")
        self.running = Signal(name=f"{name}_running")
        self.idx = [Signal(Value.cast(c).shape(), name=f"{name}_idx{lv}")
                    for lv, c in enumerate(counts)]
        self.last = [Signal(name=f"{name}_last{lv}") for lv in range(levels)]
        self.carry = [Signal(name=f"{name}_carry{lv}") for lv in range(levels)]
        self.final = Signal(name=f"{name}_final")
        for lv, count in enumerate(counts):
            m.d.comb += self.last[lv].eq(self.idx[lv] + 1 == count)
        m.d.comb += self.final.eq(Cat(*self.last).all())

        step = self.step & self.running
        for lv in range(levels):
            inner_last = Cat(*self.last[lv + 1:]).all() if lv + 1 < levels else 1
            m.d.comb += self.carry[lv].eq(step & inner_last)
        # `inc[l]`: level l increments (the innermost level that is not at its last index).
        inc = [Signal(name=f"{name}_inc{lv}") for lv in range(levels)]
        for lv in range(levels):
            m.d.comb += inc[lv].eq(self.carry[lv] & ~self.last[lv])

        with m.If(self.start):
            m.d.sync += [i.eq(0) for i in self.idx]
            m.d.sync += self.running.eq(1)
        with m.Elif(step):
            with m.If(self.final):
                m.d.sync += self.running.eq(0)
            for lv in range(levels):
                with m.If(inc[lv]):
                    m.d.sync += self.idx[lv].eq(self.idx[lv] + 1)
                with m.Elif(self.carry[lv]):
                    m.d.sync += self.idx[lv].eq(0)

        self.addr = {}
        for key, (width, base, strides) in addresses.items():
            if len(strides) != levels:
                raise ValueError(f"LoopNest {name}: address {key} needs {levels} strides")
            partial = [Signal(width, name=f"{name}_{key}_p{lv}") for lv in range(levels)]
            nxt = [Signal(width, name=f"{name}_{key}_n{lv}") for lv in range(levels)]
            for lv in range(levels):
                m.d.comb += nxt[lv].eq(partial[lv] + strides[lv])
            with m.If(self.start):
                m.d.sync += [p.eq(base) for p in partial]
            with m.Elif(step):
                for q in range(levels):
                    # the level that increments is unique: a priority mux over l ≤ q
                    value = partial[q]
                    for lv in range(q, -1, -1):
                        value = Mux(inc[lv], nxt[lv], value)
                    m.d.sync += partial[q].eq(value)
            self.addr[key] = partial[-1]
