"""``Engine``: the host runtime on top of a :class:`Device` transport.

::

    from unified_engine.host import Engine
    eng = Engine.open("model")                    # the ISA simulator
    x = eng.tensor(np.ones((4, 64), np.float32), dtype="bf16")
    result = eng.run(program)                     # RunResult(cycles=…, counters=…)

Opening checks the device's ID and BUILD_ID against the configuration (``BuildIdMismatch``),
programs the DRAM window to cover the allocator's regions, and runs programs with
:meth:`Engine.run`, which raises :class:`DeviceError` (with the error code name and the
faulting instruction) when the engine stops with an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import numbers
from typing import Any

from unified_engine.asm import Program
from unified_engine.config import EngineConfig
from unified_engine.isa import INSTRUCTION_BYTES, Queue
from unified_engine.regs import (
    ID_MAGIC,
    REGISTERS,
    TRACE_ENTRY,
    ErrorCode,
    TraceKind,
    TraceMode,
    build_id,
    config_from_descriptor,
    reg,
)

from .alloc import Allocation, Allocator
from .device import Device
from .errors import (
    BuildIdMismatch,
    DeviceBusy,
    DeviceError,
    DeviceTimeout,
    NotAnEngine,
    RaceError,
)
from .ops import EngineOps
from .tensor import DTYPES, DeviceTensor, to_numpy

__all__ = ["BACKENDS", "DEFAULT_RUN_TIMEOUT", "Engine", "RunResult", "TraceEntry",
           "default_regions"]

#: Backend names accepted by :meth:`Engine.open`.
BACKENDS = ("model", "verilator", "xdma")
#: Default host timeout of a program run, seconds (:attr:`Engine.run_timeout`).
DEFAULT_RUN_TIMEOUT = 60.0
#: Default split of device DRAM between the allocator regions (fractions, in address order).
_REGION_SPLIT = (("params", 0.5), ("activations", 0.375), ("programs", 0.125))


def _check_timeout(seconds: Any, name: str) -> float:
    """``seconds`` as a float if it is a positive finite number of seconds, else ValueError /
    TypeError naming ``name``."""
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, not {type(seconds).__name__}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a positive finite number of seconds, not {seconds!r}")
    return float(seconds)


def default_regions(dram_size: int, base: int = 0) -> dict[str, tuple[int, int]]:
    """``params`` / ``activations`` / ``programs`` regions over ``[base, base + dram_size)``,
    each a multiple of 4 KiB (params 1/2, activations 3/8, programs the rest)."""
    page = 4096
    if dram_size < 3 * page:
        raise ValueError(f"device DRAM of {dram_size} bytes is too small for three regions")
    out, start = {}, base
    for i, (name, share) in enumerate(_REGION_SPLIT):
        size = base + dram_size - start if i == len(_REGION_SPLIT) - 1 else \
            max(page, int(dram_size * share) // page * page)
        out[name] = (start, size)
        start += size
    return out


@dataclasses.dataclass(frozen=True)
class TraceEntry:
    """One decoded trace-buffer entry (see ``regs.TRACE_ENTRY``)."""

    timestamp: int
    kind: TraceKind
    unit: int
    payload: int


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a completed run reports.

    Attributes
    ----------
    cycles : int
        Cycles from START to HALT (CYCLES).
    instructions : int
        Instructions dispatched (INSTRET).
    halt_code : int
        The HALT operand.
    counters : dict[str, int]
        ``<unit>_busy`` / ``<unit>_stall`` for load, array, vector, store, and
        ``dispatch_stall``.
    trace : list[TraceEntry]
        The trace buffer (empty unless ``run(trace=...)``); ``trace_count`` events happened.
    """

    cycles: int
    instructions: int
    halt_code: int
    counters: dict[str, int]
    trace: list[TraceEntry]
    trace_count: int

    def utilization(self, macs: int, config: EngineConfig) -> float:
        """Array utilization of ``macs`` multiply-accumulates over this run's cycles."""
        return macs / (config.macs_per_cycle * self.cycles) if self.cycles else 0.0


