"""Shared pieces of the transcendental datapaths: the fp32 field layout, the special-result
codes that ride down a pipeline instead of a full 32-bit result, and parameter validation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from amaranth.hdl import Cat, Const, Mux, Value
from amaranth.lib import data, enum

__all__ = [
    "F32_BIAS",
    "F32_CANONICAL_NAN",
    "F32_LAYOUT",
    "Special",
    "generated",
    "special_or",
]

F32_BIAS = 127
F32_CANONICAL_NAN = 0x7FC00000

#: fp32 bit fields, least significant first (a ``data.View`` over a 32-bit port).
F32_LAYOUT = data.StructLayout({"man": 23, "exp": 8, "sign": 1})


class Special(enum.Enum, shape=3):
    """Result class decided from the input alone (in the decode stage).

    A 3-bit code travels down the pipeline instead of a 32-bit forced result; the last stage
    turns it into bits with :func:`special_or`. ``ZERO`` and ``INF`` take the sign that the
    datapath carries next to the code.
    """

    NONE = 0  # the arithmetic result stands
    NAN = 1  # canonical NaN 0x7FC00000
    ZERO = 2  # signed zero
    INF = 3  # signed infinity
    ONE = 4  # +1.0 (exp of ±0)


def special_or(code: Value, sign: Value, normal: Value) -> Value:
    """``normal`` when ``code`` is ``Special.NONE``, else the fp32 bits the code stands for."""
    sign = Value.cast(sign)
    return Mux(
        code == Special.NONE,
        normal,
        Mux(
            code == Special.NAN,
            Const(F32_CANONICAL_NAN, 32),
            Mux(
                code == Special.ONE,
                Const(0x3F800000, 32),
                Cat(Const(0, 23), Mux(code == Special.INF, 0xFF, 0x00), sign),
            ),
        ),
    )


T = TypeVar("T")


def generated(owner: str, generator: Callable[..., T], *args: int) -> T:
    """Call a golden-model table generator, re-raising its validation error under ``owner``.

    The generators in ``numerics.transcendental`` are the single source of truth for both
    the table contents and the allowed parameter ranges.
    """
    try:
        return generator(*args)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{owner}: {err}") from err
