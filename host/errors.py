"""Exceptions of the host runtime (``unified_engine.host``)."""

from __future__ import annotations

from typing import Any

from unified_engine.regs import ERROR_DOCS, ErrorCode

__all__ = [
    "BuildIdMismatch",
    "DeviceBusy",
    "DeviceError",
    "DeviceTimeout",
    "EngineError",
    "NotAnEngine",
    "OutOfDeviceMemory",
    "RaceError",
]


class EngineError(Exception):
    """Base class of every runtime error."""


class DeviceError(EngineError):
    """The engine stopped with STATUS.ERROR set.

    Attributes
    ----------
    code : ErrorCode
        STATUS.ERROR_CODE.
    pc : int
        ERROR_PC, the index of the faulting instruction.
    detail : str
        Extra explanation when the backend knows it (the model does), else "".
    """

    def __init__(self, code: ErrorCode, pc: int, detail: str = "") -> None:
        self.code = code
        self.pc = pc
        self.detail = detail
        message = (f"engine stopped with {code.name} (error code {code.value}) at instruction "
                   f"{pc}: {ERROR_DOCS[code]}")
        if detail:
            message += f" [{detail}]"
        super().__init__(message)

    @property
    def code_name(self) -> str:
        """The error code's name, e.g. ``"DMA_OUT_OF_WINDOW"``."""
        return self.code.name


class BuildIdMismatch(EngineError):
    """The device's BUILD_ID is not the one this host computes for its configuration."""

    def __init__(self, expected: int, found: int, hint: str = "") -> None:
        self.expected = expected
        self.found = found
        super().__init__(f"device BUILD_ID {found:016x} does not match the host's "
                         f"{expected:016x}" + (f": {hint}" if hint else "") +
                         "; rebuild the bitstream or use the matching unified_engine version")


class NotAnEngine(EngineError):
    """The device does not answer with the engine's ID magic."""


class DeviceTimeout(EngineError, TimeoutError):
    """The engine did not stop within the timeout (it was soft-reset)."""


class DeviceBusy(EngineError):
    """An operation needs an idle engine but a program is running."""


class OutOfDeviceMemory(EngineError, MemoryError):
    """A DRAM region has no free block large enough."""


class RaceError(EngineError):
    """(model backend, strict mode) Queue instructions touched the same memory without a
    dependency token ordering them, so the RTL may compute something else.

    ``hazards`` lists them; ``result`` is the run's :class:`RunResult`.
    """

    def __init__(self, hazards: list[Any], result: Any) -> None:
        self.hazards = hazards
        self.result = result
        lines = [h.detail for h in hazards[:5]]
        more = f" (and {len(hazards) - 5} more)" if len(hazards) > 5 else ""
        super().__init__(f"{len(hazards)} unordered memory conflict(s){more}: "
                         + "; ".join(lines))
