"""The multi-engine SoC (``rtl.soc.Soc``) in Verilator, and one ``Device`` per engine of it.

::

    soc = SocVerilatorDevice(config)          # config.engines engines, one shared DRAM model
    e0, e1 = (Engine(soc.engine(i), config, regions=...) for i in range(2))

:class:`SocSimTop` puts ``Soc(memory="shared")`` behind the members the C++ harness of
:mod:`.verilator_build` drives — ``axi`` (the SoC's one memory port, IDs extended by the
manager index), ``csr`` (the SoC's 1 MiB AXI4-Lite window), ``irq``/``busy`` (OR over the
engines) — with the host DMA port idle and the shell status bits high.  The harness handles
any ID and CSR address width, so the same harness and cache serve it; only
``verilator_build.build``'s check that a top has exactly ``EngineTop``'s widths is relaxed
here (:func:`build_soc_model`).

:class:`SocVerilatorDevice` is a :class:`~.verilator.VerilatorDevice` whose CSR offsets span
the SoC window; :meth:`~SocVerilatorDevice.engine` gives an :class:`EngineView`, a ``Device``
for engine ``i``'s register block (``rtl.soc.engine_csr_base``) over the shared DRAM, whose
``wait_done`` waits for *that* engine (SoC ``BUSY`` bit ``i``) while the others keep running.
"""

from __future__ import annotations

import time

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unified_engine.config import EngineConfig
from unified_engine.rtl.axi import axi4_signature, axi_lite_signature
from unified_engine.rtl.soc import SOC_CSR_ADDR_WIDTH, Soc, engine_csr_base, soc_reg

from . import verilator_build
from .device import Device
from .verilator import VerilatorDevice
from .verilator_build import BuildResult

__all__ = ["EngineView", "SocSimTop", "SocVerilatorDevice", "build_soc_model"]

_ALL_STATUS = 0b111  # MEM_READY | CLOCK_LOCKED | LINK_UP: the simulated shell is always up


class SocSimTop(wiring.Component):
    """``Soc(config, memory="shared")`` with the harness's members (see the module doc)."""

    def __init__(self, config: EngineConfig, *, dram_size: int) -> None:
        self.config = config
        self.soc = Soc(config, dram_size=dram_size, memory="shared")
        super().__init__({
            "axi": Out(axi4_signature(addr_width=config.axi_addr_width,
                                      data_width=config.axi_data_width,
                                      id_width=self.soc.mem_id_width)),
            "csr": In(axi_lite_signature(addr_width=SOC_CSR_ADDR_WIDTH)),
            "irq": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.soc = soc = self.soc
        wiring.connect(m, wiring.flipped(self.axi), soc.mem[0])
        wiring.connect(m, wiring.flipped(self.csr), soc.csr)
        # the host DMA port stays idle: the harness copies DRAM directly
        m.d.comb += [soc.host.b.ready.eq(1), soc.host.r.ready.eq(1),
                     soc.status.eq(_ALL_STATUS),
                     self.irq.eq(soc.irq.any()), self.busy.eq(soc.busy.any())]
        return m


def build_soc_model(config: EngineConfig, *, dram_size: int, **options) -> BuildResult:
    """Build (or find in the cache) the Verilated :class:`SocSimTop`; ``options`` go to
    ``verilator_build.build`` (``cache_dir``, ``verilator_root``, ``trace``, ``jobs``)."""
    return verilator_build.build(SocSimTop(config, dram_size=dram_size), config,
                                 exact_widths=False, **options)


class SocVerilatorDevice(VerilatorDevice):
    """The Verilated SoC: CSR offsets are SoC-window offsets (0…1 MiB − 4).

    ``config.engines`` engines; ``dram_bytes`` is both the model DRAM and the SoC's
    DRAM_SIZE.  Other keywords as for :class:`~.verilator.VerilatorDevice` (``latency``,
    ``bytes_per_cycle``, ``max_outstanding``, ``cache_dir``, ``verilator_root``,
    ``csr_timeout``).
    """

    def __init__(self, config: EngineConfig, *, dram_bytes: int = 1 << 24,
                 cache_dir=None, verilator_root=None, **options) -> None:
        model = build_soc_model(config, dram_size=dram_bytes, cache_dir=cache_dir,
                                verilator_root=verilator_root)
        super().__init__(config, dram_bytes=dram_bytes, model=model, **options)

    def engine(self, index: int) -> EngineView:
        """A ``Device`` for engine ``index``."""
        if isinstance(index, bool) or not isinstance(index, int) or \
                not 0 <= index < self.config.engines:
            raise ValueError(f"engine index {index!r}; this SoC has engines "
                             f"0…{self.config.engines - 1}")
        return EngineView(self, index)

    @property
    def engines_busy(self) -> int:
        """The SoC BUSY register: bit i = engine i is running."""
        return self.csr_read(soc_reg("BUSY").offset)

    @staticmethod
    def _check_offset(offset: int) -> None:
        if isinstance(offset, bool) or not isinstance(offset, int) or offset % 4 or \
                not 0 <= offset < 1 << SOC_CSR_ADDR_WIDTH:
            top = (1 << SOC_CSR_ADDR_WIDTH) - 4
            raise ValueError(f"SoC CSR offset must be a multiple of 4 in 0…{top:#x}, "
                             f"not {offset!r}")


class EngineView(Device):
    """Engine ``index`` of a :class:`SocVerilatorDevice`: its register block and the shared
    DRAM.  Closing a view does not close the SoC."""

    def __init__(self, soc: SocVerilatorDevice, index: int) -> None:
        self.soc = soc
        self.index = index
        self.base = engine_csr_base(index)

    @property
    def dram_size(self) -> int:
        return self.soc.dram_size

    def csr_read(self, offset: int) -> int:
        return self.soc.csr_read(self.base + self._offset(offset))

    def csr_write(self, offset: int, value: int) -> None:
        self.soc.csr_write(self.base + self._offset(offset), value)

    def dram_write(self, addr: int, data) -> None:
        self.soc.dram_write(addr, data)

    def dram_read(self, addr: int, nbytes: int) -> bytes:
        return self.soc.dram_read(addr, nbytes)

    def wait_done(self, timeout: float) -> bool:
        """Run the SoC clock until this engine's BUSY bit is low (True) or ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        chunk = 2_000
        while self.soc.engines_busy >> self.index & 1:
            if time.monotonic() >= deadline:
                return False
            self.soc.run_cycles(chunk)
        return True

    @staticmethod
    def _offset(offset: int) -> int:
        if isinstance(offset, bool) or not isinstance(offset, int) or offset % 4 or \
                not 0 <= offset < engine_csr_base(0):
            raise ValueError(f"CSR offset must be a multiple of 4 in 0…"
                             f"{engine_csr_base(0) - 4:#x}, not {offset!r}")
        return offset

