"""Per-layer weight formats: which linear layers run in bf16 and which are block-quantized.

Layer names are ``layers.{i}.{proj}`` (Llama: ``q k v o gate up down``; GPT-2: ``q k v o fc
proj``) and ``lm_head``.  A policy is a format name for every linear layer, or a mapping of
``fnmatch`` patterns to formats tried in order (first match wins, unmatched layers are bf16)::

    WeightFormats("if4")                                   # every linear layer, LM head too
    WeightFormats({"lm_head": "bf16", "*": "int4"})        # 4-bit blocks, bf16 LM head
    WeightFormats({"layers.0.*": "bf16", "layers.*.down": "if4"})

Quantized formats are those of ``Engine.quantize`` (``numerics.quant``): blocks of
``config.quant_block`` values along K with a bf16 scale (INT4, FP4, IF4, INT8, FP8, IF8), or
16-value NVFP4 blocks; the array decodes them on the fly.  The token embedding table is always
bf16 (it is gathered, not multiplied).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

__all__ = ["WEIGHT_FORMATS", "WeightFormats", "upload_linear"]

WEIGHT_FORMATS = ("bf16", "int4", "fp4", "if4", "nvfp4", "int8", "fp8", "if8")


class WeightFormats:
    """A per-layer format policy (see the module docstring)."""

    def __init__(self, formats: str | Mapping[str, str] | WeightFormats = "bf16") -> None:
        if isinstance(formats, WeightFormats):
            self.rules: tuple[tuple[str, str], ...] = formats.rules
            return
        rules = [("*", formats)] if isinstance(formats, str) else list(formats.items())
        for pattern, fmt in rules:
            if not isinstance(pattern, str) or fmt not in WEIGHT_FORMATS:
                raise ValueError(f"bad weight format rule {pattern!r}: {fmt!r}; formats: "
                                 f"{', '.join(WEIGHT_FORMATS)}")
        self.rules = tuple(rules)

    def __call__(self, layer: str) -> str:
        """The format of linear layer ``layer``."""
        for pattern, fmt in self.rules:
            if fnmatch.fnmatchcase(layer, pattern):
                return fmt
        return "bf16"

    def __repr__(self) -> str:
        return f"WeightFormats({dict(self.rules)!r})"

    @property
    def label(self) -> str:
        """Short text for reports: the single format, or the rules."""
        if len(self.rules) == 1 and self.rules[0][0] == "*":
            return self.rules[0][1]
        return ",".join(f"{p}={f}" for p, f in self.rules)


def upload_linear(engine: Any, w: Any, fmt: str) -> Any:
    """``w[N, K]`` (float32) on the device as a ``PackedWeight`` in ``fmt``."""
    if fmt == "bf16":
        return engine.pack_weight(w)
    return engine.quantize(w, fmt)
