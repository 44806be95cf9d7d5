"""Combinational arithmetic shared by the block-quant decoder and encoder.

Everything here adds combinational logic to the caller's ``Module`` (no registers, no
components); the callers place the pipeline registers. Intermediate values that are used more
than once are named signals (``wire``), since Amaranth re-emits an expression tree at every
place it is used. The helpers implement exactly the rounding steps of the golden models in
``unified_engine.numerics.fp``:

* ``round_product_to_bf16``: ``f32_to_bf16(f32_mul(a, b))`` for a product whose significand
  has already been formed exactly (RNE to 24 bits with an unbounded exponent, flush below
  2**-126 or overflow to Inf, then RNE to 8 bits).
* ``add_nonnegative_f32``: ``f32_add`` restricted to operands that are +0, positive normal or
  +Inf (the squared errors of the IF metric): no cancellation, so no leading-zero count.
* ``leading_zeros_small``: a leading-zero count for the few-bit significands used here.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned

__all__ = [
    "BF16_INF",
    "BF16_NAN",
    "EXP_SHAPE",
    "F32_INF",
    "add_nonnegative_f32",
    "leading_zeros_small",
    "narrow_mul",
    "round_product_to_bf16",
    "wire",
]

BF16_NAN = 0x7FC0  # the canonical bf16 NaN (fp.BF16_CANONICAL_NAN)
BF16_INF = 0x7F80
F32_INF = 0x7F800000

#: Signed width of the internal biased exponents: wide enough for every sum formed here
#: (at most about -300…+520), so nothing wraps.
EXP_SHAPE = signed(12)


def wire(m: Module, value, name: str, shape=None) -> Signal:
    """A combinational signal named ``name`` driven by ``value`` (shared, emitted once)."""
    value = Value.cast(value)
    sig = Signal(shape if shape is not None else value.shape(), name=name)
    m.d.comb += sig.eq(value)
    return sig


def narrow_mul(m: Module, a, b: Value, name: str) -> Signal:
    """``a · b`` for a narrow ``a`` (≤ 4 bits, or a Python int constant) as shifts and adds.

    Synthesis maps every ``$mul`` to a DSP slice, which would waste one on each of these tiny
    products; a sum of at most four shifted copies of ``b`` is a few LUTs instead.
    """
    b = Value.cast(b)
    if isinstance(a, int):
        if a <= 0:
            raise ValueError(f"narrow_mul: constant factor must be positive, got {a}")
        terms = [b << i for i in range(a.bit_length()) if (a >> i) & 1]
        width = len(b) + a.bit_length()
    else:
        a = Value.cast(a)
        if len(a) > 4:
            raise ValueError(f"narrow_mul: the narrow factor has {len(a)} bits; at most 4")
        terms = [Mux(a[i], b << i, 0) for i in range(len(a))]
        width = len(b) + len(a)
    return wire(m, sum(terms[1:], terms[0])[:width], name, width)


def leading_zeros_small(m: Module, value: Value, name: str) -> Signal:
    """Leading zeros of a narrow unsigned ``value`` (a priority mux; meant for ≤ 10 bits).

    Returns ``len(value)`` for a zero input.
    """
    value = wire(m, value, f"{name}_in")
    width = len(value)
    count = Const(width, unsigned(width.bit_length()))
    for bit in range(width):  # later (higher) bits take priority
        count = Mux(value[bit], width - 1 - bit, count)
    return wire(m, count, name, unsigned(width.bit_length()))


def round_product_to_bf16(m: Module, product: Value, exp_lead: Value,
                          name: str) -> tuple[Signal, Signal]:
    """bf16 magnitude of an exact, non-zero product (two roundings, as the golden model).

    Parameters
    ----------
    product:
        Unsigned significand product of width ``W`` whose leading one is at bit ``W-1`` or
        ``W-2`` (a product of two normalised significands).
    exp_lead:
        Signed biased fp32 exponent of the value when its leading one is at bit ``W-2``
        (one more when it is at ``W-1``).

    Returns
    -------
    (magnitude, flush):
        ``magnitude`` is the 15-bit bf16 magnitude (exponent and fraction; ``0x7F80`` = Inf on
        overflow); ``flush`` is 1 when the fp32 product is below 2**-126 and must become a
        signed zero instead.
    """
    product = wire(m, product, f"{name}_p")
    width = len(product)
    high = product[width - 1]
    frac_bits = width - 1
    frac = wire(m, Mux(high, product[:frac_bits], (product << 1)[:frac_bits]), f"{name}_f")
    exp = Value.cast(exp_lead).as_signed() + high
    if frac_bits > 23:
        # fp32 RNE of the product's significand (the unbounded-exponent rounding of f32_mul).
        cut = frac_bits - 23
        kept = frac[cut:]
        sticky = frac[: cut - 1].any() if cut > 1 else Const(0, 1)
        up = frac[cut - 1] & (sticky | kept[0])
        rounded = wire(m, kept + up, f"{name}_r32", 24)  # a carry: significand became 2.0
        frac23 = rounded[:23]
        exp32 = wire(m, exp + rounded[23], f"{name}_e32", EXP_SHAPE)
    else:
        frac23 = Cat(Const(0, 23 - frac_bits), frac)  # exact in fp32
        exp32 = wire(m, exp, f"{name}_e32", EXP_SHAPE)
    # bf16 RNE by adding to the 15-bit (exponent, fraction) word: a fraction carry moves into
    # the exponent, and the largest finite values carry into 0x7F80 = Inf.
    frac7 = frac23[16:]
    up2 = frac23[15] & (frac23[:15].any() | frac7[0])
    word = (Cat(frac7, exp32[:8]) + up2)[:15]
    magnitude = wire(m, Mux(exp32 > 254, BF16_INF, word), f"{name}_mag", 15)
    flush = wire(m, exp32 < 1, f"{name}_flush", 1)
    return magnitude, flush


def add_nonnegative_f32(m: Module, a: Value, b: Value, name: str) -> Signal:
    """``fp.f32_add(a, b)`` for fp32 bit patterns that are +0, positive normal or +Inf.

    Sign bits are ignored (taken as 0); subnormal patterns count as +0. The sum is rounded to
    nearest even; a rounded magnitude of 2**128 or more, or an Inf operand, gives +Inf. A sum
    of two non-negative numbers never cancels and never falls below the larger operand, so no
    normalising left shift and no underflow can occur.
    """
    a = wire(m, Value.cast(a)[:31], f"{name}_a")
    b = wire(m, Value.cast(b)[:31], f"{name}_b")
    swap = wire(m, b > a, f"{name}_swap")
    big = wire(m, Mux(swap, b, a), f"{name}_big")
    small = wire(m, Mux(swap, a, b), f"{name}_small")
    big_exp, small_exp = big[23:31], small[23:31]
    # An exponent field of 0 is +0 (a subnormal pattern is flushed, fraction ignored).
    big_sig = Mux(big_exp == 0, 0, Cat(big[:23], 1))
    small_sig = Mux(small_exp == 0, 0, Cat(small[:23], 1))
    # Align the smaller significand with two extra low bits (guard, round) and a sticky bit.
    # Distances of 26 and more leave only the sticky bit, so the shift is clamped there.
    dist = wire(m, big_exp - small_exp, f"{name}_dist", 8)
    dist = Mux(dist > 26, 26, dist)[:5]
    # 52 bits: the upper 26 are the aligned significand (24 bits + guard + round), the lower
    # 26 catch what is shifted out (their OR is the sticky bit).
    wide = wire(m, Cat(Const(0, 28), small_sig) >> dist, f"{name}_wide", 52)
    total = wire(m, Cat(Const(0, 2), big_sig) + wide[26:52], f"{name}_sum", 27)
    carry = total[26]
    kept = wire(m, Mux(carry, total[3:27], total[2:26]), f"{name}_kept")
    guard = Mux(carry, total[2], total[1])
    sticky = Mux(carry, total[1] | total[0], total[0]) | wide[:26].any()
    up = guard & (sticky | kept[0])
    word = wire(m, Cat(kept[:23], big_exp + carry) + up, f"{name}_word", 32)
    overflow = (big_exp == 0xFF) | (word[23:32] >= 0xFF)
    return wire(m, Mux(overflow, F32_INF, word[:31]), name, 32)
