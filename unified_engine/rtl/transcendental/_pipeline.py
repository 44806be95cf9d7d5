"""Pipeline-building helpers: named stage registers and DSP-sized partial products.

``Pipeline.stage`` registers a set of named values in one ``data.StructLayout`` signal, so a
stage boundary reads as one line and the register count of a datapath is its latency.
``Product`` and ``Square`` split a wide multiply into partial products that each fit one
DSP multiplier (25 × 18 signed, i.e. 24 × 17 unsigned: the DSP48E1 of 7-series; the DSP48E2
of UltraScale+ is 27 × 18, so the same pieces fit there too). The caller registers the
pieces in one stage (the DSP's M register) and adds them in the next (fabric or the DSP's
post-adder), which keeps every stage to one multiplier or one carry chain.
"""

from __future__ import annotations

from collections.abc import Mapping

from amaranth.hdl import Const, Module, Shape, ShapeCastable, Signal, Value, ValueCastable
from amaranth.lib import data

__all__ = ["DSP_A_WIDTH", "DSP_B_WIDTH", "Pipeline", "Product", "Square", "carry"]

#: Signed operand widths of one DSP multiplier (DSP48E1: 25 × 18).
DSP_A_WIDTH = 25
DSP_B_WIDTH = 18

Field = Value | ValueCastable | tuple[ShapeCastable, Value]


def _shape_of(value: Value | ValueCastable) -> ShapeCastable:
    if isinstance(value, ValueCastable):
        return value.shape()  # keeps enum and layout shapes
    return Value.cast(value).shape()


class Pipeline:
    """Stage registers of one datapath, built into ``m``.

    Every call of :meth:`stage` adds one clock of latency; ``depth`` counts them. The
    registers are reset-less: they hold data only, validity is tracked by whoever drives the
    pipeline (``StreamPipeline``), and reset-less delay chains may map to SRL primitives.
    """

    def __init__(self, m: Module, prefix: str):
        self.m = m
        self.prefix = prefix
        self.depth = 0

    def stage(self, name: str, **fields: Field) -> data.View:
        """Register ``fields`` (values, or ``(shape, value)`` to truncate/extend explicitly)."""
        layout = {}
        values = {}
        for key, field in fields.items():
            if isinstance(field, tuple):
                shape, value = field
            else:
                shape, value = _shape_of(field), field
            layout[key] = shape
            values[key] = value
        self.depth += 1
        reg = Signal(
            data.StructLayout(layout), name=f"{self.prefix}_s{self.depth}_{name}", reset_less=True
        )
        self.m.d.sync += [reg[key].eq(value) for key, value in values.items()]
        return reg


def carry(stage: data.View, *names: str) -> dict[str, Value]:
    """The fields ``names`` of a stage register, to pass on unchanged to the next stage."""
    return {name: stage[name] for name in names}


def _chunks(value: Value | int, port_width: int) -> list[tuple[int, Value]]:
    """Split ``value`` into ``(offset, chunk)`` pieces that fit a signed ``port_width`` port.

    Low chunks are unsigned and ``port_width - 1`` bits wide; the top chunk of a signed value
    keeps the sign (up to ``port_width`` bits). Constant chunks that are zero are dropped.
    """
    const = isinstance(value, int)
    value = Const(value) if const else Value.cast(value)
    shape = value.shape()
    width = shape.width
    step = port_width - 1
    top = port_width if shape.signed else step
    out = []
    pos = 0
    while width - pos > top:
        out.append((pos, value[pos : pos + step]))
        pos += step
    rest = value[pos:width]
    out.append((pos, rest.as_signed() if shape.signed else rest))
    if const:
        out = [(pos, chunk) for pos, chunk in out if Const.cast(chunk).value != 0]
        out = [(pos, Const(Const.cast(chunk).value, chunk.shape())) for pos, chunk in out]
    return out


class Product:
    """``a · b`` as DSP-sized partial products (see the module docstring).

    ``fields()`` gives the pieces to register in one pipeline stage; ``total(stage)`` sums the
    registered pieces (an exact product of the full width). Of the two operand orientations
    the one with fewer pieces is used.
    """

    def __init__(self, name: str, a: Value | int, b: Value | int):
        self.name = name
        options = []
        for x, y in ((a, b), (b, a)):
            ca, cb = _chunks(x, DSP_A_WIDTH), _chunks(y, DSP_B_WIDTH)
            options.append([(sa + sb, xa * xb) for sa, xa in ca for sb, xb in cb])
        self.pieces: list[tuple[int, Value]] = min(options, key=len)

    def fields(self) -> Mapping[str, Value]:
        return {f"{self.name}{k}": piece for k, (_, piece) in enumerate(self.pieces)}

    def total(self, stage: data.View) -> Value:
        return sum(stage[f"{self.name}{k}"] << shift for k, (shift, _) in enumerate(self.pieces))


class Square(Product):
    """``x²`` of an unsigned ``x`` (at most 34 bits) from three pieces instead of four:
    ``lo² + 2·hi·lo·2**17 + hi²·2**34`` with ``lo`` the low 17 bits."""

    def __init__(self, name: str, x: Value):
        x = Value.cast(x)
        shape: Shape = x.shape()
        if shape.signed or not 17 < shape.width <= 34:
            raise ValueError(f"Square: x must be unsigned, 18…34 bits wide, got {shape}")
        self.name = name
        lo, hi = x[:17], x[17:]
        self.pieces = [(0, lo * lo), (18, hi * lo), (34, hi * hi)]
