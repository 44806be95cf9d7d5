"""Shared pieces of every kernel generator: compiled kernels, register and scratchpad planning.

A kernel generator returns a :class:`Kernel`: the encoded program plus the map from argument
names (``"m"``, ``"a"``, ``"out"``, …) to the GPRs the host must write before START.  Sizes that
change per call (the row count M of an activation, tensor addresses) are such arguments, so one
compiled program serves every call with the same static parameters (see :mod:`.cache`).

Register conventions (all kernels): GPR arguments and temporaries count up from r1; counted
loops take their counters from the highest GPRs down (``asm.Program.loop``), so a kernel needs
``gprs ≥ 16`` and uses at most three nested loops.  Address registers are named per kernel from
AR1 up; the library needs ``address_registers ≥ 16``.  Every preset except ``sim_small`` meets
both; tests use ``sim_small`` with 16 address registers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from unified_engine.asm import Gpr, Program, gpr
from unified_engine.config import EngineConfig

__all__ = [
    "MIN_ADDRESS_REGISTERS",
    "MIN_GPRS",
    "Kernel",
    "KernelError",
    "RegAlloc",
    "SpadPlan",
    "ceil_div",
    "check_config",
    "new_program",
    "round_up",
]

#: The kernel library's minimum register files (see the module docstring).
MIN_GPRS = 16
MIN_ADDRESS_REGISTERS = 16
#: GPRs reserved at the top of the file for loop counters (three nesting levels).
_LOOP_REGS = 3


class KernelError(ValueError):
    """A kernel cannot be built for these parameters on this engine (the message says why)."""


def ceil_div(a: int, b: int) -> int:
    """⌈a / b⌉ for non-negative ints."""
    return -(-a // b)


def round_up(a: int, b: int) -> int:
    """The smallest multiple of ``b`` that is ≥ ``a``."""
    return ceil_div(a, b) * b


def check_config(config: EngineConfig) -> None:
    """Raise :class:`KernelError` unless ``config`` has the register files the library needs."""
    if not isinstance(config, EngineConfig):
        raise TypeError(f"kernels need an EngineConfig, not {type(config).__name__}")
    if config.gprs < MIN_GPRS or config.address_registers < MIN_ADDRESS_REGISTERS:
        raise KernelError(
            f"the kernel library needs gprs ≥ {MIN_GPRS} and address_registers ≥ "
            f"{MIN_ADDRESS_REGISTERS}; this engine has {config.gprs} and "
            f"{config.address_registers}")


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A compiled kernel.

    Attributes
    ----------
    name : str
        The op and its static parameters, for messages and the cache listing.
    config : EngineConfig
        The engine it was built for.
    blob : bytes
        The program image (32 bytes per instruction).
    args : Mapping[str, int]
        Argument name → GPR index; :meth:`gprs` turns values into ``Engine.run(args=…)``.
    meta : Mapping[str, Any]
        Static facts the host needs (tiling, buffer sizes, MAC counts per row, …).
    """

    name: str
    config: EngineConfig
    blob: bytes
    args: Mapping[str, int]
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def instructions(self) -> int:
        """Program length in instructions."""
        return len(self.blob) // 32

    def gprs(self, **values: int) -> dict[int, int]:
        """``{gpr: value}`` for ``Engine.run``; every argument must be given, each < 2**32."""
        missing = sorted(set(self.args) - set(values))
        extra = sorted(set(values) - set(self.args))
        if missing or extra:
            raise TypeError(f"kernel {self.name}: missing arguments {missing}, unknown {extra}")
        out = {}
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
                raise ValueError(f"kernel {self.name}: argument {name}={value!r} must be an "
                                 "unsigned 32-bit int (DRAM addresses must lie below 4 GiB)")
            out[self.args[name]] = value
        return out


class RegAlloc:
    """Hands out GPRs from r1 upwards, below ``loops`` loop counters at the top of the file."""

    def __init__(self, config: EngineConfig, loops: int = _LOOP_REGS) -> None:
        self._next = 1
        self._limit = config.gprs - loops

    def __call__(self) -> Gpr:
        if self._next >= self._limit:
            raise KernelError(f"kernel needs more than {self._limit - 1} GPRs")
        reg = gpr(self._next)
        self._next += 1
        return reg


class SpadPlan:
    """A bump allocator over scratchpad rows (one row = one AXI beat)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.rows = config.scratchpad_rows
        self.used = 0
        self.regions: dict[str, tuple[int, int]] = {}

    def rows_for(self, nbytes: int) -> int:
        """Scratchpad rows that hold ``nbytes``."""
        return ceil_div(nbytes, self.config.axi_bytes)

    def alloc(self, name: str, rows: int) -> int:
        """Reserve ``rows`` rows named ``name``; returns the first row."""
        if name in self.regions:
            raise KernelError(f"scratchpad region {name!r} allocated twice")
        start = self.used
        self.used += max(0, rows)
        if self.used > self.rows:
            raise KernelError(f"scratchpad plan needs {self.used} rows; the scratchpad has "
                              f"{self.rows} ({self.config.scratchpad_bytes} bytes)")
        self.regions[name] = (start, rows)
        return start

    @property
    def free(self) -> int:
        """Rows not yet reserved."""
        return self.rows - self.used


def new_program(config: EngineConfig) -> Program:
    """A :class:`Program` for ``config`` after checking the library's register needs."""
    check_config(config)
    return Program(config)

