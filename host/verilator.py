"""``VerilatorDevice``: the ``"verilator"`` backend, the generated RTL simulated cycle by cycle.

::

    from unified_engine.host import Engine
    eng = Engine.open("verilator", config=EngineConfig.preset("sim_small"))

The device builds ``EngineTop(config)`` (or any top with the same members, ``top_factory``)
into a Verilated shared library (:mod:`.verilator_build`, cached by content) and drives it
through a C++ harness (``host/harness/harness.cpp``) that holds the DRAM behind an AXI4
subordinate model and performs CSR accesses as AXI4-Lite transactions.  Python calls the
harness once per transaction, never per cycle:

* ``csr_read`` / ``csr_write``: one AXI4-Lite transaction (the clock runs until it
  completes; the engine keeps running meanwhile, as on hardware);
* ``dram_read`` / ``dram_write``: bulk copies into the model's memory (no AXI traffic,
  no cycles);
* ``wait_done``: runs the clock in chunks until ``busy`` is low or the wall-clock timeout.

The DRAM model's first-beat latency and bandwidth default to the model backend's timing
(``TimingParams.for_config``: 64 cycles, one beat per cycle).  Protocol violations the
harness sees (a burst crossing 4 KB, a misaligned burst, WLAST on the wrong beat, an
unstable payload, a CSR transaction that never completes) raise :class:`VerilatorError`.
So does a write of any byte outside the DRAM window: the device snoops the host's writes of
WINDOW_BASE / WINDOW_LIMIT and hands the window to the harness (unchecked until the first).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
from amaranth.lib import wiring

from unified_engine.config import EngineConfig
from unified_engine.regs import reg
from unified_engine.rtl.axi import AxiResp
from unified_engine.rtl.engine_if import CSR_ADDR_WIDTH

from .device import Device
from .timing import TimingParams
from .verilator_build import (
    ROOT_ENV,
    BuildResult,
    VerilatorBuildError,
    VerilatorNotFound,
    build,
    build_by_source,
    build_model,
    cache_root,
)

__all__ = [
    "VerilatorBuildError",
    "VerilatorDevice",
    "VerilatorError",
    "VerilatorNotFound",
    "build_model",
]

_FRAC_BITS = 20  # the harness's fixed-point bandwidth credit (2^-20 bytes)
_STATS = ("read_bursts", "write_bursts", "read_beats", "write_beats", "max_reads_in_flight",
          "max_writes_in_flight")
_RESP_NAMES = {AxiResp.OKAY: "OKAY", AxiResp.EXOKAY: "EXOKAY", AxiResp.SLVERR: "SLVERR",
               AxiResp.DECERR: "DECERR"}
_WINDOW = tuple(reg(n).offset for n in ("WINDOW_BASE_LO", "WINDOW_BASE_HI",
                                         "WINDOW_LIMIT_LO", "WINDOW_LIMIT_HI"))
_CHUNK_SECONDS = 0.05  # wall-clock time per run() call in wait_done (adaptive chunk size)
# Models built in this process, by (top_factory, config, trace, cache, root): the Verilog of a
# big engine takes a while to generate, and the cache key needs it, so generate it once.
_MODELS: dict[tuple, BuildResult] = {}


class VerilatorError(RuntimeError):
    """The harness saw a protocol violation or a transaction that did not complete."""


@functools.cache
def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    h, u32, u64, ptr = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_void_p
    signatures = {
        "ue_create": (h, [u64, u32, u64, u32, u32, ctypes.c_char_p]),
        "ue_destroy": (None, [h]),
        "ue_dram_write": (ctypes.c_int, [h, u64, ptr, u64]),
        "ue_dram_read": (ctypes.c_int, [h, u64, ptr, u64]),
        "ue_csr_write": (ctypes.c_int, [h, u32, u32]),
        "ue_csr_read": (ctypes.c_int, [h, u32, ctypes.POINTER(u32)]),
        "ue_run": (u64, [h, u64]),
        "ue_cycles": (u64, [h]),
        "ue_busy": (ctypes.c_int, [h]),
        "ue_irq": (ctypes.c_int, [h]),
        "ue_stats": (None, [h, ctypes.POINTER(u64)]),
        "ue_take_error": (ctypes.c_uint, [h, ctypes.c_char_p, u64]),
        "ue_flush_trace": (None, [h]),
        "ue_set_window": (None, [h, u64, u64]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _rtl_source_key(config: EngineConfig) -> str:
    """What the Verilog of ``EngineTop(config)`` is a function of: every Python source of the
    ``unified_engine`` package directory (the RTL, numerics, ISA, register map, config; the
    host code lives elsewhere), the config, and the Amaranth and Python versions."""
    import amaranth

    import unified_engine

    h = hashlib.sha256()
    pkg = Path(unified_engine.__file__).parent
    for path in sorted(pkg.rglob("*.py")):
        h.update(str(path.relative_to(pkg)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(f"{config!r} {amaranth.__version__} {sys.version_info[:2]}".encode())
    return h.hexdigest()


def _default_top(config: EngineConfig) -> wiring.Component:
    try:
        from unified_engine.rtl.top import EngineTop
    except ImportError as exc:
        raise ImportError(f"the engine top unified_engine.rtl.top.EngineTop is not available "
                          f"({exc}); pass top_factory= to simulate another top") from exc
    return EngineTop(config)


class VerilatorDevice(Device):
    """The Verilated RTL of one engine behind the :class:`Device` interface.

    Parameters
    ----------
    config:
        The engine configuration (default ``EngineConfig()``).
    top_factory:
        ``config → Component`` with the members of ``EngineTop`` (default: ``EngineTop``).
        Within one process, devices with the same factory, config and trace kind reuse the
        first one's model (the Verilog is generated once per process, not per device).
    dram_bytes:
        Size of the modelled DRAM (default 1 GiB, zero pages allocated lazily by the OS).
    latency:
        Cycles from an AR handshake to the first R beat (and from the last W beat to B);
        default ``TimingParams.for_config(config).dram_latency``.
    bytes_per_cycle:
        Bandwidth of each direction (read, write), fractional allowed, at most one beat per
        cycle; default one beat per cycle.
    max_outstanding:
        Bursts of each direction the memory accepts before it stalls AR / AW.
    trace_path:
        Write a waveform of the whole run to this file (``.fst`` → FST, else VCD); this uses a
        separate model build with tracing compiled in.
    cache_dir, verilator_root:
        Build cache and Verilator installation (see :mod:`.verilator_build`).
    csr_timeout:
        Cycles a CSR transaction may take before :class:`VerilatorError`.
    model:
        Reuse the ``build_info`` of another device of the same design (skips the Verilog
        generation; ``top_factory`` is not called): cheap extra devices, e.g. for sweeps of
        the memory timing.  ``config`` must be the one it was built for.
    """

    def __init__(self, config: EngineConfig | None = None, *,
                 top_factory: Callable[[EngineConfig], wiring.Component] | None = None,
                 dram_bytes: int = 1 << 30, latency: int | None = None,
                 bytes_per_cycle: float | None = None, max_outstanding: int = 8,
                 trace_path: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None,
                 verilator_root: str | os.PathLike | None = None,
                 csr_timeout: int = 100_000, model: BuildResult | None = None) -> None:
        config = EngineConfig() if config is None else config
        if not isinstance(config, EngineConfig):
            raise TypeError(f"VerilatorDevice needs an EngineConfig, not {type(config).__name__}")
        if isinstance(dram_bytes, bool) or not isinstance(dram_bytes, int) or \
                not 4096 <= dram_bytes <= 1 << config.axi_addr_width:
            raise ValueError(f"dram_bytes={dram_bytes!r} must be an int in 4096…2**"
                             f"{config.axi_addr_width} (axi_addr_width)")
        timing = TimingParams.for_config(config)
        latency = timing.dram_latency if latency is None else latency
        bytes_per_cycle = timing.dram_bytes_per_cycle if bytes_per_cycle is None \
            else bytes_per_cycle
        for name, value, low in (("latency", latency, 1), ("max_outstanding", max_outstanding, 1),
                                 ("csr_timeout", csr_timeout, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 2**32:
                raise ValueError(f"{name}={value!r} must be an int in {low}…2**32 − 1")
        if isinstance(bytes_per_cycle, bool) or not isinstance(bytes_per_cycle, int | float) \
                or not 0 < bytes_per_cycle <= config.axi_bytes or math.isnan(bytes_per_cycle):
            raise ValueError(f"bytes_per_cycle={bytes_per_cycle!r} must be a number in "
                             f"(0, {config.axi_bytes}] (at most one beat per cycle)")
        self.config = config
        self.latency = latency
        self.bytes_per_cycle = float(bytes_per_cycle)
        self.max_outstanding = max_outstanding
        self.trace_path = None if trace_path is None else Path(trace_path)
        trace = False if trace_path is None else \
            "fst" if self.trace_path.suffix.lower() == ".fst" else "vcd"
        if model is None:
            factory = top_factory or _default_top
            memo = (factory, config, trace, str(cache_root(cache_dir)),
                    str(verilator_root or os.environ.get(ROOT_ENV, "")))
            model = _MODELS.get(memo)
            if model is None or not model.path.is_file():
                if top_factory is None:  # EngineTop: its Verilog is a function of the sources
                    model = build_by_source(factory, config, _rtl_source_key(config),
                                            trace=trace, cache_dir=cache_dir,
                                            verilator_root=verilator_root)
                else:
                    model = build(factory(config), config, trace=trace, cache_dir=cache_dir,
                                  verilator_root=verilator_root)
                _MODELS[memo] = model
        elif not isinstance(model, BuildResult):
            raise TypeError(f"model must be the BuildResult of an earlier build, not "
                            f"{type(model).__name__}")
        elif model.config != config:
            raise ValueError("model was built for a different EngineConfig")
        elif model.trace != (trace or None):
            raise ValueError(f"model was built with trace={model.trace!r}, but trace_path "
                             f"asks for {trace or None!r}")
        #: How the model library was obtained (cache hit, build step times).
        self.build_info: BuildResult = model
        self._lib = _load(self.build_info.path)
        bpc = max(1, round(self.bytes_per_cycle * (1 << _FRAC_BITS)))
        path = b"" if self.trace_path is None else os.fsencode(self.trace_path)
        handle = self._lib.ue_create(dram_bytes, latency, bpc, max_outstanding, csr_timeout,
                                     path)
        if not handle:
            raise MemoryError(f"cannot allocate {dram_bytes} bytes of model DRAM")
        self._h: int | None = handle
        self._dram_bytes = dram_bytes
        self._finalizer = weakref.finalize(self, self._lib.ue_destroy, handle)
        self._chunk = 10_000
        self._window = dict.fromkeys(_WINDOW, 0)  # host-written WINDOW_* values
        #: Cycles and wall-clock rate of the last :meth:`wait_done` that ran the clock.
        self.last_run_cycles = 0
        self.cycles_per_second: float | None = None
        try:
            self._check()  # e.g. the trace file could not be opened
        except VerilatorError:
            self.close()
            raise

    # ----- Device interface -------------------------------------------------------------------

    @property
    def dram_size(self) -> int:
        return self._dram_bytes

    def csr_read(self, offset: int) -> int:
        self._check_offset(offset)
        value = ctypes.c_uint32()
        resp = self._lib.ue_csr_read(self._handle(), offset, ctypes.byref(value))
        self._check()
        if resp != AxiResp.OKAY:
            raise VerilatorError(f"CSR read at {offset:#05x} answered {_RESP_NAMES[resp]}")
        return value.value

    def csr_write(self, offset: int, value: int) -> None:
        self._check_offset(offset)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
            raise ValueError(f"CSR value must be a 32-bit unsigned int, not {value!r}")
        resp = self._lib.ue_csr_write(self._handle(), offset, value)
        self._check()
        if resp != AxiResp.OKAY:
            raise VerilatorError(f"CSR write at {offset:#05x} answered {_RESP_NAMES[resp]}")
        if offset in self._window:
            self._window[offset] = value
            base = self._window[_WINDOW[0]] | self._window[_WINDOW[1]] << 32
            limit = self._window[_WINDOW[2]] | self._window[_WINDOW[3]] << 32
            self._lib.ue_set_window(self._handle(), base, limit)

    def dram_write(self, addr: int, data) -> None:
        raw = np.frombuffer(memoryview(data).cast("B"), np.uint8)
        self._check_span(addr, raw.size)
        if raw.size and self._lib.ue_dram_write(self._handle(), addr, raw.ctypes.data,
                                                raw.size):
            raise ValueError(f"DRAM write {addr:#x}+{raw.size:#x} is outside the model DRAM")

    def dram_read(self, addr: int, nbytes: int) -> bytes:
        self._check_span(addr, nbytes)
        out = np.empty(nbytes, np.uint8)
        if nbytes and self._lib.ue_dram_read(self._handle(), addr, out.ctypes.data, nbytes):
            raise ValueError(f"DRAM read {addr:#x}+{nbytes:#x} is outside the model DRAM")
        return out.tobytes()

    def wait_done(self, timeout: float) -> bool:
        """Run the clock until ``busy`` is low (True) or ``timeout`` seconds passed (False).

        The clock runs in chunks sized for ~50 ms each, so the timeout is checked often and
        Python's overhead stays negligible; the rate is kept in ``cycles_per_second``.
        """
        handle = self._handle()
        if not self._lib.ue_busy(handle):
            return True
        deadline = time.monotonic() + max(0.0, timeout)
        start = time.perf_counter()
        ran = 0
        while True:
            t0 = time.perf_counter()
            n = self._lib.ue_run(handle, self._chunk)
            elapsed = time.perf_counter() - t0
            ran += n
            self._check()
            if not self._lib.ue_busy(handle) or time.monotonic() >= deadline:
                break
            if elapsed > 0:  # aim each chunk at _CHUNK_SECONDS of simulation
                rate = n / elapsed
                self._chunk = int(min(max(rate * _CHUNK_SECONDS, 1_000), 50_000_000))
        total = time.perf_counter() - start
        self.last_run_cycles = ran
        self.cycles_per_second = ran / total if total > 0 else None
        return not self._lib.ue_busy(handle)

    def close(self) -> None:
        """Destroy the model (flushes and closes the trace file); idempotent."""
        if self._h is not None:
            self._h = None
            self._finalizer()

    # ----- backend extras ---------------------------------------------------------------------

    @property
    def cycles(self) -> int:
        """Clock cycles simulated since the model was created (reset included)."""
        return self._lib.ue_cycles(self._handle())

    @property
    def busy(self) -> bool:
        """The ``busy`` output (STATUS.BUSY) now."""
        return bool(self._lib.ue_busy(self._handle()))

    @property
    def irq(self) -> bool:
        """The ``irq`` output now."""
        return bool(self._lib.ue_irq(self._handle()))

    @property
    def stats(self) -> dict[str, int]:
        """AXI traffic so far: bursts and beats per direction, most bursts in flight."""
        out = (ctypes.c_uint64 * len(_STATS))()
        self._lib.ue_stats(self._handle(), out)
        return dict(zip(_STATS, out, strict=True))

    def run_cycles(self, cycles: int) -> int:
        """Run the clock for up to ``cycles`` cycles, stopping early when ``busy`` is low;
        the cycles actually run."""
        if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 0:
            raise ValueError(f"cycles must be an int ≥ 0, not {cycles!r}")
        n = self._lib.ue_run(self._handle(), cycles)
        self._check()
        return n

    def flush_trace(self) -> None:
        """Write buffered waveform data to ``trace_path`` (it is also flushed on close)."""
        self._lib.ue_flush_trace(self._handle())

    def __enter__(self) -> VerilatorDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- internals ----------------------------------------------------------------------------

    def _handle(self) -> int:
        if self._h is None:
            raise ValueError("the Verilator device is closed")
        return self._h

    def _check(self) -> None:
        buf = ctypes.create_string_buffer(8192)
        count = self._lib.ue_take_error(self._handle(), buf, len(buf))
        if count:
            text = buf.value.decode(errors="replace").strip()
            more = text.count("\n") + 1
            extra = f"\n… and {count - more} more" if count > more else ""
            raise VerilatorError(f"{text}{extra}")

    @staticmethod
    def _check_offset(offset: int) -> None:
        if isinstance(offset, bool) or not isinstance(offset, int) or offset % 4 or \
                not 0 <= offset < 1 << CSR_ADDR_WIDTH:
            top = (1 << CSR_ADDR_WIDTH) - 4
            raise ValueError(f"CSR offset must be a multiple of 4 in 0…{top:#x}, not {offset!r}")
