"""``PE``: one processing element of the output-stationary systolic array.

A PE multiplies the bf16 operands passing through it (exact fp32 product) and accumulates the
product into one of P interleaved fp32 partial sums. The P partial sums are the P pipeline
registers of a latency-P ``Fp32Adder`` whose output feeds back into its ``a`` input: a sum
leaves the adder exactly when the next product of the same output arrives, so each output is
still accumulated sequentially in k order (``fp.pe_accumulate``) while the PE retires one MAC
per cycle (DESIGN.md §3, research/prototype-pe.md).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from .fp import Bf16Multiplier, Fp32Adder

__all__ = ["PE", "PE_MUL_LATENCY", "pe_config"]

#: Cycles from the PE's operand registers to the adder input (the product register).
PE_MUL_LATENCY = 1


def pe_config(config: EngineConfig) -> EngineConfig:
    """Type-check ``config`` for the array blocks and return it."""
    if not isinstance(config, EngineConfig):
        raise TypeError(f"expected an EngineConfig, got {type(config).__name__}")
    return config


class PE(wiring.Component):
    """Multiply-accumulate cell with P interleaved fp32 accumulators (P = ``pe_interleave``).

    Parameters
    ----------
    config:
        Only ``pe_interleave`` (P, the adder latency) is used.

    Ports
    -----
    a_in, b_in : In(16)
        bf16 operands. ``a`` travels right, ``b`` travels down the array.
    clear_in : In(1)
        This product is the first of its output: add it to +0 instead of the running sum.
    last_in : In(1)
        This product is the last of its output: the finished sum is emitted on ``result``.
    a_out, b_out, clear_out, last_out : Out
        The inputs, registered once (the systolic hop to the neighbouring PE). These
        registers are also the multiplier's input registers.
    init_take : In(1), init_value : In(32)
        When ``init_take`` is high, ``init_value`` replaces the running sum (as adder input
        ``a``) in this cycle. The array uses it to park an initial value in the accumulator
        of the output slot that is due at that cycle.
    result : Out(32), result_valid : Out(1)
        The adder output; ``result_valid`` marks the finished sum of an output whose
        ``last_in`` entered P + 2 cycles earlier.

    Timing
    ------
    An operand pair presented on ``a_in``/``b_in`` in cycle t is registered at t+1, its product
    at t+2 enters the adder, and the sum including it leaves the adder at t+2+P. The
    interleaving is purely positional: products presented P cycles apart belong to the same
    output. An idle cycle must carry ``a = -0`` (0x8000) and ``b = +0``: their product -0 is
    the identity of the fp32 add (``x + (-0) == x`` for every x, including -0), so a waiting
    partial sum is unchanged. Throughput: one MAC per cycle.
    """

    def __init__(self, config: EngineConfig):
        self.interleave = pe_config(config).pe_interleave
        #: Cycles from ``last_in`` to ``result_valid``.
        self.latency = 1 + PE_MUL_LATENCY + self.interleave
        super().__init__(
            {
                "a_in": In(16),
                "b_in": In(16),
                "clear_in": In(1),
                "last_in": In(1),
                "a_out": Out(16),
                "b_out": Out(16),
                "clear_out": Out(1),
                "last_out": Out(1),
                "init_take": In(1),
                "init_value": In(32),
                "result": Out(32),
                "result_valid": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        p = self.interleave

        # Systolic hop registers; they double as the multiplier's input registers. The
        # operands need no reset (only the flags do: a stale flag would emit a result).
        a_reg = Signal(16, reset_less=True)
        b_reg = Signal(16, reset_less=True)
        m.d.sync += [
            a_reg.eq(self.a_in),
            b_reg.eq(self.b_in),
            self.clear_out.eq(self.clear_in),
            self.last_out.eq(self.last_in),
        ]
        m.d.comb += [self.a_out.eq(a_reg), self.b_out.eq(b_reg)]

        m.submodules.mul = mul = Bf16Multiplier(latency=PE_MUL_LATENCY)
        m.d.comb += [mul.a.eq(self.a_out), mul.b.eq(self.b_out)]

        # Flags aligned with the product register.
        clear = Signal()
        last = Signal()
        m.d.sync += [clear.eq(self.clear_out), last.eq(self.last_out)]

        m.submodules.adder = adder = Fp32Adder(latency=p)
        m.d.comb += [
            adder.a.eq(Mux(self.init_take, self.init_value, Mux(clear, 0, adder.result))),
            adder.b.eq(mul.result),
        ]

        # `last` rides beside the adder pipeline and marks the finished sum at its output.
        done = last
        for k in range(p):
            nxt = Signal(name=f"last_p{k}")
            m.d.sync += nxt.eq(done)
            done = nxt
        m.d.comb += [self.result.eq(adder.result), self.result_valid.eq(done)]
        return m
