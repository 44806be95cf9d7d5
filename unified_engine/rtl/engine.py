"""``Engine``: one inference engine — the blocks of ``rtl/`` wired into the machine that runs
the ISA (DESIGN.md §3).

::

    AXI4-Lite ─► CsrBlock ─ control/status/GPR ─► Dispatcher ◄─ InstructionFetch (icache) ◄┐
                   │  ▲                             │  (decode, scalar unit, checker,        │
                   │  └── TraceBuffer ◄─ events ────┤   tokens, 4 queue controllers)        │
                   ▼                                ▼                                        │
                  irq              LOAD   MATMUL   VECTOR (exec | move)   STORE              │
                                   DMA    unit     units                  DMA                │
                                    │  ╲    │  ╲     │                    │  ╲               │
                 scratchpad / bias / scale memories (one read + one write port each, arbiters)
                                    │                                     │                  │
                                    └──────── AxiReadMux (fetch, load; store writes) ────────┘
                                                        │
                                                 AxiResetGuard ─► AXI4 manager port

Soft reset (CONTROL.SOFT_RESET) resets every unit, the fetch and the arbiters for one cycle;
the dispatcher returns to idle on its own (keeping GPRs, address registers and the EPI table);
memory contents are kept; the AXI guard completes the transactions already on the bus so the
port stays protocol-clean.  ``busy`` is STATUS.BUSY.

Ports
-----
axi : Out(axi4_signature(addr_width, data_width, id_width=ENGINE_AXI_ID_WIDTH))
csr : In(axi_lite_signature(addr_width=CSR_ADDR_WIDTH, data_width=32))
sync : Out(sync_signature())     the SoC's shared flag word (``EngineTop`` holds it for one engine)
irq, busy : Out(1)
"""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter
from amaranth.lib import wiring

from ..config import EngineConfig
from .axi_guard import AxiResetGuard
from .axi_mux import AxiReadMux
from .csr import CsrBlock
from .dispatch import Dispatcher
from .dma import LoadUnit, StoreUnit
from .engine_if import (
    ENGINE_AXI_ID_WIDTH,
    TRACE_SOURCES,
    engine_signature,
    memory_geometry,
)
from .fetch import InstructionFetch
from .matmul_unit import MatmulUnit
from .sram import OnChipMemory
from .trace import TraceBuffer
from .vector_exec import VectorExec
from .vector_move import VectorMove

__all__ = ["Engine"]

# Clients of each on-chip memory, in port order: (unit, its port).  VectorExec has a second,
# write-only scratchpad port so that a streaming pass reads and writes in the same cycle.
_MEMORY_CLIENTS = {
    "spad": (("load", "spad"), ("store", "spad"), ("matmul", "spad"), ("vexec", "spad"),
             ("vexec", "spad_w"), ("vmove", "spad")),
    "bias": (("load", "bias"), ("store", "bias"), ("matmul", "bias")),
    "scale": (("load", "scale"), ("store", "scale"), ("matmul", "scale"), ("vmove", "scale")),
}


class Engine(wiring.Component):
    """One engine (see the module docstring)."""

    def __init__(self, config: EngineConfig, engine_index: int = 0) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"Engine needs an EngineConfig, not {type(config).__name__}")
        if isinstance(engine_index, bool) or not isinstance(engine_index, int) or \
                not 0 <= engine_index < config.engines:
            raise ValueError(f"engine_index={engine_index!r} is out of range; allowed 0…"
                             f"{config.engines - 1}")
        self.config = config
        self.engine_index = engine_index
        super().__init__(engine_signature(config))

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        m.submodules.csr = csr = CsrBlock(cfg, self.engine_index)
        m.submodules.dispatcher = disp = Dispatcher(cfg)
        m.submodules.trace = trace = TraceBuffer(cfg)
        soft = csr.control.soft_reset

        def resettable(name, block):
            m.submodules[name] = ResetInserter(soft)(block)
            return block

        fetch = resettable("fetch", InstructionFetch(cfg))
        units = {
            "load": resettable("load", LoadUnit(cfg)),
            "store": resettable("store", StoreUnit(cfg)),
            "matmul": resettable("matmul", MatmulUnit(cfg)),
            "vexec": resettable("vexec", VectorExec(cfg, write_port=True)),
            "vmove": resettable("vmove", VectorMove(cfg)),
        }
        geometry = memory_geometry(cfg)
        for mem, clients in _MEMORY_CLIENTS.items():
            memory = resettable(f"{mem}_mem", OnChipMemory(geometry[mem], len(clients)))
            for i, (client, port) in enumerate(clients):
                wiring.connect(m, getattr(units[client], port), getattr(memory, f"c{i}"))

        # --- host side: CSRs, run control, trace ---
        wiring.connect(m, wiring.flipped(self.csr), csr.bus)
        wiring.connect(m, csr.control, disp.control)
        wiring.connect(m, csr.gpr, disp.gpr)
        m.d.comb += csr.status.eq(disp.status)
        m.d.comb += [
            self.sync.set.eq(csr.sync.set | disp.sync.set),
            self.sync.clear.eq(csr.sync.clear | disp.sync.clear),
            csr.sync.flags.eq(self.sync.flags),
            disp.sync.flags.eq(self.sync.flags),
        ]
        for name in TRACE_SOURCES:
            wiring.connect(m, getattr(disp, f"trace_{name}"), getattr(trace.sources, name))
        wiring.connect(m, csr.trace, trace.read)
        m.d.comb += [
            trace.mode.eq(csr.control.trace_mode),
            trace.clear.eq(csr.control.start & ~disp.status.busy),
            self.irq.eq(csr.irq),
            self.busy.eq(disp.status.busy),
        ]

        # --- dispatcher side: fetch, queues, epilogue table ---
        wiring.connect(m, disp.fetch, fetch.fetch)
        m.d.comb += [
            fetch.program_addr.eq(csr.control.program_addr),
            fetch.window_base.eq(csr.control.window_base),
            fetch.window_limit.eq(csr.control.window_limit),
            fetch.invalidate.eq(csr.control.start & ~disp.status.busy),
        ]
        wiring.connect(m, disp.load, units["load"].unit)
        wiring.connect(m, disp.store, units["store"].unit)
        wiring.connect(m, disp.array, units["matmul"].unit)
        wiring.connect(m, disp.vector, units["vexec"].unit)
        wiring.connect(m, disp.vector_move, units["vmove"].unit)
        for dma in ("load", "store"):
            m.d.comb += [
                units[dma].window_base.eq(csr.control.window_base),
                units[dma].window_limit.eq(csr.control.window_limit),
            ]
        m.d.comb += [units["matmul"].epi.eq(disp.epi), units["vexec"].epi.eq(disp.epi)]

        # --- AXI: fetch and LOAD reads, STORE writes, one port, drained on soft reset ---
        mux = resettable("axi_mux", AxiReadMux(
            3, addr_width=cfg.axi_addr_width, data_width=cfg.axi_data_width,
            id_width=ENGINE_AXI_ID_WIDTH, writer=2))
        wiring.connect(m, fetch.axi, mux.m0)
        wiring.connect(m, units["load"].axi, mux.m1)
        wiring.connect(m, units["store"].axi, mux.m2)
        m.submodules.axi_guard = guard = AxiResetGuard(
            addr_width=cfg.axi_addr_width, data_width=cfg.axi_data_width,
            id_width=ENGINE_AXI_ID_WIDTH)
        m.d.comb += guard.flush.eq(soft)
        wiring.connect(m, mux.bus, guard.inner)
        wiring.connect(m, guard.outer, wiring.flipped(self.axi))
        return m
