"""Element grids of the block-quantized weight formats: code ↔ value tables and exact rounding.

An *element format* is the per-weight code of a block format (INT4, FP4-E2M1, INT8,
FP8-E4M3FN); the block formats in ``quant_blocks.py`` add the per-block scale.  Every element
format is described by its **magnitude grid** ``g[0] = 0 < g[1] < … < g[m]`` (magnitude code
``j`` means ``g[j]``) and a sign convention:

* ``INT4`` / ``INT8``: two's complement, magnitudes ``0…7`` / ``0…127``. The encoder never emits
  ``-8`` / ``-128`` (the grid is symmetric); the decoder still reads code ``0x8`` / ``0x80`` as
  ``-8`` / ``-128``, as a two's-complement datapath does. There is no negative zero.
* ``FP4-E2M1`` / ``FP8-E4M3FN``: sign-magnitude, sign in the top bit, the magnitude code is the
  remaining bits (so magnitude codes are ordered like their values). The encoder copies the
  input's sign bit, so a negative input that rounds to zero is coded as ``-0``. FP8 codes
  ``0x7F`` / ``0xFF`` are NaN: the encoder never emits them, the decoder reads them as NaN.

Rounding (``round_magnitude``) is round-half-to-even **on the grid**: the nearest grid value,
and on an exact tie the *even* magnitude code.  For the integer grids that is the even integer;
for the FP grids the magnitude code's least significant bit is the mantissa LSB, so this is
IEEE RNE.  Values above the largest grid value clamp to it.  Magnitude codes are found by
comparing against the midpoints between neighbours, which are exact in float64; see
``round_magnitude`` for why a float64 quotient decides every comparison exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "ELEMENT_FORMATS",
    "FP4_E2M1",
    "FP8_E4M3",
    "INT4",
    "INT8",
    "ElementFormat",
]


@dataclasses.dataclass(frozen=True, eq=False)
class ElementFormat:
    """One element code: its magnitude grid, its width and its sign convention.

    Parameters
    ----------
    name:
        ``"int4"``, ``"fp4"``, ``"int8"`` or ``"fp8"``.
    bits:
        Code width (4 or 8).
    twos_complement:
        True for the integer formats; False for sign-magnitude FP formats (sign = top bit).
    magnitudes:
        Increasing float64 grid; magnitude code ``j`` stands for ``magnitudes[j]``.
    """

    name: str
    bits: int
    twos_complement: bool
    magnitudes: np.ndarray
    # Derived in __post_init__: midpoints between neighbours, and the value of every code.
    midpoints: np.ndarray = dataclasses.field(init=False, repr=False)
    decode_table: np.ndarray = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        grid = np.asarray(self.magnitudes, dtype=np.float64)
        if grid.ndim != 1 or grid[0] != 0 or not np.all(np.diff(grid) > 0):
            raise ValueError(f"{self.name}: the magnitude grid must start at 0 and increase")
        grid.setflags(write=False)
        object.__setattr__(self, "magnitudes", grid)
        # Midpoints of neighbours: every grid value has few significant bits, so these are
        # exact in float64 (and in fp32).
        midpoints = (grid[:-1] + grid[1:]) / 2
        midpoints.setflags(write=False)
        object.__setattr__(self, "midpoints", midpoints)
        table = self._build_decode_table()
        table.setflags(write=False)
        object.__setattr__(self, "decode_table", table)

    @property
    def max_code(self) -> int:
        """Largest magnitude code the encoder emits."""
        return len(self.magnitudes) - 1

    @property
    def max_value(self) -> float:
        """Largest magnitude the encoder emits (7, 6, 127 or 448)."""
        return float(self.magnitudes[-1])

    @property
    def sign_bit(self) -> int:
        """The code's top bit (the sign bit of the FP formats)."""
        return 1 << (self.bits - 1)

    def _build_decode_table(self) -> np.ndarray:
        codes = np.arange(1 << self.bits)
        if self.twos_complement:
            return np.where(codes >= self.sign_bit, codes - (1 << self.bits), codes).astype(
                np.float64
            )
        magnitude_codes = codes & (self.sign_bit - 1)
        table = np.full(codes.shape, np.nan)
        valid = magnitude_codes <= self.max_code
        table[valid] = self.magnitudes[magnitude_codes[valid]]
        return np.where(codes >= self.sign_bit, -table, table)

    def round_magnitude(self, q: np.ndarray) -> np.ndarray:
        """Magnitude code of the grid value nearest to ``q ≥ 0`` (ties → even code; clamped).

        ``q`` is a float64 array holding the *correctly rounded* quotient ``|x| / scale``.
        Why that decides exactly: let ``x`` have a ``p_x``-bit significand, the scale a
        ``p_s``-bit one and a midpoint ``M`` a ``p_m``-bit one.  If the exact quotient
        ``x/scale ≠ M``, then ``x − M·scale`` is a non-zero multiple of the smaller of the two
        terms' ulps, which bounds ``|x/scale − M| / M`` below by
        ``min(2^-(p_x+1), 2^-(p_m+p_s))``.  For the bf16-scaled formats ``p_x = p_s = 8`` and
        ``p_m ≤ 8`` (≥ 2^-16); for NVFP4 ``p_s ≤ 4 + 24`` and ``p_m ≤ 3`` (≥ 2^-31).  A float64
        division errs by at most 2^-53 relative, so the rounded quotient lies strictly on the
        same side of every midpoint as the exact one, and equals ``M`` exactly when the exact
        quotient does.  An RTL encoder gets the same codes by comparing ``|x|`` against the
        exact thresholds ``M·scale``.
        """
        mids = self.midpoints
        index = np.searchsorted(mids, q, side="left")  # midpoints strictly below q
        at = np.minimum(index, len(mids) - 1)
        tie_to_odd = (index < len(mids)) & (mids[at] == q) & (index % 2 == 1)
        # On a tie q == mids[j] the candidates are j and j+1; keep the even one.
        return (index + tie_to_odd).astype(np.uint8)

    def compose(self, magnitude_code: np.ndarray, negative: np.ndarray) -> np.ndarray:
        """Element code from a magnitude code and a sign flag (uint8, one code per byte)."""
        mag = np.asarray(magnitude_code, dtype=np.int64)
        neg = np.asarray(negative, dtype=bool)
        mask = (1 << self.bits) - 1
        if self.twos_complement:
            # No negative zero: -0 is 0 in two's complement.
            return (np.where(neg, -mag, mag) & mask).astype(np.uint8)
        return (mag | np.where(neg, self.sign_bit, 0)).astype(np.uint8)

    def encode(self, q: np.ndarray, negative: np.ndarray) -> np.ndarray:
        """Element codes for float64 quotients ``q = |x|/scale ≥ 0`` with the signs of ``x``."""
        return self.compose(self.round_magnitude(q), negative)

    def values(self, codes: np.ndarray) -> np.ndarray:
        """float64 value of each code (NaN for the FP8 NaN codes)."""
        return self.decode_table[np.asarray(codes, dtype=np.uint8)]


def _e4m3_magnitudes() -> np.ndarray:
    """The 127 finite non-negative E4M3FN values in code order (0x00…0x7E)."""
    codes = np.arange(0x7F)
    exponent, mantissa = codes >> 3, codes & 7
    subnormal = mantissa * 2.0**-9
    normal = (8 + mantissa) * 2.0 ** (exponent - 10)
    return np.where(exponent == 0, subnormal, normal)


INT4 = ElementFormat("int4", 4, True, np.arange(8, dtype=np.float64))
FP4_E2M1 = ElementFormat("fp4", 4, False, np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float64))
INT8 = ElementFormat("int8", 8, True, np.arange(128, dtype=np.float64))
FP8_E4M3 = ElementFormat("fp8", 8, False, _e4m3_magnitudes())

#: The element formats by name.
ELEMENT_FORMATS: dict[str, ElementFormat] = {f.name: f for f in (INT4, FP4_E2M1, INT8, FP8_E4M3)}
