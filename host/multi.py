"""``MultiEngine``: E engines of one SoC sharing one DRAM and one 32-bit sync-flag word.

::

    from unified_engine.host import Engine
    multi = Engine.open("model", engines=2)        # MultiEngine (engines=1: a plain Engine)
    multi[1].csr("STATUS")                          # per-engine register access (an Engine)
    results = multi.run_all([prog0, prog1])         # start together, wait for all

Each engine is an :class:`~.engine.Engine` over its own register block; all see the whole
DRAM (their windows cover it) and each allocates from its own slice of it (``multi[i].alloc``;
:meth:`MultiEngine.tensor` allocates from engine 0's, readable by all).  Backends: ``"model"``
(:mod:`.multi_model`: E ISA simulators stepped together in time with the shared flag bus) and
``"verilator"`` (the Verilated ``rtl.soc.Soc``, :class:`~.verilator_soc.SocVerilatorDevice`).

Shared-DRAM bandwidth model (the model backend)
    The SoC's engines reach DRAM through one round-robin AXI arbiter (``memory="shared"``).
    The model does not arbitrate cycle by cycle; :func:`shared_timing` states the rule
    instead: in a :meth:`MultiEngine.run_all` whose programs on n engines contain LOAD or
    STORE instructions, ``dram_share="fair"`` (the default) lets each of them stream at
    ``dram_bytes_per_cycle / n`` for the whole run — what a round-robin arbiter gives each
    when all n transfer at once, so it is exact for all-busy phases and pessimistic when
    some engine is idle or computing; ``dram_share="full"`` gives every engine the whole
    bandwidth (no contention: the optimistic bound, and the ``per_engine`` HBM SoC).  A run
    of one engine alone (``multi[i].run``, every single-engine op) has the whole bandwidth.
    Latency is not shared; instruction fetches follow the same rule.

Barriers
    :func:`barrier` builds the SYNC code of a barrier: engine ``i`` SETs bit ``i`` of the
    barrier's group of E flags (SET first drains all its queues, so its DRAM writes are done)
    and WAITs, with a timeout, until all E bits are set.  Barrier ``b`` of a program uses
    flags ``b·E … b·E + E − 1``; :meth:`MultiEngine.run_all` clears the word first, so a
    program has ``32 // E`` barriers (no flag is reused within a run: reusing one with a
    reversed sense could strand an engine that fetched its WAIT late).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Sequence
from typing import Any

from unified_engine.asm import Program
from unified_engine.config import EngineConfig
from unified_engine.isa import INSTRUCTION_BYTES, SYNC_FLAGS, JumpMode, Opcode, Queue, isa_for
from unified_engine.regs import ErrorCode, TraceMode, reg

from .engine import DEFAULT_RUN_TIMEOUT, Engine, RunResult, _check_timeout, default_regions
from .errors import DeviceBusy, DeviceTimeout, EngineError, RaceError
from .tensor import DeviceTensor
from .timing import TimingParams

__all__ = ["BARRIER_TIMEOUT", "MAX_ENGINES", "EngineFailure", "MultiDeviceError", "MultiEngine",
           "barrier", "check_engines", "link", "shared_timing"]

#: Engines a SoC can have (``EngineConfig.engines``' range).
MAX_ENGINES = next(hi for name, _, hi, _ in EngineConfig._INT_LIMITS if name == "engines")
#: Default SYNC WAIT timeout of a barrier, cycles.
BARRIER_TIMEOUT = 50_000_000
_SHARES = ("fair", "full")


def check_engines(engines: Any, available: int = MAX_ENGINES) -> int:
    """``engines`` if it is an int in 1…``available`` (≤ :data:`MAX_ENGINES`), else
    TypeError / ValueError saying what is allowed."""
    if isinstance(engines, bool) or not isinstance(engines, numbers.Integral):
        raise TypeError(f"engines must be an int, not {type(engines).__name__}")
    if not 1 <= engines <= min(available, MAX_ENGINES):
        raise ValueError(f"engines={engines} is out of range; allowed 1…"
                         f"{min(available, MAX_ENGINES)}"
                         + ("" if available >= MAX_ENGINES else " (what this backend has)"))
    return int(engines)


def shared_timing(config: EngineConfig, engines: int, dram_share: str = "fair",
                  timing: TimingParams | None = None) -> TimingParams:
    """The timing of each of ``engines`` model engines sharing one DRAM (module doc)."""
    if dram_share not in _SHARES:
        raise ValueError(f"dram_share={dram_share!r}; allowed: {', '.join(_SHARES)}")
    timing = timing or TimingParams.for_config(config)
    if dram_share == "full":
        return timing
    return dataclasses.replace(timing,
                               dram_bytes_per_cycle=timing.dram_bytes_per_cycle / engines)


def barrier(config: EngineConfig, engine: int, engines: int, index: int = 0,
            timeout: int = BARRIER_TIMEOUT) -> Program:
    """SYNC code of barrier ``index`` for ``engine`` of ``engines`` (module doc)."""
    check_engines(engines)
    if isinstance(engine, bool) or not isinstance(engine, int) or not 0 <= engine < engines:
        raise ValueError(f"engine={engine!r} must be in 0…{engines - 1}")
    most = SYNC_FLAGS // engines
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < most:
        raise ValueError(f"barrier index {index!r}; {engines} engines have {most} barriers "
                         f"(0…{most - 1}) in {SYNC_FLAGS} flags")
    group = ((1 << engines) - 1) << (index * engines)
    p = Program(config)
    p.sync("set", mask=1 << (index * engines + engine))
    p.sync("wait", mask=group, value=group, timeout=timeout)
    return p


def link(config: EngineConfig, *parts: bytes | Program) -> bytes:
    """One program image from ``parts`` run one after the other.

    Each part but the last must end with its only HALT, which becomes a SYNC FENCE (the
    next part starts once every queue is idle, as after a HALT); parts after the first must
    not contain absolute jumps (their targets would move).  ``ValueError`` says which part
    breaks a rule.  Unlike a new START, the FENCE does not empty the token channels: a part
    that leaves tokens unconsumed hands them to the next, and the model's race detector
    reports any memory conflict this leaves unordered (strict mode: ``RaceError``).
    """
    isa = isa_for(config)
    # a HALT drains every queue; the FENCE that replaces it keeps that ordering
    fence_program = Program(config)
    fence_program.fence()
    fence = fence_program.encode()
    out = []
    for n, part in enumerate(parts):
        if isinstance(part, Program):
            if part.config != config:
                raise ValueError(f"part {n} was assembled for a different EngineConfig")
            part = part.encode()
        if not isinstance(part, bytes | bytearray) or not part or \
                len(part) % INSTRUCTION_BYTES:
            raise ValueError(f"part {n} must be a non-empty program image")
        words = [int.from_bytes(part[i:i + INSTRUCTION_BYTES], "little")
                 for i in range(0, len(part), INSTRUCTION_BYTES)]
        ins = [isa.decode(w) for w in words]
        last = n == len(parts) - 1
        halts = [i for i, x in enumerate(ins) if x.opcode is Opcode.HALT]
        if not last and halts != [len(ins) - 1]:
            raise ValueError(f"part {n} must end with its only HALT (HALTs at {halts})")
        if n:
            absolute = [i for i, x in enumerate(ins)
                        if x.opcode is Opcode.JUMP and x["mode"] is JumpMode.ABS]
            if absolute:
                raise ValueError(f"part {n} has absolute jumps at {absolute}; only the first "
                                 "part may")
        out.append(bytes(part) if last else bytes(part[:-INSTRUCTION_BYTES]) + fence)
    return b"".join(out)


@dataclasses.dataclass(frozen=True)
class EngineFailure:
    """Engine ``index`` stopped with ``code`` at instruction ``pc`` (``detail``: the model's
    explanation, else "")."""

    index: int
    code: ErrorCode
    pc: int
    detail: str = ""


class MultiDeviceError(EngineError):
    """One or more engines of :meth:`MultiEngine.run_all` stopped with an error.

    ``failures`` lists them (:class:`EngineFailure`); ``results`` holds the
    :class:`RunResult` of each engine that halted (``None`` for the failed ones).
    """

    def __init__(self, failures: list[EngineFailure], results: list[RunResult | None]) -> None:
        self.failures = failures
        self.results = results
        parts = [f"engine {f.index}: {f.code.name} at instruction {f.pc}"
                 + (f" [{f.detail}]" if f.detail else "") for f in failures]
        super().__init__(f"{len(failures)} of {len(results)} engines stopped with an error: "
                         + "; ".join(parts))

    @property
    def engines(self) -> list[int]:
        """Indices of the failed engines."""
        return [f.index for f in self.failures]


class MultiEngine:
    """E engines of one SoC (module doc).  Use :meth:`open` (or ``Engine.open(…,
    engines=E)``); ``multi[i]`` is engine ``i``'s :class:`Engine`."""

    def __init__(self, device: Any, engines: list[Engine], backend: str) -> None:
        self.device = device
        self.engines = engines
        self.backend = backend
        self.config = engines[0].config

    @classmethod
    def open(cls, backend: str = "model", config: EngineConfig | None = None, *,
             engines: int = 2, **options: Any) -> MultiEngine:
        """Open ``engines`` engines on ``backend`` (``"model"`` or ``"verilator"``).

        ``config.engines`` must be ≥ ``engines`` (default config: ``engines`` engines).
        Options: ``dram_bytes``, ``strict``, ``run_timeout``; model: ``timing``,
        ``dram_share`` (:func:`shared_timing`), ``build_id``; verilator: those of
        :class:`~.verilator_soc.SocVerilatorDevice`.
        """
        engines = check_engines(engines)
        if config is None:
            config = dataclasses.replace(EngineConfig(), engines=engines)
        elif not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        elif config.engines < engines:
            raise ValueError(f"engines={engines} but config.engines={config.engines}: the SoC "
                             f"has {config.engines}; use dataclasses.replace(config, "
                             f"engines={engines})")
        strict = options.pop("strict", True)
        run_timeout = options.pop("run_timeout", DEFAULT_RUN_TIMEOUT)
        if backend == "model":
            from .multi_model import MultiModelDevice

            device = MultiModelDevice(config, engines, **options)
        elif backend == "verilator":
            from .verilator_soc import SocVerilatorDevice

            device = SocVerilatorDevice(config, **options)
        else:
            raise ValueError(f"multi-engine backends: model, verilator; not {backend!r}")
        try:
            size = device.dram_size
            page = 4096
            slice_bytes = size // engines // page * page
            views = []
            for i in range(engines):
                eng = Engine(device.engine(i), config, strict=strict, run_timeout=run_timeout,
                             regions=default_regions(slice_bytes, i * slice_bytes))
                eng.set_csr64("WINDOW_BASE", 0)
                eng.set_csr64("WINDOW_LIMIT", size)
                views.append(eng)
        except BaseException:
            device.close()
            raise
        return cls(device, views, backend)

    # ----- container -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.engines)

    def __getitem__(self, index: int) -> Engine:
        if isinstance(index, bool) or not isinstance(index, int) or \
                not -len(self) <= index < len(self):
            raise IndexError(f"engine index {index!r}; this MultiEngine has engines "
                             f"0…{len(self) - 1}")
        return self.engines[index]

    def __iter__(self):
        return iter(self.engines)

    def close(self) -> None:
        """Close the SoC device."""
        self.device.close()

    def __enter__(self) -> MultiEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- shared state --------------------------------------------------------------------

    @property
    def sync_flags(self) -> int:
        """The shared flag word."""
        return self.engines[0].csr("SYNC_FLAGS")

    @sync_flags.setter
    def sync_flags(self, value: int) -> None:
        self.engines[0].set_csr("SYNC_FLAGS", value)

    def tensor(self, data: Any, dtype: str | None = None, region: str = "activations"
               ) -> DeviceTensor:
        """A device tensor in engine 0's slice (every engine can read it)."""
        return self.engines[0].tensor(data, dtype, region)

    def empty(self, shape: tuple[int, ...], dtype: str = "bf16", region: str = "activations"
              ) -> DeviceTensor:
        """An uninitialised device tensor in engine 0's slice."""
        return self.engines[0].empty(shape, dtype, region)

    def write(self, addr: int, data: bytes) -> None:
        """Copy bytes to the shared DRAM."""
        self.engines[0].write(addr, data)

    def read(self, addr: int, nbytes: int) -> bytes:
        """Copy bytes from the shared DRAM."""
        return self.engines[0].read(addr, nbytes)

    def soft_reset(self) -> None:
        """Soft-reset every engine (abort their runs; registers and memories are kept)."""
        for eng in self.engines:
            eng.soft_reset()

    @property
    def busy(self) -> list[int]:
        """Indices of the engines that are running."""
        return [i for i, eng in enumerate(self.engines) if eng.busy]

    # ----- running -------------------------------------------------------------------------

    def run_all(self, programs: Sequence[Program | bytes], *,
                args: Sequence[dict[int, int] | None] | None = None,
                timeout: float | None = None, cycle_budget: int = 0,
                trace: bool | str = False, flags: int = 0) -> list[RunResult]:
        """Run ``programs[i]`` on engine ``i``, all started together, and wait for all.

        ``args[i]``: engine i's GPR arguments; ``flags``: the flag word at START (default
        0, so barriers start clear); ``timeout``: host seconds for all of them (default
        engine 0's ``run_timeout``; on expiry every engine is soft-reset and
        ``DeviceTimeout`` names the engines still running); ``cycle_budget`` and ``trace``
        as :meth:`Engine.run`, per engine.

        Returns one :class:`RunResult` per engine (cycles counted from each engine's START;
        the model starts them in the same cycle).  Raises :class:`MultiDeviceError` listing
        every engine that stopped with an error (index, code, pc) and ``RaceError`` (strict
        mode) for an engine whose run had unordered memory conflicts.
        """
        e = len(self)
        programs = list(programs) if isinstance(programs, Sequence) and \
            not isinstance(programs, bytes | str) else None
        if programs is None or len(programs) != e:
            raise ValueError(f"run_all needs a sequence of {e} programs (one per engine)")
        arg_list = [None] * e if args is None else list(args)
        if len(arg_list) != e:
            raise ValueError(f"run_all args must have {e} entries (dict or None), got "
                             f"{len(arg_list)}")
        timeout = self.engines[0].run_timeout if timeout is None else \
            _check_timeout(timeout, "timeout")
        if isinstance(flags, bool) or not isinstance(flags, int) or not 0 <= flags < 1 << 32:
            raise ValueError(f"flags must be a 32-bit unsigned int, not {flags!r}")
        mode = {False: TraceMode.OFF, "markers": TraceMode.MARKERS, True: TraceMode.ALL,
                "all": TraceMode.ALL}.get(trace)
        if mode is None:
            raise ValueError(f"trace must be False, True, 'markers' or 'all', not {trace!r}")
        busy = self.busy
        if busy:
            raise DeviceBusy(f"engines {busy} are still running a program")
        addrs = [eng.load_program(p) for eng, p in zip(self.engines, programs, strict=True)]
        for eng, addr, a in zip(self.engines, addrs, arg_list, strict=True):
            for index, value in (a or {}).items():
                eng.set_gpr(index, value)
            eng.set_csr64("PROGRAM_ADDR", addr)
            eng.set_csr64("CYCLE_BUDGET", cycle_budget)
        self.sync_flags = flags
        share = getattr(self.device, "share_dram", None)
        if share is not None:  # the model: the engines with DMA work share the DRAM
            share(max(1, sum(_has_dma(self.config, p) for p in programs)))
        try:
            start = reg("CONTROL").pack(START=1, TRACE_MODE=mode)
            for eng in self.engines:
                eng.set_csr("CONTROL", start)
            if not self._wait(timeout):
                running = self.busy
                self.soft_reset()
                raise DeviceTimeout(f"engines {running} did not stop within {timeout} s; "
                                    "every engine was soft-reset")
        finally:
            if share is not None:
                share(1)
        return self._collect()

    def _wait(self, timeout: float) -> bool:
        if hasattr(self.device, "wait_all"):
            return self.device.wait_all(timeout)
        deadline = time.monotonic() + timeout
        for eng in self.engines:
            if not eng.device.wait_done(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def _collect(self) -> list[RunResult]:
        status = reg("STATUS")
        results: list[RunResult | None] = []
        failures = []
        for i, eng in enumerate(self.engines):
            word = eng.csr("STATUS")
            if status.field("ERROR").get(word):
                code = ErrorCode(status.field("ERROR_CODE").get(word))
                failures.append(EngineFailure(i, code, eng.csr("ERROR_PC"),
                                              getattr(eng.device, "last_error_detail", "")))
                results.append(None)
                continue
            results.append(_result(eng))
        if failures:
            raise MultiDeviceError(failures, results)
        for eng, result in zip(self.engines, results, strict=True):
            hazards = getattr(eng.device, "last_hazards", [])
            if hazards and eng.strict:
                raise RaceError(hazards, result)
        return results  # type: ignore[return-value]


def _has_dma(config: EngineConfig, program: Program | bytes) -> bool:
    """Whether ``program`` has a LOAD or STORE instruction."""
    isa = isa_for(config)
    image = program.encode() if isinstance(program, Program) else bytes(program)
    for i in range(0, len(image) - INSTRUCTION_BYTES + 1, INSTRUCTION_BYTES):
        try:
            op = isa.decode(int.from_bytes(image[i:i + INSTRUCTION_BYTES], "little")).opcode
        except Exception:  # an illegal word (the run will stop there): not a DMA
            continue
        if op in (Opcode.LOAD, Opcode.STORE):
            return True
    return False


def _result(eng: Engine) -> RunResult:
    """The :class:`RunResult` of ``eng``'s last run, read from its CSRs (as ``Engine.run``)."""
    counters = {"dispatch_stall": eng.csr64("DISPATCH_STALL")}
    for q in Queue:
        counters[f"{q.name.lower()}_busy"] = eng.csr64(f"{q.name}_BUSY")
        counters[f"{q.name.lower()}_stall"] = eng.csr64(f"{q.name}_STALL")
    count = eng.csr("TRACE_COUNT")
    return RunResult(eng.csr64("CYCLES"), eng.csr64("INSTRET"), eng.csr("HALT_CODE"),
                     counters, eng._read_trace(min(count, eng.config.trace_depth)), count)


def split(total: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """``parts`` contiguous ``(start, size)`` shares of ``range(total)``, sizes multiples of
    ``align`` except the last non-empty one, as even as that allows (some may be empty)."""
    if total < 0 or parts < 1 or align < 1:
        raise ValueError(f"split({total}, {parts}, {align}): need total ≥ 0, parts ≥ 1, "
                         "align ≥ 1")
    units = math.ceil(total / align)
    out, start = [], 0
    for i in range(parts):
        n_units = units // parts + (1 if i < units % parts else 0)
        size = min(n_units * align, total - start)
        out.append((start, size))
        start += size
    return out
