"""Independent exact reference for the quantized formats (test-only).

Everything here is written from the format definitions with ``fractions.Fraction``: element
grids come from ``ml_dtypes`` (not from ``quant_grids``), rounding is an explicit
round-to-p-bits, and the nearest grid value is found by brute force over every candidate.
Nothing here imports ``unified_engine.numerics.quant*``.
"""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np

MIN_NORMAL = Fraction(1, 2**126)
F32_OVERFLOW = Fraction(2**128)


def rne(value: Fraction, bits: int) -> Fraction:
    """Round to ``bits`` significant bits, ties to even, unbounded exponent; then FTZ.

    Returns +0 for results below 2^-126 (the caller keeps track of signs of zero) and raises
    on overflow (no test case here overflows).
    """
    if value == 0:
        return Fraction(0)
    sign = -1 if value < 0 else 1
    a = abs(value)
    exp = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** exp > a:
        exp -= 1
    unit = Fraction(2) ** (exp - bits + 1)
    scaled = a / unit
    whole = scaled.numerator // scaled.denominator
    rest = scaled - whole
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and whole % 2 == 1):
        whole += 1
    result = whole * unit
    if result < MIN_NORMAL:
        return Fraction(0)
    if result >= F32_OVERFLOW:
        raise OverflowError("reference result overflows fp32")
    return sign * result


def bf16_value(bits: int) -> Fraction | None:
    """Exact value of a bf16 pattern with FTZ; ``None`` for Inf/NaN."""
    exp = (bits >> 7) & 0xFF
    man = bits & 0x7F
    if exp == 0xFF:
        return None
    if exp == 0:
        return Fraction(0)
    value = Fraction(128 + man) * Fraction(2) ** (exp - 134)
    return -value if bits & 0x8000 else value


def bf16_bits(value: Fraction, negative_zero: bool = False) -> int:
    """bf16 bit pattern of an exactly representable value."""
    if value == 0:
        return 0x8000 if negative_zero else 0
    out = int(np.array([float(value)], np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)[0])
    if bf16_value(out) != value:
        raise ValueError(f"{value} is not a bf16 value")
    return out


def f32_value(x: np.float32) -> Fraction:
    return Fraction(float(x))


class Grid:
    """A magnitude grid taken from ``ml_dtypes``, with brute-force nearest search."""

    def __init__(self, name: str):
        self.name = name
        if name == "int4":
            values = np.arange(16, dtype=np.uint8).astype(ml_dtypes.int4).astype(np.int64)
            self.magnitudes = [Fraction(int(v)) for v in values[:8]]
            self.code_values = [Fraction(int(v)) for v in values]
            self.bits, self.twos = 4, True
        elif name == "int8":
            values = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.int64)
            self.magnitudes = [Fraction(int(v)) for v in values[:128]]
            self.code_values = [Fraction(int(v)) for v in values]
            self.bits, self.twos = 8, True
        elif name == "fp4":
            values = np.arange(16, dtype=np.uint8).view(ml_dtypes.float4_e2m1fn)
            values = values.astype(np.float64)
            self.magnitudes = [Fraction(float(v)) for v in values[:8]]
            self.code_values = [Fraction(float(v)) for v in values]
            self.bits, self.twos = 4, False
        elif name == "fp8":
            values = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn)
            values = values.astype(np.float64)
            self.magnitudes = [Fraction(float(v)) for v in values[:0x7F]]  # 0x7F is NaN
            self.code_values = [None if np.isnan(v) else Fraction(float(v)) for v in values]
            self.bits, self.twos = 8, False
        else:
            raise ValueError(name)
        self.max = self.magnitudes[-1]

    def nearest(self, q: Fraction) -> int:
        """Magnitude code nearest to ``q ≥ 0``; on a tie the even code (brute force)."""
        best, best_dist = None, None
        for code, g in enumerate(self.magnitudes):
            dist = abs(q - g)
            if best is None or dist < best_dist or (dist == best_dist and code % 2 == 0):
                best, best_dist = code, dist
        return best

    def compose(self, magnitude_code: int, negative: bool) -> int:
        if self.twos:
            return (-magnitude_code if negative else magnitude_code) & ((1 << self.bits) - 1)
        return magnitude_code | ((1 << (self.bits - 1)) if negative else 0)


GRIDS = {name: Grid(name) for name in ("int4", "fp4", "int8", "fp8")}


def ref_encode_scaled(block_bits, grid: Grid) -> tuple[list[int], int]:
    """Reference encoder of one bf16-scaled block of a finite input: (codes, scale bits)."""
    values = [bf16_value(int(b)) for b in block_bits]
    absmax = max(abs(v) for v in values)
    recip = rne(Fraction(1) / grid.max, 24)
    scale = rne(rne(absmax * recip, 24), 8)
    flag = 0x8000 if grid.twos else 0
    scale_bits = bf16_bits(scale) | flag
    if scale == 0:
        return [0] * len(values), scale_bits
    codes = []
    for b, v in zip(block_bits, values, strict=True):
        codes.append(grid.compose(grid.nearest(abs(v) / scale), bool(int(b) & 0x8000)))
    return codes, scale_bits


def ref_decode_scaled(codes, scale_bits: int, grid: Grid) -> list[int]:
    """Reference decode: bf16(fp32(value · |scale|)) with FTZ and the product's sign of zero."""
    scale = abs(bf16_value(scale_bits & 0x7FFF))
    out = []
    for c in codes:
        value = grid.code_values[int(c)]
        # IEEE sign of a zero product: the code's sign (FP -0 codes included), scale is ≥ +0.
        negative = value < 0 or (not grid.twos and bool(int(c) >> (grid.bits - 1)))
        try:
            product = rne(rne(value * scale, 24), 8)
        except OverflowError:
            out.append(0xFF80 if negative else 0x7F80)
            continue
        out.append(bf16_bits(product, negative_zero=negative))
    return out


def ref_metric(x_bits, xhat_bits) -> Fraction:
    """Reference IF metric: fp32 sub, square, balanced pairwise tree (+0 padding), exact RNE."""
    terms = []
    for a, b in zip(x_bits, xhat_bits, strict=True):
        d = rne(bf16_value(int(a)) - bf16_value(int(b)), 24)
        terms.append(rne(d * d, 24))
    while len(terms) & (len(terms) - 1):
        terms.append(Fraction(0))
    while len(terms) > 1:
        terms = [rne(terms[i] + terms[i + 1], 24) for i in range(0, len(terms), 2)]
    return terms[0]
