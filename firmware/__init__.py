"""The kernel library: programs for each op, written with the ISA assembler
(``unified_engine.firmware``)."""
