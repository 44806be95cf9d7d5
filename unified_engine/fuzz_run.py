"""Run fuzz cases on the model and a second backend and compare how they end (part of
:mod:`unified_engine.fuzz`).

Both engines start each case from the same state: the same DRAM image, window, sync flags and
GPRs, and on-chip memories, address registers, EPI table and accumulators set by
:func:`~unified_engine.fuzz_layout.reset_program`.  Both must stop (HALT or an error) within
the cycle budget and the host timeout; then :func:`compare` checks halted vs error, the error
code, the error pc (not for CYCLE_BUDGET, whose pc depends on timing), the halt code, every
GPR and every DRAM byte, unless :func:`~unified_engine.fuzz_audit.discard_reason` discards
the run.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from .config import EngineConfig
from .fuzz_audit import audit_model_device, discard_reason
from .fuzz_gen import Case
from .fuzz_layout import layout_for, reset_program
from .regs import ErrorCode

__all__ = ["Fuzzer", "Outcome", "compare"]


@dataclasses.dataclass
class Outcome:
    """How one backend ended a case."""

    status: str  # "halt", "error" or "timeout"
    code: ErrorCode = ErrorCode.NONE
    pc: int = 0
    halt_code: int = 0
    gprs: tuple[int, ...] = ()
    dram: bytes = b""
    detail: str = ""
    cycles: int = 0


def compare(want: Outcome, got: Outcome) -> str:
    """"" when ``got`` (the backend under test) matches ``want`` (the model), else what
    differs.  CYCLE_BUDGET on both sides compares only the code."""
    budget = ErrorCode.CYCLE_BUDGET
    if (want.status, want.code) != (got.status, got.code):
        return (f"model {want.status} {want.code.name} pc {want.pc} ({want.detail}), "
                f"backend {got.status} {got.code.name} pc {got.pc} ({got.detail})")
    if want.code is budget:
        return ""
    if want.status == "error" and want.pc != got.pc:
        return f"{want.code.name} at pc {want.pc} on the model, pc {got.pc} on the backend"
    if want.halt_code != got.halt_code:
        return f"halt code {want.halt_code} vs {got.halt_code}"
    if want.gprs != got.gprs:
        diff = [i for i, (a, b) in enumerate(zip(want.gprs, got.gprs, strict=True)) if a != b]
        return "GPRs differ: " + ", ".join(
            f"r{i} {want.gprs[i]:#x} vs {got.gprs[i]:#x}" for i in diff)
    if want.dram != got.dram:
        a = np.frombuffer(want.dram, np.uint8)
        b = np.frombuffer(got.dram, np.uint8)
        bad = np.flatnonzero(a != b)
        return (f"{bad.size} DRAM bytes differ, first at offset {int(bad[0]):#x} "
                f"(model {int(a[bad[0]]):#04x}, backend {int(b[bad[0]]):#04x})")
    return ""


class Fuzzer:
    """Runs :class:`Case` s on the model and a backend and tallies the verdicts.

    Parameters
    ----------
    config:
        The engine (the Verilator build of it is cached; use the small configuration).
    backend:
        ``"verilator"`` (or ``"model"``: the harness against itself).
    dram_bytes:
        Device DRAM on both sides.
    cycle_budget, timeout:
        CYCLE_BUDGET of every case and the host timeout (seconds) of every run.
    """

    def __init__(self, config: EngineConfig, backend: str = "verilator", *,
                 dram_bytes: int = 1 << 22, cycle_budget: int = 200_000,
                 timeout: float = 30.0) -> None:
        self.config = config
        self.backend = backend
        self.dram_bytes = dram_bytes
        self.layout = layout_for(dram_bytes)
        self.cycle_budget = cycle_budget
        self.timeout = timeout
        self.tally: collections.Counter[str] = collections.Counter()
        self.disagreements: list[tuple[Case, str]] = []
        self.model = self.dut = None
        self._reset = reset_program(config, self.layout).encode()
        self._open()

    def _open(self) -> None:
        from .host import Engine

        self.close()
        regions = self.layout.regions()
        device = audit_model_device(self.config, dram_bytes=self.dram_bytes)
        self.model = Engine(device, self.config, regions=regions, strict=False)
        if self.backend == "model":
            self.dut = Engine(audit_model_device(self.config, dram_bytes=self.dram_bytes),
                              self.config, regions=regions, strict=False)
        else:
            self.dut = Engine.open(self.backend, self.config, dram_bytes=self.dram_bytes,
                                   regions=regions, strict=False)

    def close(self) -> None:
        for eng in (self.model, self.dut):
            if eng is not None:
                eng.close()
        self.model = self.dut = None

    def __enter__(self) -> Fuzzer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one side --

    def _prepare(self, eng, case: Case) -> int:
        """Same starting state on ``eng``: DRAM image, reset program, GPRs, sync flags."""
        from .host.errors import OutOfDeviceMemory

        try:
            addr = eng.load_program(case.blob)
        except OutOfDeviceMemory:
            raise _Full from None
        eng.write(addr, case.blob)  # a earlier case may have stored over it
        reset = eng.load_program(self._reset)
        eng.write(reset, self._reset)
        eng.write(self.layout.data, case.data.tobytes())
        eng.soft_reset()
        result = eng.run(self._reset, timeout=self.timeout)
        if result.halt_code != 0:
            raise RuntimeError("the reset program did not halt with code 0")
        for index, value in case.gprs.items():
            eng.set_gpr(index, value)
        eng.set_csr("SYNC_FLAGS", case.sync_flags)
        return addr

    def _run(self, eng, case: Case) -> Outcome:
        from .host.errors import DeviceError, DeviceTimeout

        addr = self._prepare(eng, case)
        machine = getattr(eng.device, "machine", None)
        if machine is not None:
            machine.program_span = (addr, addr + len(case.blob))
        try:
            result = eng.run(case.blob, timeout=self.timeout, cycle_budget=self.cycle_budget)
            out = Outcome("halt", halt_code=result.halt_code, cycles=result.cycles)
        except DeviceError as exc:
            out = Outcome("error", exc.code, exc.pc, detail=str(exc))
            eng.soft_reset()
        except DeviceTimeout as exc:
            out = Outcome("timeout", detail=str(exc))
        out.gprs = tuple(eng.gpr(i) for i in range(self.config.gprs))
        out.dram = eng.read(0, self.dram_bytes)
        return out

    # -- one case --

    def check(self, case: Case) -> str:
        """Run ``case`` on both sides; returns the verdict (``agree``, ``discard:<reason>``,
        ``disagree``) and records it in :attr:`tally` (and :attr:`disagreements`)."""
        for attempt in range(2):
            try:
                want = self._run(self.model, case)
                machine = self.model.device.machine
                hazards = self.model.device.last_hazards
                unsupported = list(machine.unsupported)
                got = self._run(self.dut, case)
                break
            except _Full:
                if attempt:
                    raise
                self._open()
        if want.status == "timeout":
            raise RuntimeError(f"the model did not stop within {self.timeout} s: seed "
                               f"{case.seed} {case.kind}")
        verdict = "agree"
        reason = discard_reason(hazards, unsupported, want.code, got.code)
        if reason:
            verdict = f"discard:{reason}"
        else:
            diff = compare(want, got)
            if diff:
                verdict = "disagree"
                self.disagreements.append((case, diff))
        self.tally[verdict] += 1
        self.tally[f"{case.kind}:{want.status}:{want.code.name}"] += 1
        return verdict


class _Full(Exception):
    """The programs region is full: reopen the engines."""
