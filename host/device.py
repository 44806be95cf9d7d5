"""The transport interface every backend implements (model, verilator, xdma)."""

from __future__ import annotations

import abc

__all__ = ["Device"]


class Device(abc.ABC):
    """Register and memory access to one engine.

    The runtime (:class:`~unified_engine.host.Engine`) only talks to an engine through these
    methods, so the same code drives the ISA simulator, the Verilated RTL and a PCIe board.
    Offsets are byte offsets into the engine's 32-bit CSR block (``unified_engine.regs``);
    DRAM addresses are device byte addresses.
    """

    @property
    @abc.abstractmethod
    def dram_size(self) -> int:
        """Bytes of device DRAM reachable through ``dram_write``/``dram_read``."""

    @abc.abstractmethod
    def csr_read(self, offset: int) -> int:
        """Read the 32-bit CSR at ``offset``."""

    @abc.abstractmethod
    def csr_write(self, offset: int, value: int) -> None:
        """Write the 32-bit CSR at ``offset``."""

    @abc.abstractmethod
    def dram_write(self, addr: int, data: bytes) -> None:
        """Copy ``data`` to device DRAM at ``addr``."""

    @abc.abstractmethod
    def dram_read(self, addr: int, nbytes: int) -> bytes:
        """Copy ``nbytes`` from device DRAM at ``addr``."""

    @abc.abstractmethod
    def wait_done(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the engine to stop; True if it is not busy."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the transport (default: nothing to do)."""

    def _check_span(self, addr: int, nbytes: int) -> None:
        """Raise ``ValueError`` unless ``[addr, addr + nbytes)`` lies in device DRAM."""
        if isinstance(addr, bool) or not isinstance(addr, int) or addr < 0:
            raise ValueError(f"DRAM address must be an int ≥ 0, not {addr!r}")
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ValueError(f"byte count must be an int ≥ 0, not {nbytes!r}")
        if addr + nbytes > self.dram_size:
            raise ValueError(f"DRAM access {addr:#x}+{nbytes:#x} is past the end of device "
                             f"DRAM ({self.dram_size:#x} bytes)")
