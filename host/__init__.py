"""Host runtime: ``Engine``, device transports and models (``unified_engine.host``)."""
