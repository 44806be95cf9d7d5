"""``ModelDevice``: the ``"model"`` backend, a :class:`Device` backed by the ISA simulator.

It implements the CSR map of ``unified_engine.regs`` on top of :class:`~.isasim.Machine` and a
DRAM image held in host memory.  The engine makes progress only inside :meth:`wait_done` and
while the host reads STATUS (a bounded slice of simulation per read), so a host that polls
STATUS behaves as with hardware.
"""

from __future__ import annotations

import time

import numpy as np

from unified_engine.config import EngineConfig
from unified_engine.isa import Queue
from unified_engine.regs import (
    REGISTERS,
    TRACE_ENTRY,
    ErrorCode,
    TraceMode,
    reg,
    reset_values,
)

from .device import Device
from .isasim import Hazard, Machine, RunState
from .timing import TimingParams

__all__ = ["ModelDevice"]

_BY_OFFSET = {r.offset: r for r in REGISTERS}
_POLL_SLICE = 0.002  # seconds of simulation per STATUS read while busy


def _lo_hi(name: str, value: int) -> dict[str, int]:
    return {f"{name}_LO": value & 0xFFFFFFFF, f"{name}_HI": (value >> 32) & 0xFFFFFFFF}


class ModelDevice(Device):
    """The ISA simulator behind the :class:`Device` interface.

    Parameters
    ----------
    config:
        The engine to model (default ``EngineConfig()``).
    dram_bytes:
        Size of the modelled DRAM (default 1 GiB, allocated lazily by the OS).
    timing:
        Cycle-cost parameters (default ``TimingParams.for_config(config)``).
    engine_index:
        Index reported in CFG_ENGINE_INDEX.
    build_id:
        Override the reported BUILD_ID (to test the host's mismatch check).
    dram:
        An existing DRAM image of ``dram_bytes`` bytes to use instead of a new one (the
        engines of a multi-engine model share one).
    """

    def __init__(self, config: EngineConfig | None = None, *, dram_bytes: int = 1 << 30,
                 timing: TimingParams | None = None, engine_index: int = 0,
                 build_id: int | None = None, dram: np.ndarray | None = None) -> None:
        config = EngineConfig() if config is None else config
        if not isinstance(config, EngineConfig):
            raise TypeError(f"ModelDevice needs an EngineConfig, not {type(config).__name__}")
        if isinstance(dram_bytes, bool) or not isinstance(dram_bytes, int) or \
                not 4096 <= dram_bytes <= 1 << config.axi_addr_width:
            raise ValueError(f"dram_bytes={dram_bytes!r} must be an int in 4096…2**"
                             f"{config.axi_addr_width} (axi_addr_width)")
        self.config = config
        if dram is not None and (not isinstance(dram, np.ndarray) or dram.dtype != np.uint8
                                 or dram.shape != (dram_bytes,)):
            raise ValueError(f"dram must be a uint8 array of dram_bytes={dram_bytes} bytes")
        # several engines of one SoC share one image (host.multi_model)
        self._dram = np.zeros(dram_bytes, np.uint8) if dram is None else dram
        self.machine = Machine(config, self._dram, timing)
        self._const = reset_values(config, engine_index)
        if build_id is not None:
            self._const.update(_lo_hi("BUILD_ID", build_id))
        self._rw = {r.name: 0 for r in REGISTERS if r.access.value == "rw"}
        self._last: RunState | None = None
        self._busy = False

    # ----- Device interface -------------------------------------------------------------------

    @property
    def dram_size(self) -> int:
        return self._dram.size

    def dram_write(self, addr: int, data) -> None:
        raw = np.frombuffer(memoryview(data).cast("B"), np.uint8)
        self._check_span(addr, raw.size)
        self._dram[addr:addr + raw.size] = raw

    def dram_read(self, addr: int, nbytes: int) -> bytes:
        self._check_span(addr, nbytes)
        return self._dram[addr:addr + nbytes].tobytes()

    def wait_done(self, timeout: float) -> bool:
        if not self._busy:
            return True
        self._advance(time.monotonic() + max(0.0, timeout))
        return not self._busy

    def csr_read(self, offset: int) -> int:
        r = self._register(offset)
        if r.name == "STATUS" and self._busy:
            self._advance(time.monotonic() + _POLL_SLICE)
        return self._read(r.name) & 0xFFFFFFFF

    def csr_write(self, offset: int, value: int) -> None:
        r = self._register(offset)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
            raise ValueError(f"CSR value must be a 32-bit unsigned int, not {value!r}")
        name = r.name
        if name == "CONTROL":
            self._rw[name] = value & ~0b11  # START/SOFT_RESET are triggers
            if value & 0b10:
                self._soft_reset()
            elif value & 0b01:
                self._start()
        elif name == "SYNC_FLAGS":
            self.machine.sync_flags = value
        elif name == "SYNC_SET":
            self.machine.sync_flags |= value
        elif name == "SYNC_CLEAR":
            self.machine.sync_flags &= ~value & 0xFFFFFFFF
        elif name == "GPR_DATA":
            index = self._rw["GPR_INDEX"]
            if not self._busy and 0 < index < self.config.gprs:
                self.machine.gpr[index] = value
        elif r.access.value == "rw":
            self._rw[name] = value
        # writes to read-only registers are ignored, as on the bus

    # ----- model extras -----------------------------------------------------------------------

    @property
    def last_run(self) -> RunState | None:
        """State of the last (or current) run: timeline, hazards, trace events."""
        return self._last

    @property
    def last_hazards(self) -> list[Hazard]:
        """Unordered memory conflicts the race detector found in the last run."""
        return [] if self._last is None else list(self._last.hazards)

    @property
    def last_error_detail(self) -> str:
        """The simulator's explanation of the last error ("" if none)."""
        return "" if self._last is None else self._last.error_detail

    # ----- internals ------------------------------------------------------------------------

    def _register(self, offset: int):
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise ValueError(f"CSR offset must be an int, not {offset!r}")
        try:
            return _BY_OFFSET[offset]
        except KeyError:
            raise ValueError(f"no CSR at offset {offset:#x}") from None

    def _u64(self, name: str) -> int:
        return self._rw[f"{name}_LO"] | self._rw[f"{name}_HI"] << 32

    def _start(self) -> None:
        if self._busy:
            return
        trace_mode = reg("CONTROL").field("TRACE_MODE").get(self._rw["CONTROL"])
        try:
            mode = TraceMode(trace_mode)
        except ValueError:
            mode = TraceMode.OFF
        self.machine.start(self._u64("PROGRAM_ADDR") & ~0x1F,
                           (self._u64("WINDOW_BASE"), self._u64("WINDOW_LIMIT")),
                           self._u64("CYCLE_BUDGET"), mode)
        self._last = self.machine.state
        self._rw["TRACE_INDEX"] = 0
        self._busy = True

    def _soft_reset(self) -> None:
        self.machine.abort()
        self._busy = False
        self._last = None

    def _advance(self, deadline: float) -> None:
        if self.machine.run(deadline=deadline):
            self._busy = False

    def _read(self, name: str) -> int:
        if name in self._const:
            return self._const[name]
        st = self._last
        if name == "STATUS":
            code = st.error if st is not None else ErrorCode.NONE
            return reg("STATUS").pack(BUSY=int(self._busy),
                                      HALTED=int(st is not None and st.halted),
                                      ERROR=int(code is not ErrorCode.NONE), ERROR_CODE=code)
        if name == "SYNC_FLAGS":
            return self.machine.sync_flags
        if name == "GPR_DATA":
            index = self._rw["GPR_INDEX"]
            return self.machine.gpr[index] if index < self.config.gprs else 0
        if name.startswith("TRACE_DATA"):
            return self._trace_word(name)
        if name in self._rw:
            return self._rw[name]
        if st is None:
            return 0
        live = {
            "ERROR_PC": st.error_pc,
            "HALT_CODE": st.halt_code,
            "TRACE_COUNT": min(st.event_count, 0xFFFFFFFF),
            **_lo_hi("CYCLES", st.cycles if st.stopped else st.t),
            **_lo_hi("INSTRET", st.instret),
            **_lo_hi("DISPATCH_STALL", st.dispatch_stall),
        }
        for q in Queue:
            live.update(_lo_hi(f"{q.name}_BUSY", st.busy[q]))
            live.update(_lo_hi(f"{q.name}_STALL", st.stall[q]))
        return live.get(name, 0)

    def _trace_word(self, name: str) -> int:
        st = self._last
        index = self._rw["TRACE_INDEX"]
        if st is None or index >= len(st.events):
            return 0
        ev = st.events[index]
        fields = {"timestamp": ev.timestamp & 0xFFFFFFFF, "payload": ev.payload,
                  "kind": ev.kind.value, "unit": ev.unit}
        word = 0
        for fname, field in TRACE_ENTRY:
            word |= fields[fname] << field.offset
        return word & 0xFFFFFFFF if name.endswith("_LO") else word >> 32