class Engine(EngineOps):
    """One engine behind a :class:`Device`.

    Use :meth:`open`; the constructor takes an already open device.

    Parameters
    ----------
    device:
        The transport.
    config:
        The configuration the host expects; ``None`` reads it from the device's descriptor.
    regions:
        Allocator regions ``{name: (base, size)}`` (default :func:`default_regions`).
    strict:
        Raise :class:`RaceError` when the backend reports unordered memory conflicts (the
        model backend's race detector).
    run_timeout:
        Host seconds each program may run before the engine is soft-reset and
        :class:`DeviceTimeout` raised: the default of :meth:`run` and so of every op
        (``matmul``, ``softmax``, …).  Settable later as :attr:`run_timeout`.
    """

    def __init__(self, device: Device, config: EngineConfig | None = None, *,
                 regions: dict[str, tuple[int, int]] | None = None,
                 strict: bool = True, run_timeout: float = DEFAULT_RUN_TIMEOUT) -> None:
        if not isinstance(device, Device):
            raise TypeError(f"Engine needs a Device, not {type(device).__name__}")
        self.run_timeout = run_timeout
        self.device = device
        self.strict = strict
        ident = self.csr("ID")
        if ident != ID_MAGIC:
            raise NotAnEngine(f"device ID reads {ident:#010x}, not the engine magic "
                              f"{ID_MAGIC:#010x}")
        descriptor = {r.name: self.csr(r.name) for r in REGISTERS if r.name.startswith("CFG_")}
        try:
            device_config = config_from_descriptor(descriptor)
        except ValueError as exc:
            device_config = None
            hint = f"its config descriptor is invalid ({exc})"
        else:
            hint = ""
        if config is None:
            config = device_config or EngineConfig()
        elif not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        elif device_config is not None and device_config != config:
            diff = [f.name for f in dataclasses.fields(EngineConfig)
                    if getattr(config, f.name) != getattr(device_config, f.name)]
            hint = f"the device is built with a different configuration (differs in {diff})"
        found = self.csr64("BUILD_ID")
        expected = build_id(config)
        if found != expected:
            raise BuildIdMismatch(expected, found, hint)
        self.config = config
        self.allocator = Allocator(regions or default_regions(device.dram_size),
                                   alignment=max(64, config.axi_bytes))
        lo = min(b for b, _ in self.allocator.regions.values())
        hi = max(b + s for b, s in self.allocator.regions.values())
        self.set_csr64("WINDOW_BASE", lo)
        self.set_csr64("WINDOW_LIMIT", hi)
        self._programs: dict[bytes, Allocation] = {}

    @classmethod
    def open(cls, backend: str = "model", config: EngineConfig | None = None,
             **options: Any) -> Engine | Any:
        """Open an engine on ``backend`` (``"model"``, ``"verilator"`` or ``"xdma"``).

        ``options`` go to the backend's device (model: ``dram_bytes``, ``timing``,
        ``build_id``; verilator: see :class:`~.verilator.VerilatorDevice`; xdma: ``device``,
        ``engine``, … see :class:`~.xdma.XdmaDevice`) except ``regions``, ``strict`` and
        ``run_timeout``, which go to :class:`Engine`.  (``run_timeout`` is not called
        ``timeout`` because the xdma device's ``timeout`` is its per-transfer DMA timeout.)

        ``engines=E`` (1…16) opens E engines of one SoC as a :class:`~.multi.MultiEngine`
        (model and verilator backends); ``engines=1`` (or omitted) gives a plain ``Engine``.
        """
        if "engines" in options:
            from .multi import MultiEngine, check_engines

            engines = check_engines(options.pop("engines"))
            if engines > 1:
                return MultiEngine.open(backend, config, engines=engines, **options)
        engine_opts = {k: options.pop(k) for k in ("regions", "strict", "run_timeout")
                       if k in options}
        if backend == "model":
            from .model import ModelDevice as device_class
        elif backend == "verilator":
            from .verilator import VerilatorDevice as device_class
        elif backend == "xdma":
            from .xdma import XdmaDevice as device_class
        else:
            raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
        device = device_class(config, **options)
        try:
            return cls(device, config or device.config, **engine_opts)
        except BaseException:
            device.close()
            raise

    @property
    def run_timeout(self) -> float:
        """Host seconds a program may run (:meth:`run`'s default, used by every op)."""
        return self._run_timeout

    @run_timeout.setter
    def run_timeout(self, seconds: float) -> None:
        self._run_timeout = _check_timeout(seconds, "run_timeout")

    def close(self) -> None:
        """Close the device."""
        self.device.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- registers ----------------------------------------------------------------------

    def csr(self, name: str) -> int:
        """Read register ``name``."""
        return self.device.csr_read(reg(name).offset)

    def set_csr(self, name: str, value: int) -> None:
        """Write register ``name``."""
        self.device.csr_write(reg(name).offset, value)

    def csr64(self, name: str) -> int:
        """Read the 64-bit pair ``name_LO``/``name_HI`` (low word first)."""
        lo = self.csr(f"{name}_LO")
        return lo | self.csr(f"{name}_HI") << 32

    def set_csr64(self, name: str, value: int) -> None:
        """Write the 64-bit pair ``name_LO``/``name_HI``."""
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
            raise ValueError(f"{name} must be a 64-bit unsigned int, not {value!r}")
        self.set_csr(f"{name}_LO", value & 0xFFFFFFFF)
        self.set_csr(f"{name}_HI", value >> 32)

    @property
    def busy(self) -> bool:
        """STATUS.BUSY."""
        return bool(reg("STATUS").field("BUSY").get(self.csr("STATUS")))

    def set_gpr(self, index: int, value: int) -> None:
        """Write GPR ``index`` (a program argument) while the engine is idle."""
        if self.busy:
            raise DeviceBusy("GPRs can only be written while the engine is idle")
        if isinstance(index, bool) or not isinstance(index, int) or \
                not 1 <= index < self.config.gprs:
            raise ValueError(f"GPR index {index!r} is out of range; allowed 1…"
                             f"{self.config.gprs - 1}")
        if isinstance(value, bool) or not isinstance(value, int) or \
                not -(1 << 31) <= value < 1 << 32:
            raise ValueError(f"GPR value {value!r} does not fit 32 bits")
        self.set_csr("GPR_INDEX", index)
        self.set_csr("GPR_DATA", value & 0xFFFFFFFF)

    def gpr(self, index: int) -> int:
        """Read GPR ``index``."""
        self.set_csr("GPR_INDEX", index)
        return self.csr("GPR_DATA")

    def soft_reset(self) -> None:
        """Abort a run and return the engine to idle (registers and memories are kept)."""
        self.set_csr("CONTROL", reg("CONTROL").pack(SOFT_RESET=1))

    # ----- memory -------------------------------------------------------------------------

    def alloc(self, nbytes: int, region: str = "activations",
              alignment: int | None = None) -> Allocation:
        """A block of device DRAM in ``region`` (``OutOfDeviceMemory`` when full)."""
        return self.allocator.alloc(nbytes, region, alignment)

    def free(self, block: Allocation) -> None:
        """Release a block from :meth:`alloc`."""
        self.allocator.free(block)

    def write(self, addr: int, data: bytes) -> None:
        """Copy bytes to device DRAM."""
        self.device.dram_write(addr, data)

    def read(self, addr: int, nbytes: int) -> bytes:
        """Copy bytes from device DRAM."""
        return self.device.dram_read(addr, nbytes)

    def tensor(self, data: Any, dtype: str | None = None, region: str = "activations",
               alignment: int | None = None) -> DeviceTensor:
        """Allocate a device tensor holding ``data`` (numpy, ml_dtypes bf16 or torch)."""
        arr, dtype = to_numpy(data, dtype)
        block = self.alloc(max(1, arr.nbytes), region, alignment)
        self.device.dram_write(block.addr, arr.tobytes())
        return DeviceTensor(self, block, arr.shape, dtype)

    def empty(self, shape: tuple[int, ...], dtype: str = "bf16", region: str = "activations",
              alignment: int | None = None) -> DeviceTensor:
        """Allocate an uninitialised device tensor."""
        if dtype not in DTYPES:
            raise ValueError(f"unknown device dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
        shape = tuple(shape)
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
            raise ValueError(f"shape must be non-negative ints, not {shape!r}")
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        return DeviceTensor(self, self.alloc(max(1, nbytes), region, alignment), shape, dtype)

    # ----- running programs -------------------------------------------------------------------

    def load_program(self, program: Program | bytes) -> int:
        """Place a program image in the programs region (cached by content); its address.

        An empty program (a :class:`Program` without instructions or an empty image) is
        rejected with ``ValueError``: the engine has nothing to fetch, and running it as an
        implied HALT would hide a kernel generator that forgot its instructions — end
        programs with ``Program.halt()``.
        """
        if isinstance(program, Program):
            if program.config != self.config:
                raise ValueError("the program was assembled for a different EngineConfig")
            blob = program.encode()
            if not blob:
                raise ValueError("an empty Program (no instructions) cannot run; a program "
                                 "needs at least a HALT (Program.halt())")
        elif isinstance(program, bytes | bytearray | memoryview):
            blob = bytes(program)
            if not blob or len(blob) % INSTRUCTION_BYTES:
                raise ValueError(f"a program image is a non-empty multiple of "
                                 f"{INSTRUCTION_BYTES} bytes, got {len(blob)}")
        else:
            raise TypeError(f"run needs a Program or bytes, not {type(program).__name__}")
        key = hashlib.sha256(blob).digest()
        block = self._programs.get(key)
        if block is None:
            block = self.alloc(len(blob), "programs", alignment=max(64, self.config.axi_bytes))
            self.device.dram_write(block.addr, blob)
            self._programs[key] = block
        return block.addr

    def run(self, program: Program | bytes, *, args: dict[int, int] | None = None,
            timeout: float | None = None, cycle_budget: int = 0, trace: bool | str = False
            ) -> RunResult:
        """Run ``program`` to HALT.

        Parameters
        ----------
        args:
            ``{gpr_index: value}`` written before START (program arguments).
        timeout:
            Host seconds to wait (positive, finite; ``None``: :attr:`run_timeout`); on expiry
            the engine is soft-reset and ``DeviceTimeout`` raised.
        cycle_budget:
            Stop with CYCLE_BUDGET after this many cycles (0 = no limit).
        trace:
            ``False``, ``"markers"`` or ``True``/``"all"``: what the trace buffer records.

        Raises
        ------
        DeviceError
            The engine stopped with an error (``.code``, ``.pc``).
        DeviceTimeout
            The program ran longer than ``timeout`` (the engine was soft-reset and is usable).
        RaceError
            (strict mode) the backend found unordered memory conflicts.
        """
        timeout = self.run_timeout if timeout is None else _check_timeout(timeout, "timeout")
        if self.busy:
            raise DeviceBusy("the engine is already running a program")
        mode = {False: TraceMode.OFF, "markers": TraceMode.MARKERS, True: TraceMode.ALL,
                "all": TraceMode.ALL}.get(trace)
        if mode is None:
            raise ValueError(f"trace must be False, True, 'markers' or 'all', not {trace!r}")
        addr = self.load_program(program)
        for index, value in (args or {}).items():
            self.set_gpr(index, value)
        self.set_csr64("PROGRAM_ADDR", addr)
        self.set_csr64("CYCLE_BUDGET", cycle_budget)
        self.set_csr("CONTROL", reg("CONTROL").pack(START=1, TRACE_MODE=mode))
        if not self.device.wait_done(timeout):
            self.soft_reset()
            raise DeviceTimeout(f"the engine did not stop within {timeout} s; it was "
                                "soft-reset")
        status = reg("STATUS")
        word = self.csr("STATUS")
        if status.field("ERROR").get(word):
            code = ErrorCode(status.field("ERROR_CODE").get(word))
            raise DeviceError(code, self.csr("ERROR_PC"),
                              getattr(self.device, "last_error_detail", ""))
        counters = {"dispatch_stall": self.csr64("DISPATCH_STALL")}
        for q in Queue:
            counters[f"{q.name.lower()}_busy"] = self.csr64(f"{q.name}_BUSY")
            counters[f"{q.name.lower()}_stall"] = self.csr64(f"{q.name}_STALL")
        count = self.csr("TRACE_COUNT")
        result = RunResult(self.csr64("CYCLES"), self.csr64("INSTRET"), self.csr("HALT_CODE"),
                           counters, self._read_trace(min(count, self.config.trace_depth)),
                           count)
        hazards = getattr(self.device, "last_hazards", [])
        if hazards and self.strict:
            raise RaceError(hazards, result)
        return result

    def _read_trace(self, count: int) -> list[TraceEntry]:
        out = []
        fields = dict(TRACE_ENTRY)
        for i in range(count):
            self.set_csr("TRACE_INDEX", i)
            word = self.csr("TRACE_DATA_LO") | self.csr("TRACE_DATA_HI") << 32

            def get(name: str, word: int = word) -> int:
                f = fields[name]
                return (word >> f.offset) & ((1 << f.width) - 1)

            out.append(TraceEntry(get("timestamp"), TraceKind(get("kind")), get("unit"),
                                  get("payload")))
        return out
