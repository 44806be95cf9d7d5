"""float64 reference helpers for the transcendental and activation tests (test-only).

Nothing here imports ``unified_engine``: the ulp measure and the float64 → bf16 rounding are
written from the contract in docs/numerics.md so that they are independent of the models.
"""

from __future__ import annotations

import numpy as np

F32_MIN_NORMAL = 2.0**-126
#: Midpoint between FLT_MAX and 2**128: a real number at or above it rounds to +Inf in fp32.
F32_OVERFLOW_MIDPOINT = 2.0**128 - 2.0**103
#: Midpoint between 2**-126 and the largest 24-bit value below it, (1 - 2**-24)·2**-126: under
#: the contract's rounding (unbounded exponent, then flush) a magnitude below it becomes zero.
F32_FLUSH_MIDPOINT = 2.0**-126 * (1.0 - 2.0**-25)


def f32_bits(bits) -> np.ndarray:
    """uint32 bit patterns → float32 (no canonicalisation)."""
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def flush_f32(x) -> np.ndarray:
    """The contract's input rule: subnormal fp32 values read as signed zero."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(np.abs(x) < np.float32(F32_MIN_NORMAL), np.copysign(np.float32(0), x), x)


def ulp_error(y, ref) -> np.ndarray:
    """|y - ref| in units of the fp32 ulp of ``ref`` (2**(floor(log2|ref|) - 23)).

    ``ref`` must be finite, nonzero and in the fp32 normal range.
    """
    ref = np.asarray(ref, dtype=np.float64)
    _, ex = np.frexp(ref)  # |ref| = m·2**ex, 0.5 <= m < 1
    return np.abs(np.asarray(y, dtype=np.float64) - ref) / np.ldexp(1.0, ex - 24)


def bf16_rne(v) -> np.ndarray:
    """Correctly rounded bf16 bit patterns of float64 values, directly (no fp32 step).

    RNE to 8 significant bits with an unbounded exponent, then a magnitude below 2**-126 is a
    signed zero and one of 2**128 or more is a signed infinity; NaN → 0x7FC0.
    """
    v = np.asarray(v, dtype=np.float64)
    m, e = np.frexp(np.abs(v))
    mag = np.ldexp(np.rint(m * 256.0), e - 8)  # np.rint is round-half-even
    mag = np.where(mag < F32_MIN_NORMAL, 0.0, mag)
    with np.errstate(over="ignore", invalid="ignore"):
        mag32 = np.where(mag >= 2.0**128, np.inf, mag).astype(np.float32)  # exact: 8 bits
    signed = np.copysign(mag32, v).astype(np.float32)
    bits = (signed.view(np.uint32) >> np.uint32(16)).astype(np.uint16)
    return np.where(np.isnan(v), np.uint16(0x7FC0), bits)


def sigmoid64(z) -> np.ndarray:
    """float64 logistic function 1/(1 + e**-z) (exp overflow → 0)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))
