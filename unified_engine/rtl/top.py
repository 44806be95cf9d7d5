"""``EngineTop``: one engine with its own sync-flag register — the unit a simulation or a
single-engine board build instantiates.

A multi-engine SoC shares one flag word between its engines (``engine_if.sync_signature``); a
lone engine still needs that word, so ``EngineTop`` holds it: ``flags ← (flags | set) & ~clear``
every cycle, visible to the engine one cycle after the request.

Ports
-----
axi : Out(axi4_signature(...))    the engine's AXI4 manager (instructions and data)
csr : In(axi_lite_signature(...)) the CSR block (``unified_engine.regs``), 4 KB
irq : Out(1)                      the engine stopped (CONTROL.IRQ_EN)
busy : Out(1)                     STATUS.BUSY
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring

from ..config import EngineConfig
from ..isa import SYNC_FLAGS
from .engine import Engine
from .engine_if import engine_signature

__all__ = ["EngineTop"]


class EngineTop(wiring.Component):
    """One :class:`~unified_engine.rtl.engine.Engine` plus its sync-flag register."""

    def __init__(self, config: EngineConfig, engine_index: int = 0) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"EngineTop needs an EngineConfig, not {type(config).__name__}")
        self.config = config
        self.engine_index = engine_index
        super().__init__(engine_signature(config, sync=False))

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = Engine(self.config, self.engine_index)
        flags = Signal(SYNC_FLAGS, name="sync_flags")
        m.d.sync += flags.eq((flags | engine.sync.set) & ~engine.sync.clear)
        m.d.comb += engine.sync.flags.eq(flags)
        wiring.connect(m, wiring.flipped(self.axi), engine.axi)
        wiring.connect(m, wiring.flipped(self.csr), engine.csr)
        m.d.comb += [self.irq.eq(engine.irq), self.busy.eq(engine.busy)]
        return m
