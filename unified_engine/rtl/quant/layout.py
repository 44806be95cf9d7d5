"""Beat layout of block-quantized weight streams, shared by ``QuantDecoder`` and ``QuantEncoder``.

A *quant beat* carries ``lanes`` element codes and the scale(s) of the block(s) they belong to:

* ``codes``: ``lanes · code_bits`` bits, element ``i`` in bits ``[code_bits·i, code_bits·(i+1))``
  (element 0 in the low bits, as the packed ``QuantizedTensor`` layout: low nibble = even k).
  ``code_bits`` is 8 when an 8-bit format (int8/fp8/if8) is enabled in the configuration, else
  4; 4-bit formats always use the low ``4·lanes`` bits (the upper half is ignored on input and
  zero on output).
* ``scales``: ``scale_slots`` 16-bit entries. Element ``i`` of a bf16-scaled format uses entry
  ``i // quant_block``; element ``i`` of NVFP4 uses entry ``i // 16`` and reads its unsigned
  E4M3 scale from the entry's low byte. ``scale_slots = max(1, lanes // smallest block)``, so
  it is 1 whenever ``lanes`` is at most the block length. A bf16 scale's sign bit is the INT
  flag (``docs/numerics-quant.md``).
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import unsigned
from amaranth.lib import data

from ...config import EngineConfig
from ...isa import WeightFormat
from ...numerics.quant_blocks import NVFP4_BLOCK

__all__ = ["EIGHT_BIT_FORMATS", "QuantGeometry", "weight_format"]

#: The block formats whose element codes are a byte.
EIGHT_BIT_FORMATS = frozenset({WeightFormat.INT8, WeightFormat.FP8, WeightFormat.IF8})


def weight_format(name: str) -> WeightFormat:
    """The ``isa.WeightFormat`` member of a ``config.FORMATS`` name (``"int4"`` → ``INT4``)."""
    try:
        return WeightFormat[name.upper()]
    except KeyError:
        allowed = ", ".join(f.name.lower() for f in WeightFormat)
        raise ValueError(f"unknown weight format {name!r}; allowed: {allowed}") from None


@dataclasses.dataclass(frozen=True)
class QuantGeometry:
    """Widths of a quant beat, derived from an ``EngineConfig`` (see the module docstring).

    Attributes
    ----------
    lanes:
        Elements per beat (``EngineConfig.lanes``).
    quant_block:
        Block length of the bf16-scaled formats (``EngineConfig.quant_block``).
    formats:
        The enabled block formats (``EngineConfig.formats`` without ``bf16``), in
        ``WeightFormat`` order.
    code_bits:
        Bits per element code in the ``codes`` field (4 or 8).
    scale_slots:
        Entries of the ``scales`` field.
    """

    lanes: int
    quant_block: int
    formats: tuple[WeightFormat, ...]
    code_bits: int
    scale_slots: int

    @classmethod
    def from_config(cls, config: EngineConfig) -> QuantGeometry:
        """The geometry of ``config``; raises ``TypeError`` for anything but an EngineConfig."""
        if not isinstance(config, EngineConfig):
            raise TypeError(f"expected an EngineConfig, got {type(config).__name__}")
        formats = tuple(sorted((weight_format(n) for n in config.formats if n != "bf16"),
                               key=lambda f: f.value))
        code_bits = 8 if EIGHT_BIT_FORMATS & set(formats) else 4
        smallest = NVFP4_BLOCK if WeightFormat.NVFP4 in formats else config.quant_block
        return cls(
            lanes=config.lanes,
            quant_block=config.quant_block,
            formats=formats,
            code_bits=code_bits,
            scale_slots=max(1, config.lanes // smallest),
        )

    @property
    def beat_layout(self) -> data.StructLayout:
        """``StructLayout`` of one quant beat: ``codes`` and ``scales``."""
        return data.StructLayout({
            "codes": unsigned(self.lanes * self.code_bits),
            "scales": data.ArrayLayout(unsigned(16), self.scale_slots),
        })

    @property
    def bf16_layout(self) -> data.ArrayLayout:
        """``ArrayLayout`` of one beat of ``lanes`` bf16 values."""
        return data.ArrayLayout(unsigned(16), self.lanes)

    def bf16_slot(self, lane: int) -> int:
        """The ``scales`` entry a bf16-scaled element in ``lane`` reads."""
        return min(lane // self.quant_block, self.scale_slots - 1)

    def nvfp4_slot(self, lane: int) -> int:
        """The ``scales`` entry an NVFP4 element in ``lane`` reads."""
        return min(lane // NVFP4_BLOCK, self.scale_slots - 1)
