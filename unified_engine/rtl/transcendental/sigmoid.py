"""``Sigmoid``: fp32 logistic function composed from the Exp, Fp32Adder and Reciprocal
pipelines, bit-exact with ``numerics.transcendental.sigmoid``."""

from __future__ import annotations

from amaranth.hdl import Const, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...numerics.transcendental import (
    DEFAULT_EXP_DEGREE,
    DEFAULT_EXP_TABLE_BITS,
    DEFAULT_RECIPROCAL_TABLE_BITS,
)
from ..fp import Fp32Adder
from ..fp.fp32_add import MAX_LATENCY as ADDER_MAX_LATENCY
from ._stream import StreamPipeline
from .exp import ExpDatapath
from .reciprocal import ReciprocalDatapath

__all__ = ["DEFAULT_ADDER_LATENCY", "Sigmoid", "SigmoidDatapath"]

#: Fp32Adder latency inside the sigmoid: 6 registers over its 7 internal boundaries keep each
#: stage to roughly one carry chain or one shifter (the default 4 is ~180 MHz on xc7).
DEFAULT_ADDER_LATENCY = 6

_ONE = 0x3F800000


class SigmoidDatapath(wiring.Component):
    """fp32 ``1 / (1 + e**-x)`` as a fixed-latency pipeline, in exactly the model's order:
    ``reciprocal(f32_add(1, exp(-x)))`` (``-x`` is a sign flip of the input bits).

    Submodules: :class:`ExpDatapath` (11 cycles by default), ``rtl.fp.Fp32Adder`` with
    ``a = 1.0`` (``adder_latency``) and :class:`ReciprocalDatapath` (11 cycles).
    ``latency`` is their sum: 28 with the defaults. 18 DSP pieces (9 + 9); two ROMs.

    Parameters
    ----------
    exp_table_bits, exp_degree, reciprocal_table_bits:
        As ``numerics.transcendental.sigmoid``.
    adder_latency:
        Latency of the fp32 adder, 0…8 (default 6).

    Ports
    -----
    x : In(32)
        fp32 bit pattern.
    result : Out(32)
        fp32 bits of ``sigmoid(x)``, ``latency`` cycles later.
    """

    def __init__(
        self,
        *,
        exp_table_bits: int = DEFAULT_EXP_TABLE_BITS,
        exp_degree: int = DEFAULT_EXP_DEGREE,
        reciprocal_table_bits: int = DEFAULT_RECIPROCAL_TABLE_BITS,
        adder_latency: int = DEFAULT_ADDER_LATENCY,
    ):
        self.latency = self.check_params(
            exp_table_bits=exp_table_bits,
            exp_degree=exp_degree,
            reciprocal_table_bits=reciprocal_table_bits,
            adder_latency=adder_latency,
        )
        self.exp_table_bits = exp_table_bits
        self.exp_degree = exp_degree
        self.reciprocal_table_bits = reciprocal_table_bits
        self.adder_latency = adder_latency
        super().__init__({"x": In(32), "result": Out(32)})

    @classmethod
    def check_params(
        cls,
        *,
        exp_table_bits: int = DEFAULT_EXP_TABLE_BITS,
        exp_degree: int = DEFAULT_EXP_DEGREE,
        reciprocal_table_bits: int = DEFAULT_RECIPROCAL_TABLE_BITS,
        adder_latency: int = DEFAULT_ADDER_LATENCY,
    ) -> int:
        """Validate the parameters and return the latency (the sum of the three units')."""
        if isinstance(adder_latency, bool) or not isinstance(adder_latency, int):
            raise TypeError(f"SigmoidDatapath: adder_latency must be an int, got {adder_latency!r}")
        if not 0 <= adder_latency <= ADDER_MAX_LATENCY:
            raise ValueError(
                f"SigmoidDatapath: adder_latency={adder_latency} is not supported; "
                f"allowed 0…{ADDER_MAX_LATENCY}"
            )
        exp = ExpDatapath.check_params(table_bits=exp_table_bits, degree=exp_degree)
        reciprocal = ReciprocalDatapath.check_params(table_bits=reciprocal_table_bits)
        return exp + adder_latency + reciprocal

    def elaborate(self, platform):
        m = Module()
        m.submodules.exp = exp = ExpDatapath(table_bits=self.exp_table_bits, degree=self.exp_degree)
        m.submodules.adder = adder = Fp32Adder(latency=self.adder_latency)
        m.submodules.reciprocal = reciprocal = ReciprocalDatapath(
            table_bits=self.reciprocal_table_bits
        )
        assert exp.latency + adder.latency + reciprocal.latency == self.latency
        m.d.comb += [
            exp.x.eq(self.x ^ (1 << 31)),
            adder.a.eq(Const(_ONE, 32)),
            adder.b.eq(exp.result),
            reciprocal.x.eq(adder.result),
            self.result.eq(reciprocal.result),
        ]
        return m


class Sigmoid(StreamPipeline):
    """Stream unit for the fp32 logistic function (:class:`SigmoidDatapath`).

    Parameters as :class:`SigmoidDatapath`; ``latency`` 28 cycles by default.
    Ports: ``i``, ``o`` (see :class:`StreamPipeline`).
    """

    def __init__(
        self,
        *,
        exp_table_bits: int = DEFAULT_EXP_TABLE_BITS,
        exp_degree: int = DEFAULT_EXP_DEGREE,
        reciprocal_table_bits: int = DEFAULT_RECIPROCAL_TABLE_BITS,
        adder_latency: int = DEFAULT_ADDER_LATENCY,
    ):
        super().__init__(
            SigmoidDatapath,
            exp_table_bits=exp_table_bits,
            exp_degree=exp_degree,
            reciprocal_table_bits=reciprocal_table_bits,
            adder_latency=adder_latency,
        )
