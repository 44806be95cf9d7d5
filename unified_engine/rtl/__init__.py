"""Amaranth ``wiring.Component`` blocks of the engine (``unified_engine.rtl``)."""
