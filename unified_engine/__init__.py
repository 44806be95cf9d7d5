"""Unified Engine: an open generator for a bf16 systolic-array + vector-unit inference engine.

The single sources of truth live here: ``EngineConfig`` (``unified_engine.config``), the
numerics golden models (``unified_engine.numerics``), the ISA and the register map.
"""

from .config import FORMATS, PRESETS, EngineConfig

__all__ = ["FORMATS", "PRESETS", "EngineConfig"]
__version__ = "0.1.0"
