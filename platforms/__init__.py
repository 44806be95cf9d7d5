"""Board platforms and the Vivado shell (``unified_engine.platforms``)."""
