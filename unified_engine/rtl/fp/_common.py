"""Shared building blocks of the floating-point units: field unpacking, a leading-zero counter
and a pipeline helper that places registers at a chosen subset of stage boundaries.

Everything here builds Amaranth expressions inside a caller's ``Module``; nothing is a
component of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned

F32_CANONICAL_NAN = 0x7FC00000
F32_EXP_ALL_ONES = 0xFF
F32_BIAS = 127


def check_latency(owner: str, latency: int, allowed: Sequence[int]) -> int:
    """Validate a ``latency`` constructor argument (an int in ``allowed``) and return it."""
    if isinstance(latency, bool) or not isinstance(latency, int):
        raise TypeError(f"{owner}: latency must be an int, got {latency!r}")
    if latency not in allowed:
        raise ValueError(
            f"{owner}: latency={latency} is not supported; allowed {min(allowed)}…{max(allowed)}"
        )
    return latency


def cuts_for_latency(latency: int, preference: Sequence[Sequence[int]]) -> frozenset[int]:
    """The stage boundaries that get a register for ``latency`` (``preference[latency]``)."""
    cuts = frozenset(preference[latency])
    assert len(cuts) == latency, "preference table must list `latency` distinct boundaries"
    return cuts


def stage(m: Module, registered: bool, name: str, **values: Value) -> dict[str, Signal]:
    """One pipeline boundary: pass ``values`` on, through registers when ``registered``.

    Returns a dict with the same keys whose values are new signals named ``{name}_{key}``,
    driven from the sync domain (a register) or the comb domain (a named wire). Naming the
    wires also keeps the simulator from inlining deep expression trees. The registers have
    no reset: they carry data only, and a reset net on every datapath flip-flop would cost
    routing and stop DSP/SRL packing.
    """
    out = {}
    for key, value in values.items():
        value = Value.cast(value)
        sig = Signal(value.shape(), name=f"{name}_{key}", reset_less=True)
        if registered:
            m.d.sync += sig.eq(value)
        else:
            m.d.comb += sig.eq(value)
        out[key] = sig
    return out


def f32_fields(x: Value) -> tuple[Value, Value, Value]:
    """(sign, biased exponent, 23-bit mantissa) of an fp32 bit pattern."""
    return x[31], x[23:31], x[0:23]


def bf16_fields(x: Value) -> tuple[Value, Value, Value]:
    """(sign, biased exponent, 7-bit mantissa) of a bf16 bit pattern."""
    return x[15], x[7:15], x[0:7]


def multiply_specials(ea: Value, ma: Value, eb: Value, mb: Value) -> tuple[Value, ...]:
    """Operand classes of a floating-point multiply from the two (exponent, mantissa) pairs.

    Returns ``(a_zero, b_zero, a_inf, b_inf, nan)``: zero includes flushed subnormals
    (exponent 0); ``nan`` is a NaN operand or Inf × zero. Shared by every multiplier width.
    """
    a_zero, b_zero = ea == 0, eb == 0
    a_inf = (ea == 0xFF) & (ma == 0)
    b_inf = (eb == 0xFF) & (mb == 0)
    a_nan = (ea == 0xFF) & (ma != 0)
    b_nan = (eb == 0xFF) & (mb != 0)
    nan = a_nan | b_nan | (a_inf & b_zero) | (b_inf & a_zero)
    return a_zero, b_zero, a_inf, b_inf, nan


def leading_zeros(value: Value) -> tuple[Value, Value]:
    """Leading-zero count of ``value`` as a balanced tree (log depth, not a priority chain).

    Returns ``(count, all_zero)``. ``count`` is exact when ``all_zero`` is 0; it is unspecified
    when the input is zero, so callers test ``all_zero`` first. The input is padded with ones
    at the bottom up to a power of two, which does not change the count of a non-zero value.
    """
    value = Value.cast(value)
    width = len(value)
    padded = 1 << (width - 1).bit_length()
    if padded != width:
        value = Cat(Const(-1, unsigned(padded - width)), value)

    def tree(bits: Value) -> tuple[Value, Value]:
        # Returns (count, zero) for a power-of-two-wide slice; count has log2(len) bits.
        n = len(bits)
        if n == 1:
            return Const(0, unsigned(0)), ~bits[0]
        half = n // 2
        hi_count, hi_zero = tree(bits[half:])
        lo_count, lo_zero = tree(bits[:half])
        count = Cat(Mux(hi_zero, lo_count, hi_count), hi_zero)
        return count, hi_zero & lo_zero

    count, zero = tree(value)
    if padded != width:
        # The padding ones guarantee a hit within the padded width; a zero input counts
        # exactly `width`, which is still flagged separately for clarity.
        zero = ~Value.cast(value)[padded - width :].any()
    return count, zero
