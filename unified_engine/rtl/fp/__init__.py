"""Floating-point arithmetic units, bit-exact with ``unified_engine.numerics.fp``.

All units are fixed-latency pipelines with plain ``In``/``Out`` ports (no handshake): a new
operand set is accepted every cycle and the result appears ``latency`` cycles later. To stall
one, wrap it in ``amaranth.hdl.EnableInserter``.
"""

from .bf16_mul import Bf16Multiplier
from .compare import Fp32Compare, MaxTree, f32_flush, f32_is_nan, f32_order_key
from .fp32_add import Fp32Adder
from .fp32_mul import Fp32Multiplier
from .to_bf16 import Fp32ToBf16

__all__ = [
    "Bf16Multiplier",
    "Fp32Adder",
    "Fp32Compare",
    "Fp32Multiplier",
    "Fp32ToBf16",
    "MaxTree",
    "f32_flush",
    "f32_is_nan",
    "f32_order_key",
]
