"""Block-quant units: ``QuantDecoder`` (codes → bf16) and ``QuantEncoder`` (bf16 → codes).

Both are bit-exact with the golden models in ``unified_engine.numerics.quant_blocks`` and use
the beat layout of ``layout.QuantGeometry`` (see ``docs/numerics-quant.md``).
"""

from .decode import QuantDecoder
from .encode import QuantEncoder
from .layout import QuantGeometry, weight_format

__all__ = ["QuantDecoder", "QuantEncoder", "QuantGeometry", "weight_format"]
