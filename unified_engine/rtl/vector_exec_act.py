"""``Activation``: the activation of an epilogue-table entry on ``n`` fp32 lanes (VECTOR ACTIVATE).

Golden model: the activation part of ``host.units._activation`` (``numerics.activation``):
``IDENTITY`` passes x; ``CLAMP`` is ``f32_min(f32_max(x, a), b)``; ``UNIFIED`` is
``y = (a + c·x)·σ(b·x) + d`` in the model's exact order ``z = b⊗x; s = sigmoid(z);
u = c⊗x; g = a + u; p = g⊗s; y = p + d`` with the zero-dominant multiply ⊗ (a ±0 operand
gives a signed zero even against ±Inf; NaN still wins). It is the same datapath as stage 2 of
``rtl.epilogue.Epilogue`` (which applies it to the array's columns behind bias and scale);
ACTIVATE applies the entry's scale before this block, in the vector unit's multiplier.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, EnableInserter, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..isa import ActKind
from ._delay import delay
from .engine_if import EPI_ENTRY
from .fp import Fp32Adder, Fp32Compare, Fp32Multiplier
from .transcendental import SigmoidDatapath

__all__ = ["Activation"]

_POS_INF = 0x7F800000
_NEG_INF = 0xFF800000
_ADD_LATENCY = 4
_MUL_LATENCY = 3


def _is_zero(x: Value) -> Value:
    return x[23:31] == 0  # ±0 or a subnormal, which the multiplier reads as ±0


def _is_inf(x: Value) -> Value:
    return (x[23:31] == 0xFF) & (x[0:23] == 0)


def _zero_dominant_mul(m: Module, a, b, name: str) -> Value:
    """``Fp32Multiplier`` with the activation rule ±0 × ±Inf = signed zero (latency 3)."""
    mul = Fp32Multiplier(latency=_MUL_LATENCY)
    m.submodules[name] = mul
    m.d.comb += [mul.a.eq(a), mul.b.eq(b)]
    a, b = Value.cast(a), Value.cast(b)
    override = delay(m, (_is_zero(a) & _is_inf(b)) | (_is_inf(a) & _is_zero(b)), _MUL_LATENCY,
                     f"{name}_zd")  # fmt: skip
    sign = delay(m, a[31] ^ b[31], _MUL_LATENCY, f"{name}_sign")
    return Mux(override, Cat(Const(0, 31), sign), mul.result)


class Activation(wiring.Component):
    """``n`` lanes of ``act(x)`` for one epilogue-table entry, a fixed-latency stream pipeline.

    Parameters
    ----------
    lanes:
        n, the lanes (≥ 1).

    Ports
    -----
    i : In(stream.Signature(io_layout))
        ``data`` (ArrayLayout(32, n), fp32 bit patterns) and ``last`` (passed through).
    entry : In(EPI_ENTRY)
        The table entry (``act``, ``a``…``d``; ``scale`` is not used here); hold it stable
        while ``busy``.
    o : Out(stream.Signature(io_layout))
        One result per input transfer, in order.
    busy : Out(1)
        A beat is inside the pipeline or waiting on ``o``.

    Timing
    ------
    ``latency = 2·3 + Ls + 4`` → 38 cycles with the default sigmoid (Ls = 28) in every
    mode (the clamp bypass is delayed to match). One beat per cycle; the pipeline holds as a
    whole while ``o.valid & ~o.ready`` and ``i.ready = ~o.valid | o.ready``.
    """

    def __init__(self, lanes: int):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"Activation: lanes must be an int ≥ 1, got {lanes!r}")
        self.lanes = lanes
        self._sigmoids = [SigmoidDatapath() for _ in range(lanes)]
        self.sigmoid_latency = self._sigmoids[0].latency
        assert self.sigmoid_latency >= _ADD_LATENCY, "g = a + c·x must fit beside the sigmoid"
        self.latency = 2 * _MUL_LATENCY + self.sigmoid_latency + _ADD_LATENCY
        self.io_layout = data.StructLayout({"data": data.ArrayLayout(32, lanes), "last": 1})
        super().__init__({
            "i": In(stream.Signature(self.io_layout)),
            "entry": In(EPI_ENTRY),
            "o": Out(stream.Signature(self.io_layout)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        pipe = Module()
        enable = Signal()
        m.submodules.pipe = EnableInserter(enable)(pipe)
        m.d.comb += [enable.eq(~self.o.valid | self.o.ready), self.i.ready.eq(enable)]
        entry, beat = self.entry, self.i.payload

        valid = Signal(self.latency, name="valid")  # valid[t]: a beat at depth t + 1
        pipe.d.sync += valid.eq(Cat(self.i.valid, valid[:-1]))
        m.d.comb += self.busy.eq(valid.any())

        core = self.latency
        clamp = entry.act == ActKind.CLAMP
        lo, hi = Mux(clamp, entry.a, _NEG_INF), Mux(clamp, entry.b, _POS_INF)
        ls = self.sigmoid_latency
        out = Signal(data.ArrayLayout(32, self.lanes))
        for k in range(self.lanes):
            x = beat.data[k]
            # Bypass: min(max(x, lo), hi), 2 cycles, delayed to the unified path's depth.
            cmp_lo, cmp_hi = Fp32Compare(latency=1), Fp32Compare(latency=1)
            pipe.submodules[f"clamp_lo{k}"] = cmp_lo
            pipe.submodules[f"clamp_hi{k}"] = cmp_hi
            pipe.d.comb += [
                cmp_lo.a.eq(x), cmp_lo.b.eq(lo), cmp_hi.a.eq(cmp_lo.max), cmp_hi.b.eq(hi),
            ]  # fmt: skip
            bypass = delay(pipe, cmp_hi.min, core - 2, f"bypass{k}")
            # Unified: z = b⊗x; s = sigmoid(z); u = c⊗x; g = a + u; p = g⊗s; y = p + d.
            z = _zero_dominant_mul(pipe, entry.b, x, f"z_mul{k}")
            sig = self._sigmoids[k]
            pipe.submodules[f"sigmoid{k}"] = sig
            pipe.d.comb += sig.x.eq(z)
            # u and g are computed late so that g is ready exactly when s is.
            late_x = delay(pipe, x, ls - _ADD_LATENCY, f"x_late{k}")
            u = _zero_dominant_mul(pipe, entry.c, late_x, f"u_mul{k}")
            g_add = Fp32Adder(latency=_ADD_LATENCY)
            pipe.submodules[f"g_add{k}"] = g_add
            pipe.d.comb += [g_add.a.eq(entry.a), g_add.b.eq(u)]
            p = _zero_dominant_mul(pipe, g_add.result, sig.result, f"p_mul{k}")
            y_add = Fp32Adder(latency=_ADD_LATENCY)
            pipe.submodules[f"y_add{k}"] = y_add
            pipe.d.comb += [y_add.a.eq(p), y_add.b.eq(entry.d)]
            m.d.comb += out[k].eq(Mux(entry.act == ActKind.UNIFIED, y_add.result, bypass))

        m.d.comb += [
            self.o.valid.eq(valid[-1]),
            self.o.payload.data.eq(out),
            self.o.payload.last.eq(delay(pipe, beat.last, self.latency, "last")),
        ]
        return m
