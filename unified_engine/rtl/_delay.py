"""Delay lines for fixed-latency pipelines (used by the vector unit and the epilogue).

A unit built from several fixed-latency datapaths of different depths equalises them with
plain register chains so that one beat leaves in one cycle. Data chains are reset-less: they
carry no state that matters after reset (validity travels in a separate, reset chain), and a
reset-less chain with a clock enable maps to SRL16/SRL32 shift-register LUTs on Xilinx parts
instead of one flip-flop per bit and cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value, ValueCastable

__all__ = ["delay"]


def _shape_of(value):
    # Keep enum and data-layout shapes so that the delayed value is a View / enum again.
    return value.shape() if isinstance(value, ValueCastable) else Value.cast(value).shape()


def delay(m: Module, value, cycles: int, name: str, *, reset_less: bool = True):
    """``value`` delayed by ``cycles`` registers in ``m``'s ``sync`` domain.

    Parameters
    ----------
    m:
        The module the registers are built in (its enable, if any, stalls the chain).
    value:
        A value or value-castable (enum, ``data.View``); the result has the same shape.
    cycles:
        Number of registers, >= 0 (0 returns ``value`` itself).
    name:
        Prefix of the register names (``{name}_d1``, ``{name}_d2``, …).
    reset_less:
        Data chains are reset-less (SRL-friendly); pass False for valid bits.
    """
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 0:
        raise ValueError(f"delay: cycles must be an int >= 0, got {cycles!r}")
    shape = _shape_of(value)
    for k in range(1, cycles + 1):
        reg = Signal(shape, name=f"{name}_d{k}", reset_less=reset_less)
        m.d.sync += reg.eq(value)
        value = reg
    return value
