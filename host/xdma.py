"""``XdmaDevice``: the ``"xdma"`` backend — one engine of a PCIe card, through the Xilinx XDMA
driver (``dma_ip_drivers/XDMA/linux-kernel``, loaded with ``interrupt_mode=0`` or any mode;
the runtime polls).

::

    from unified_engine.host import Engine
    eng = Engine.open("xdma", device="/dev/xdma0", engine=0)

The driver makes three character devices per card (``/dev/xdma0`` is the prefix):

==================  ================================================================
``<prefix>_user``   the AXI4-Lite BAR = the SoC register window (``rtl/soc.py``): the
                    SoC block at 0, engine ``i``'s 4 KB CSR block at ``0x1000·(i + 1)``;
                    aligned 32-bit ``pread``/``pwrite`` (or ``mmap``, ``csr="mmap"``)
``<prefix>_h2c_0``  host → card DMA: ``pwrite(data, device address)``
``<prefix>_c2h_0``  card → host DMA: ``pread(n, device address)``
==================  ================================================================

Opening checks the SoC magic and learns the engine count, the engine block offsets and the DRAM
size from the SoC registers; :class:`~.engine.Engine` then checks the engine's ID and BUILD_ID.
One process at a time may drive an engine: an exclusive ``flock`` on
``<lock_dir>/unified-engine-<card>-engine<i>.lock`` (``$UNIFIED_ENGINE_LOCK_DIR``, default the
temporary directory) is held until :meth:`close`; a second opener gets ``DeviceBusy`` naming
the holder's pid.  DRAM is shared by every engine of the card: processes driving different
engines must use disjoint allocator ``regions``.

DMA is split into ``chunk``-byte transfers (short transfers are continued); a transfer that
fails with ``ETIMEDOUT`` (the driver's own timeout) or takes longer than ``timeout`` seconds
raises ``DeviceTimeout``, any other failure :class:`XdmaError`.  Both name the node and the
device address range.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from unified_engine.config import EngineConfig
from unified_engine.regs import REGISTERS, config_from_descriptor, reg
from unified_engine.rtl.engine_if import CSR_ADDR_WIDTH
from unified_engine.rtl.soc import SOC_CSR_ADDR_WIDTH, SOC_ID_MAGIC, soc_reg

from .device import Device
from .errors import DeviceBusy, DeviceTimeout, EngineError, NotAnEngine

__all__ = ["DMA_CHUNK", "FileNode", "XdmaDevice", "XdmaError", "XdmaNode"]

#: Default bytes per DMA transfer (the driver maps each transfer's pages; 8 MiB keeps a
#: transfer well inside its timeout even on a Gen1 x1 link).
DMA_CHUNK = 8 << 20
_CSR_BYTES = 1 << CSR_ADDR_WIDTH
_STATUS = reg("STATUS")
_BUSY = _STATUS.field("BUSY")


class XdmaError(EngineError):
    """A DMA or register transfer through the XDMA driver failed."""


class XdmaNode(Protocol):
    """One device node: positioned reads and writes (what ``os.pread``/``os.pwrite`` do)."""

    def pread(self, n: int, offset: int) -> bytes: ...

    def pwrite(self, data: bytes | memoryview, offset: int) -> int: ...

    def close(self) -> None: ...


class FileNode:
    """A device node (or any file) opened read/write; ``mmap_size`` > 0 maps its first bytes
    and serves 4-byte accesses from the mapping (one 32-bit load/store each)."""

    def __init__(self, path: str | os.PathLike, *, mmap_size: int = 0) -> None:
        self.path = str(path)
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, "no XDMA device node (is the xdma driver loaded and the card "
                "programmed and re-enumerated? see docs/boards.md)", self.path) from None
        self._map = None
        self._words = None
        if mmap_size:
            self._map = mmap.mmap(self.fd, mmap_size)
            self._words = memoryview(self._map).cast("I")

    def pread(self, n: int, offset: int) -> bytes:
        if self._words is not None and n == 4 and offset % 4 == 0:
            return struct.pack("<I", self._words[offset // 4])
        return os.pread(self.fd, n, offset)

    def pwrite(self, data: bytes | memoryview, offset: int) -> int:
        if self._words is not None and len(data) == 4 and offset % 4 == 0:
            self._words[offset // 4] = struct.unpack("<I", bytes(data))[0]
            return 4
        return os.pwrite(self.fd, data, offset)

    def close(self) -> None:
        if self._words is not None:
            self._words.release()
            self._words = None
        if self._map is not None:
            self._map.close()
            self._map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


NodeFactory = Callable[[str, str], XdmaNode]


def _default_nodes(csr: str) -> NodeFactory:
    def open_node(path: str, kind: str) -> XdmaNode:
        if kind == "user" and csr == "mmap":
            return FileNode(path, mmap_size=1 << SOC_CSR_ADDR_WIDTH)
        return FileNode(path)
    return open_node


class XdmaDevice(Device):
    """Engine ``engine`` of the card behind the XDMA nodes ``<device>_*``.

    Parameters
    ----------
    config:
        The configuration the host expects (``None``: the engine's descriptor decides; the
        ``Engine`` checks BUILD_ID either way).
    device:
        Node prefix, ``/dev/xdma0`` for the first card.
    engine:
        Engine index on the card.
    csr:
        ``"pread"`` (default) or ``"mmap"`` for register access through the user node.
    chunk:
        Bytes per DMA transfer.
    timeout:
        Seconds one DMA transfer may take before ``DeviceTimeout``.
    lock_dir:
        Directory of the per-engine lock files (default ``$UNIFIED_ENGINE_LOCK_DIR`` or the
        temporary directory).
    node_factory:
        ``(path, kind) → node`` with ``kind`` ``"user"``, ``"h2c"`` or ``"c2h"``
        (default: :class:`FileNode`); tests use it to put a model behind the nodes.

    Raises
    ------
    FileNotFoundError
        No such node (driver not loaded, wrong prefix).
    NotAnEngine
        The user BAR does not hold a Unified Engine SoC.
    DeviceBusy
        Another process holds the engine.
    ValueError
        ``engine`` out of range, bad ``csr`` / ``chunk`` / ``timeout``.
    """

    def __init__(self, config: EngineConfig | None = None, *, device: str = "/dev/xdma0",
                 engine: int = 0, csr: str = "pread", chunk: int = DMA_CHUNK,
                 timeout: float = 10.0, lock_dir: str | os.PathLike | None = None,
                 node_factory: NodeFactory | None = None) -> None:
        if csr not in ("pread", "mmap"):
            raise ValueError(f"csr={csr!r}; allowed 'pread', 'mmap'")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 4096 or chunk % 4:
            raise ValueError(f"chunk={chunk!r} must be an int ≥ 4096, a multiple of 4")
        if not timeout > 0:
            raise ValueError(f"timeout={timeout!r} must be > 0 seconds")
        if config is not None and not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        self.device, self.chunk, self.timeout = str(device), chunk, float(timeout)
        self._nodes: dict[str, XdmaNode] = {}
        self._lock_fd = -1
        opener = node_factory or _default_nodes(csr)
        try:
            self._nodes["user"] = opener(f"{self.device}_user", "user")
            self._identify(engine)
            self._lock(engine, lock_dir)
            self._nodes["h2c"] = opener(f"{self.device}_h2c_0", "h2c")
            self._nodes["c2h"] = opener(f"{self.device}_c2h_0", "c2h")
        except BaseException:
            self.close()
            raise
        self.engine = engine
        self.config = config or self._descriptor_config()

    # ----- identification and locking -----------------------------------------------------

    def soc_read(self, name: str) -> int:
        """Read SoC register ``name`` (``rtl/soc.py``: SOC_ID, ENGINES, DRAM_SIZE_LO, …)."""
        return self._read32(soc_reg(name).offset)

    def _identify(self, engine: int) -> None:
        magic = self.soc_read("SOC_ID")
        if magic != SOC_ID_MAGIC:
            raise NotAnEngine(f"{self.device}_user does not hold a Unified Engine SoC: SOC_ID "
                              f"reads {magic:#010x}, expected {SOC_ID_MAGIC:#010x} (is the "
                              "bitstream loaded and the card re-enumerated?)")
        self.engines = self.soc_read("ENGINES")
        if isinstance(engine, bool) or not isinstance(engine, int) or \
                not 0 <= engine < self.engines:
            raise ValueError(f"engine={engine!r} is out of range; {self.device} has "
                             f"{self.engines} engine(s)")
        self.base = self.soc_read("ENGINE_BASE") + engine * self.soc_read("ENGINE_STRIDE")
        self._dram_size = self.soc_read("DRAM_SIZE_LO") | self.soc_read("DRAM_SIZE_HI") << 32
        if self.base + _CSR_BYTES > 1 << SOC_CSR_ADDR_WIDTH or self._dram_size == 0:
            raise NotAnEngine(f"{self.device}: implausible SoC registers (engine base "
                              f"{self.base:#x}, DRAM {self._dram_size} bytes)")

    def _lock(self, engine: int, lock_dir: str | os.PathLike | None) -> None:
        folder = Path(lock_dir or os.environ.get("UNIFIED_ENGINE_LOCK_DIR")
                      or tempfile.gettempdir())
        path = folder / f"unified-engine-{Path(self.device).name}-engine{engine}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DeviceBusy(f"engine {engine} of {self.device} is in use by process "
                             f"{holder} (lock {path}); close it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _descriptor_config(self) -> EngineConfig | None:
        words = {r.name: self.csr_read(r.offset) for r in REGISTERS
                 if r.name.startswith("CFG_")}
        try:
            return config_from_descriptor(words)
        except ValueError:
            return None  # the Engine reports the mismatch with BUILD_ID

    # ----- Device interface -------------------------------------------------------------------

    @property
    def dram_size(self) -> int:
        return self._dram_size

    def csr_read(self, offset: int) -> int:
        return self._read32(self.base + self._csr_offset(offset))

    def csr_write(self, offset: int, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
            raise ValueError(f"CSR value must be a 32-bit unsigned int, not {value!r}")
        offset = self.base + self._csr_offset(offset)
        try:
            done = self._node("user").pwrite(value.to_bytes(4, "little"), offset)
        except OSError as exc:
            raise XdmaError(f"{self.device}_user: write of {offset:#x} failed: {exc}") from exc
        if done != 4:
            raise XdmaError(f"{self.device}_user: short write at {offset:#x} ({done} bytes)")

    def dram_write(self, addr: int, data) -> None:
        view = memoryview(data).cast("B")
        self._check_span(addr, view.nbytes)
        self._transfer("h2c", addr, view.nbytes, view)

    def dram_read(self, addr: int, nbytes: int) -> bytes:
        self._check_span(addr, nbytes)
        out = bytearray(nbytes)
        self._transfer("c2h", addr, nbytes, memoryview(out))
        return bytes(out)

    def wait_done(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        pause = 20e-6
        while True:
            if not _BUSY.get(self.csr_read(_STATUS.offset)):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    def __enter__(self) -> XdmaDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the nodes and release the engine's lock (idempotent)."""
        nodes, self._nodes = self._nodes, {}
        for node in nodes.values():
            node.close()
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    # ----- internals ------------------------------------------------------------------------

    def _node(self, kind: str) -> XdmaNode:
        try:
            return self._nodes[kind]
        except KeyError:
            raise XdmaError(f"{self.device} is closed") from None

    @staticmethod
    def _csr_offset(offset: int) -> int:
        if isinstance(offset, bool) or not isinstance(offset, int) or \
                not 0 <= offset < _CSR_BYTES or offset % 4:
            raise ValueError(f"CSR offset must be a multiple of 4 in 0…{_CSR_BYTES - 4}, "
                             f"not {offset!r}")
        return offset

    def _read32(self, offset: int) -> int:
        try:
            raw = self._node("user").pread(4, offset)
        except OSError as exc:
            raise XdmaError(f"{self.device}_user: read of {offset:#x} failed: {exc}") from exc
        if len(raw) != 4:
            raise XdmaError(f"{self.device}_user: short read at {offset:#x} ({len(raw)} bytes)")
        return int.from_bytes(raw, "little")

    def _transfer(self, kind: str, addr: int, nbytes: int, buf: memoryview) -> None:
        """Move ``nbytes`` between ``buf`` and device ``addr`` in chunks."""
        node = self._node(kind)
        name = f"{self.device}_{kind}_0"
        done = 0
        while done < nbytes:
            size = min(self.chunk, nbytes - done)
            start = time.monotonic()
            try:
                if kind == "h2c":
                    moved = node.pwrite(buf[done:done + size], addr + done)
                else:
                    raw = node.pread(size, addr + done)
                    moved = len(raw)
                    buf[done:done + moved] = raw
            except OSError as exc:
                span = f"{addr + done:#x}+{size:#x}"
                if exc.errno == errno.ETIMEDOUT:
                    raise DeviceTimeout(f"{name}: DMA of {span} timed out in the driver") \
                        from exc
                raise XdmaError(f"{name}: DMA of {span} failed: {exc}") from exc
            elapsed = time.monotonic() - start
            if elapsed > self.timeout:
                raise DeviceTimeout(f"{name}: DMA of {addr + done:#x}+{size:#x} took "
                                    f"{elapsed:.1f} s (timeout {self.timeout} s)")
            if moved <= 0:
                raise XdmaError(f"{name}: DMA at {addr + done:#x} moved no data (past the "
                                "end of device memory?)")
            done += moved
