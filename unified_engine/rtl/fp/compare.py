"""fp32 comparison: ``Fp32Compare`` (max, min, lt, eq) and the pipelined ``MaxTree``.

The ordering trick (also ``fp.f32_order_key``): flipping the 31 magnitude bits of a negative
number turns the bit pattern into a two's-complement integer that orders fp32 values totally,
-Inf < … < -0 < +0 < … < +Inf. NaN is handled separately before the comparison.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ._common import F32_CANONICAL_NAN, check_latency, f32_fields, stage

__all__ = ["Fp32Compare", "MaxTree", "f32_flush", "f32_is_nan", "f32_order_key"]


def f32_flush(x: Value) -> Value:
    """Flush a subnormal fp32 bit pattern to the zero of the same sign (other values pass)."""
    sign, exp, _ = f32_fields(x)
    return Mux(exp == 0, Cat(Const(0, 31), sign), x)


def f32_is_nan(x: Value) -> Value:
    """1 when the fp32 bit pattern is a NaN (any payload)."""
    _, exp, man = f32_fields(x)
    return (exp == 0xFF) & (man != 0)


def f32_order_key(x: Value) -> Value:
    """Signed 32-bit key ordering flushed fp32 patterns totally (meaningless for NaN)."""
    x = Value.cast(x)
    return (x ^ Cat(x[31].replicate(31), Const(0, 1))).as_signed()


class Fp32Compare(wiring.Component):
    """fp32 max, min, less-than and equality of one pair per cycle.

    Golden models: ``fp.f32_max``, ``fp.f32_min`` (NaN if either input is NaN, canonical
    ``0x7FC00000``; -0 orders below +0; subnormal inputs are flushed to signed zero first, so
    the result is the flushed input) and ``fp.f32_lt``, ``fp.f32_eq`` (IEEE ordered: false
    when either input is NaN, ``-0 == +0``, evaluated after flushing subnormals).

    Parameters
    ----------
    latency:
        0 (combinational), 1 (registered outputs, default) or 2 (inputs and outputs).

    Ports
    -----
    a, b : In(32)
        fp32 bit patterns.
    max, min : Out(32)
        fp32 bit patterns.
    lt, eq : Out(1)
        ``a < b`` and ``a == b``.
    """

    def __init__(self, *, latency: int = 1):
        self.latency = check_latency("Fp32Compare", latency, range(3))
        super().__init__(
            {"a": In(32), "b": In(32), "max": Out(32), "min": Out(32), "lt": Out(1), "eq": Out(1)}
        )

    def elaborate(self, platform):
        m = Module()
        cuts = {0: (), 1: (1,), 2: (0, 1)}[self.latency]
        v = stage(m, 0 in cuts, "in", a=self.a, b=self.b)
        a, b = f32_flush(v["a"]), f32_flush(v["b"])
        nan = f32_is_nan(a) | f32_is_nan(b)
        a_ge_b = f32_order_key(a) >= f32_order_key(b)
        both_zero = (a[0:31] == 0) & (b[0:31] == 0)  # -0 == +0 for lt/eq only
        canonical = Const(F32_CANONICAL_NAN, 32)
        out = stage(
            m,
            1 in cuts,
            "out",
            max=Mux(nan, canonical, Mux(a_ge_b, a, b)),
            min=Mux(nan, canonical, Mux(a_ge_b, b, a)),
            lt=~nan & ~both_zero & ~a_ge_b,
            eq=~nan & (both_zero | (a == b)),
        )
        m.d.comb += [
            self.max.eq(out["max"]),
            self.min.eq(out["min"]),
            self.lt.eq(out["lt"]),
            self.eq.eq(out["eq"]),
        ]
        return m


class MaxTree(wiring.Component):
    """Maximum of ``n`` fp32 values per cycle through a pipelined binary tree.

    Golden model: ``functools.reduce(fp.f32_max, values)`` — NaN (canonical) if any input is
    NaN, -0 below +0, subnormals flushed. Order keys are compared at every node and the NaN
    flag travels beside the value, so only the root canonicalises.

    Parameters
    ----------
    n:
        Number of inputs (2…1024).
    levels_per_stage:
        Tree levels between pipeline registers (default 1: one register per level). The last
        level is always registered, so ``latency = ceil(ceil_log2(n) / levels_per_stage)``.

    Ports
    -----
    inputs : In(ArrayLayout(32, n))
        fp32 bit patterns.
    result : Out(32)
        Their maximum, ``latency`` cycles later; a new vector every cycle.
    """

    def __init__(self, n: int, *, levels_per_stage: int = 1):
        limits = (("n", n, 2, 1024), ("levels_per_stage", levels_per_stage, 1, 16))
        for name, value, low, high in limits:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"MaxTree: {name} must be an int, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"MaxTree: {name}={value} is out of range; allowed {low}…{high}")
        self.n = n
        self.levels = (n - 1).bit_length()
        self.levels_per_stage = levels_per_stage
        self.latency = -(-self.levels // levels_per_stage)
        super().__init__({"inputs": In(data.ArrayLayout(32, n)), "result": Out(32)})

    def elaborate(self, platform):
        m = Module()
        # Each node carries (value, nan); leaves flush subnormals.
        nodes = [(f32_flush(self.inputs[i]), f32_is_nan(self.inputs[i])) for i in range(self.n)]
        for level in range(self.levels):
            nxt = []
            for k in range(0, len(nodes) - 1, 2):
                (va, na), (vb, nb) = nodes[k], nodes[k + 1]
                pick_a = f32_order_key(va) >= f32_order_key(vb)
                nxt.append((Mux(pick_a, va, vb), na | nb))
            if len(nodes) % 2:
                nxt.append(nodes[-1])  # odd one out rides to the next level
            registered = (level + 1) % self.levels_per_stage == 0 or level == self.levels - 1
            nodes = []
            for k, (value, nan) in enumerate(nxt):
                v = stage(m, registered, f"l{level}_{k}", value=value, nan=nan)
                nodes.append((v["value"], v["nan"]))
        ((value, nan),) = nodes
        m.d.comb += self.result.eq(Mux(nan, F32_CANONICAL_NAN, value))
        return m
