"""Bit-exact golden models of the vector unit's transcendental units: exp, exp2, reciprocal,
rsqrt and sigmoid.

These functions *are* the specification of the RTL (``docs/numerics.md``, "Transcendental
units"): every step is an integer operation on bit fields, a lookup in a table built by one of
the ``*_table`` / ``*_coefficients`` functions below (the RTL generator builds its ROMs from the
same functions), or an fp32 operation from :mod:`unified_engine.numerics.fp`.  Nothing here
calls a numpy transcendental function or rounds through float64, so an RTL datapath of the
stated widths reproduces every output bit.

Common contract (that of ``fp.py``): fp32 in, fp32 out; subnormal inputs read as signed zero;
results are rounded to nearest-even with an unbounded exponent and *then* a magnitude below
2**-126 becomes a signed zero and one of 2**128 or more becomes infinity; every NaN result is
the canonical NaN ``0x7FC00000``.

Summary of the algorithms (widths are the defaults; each is described step by step in its
function's docstring and in the docs):

* ``exp(x)`` / ``exp2(x)``: ``t = x·log2(e)`` as a Q8.32 fixed-point number (24 × 40-bit
  product), ``t = n + f`` with integer ``n`` and ``0 <= f < 1``;
  ``2**f = T[i]·(1 + p(r))`` with a 256-entry table ``T[i] = 2**(i/256)`` and a degree-2
  Taylor polynomial for ``2**r - 1``, ``r < 2**-8``; round to 24 bits, exponent ``n``.
  Error <= 0.57 ulp (analytic 0.5695; measured 0.5603, tests/numerics/test_transcendental.py).
* ``reciprocal(x)``: 128-entry seed table on the top 7 mantissa bits, two Newton-Raphson steps
  in Q0.32, then one remainder check that makes the result **correctly rounded**.
* ``rsqrt(x)``: 256-entry seed table on (exponent parity, top 7 mantissa bits), two Newton
  steps in Q1.31, then a remainder check: **correctly rounded**.
* ``sigmoid(x) = reciprocal(f32_add(1, exp(-x)))``: <= 2.64 ulp (measured 2.46).
"""

from __future__ import annotations

import functools
import math
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import numpy as np

from .fp import F32_CANONICAL_NAN, f32_add, f32_from_bits, ftz32

__all__ = [
    "DEFAULT_EXP_DEGREE",
    "DEFAULT_EXP_TABLE_BITS",
    "DEFAULT_RECIPROCAL_TABLE_BITS",
    "DEFAULT_RSQRT_TABLE_BITS",
    "EXP_FRAC_BITS",
    "LOG2E_FRAC_BITS",
    "RECIPROCAL_FRAC_BITS",
    "RSQRT_FRAC_BITS",
    "exp",
    "exp2",
    "exp2_poly_coefficients",
    "exp2_table",
    "log2e_fixed",
    "reciprocal",
    "reciprocal_seed_table",
    "rsqrt",
    "rsqrt_seed_table",
    "seed_frac_bits",
    "sigmoid",
]

# ---------------------------------------------------------------------------------------------
# Parameters.  Table sizes are keyword arguments of the models; these are their defaults.

#: exp/exp2: index bits of the 2**(i/T) table (T = 2**bits entries).
DEFAULT_EXP_TABLE_BITS = 8
#: exp/exp2: degree of the polynomial for 2**r - 1 on [0, 2**-table_bits).
DEFAULT_EXP_DEGREE = 2
#: reciprocal: leading mantissa bits that index the seed table (2**bits entries).
DEFAULT_RECIPROCAL_TABLE_BITS = 7
#: rsqrt: leading mantissa bits that index the seed table (2 * 2**bits entries with parity).
DEFAULT_RSQRT_TABLE_BITS = 7

#: Fraction bits of the exp datapath: t = x·log2(e) is Q8.32, the table and 2**r - 1 are Q.32.
EXP_FRAC_BITS = 32
#: Fraction bits of the log2(e) constant (a 40-bit unsigned integer).
LOG2E_FRAC_BITS = 39
#: Fraction bits of the reciprocal's Newton iterate (Q0.32).
RECIPROCAL_FRAC_BITS = 32
#: Fraction bits of the rsqrt's Newton iterate (Q1.31, so y*y fits 64 bits).
RSQRT_FRAC_BITS = 31

_EXP_TABLE_BITS_RANGE = (2, 10)
_EXP_DEGREE_RANGE = (1, 4)
_SEED_TABLE_BITS_RANGE = (6, 12)  # two Newton steps need a seed good to about 2**-7
_NEWTON_STEPS = 2

_MAN_BITS = 23
_MAN_MASK = (1 << _MAN_BITS) - 1
_HIDDEN = 1 << _MAN_BITS
_POS_INF = 0x7F800000
_SIGN = 0x80000000


# ---------------------------------------------------------------------------------------------
# Table and constant generators (exact arithmetic: the same integers on every machine).


def _check_int(name: str, value: int, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int (allowed {low}…{high}), got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name}={value} is out of range; allowed {low}…{high}")
    return int(value)


def _decimal_ln2() -> Decimal:
    """ln 2 to 80 significant digits (Decimal.ln is correctly rounded)."""
    with localcontext() as ctx:
        ctx.prec = 80
        return Decimal(2).ln()


def _round_decimal(value: Decimal, frac_bits: int) -> int:
    """round-half-even(value · 2**frac_bits) as an int."""
    with localcontext() as ctx:
        ctx.prec = 80
        return int((value * (Decimal(2) ** frac_bits)).to_integral_value(ROUND_HALF_EVEN))


@functools.cache
def log2e_fixed() -> int:
    """``round(log2(e) · 2**39)``: the 40-bit unsigned constant of exp's range reduction."""
    with localcontext() as ctx:
        ctx.prec = 80
        return _round_decimal(1 / _decimal_ln2(), LOG2E_FRAC_BITS)


def exp2_table(table_bits: int = DEFAULT_EXP_TABLE_BITS) -> tuple[int, ...]:
    """ROM of exp/exp2: ``T[i] = round(2**(i / 2**table_bits) · 2**32)``, i = 0 … 2**bits-1.

    Entries are Q1.32 (33-bit unsigned; ``T[0] = 2**32`` exactly).  Computed with exact
    integer roots, rounded to nearest (a tie is impossible: ``2**(i/T)`` is irrational).
    """
    return _exp2_table(_check_int("table_bits", table_bits, _EXP_TABLE_BITS_RANGE))


@functools.cache
def _exp2_table(tb: int) -> tuple[int, ...]:
    size = 1 << tb
    table = []
    for i in range(size):
        # k = floor(2**(F + i/size)) is the integer size-th root of N = 2**(F·size + i).
        n_big = 1 << (EXP_FRAC_BITS * size + i)
        k = int(2.0 ** (EXP_FRAC_BITS + i / size))  # float estimate, corrected exactly below
        while k**size > n_big:
            k -= 1
        while (k + 1) ** size <= n_big:
            k += 1
        # Round to nearest: k + 1 iff (k + 1/2)**size <= N, i.e. (2k+1)**size <= 2**size · N.
        table.append(k + 1 if (2 * k + 1) ** size <= n_big << size else k)
    return tuple(table)


def exp2_poly_coefficients(degree: int = DEFAULT_EXP_DEGREE) -> tuple[int, ...]:
    """Coefficients ``C_k = round(ln(2)**k / k! · 2**32)`` for k = 1 … degree (Q0.32).

    They are the Taylor coefficients of ``2**r - 1 = Σ (r·ln 2)**k / k!``; with ``r`` below
    ``2**-8`` the first omitted term, ``(r ln 2)**3 / 6 < 2**-28.2``, bounds the truncation.
    """
    return _exp2_poly_coefficients(_check_int("degree", degree, _EXP_DEGREE_RANGE))


@functools.cache
def _exp2_poly_coefficients(deg: int) -> tuple[int, ...]:
    ln2 = _decimal_ln2()
    with localcontext() as ctx:
        ctx.prec = 80
        return tuple(
            _round_decimal(ln2**k / math.factorial(k), EXP_FRAC_BITS) for k in range(1, deg + 1)
        )


def seed_frac_bits(table_bits: int) -> int:
    """Fraction bits of a reciprocal/rsqrt seed-table entry: ``table_bits + 3``."""
    return table_bits + 3


def _round_fraction(value: Fraction) -> int:
    """Round a non-negative rational to the nearest integer, ties to even."""
    q, rem = divmod(value.numerator, value.denominator)
    twice = 2 * rem
    if twice > value.denominator or (twice == value.denominator and q % 2 == 1):
        q += 1
    return q


def reciprocal_seed_table(table_bits: int = DEFAULT_RECIPROCAL_TABLE_BITS) -> tuple[int, ...]:
    """ROM of reciprocal: entry j ≈ 1 / (1 + (j + 1/2)/2**p), p = table_bits, j < 2**p.

    ``S[j] = round(2**s / m_mid)`` with ``s = seed_frac_bits(p)`` and ``m_mid`` the midpoint of
    the mantissa interval ``[1 + j/2**p, 1 + (j+1)/2**p)`` (the reciprocal of the midpoint
    minimises the worst relative error over the interval).  Entries are Q0.s, all below 2**s.
    """
    return _reciprocal_seed_table(_check_int("table_bits", table_bits, _SEED_TABLE_BITS_RANGE))


@functools.cache
def _reciprocal_seed_table(p: int) -> tuple[int, ...]:
    s = seed_frac_bits(p)
    # m_mid = (2**(p+1) + 2j + 1) / 2**(p+1)
    return tuple(
        _round_fraction(Fraction(1 << (s + p + 1), (1 << (p + 1)) + 2 * j + 1))
        for j in range(1 << p)
    )


def rsqrt_seed_table(table_bits: int = DEFAULT_RSQRT_TABLE_BITS) -> tuple[int, ...]:
    """ROM of rsqrt: entry ``(parity << p) | j`` ≈ 1/sqrt(a_mid), p = table_bits.

    ``a`` is the mantissa scaled to [1, 4): ``a = 1.m`` when the unbiased exponent is even
    (parity 0) and ``2·1.m`` when it is odd (parity 1); ``a_mid`` is the midpoint of the
    interval selected by the top ``p`` mantissa bits ``j``.  ``S = round(2**s / sqrt(a_mid))``
    with ``s = seed_frac_bits(p)``, computed with an exact integer square root.  Entries are
    Q0.s, all below 2**s.
    """
    return _rsqrt_seed_table(_check_int("table_bits", table_bits, _SEED_TABLE_BITS_RANGE))


@functools.cache
def _rsqrt_seed_table(p: int) -> tuple[int, ...]:
    s = seed_frac_bits(p)
    table = []
    for parity in (0, 1):
        for j in range(1 << p):
            # a_mid = (2**(p+1) + 2j + 1) · 2**parity / 2**(p+1);  want sqrt(2**(2s) / a_mid).
            num = 1 << (2 * s + p + 1)
            den = ((1 << (p + 1)) + 2 * j + 1) << parity
            k = math.isqrt(num // den)  # floor(sqrt(num/den)) = isqrt(floor(num/den))
            # Round: k + 1 iff (k + 1/2)**2 <= num/den, i.e. (2k+1)**2 · den <= 4 · num.
            table.append(k + 1 if (2 * k + 1) ** 2 * den <= 4 * num else k)
    return tuple(table)


@functools.cache
def _rom(kind: str, *args: int) -> np.ndarray:
    """A table as a read-only numpy array (cached) for the vectorised models."""
    gen = {
        "exp2": exp2_table,
        "poly": exp2_poly_coefficients,
        "recip": reciprocal_seed_table,
        "rsqrt": rsqrt_seed_table,
    }[kind]
    arr = np.array(gen(*args), dtype=np.int64)
    arr.setflags(write=False)
    return arr


# ---------------------------------------------------------------------------------------------
# Input handling and field helpers.


def _as_f32(x, func: str) -> np.ndarray:
    """Validate ``x`` as fp32 values and return them with the storage rule applied (FTZ, NaN).

    float32 input is taken as is.  Other float dtypes and integers are accepted only when every
    value is exactly representable in fp32: the models never round an input silently.
    """
    arr = np.asarray(x)
    if arr.dtype == np.float32:
        return ftz32(arr)
    if arr.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            x32 = arr.astype(np.float32)
            exact = (x32.astype(arr.dtype) == arr) | (np.isnan(x32) & np.isnan(arr))
    elif arr.dtype.kind in "iu":
        exact = np.abs(arr.astype(np.float64)) <= 2.0**24
        x32 = arr.astype(np.float32)
    else:
        raise TypeError(
            f"{func}: x must hold fp32 values (numpy float32, or floats/ints exactly "
            f"representable in fp32), got dtype {arr.dtype}"
        )
    if not np.all(exact):
        bad = arr[~exact].ravel()[0] if arr.ndim else arr
        raise ValueError(
            f"{func}: x contains {bad!r}, which is not exactly representable in fp32; "
            f"convert with numpy.float32 first"
        )
    return ftz32(x32)


def _fields(x32: np.ndarray):
    """Split FTZ'd fp32 values into int64 sign (0/1), biased exponent and mantissa fields."""
    bits = x32.view(np.uint32).astype(np.int64)
    return bits >> 31, (bits >> _MAN_BITS) & 0xFF, bits & _MAN_MASK


def _pack(bits: np.ndarray, shape) -> np.ndarray:
    return f32_from_bits(bits.astype(np.uint32)).reshape(shape)


def _finish(sign, sig, biased):
    """Assemble fp32 bits from a 24-bit significand ``sig`` in [2**23, 2**24] (2**24 is the
    carry out of rounding) and a biased exponent; flush below 2**-126, overflow to Inf."""
    carry = sig >> 24
    sig = sig >> carry
    biased = biased + carry
    mag = np.where(
        biased >= 255, _POS_INF, np.where(biased <= 0, 0, (biased << _MAN_BITS) | (sig & _MAN_MASK))
    )
    return (sign << 31) | mag


# ---------------------------------------------------------------------------------------------
# exp / exp2


def _exp2_fixed(t: np.ndarray, table_bits: int, degree: int):
    """The shared back end: 2**t for a Q.32 two's-complement fixed-point ``t`` (int64).

    Returns ``(n, y)`` with ``2**t ≈ y · 2**(n - 32)`` and ``y`` a Q1.32 integer in
    [2**32, 2**33).
    """
    frac = EXP_FRAC_BITS
    n = t >> frac  # arithmetic shift: floor, so 0 <= f < 1 also for negative t
    f = t & ((1 << frac) - 1)
    r_bits = frac - table_bits
    i = f >> r_bits
    r = f & ((1 << r_bits) - 1)  # r · 2**-32 in [0, 2**-table_bits)
    coeffs = _rom("poly", degree)
    # Horner with truncating products: e = r·(C1 + r·(C2 + …)) ≈ 2**r - 1, Q0.32.
    acc = np.full_like(r, coeffs[-1])
    for c in coeffs[-2::-1]:
        acc = c + ((acc * r) >> frac)
    e = (acc * r) >> frac
    tab = _rom("exp2", table_bits)[i]
    # 2**f = T[i]·(1 + e) = T[i] + T[i]·e: the multiplier only sees the small e.
    y = tab + ((tab * e) >> frac)
    return n, y


def _round_exp_result(n: np.ndarray, y: np.ndarray) -> np.ndarray:
    """fp32 bits (sign 0) of y·2**(n-32), y a Q1.32 value in [2**32, 2**33): RNE on 9 bits."""
    sig = y >> 9
    rem = y & 0x1FF
    sig = sig + ((rem > 0x100) | ((rem == 0x100) & ((sig & 1) == 1)))
    return _finish(np.zeros_like(sig), sig, n + 127)


def _exp_common(x, func: str, table_bits: int, degree: int, to_fixed, sat_exp: int):
    tb = _check_int("table_bits", table_bits, _EXP_TABLE_BITS_RANGE)
    deg = _check_int("degree", degree, _EXP_DEGREE_RANGE)
    x32 = _as_f32(x, func)
    shape = x32.shape
    sign, biased, man = _fields(x32.ravel())
    e = biased - 127
    finite_nonzero = (biased != 0) & (biased != 255)
    # Saturate |x| >= 2**sat_exp before the datapath so that the fixed-point t stays in Q8.32
    # (exp: |x| >= 128, exp2: |x| >= 256 -- both far beyond the overflow/flush thresholds).
    sat = finite_nonzero & (e >= sat_exp)
    work = finite_nonzero & ~sat
    m = np.where(work, man | _HIDDEN, 0)
    u = to_fixed(m, np.where(work, e, 0))  # |t| in Q8.32, < 2**40
    t = np.where(sign == 1, -u, u)
    n, y = _exp2_fixed(t, tb, deg)
    out = _round_exp_result(n, y)
    zero_in = biased == 0  # ±0 (and flushed subnormals): exactly 1.0
    is_nan = (biased == 255) & (man != 0)
    is_inf = (biased == 255) & (man == 0)
    big_neg = (sat | is_inf) & (sign == 1)
    big_pos = (sat | is_inf) & (sign == 0)
    out = np.where(zero_in, 0x3F800000, out)
    out = np.where(big_neg, 0, np.where(big_pos, _POS_INF, out))
    out = np.where(is_nan, F32_CANONICAL_NAN, out)
    return _pack(out, shape)


def _exp_to_fixed(m: np.ndarray, e: np.ndarray) -> np.ndarray:
    """floor(|x|·L·2**-39 · 2**32) for |x| = m·2**(e-23): the 24×40-bit product, shifted."""
    prod = m.astype(np.uint64) * np.uint64(log2e_fixed())  # < 2**64
    sh = (_MAN_BITS + LOG2E_FRAC_BITS - EXP_FRAC_BITS) - e  # 30 - e >= 24 for e <= 6
    shifted = prod >> np.minimum(sh, 63).astype(np.uint64)
    return np.where(sh >= 64, 0, shifted).astype(np.int64)


def _exp2_to_fixed(m: np.ndarray, e: np.ndarray) -> np.ndarray:
    """floor(|x| · 2**32) for |x| = m·2**(e-23) (exact unless |x| has bits below 2**-32)."""
    sh = e + (EXP_FRAC_BITS - _MAN_BITS)  # left shift when >= 0, at most 16 for e <= 7
    left = m << np.maximum(sh, 0)
    right = m >> np.minimum(-sh, 63)
    return np.where(sh >= 0, left, np.where(-sh >= 64, 0, right))


def exp(
    x, *, table_bits: int = DEFAULT_EXP_TABLE_BITS, degree: int = DEFAULT_EXP_DEGREE
) -> np.ndarray:
    """fp32 ``e**x`` as the vector unit computes it (bit-exact golden model).

    Algorithm (F = ``EXP_FRAC_BITS`` = 32, p = ``table_bits``):

    1. Special cases: NaN → canonical NaN; +Inf → +Inf; -Inf → +0; ±0 (and subnormals, which
       read as ±0) → 1.0; ``|x| >= 128`` → +Inf for x > 0, +0 for x < 0.
    2. Range reduction in fixed point: ``|x| = m·2**(e-23)`` (24-bit m, e <= 6).
       ``P = m · L`` with ``L = log2e_fixed()`` = round(log2(e)·2**39) (a 24 × 40-bit unsigned
       product, < 2**64); ``U = P >> (30 - e)`` (0 if the shift is 64 or more) is
       floor(|x|·L·2**-7): |t| in Q8.32 (< 2**40).  ``t = -U`` for negative x.
    3. ``n = t >> 32`` (arithmetic, floor), ``f = t & (2**32 - 1)``; ``i`` = top p bits of
       ``f``, ``r`` = the low 32 - p bits (``r·2**-32 < 2**-p``).
    4. ``e_r = r·(C1 + r·(C2 + …))`` by Horner with each product truncated (``>> 32``);
       ``C = exp2_poly_coefficients(degree)`` (Q0.32), so ``e_r ≈ 2**(r·2**-32) - 1``.
    5. ``y = T[i] + ((T[i]·e_r) >> 32)`` with ``T = exp2_table(p)`` (Q1.32): y ≈ 2**f·2**32,
       in [2**32, 2**33).
    6. Round y to 24 significant bits (RNE on the 9 dropped bits; a carry to 2**24 bumps the
       exponent), biased exponent ``n + 127``: >= 255 → +Inf, <= 0 → +0.

    Parameters
    ----------
    x:
        fp32 values (numpy float32, or any real array exactly representable in fp32).
    table_bits:
        log2 of the 2**(i/T) table size, 2…10 (default 8: 256 entries of 33 bits).
    degree:
        degree of the polynomial for 2**r - 1, 1…4 (default 2).

    Returns
    -------
    numpy.ndarray of float32, the shape of ``x``.  Default parameters: error <= 0.57 ulp
    (docs/numerics.md).  0x42B17217 (88.72283) is the largest input with a finite result and
    0xC2AEAC4F (-87.33654) the most negative one with a nonzero (normal) result; both
    thresholds agree with the correctly rounded e**x.
    """
    return _exp_common(x, "exp", table_bits, degree, _exp_to_fixed, sat_exp=7)


def exp2(
    x, *, table_bits: int = DEFAULT_EXP_TABLE_BITS, degree: int = DEFAULT_EXP_DEGREE
) -> np.ndarray:
    """fp32 ``2**x``: the exp datapath without the log2(e) multiply.

    Steps as in :func:`exp`, except step 2: ``U = floor(|x|·2**32)`` (a shift of the 24-bit
    mantissa; exact unless |x| has bits below 2**-32) and the saturation limit is ``|x| >= 256``.
    2**x is exact for integer x in [-126, 127]; x >= 128 → +Inf, x < -126 → +0 unless it rounds
    up to 2**-126.
    """
    return _exp_common(x, "exp2", table_bits, degree, _exp2_to_fixed, sat_exp=8)


# ---------------------------------------------------------------------------------------------
# reciprocal


def _reciprocal_newton(man: np.ndarray, p: int) -> np.ndarray:
    """Steps 2-3 of :func:`reciprocal`: the Q0.32 Newton iterate ≈ 1/1.man (int64)."""
    w = RECIPROCAL_FRAC_BITS
    m = man | _HIDDEN
    y = _rom("recip", p)[man >> (_MAN_BITS - p)] << (w - seed_frac_bits(p))
    for _ in range(_NEWTON_STEPS):
        d = (m * y) >> _MAN_BITS  # m·y, Q1.32 (≈ 1)
        delta = (1 << w) - d  # 1 - m·y, may be slightly negative
        y = y + ((y * delta) >> w)  # y·(2 - m·y)
    return y


def reciprocal(x, *, table_bits: int = DEFAULT_RECIPROCAL_TABLE_BITS) -> np.ndarray:
    """fp32 ``1/x``, correctly rounded (RNE), as the vector unit computes it (bit-exact model).

    Algorithm (p = ``table_bits``, s = ``seed_frac_bits(p)`` = p + 3, W = 32):

    1. Special cases: NaN → NaN; ±0 (and subnormals) → ±Inf; ±Inf → ±0.
    2. ``x = ±m·2**(E-127-23)`` with m the 24-bit significand (Q1.23).  Seed
       ``y0 = reciprocal_seed_table(p)[man >> (23-p)] << (W - s)`` (Q0.32).
    3. Two Newton-Raphson steps in Q0.32 (``y ← y·(2 - m·y)``), signed int64 with floor shifts:
       ``d = (m·y) >> 23`` (≈ 1, Q1.32); ``δ = 2**32 - d``; ``y = y + ((y·δ) >> 32)``.
       The result is within 2**-27 of 1/m for every table_bits >= 6 (2**-30.8 with the
       default; checked for all 2**23 mantissas); step 4 needs < 2**-25.
    4. Correct rounding: ``q = y >> 8`` (Q0.24, the significand truncated); the residual
       ``R = 2**48 - m·(2q + 1)`` has the sign of ``1/m - (q + 1/2)·2**-24``; the significand is
       ``q + (R > 0)`` in [2**23, 2**24] (ties are impossible).
    5. Biased exponent ``253 - E`` (+1 when the significand carried to 2**24, i.e. m = 1);
       <= 0 → ±0 (``|x| > 2**126`` flushes; no input overflows).

    Parameters
    ----------
    x:
        fp32 values.
    table_bits:
        seed-table index bits, 6…12 (default 7: 128 entries of 10 bits).
    """
    p = _check_int("table_bits", table_bits, _SEED_TABLE_BITS_RANGE)
    w = RECIPROCAL_FRAC_BITS
    x32 = _as_f32(x, "reciprocal")
    shape = x32.shape
    sign, biased, man = _fields(x32.ravel())
    m = man | _HIDDEN
    q = _reciprocal_newton(man, p) >> (w - 24)
    resid = (1 << 48) - m * (2 * q + 1)
    sig = q + (resid > 0)
    out = _finish(sign, sig, 253 - biased)
    zero_in = biased == 0
    out = np.where(zero_in, (sign << 31) | _POS_INF, out)
    out = np.where((biased == 255) & (man == 0), sign << 31, out)
    out = np.where((biased == 255) & (man != 0), F32_CANONICAL_NAN, out)
    return _pack(out, shape)


# ---------------------------------------------------------------------------------------------
# rsqrt


def _rsqrt_newton(parity: np.ndarray, man: np.ndarray, p: int) -> np.ndarray:
    """Steps 2-3 of :func:`rsqrt`: the Q1.31 Newton iterate ≈ 1/sqrt(a) (int64)."""
    w = RSQRT_FRAC_BITS
    a_fixed = (man | _HIDDEN) << parity
    y = _rom("rsqrt", p)[(parity << p) | (man >> (_MAN_BITS - p))] << (w - seed_frac_bits(p))
    for _ in range(_NEWTON_STEPS):
        sq = (y * y) >> w  # y², Q.31
        t = (a_fixed * sq) >> _MAN_BITS  # a·y², Q.31 (≈ 1)
        delta = (1 << w) - t  # 1 - a·y², may be slightly negative
        y = y + ((y * delta) >> (w + 1))  # y·(3 - a·y²)/2
    return y


def rsqrt(x, *, table_bits: int = DEFAULT_RSQRT_TABLE_BITS) -> np.ndarray:
    """fp32 ``1/sqrt(x)``, correctly rounded (RNE), as the vector unit computes it.

    Algorithm (p = ``table_bits``, s = ``seed_frac_bits(p)`` = p + 3, W = 31):

    1. Special cases (IEEE 754 rSqrt): NaN → NaN; x < 0 (including -Inf) → NaN; +0 → +Inf;
       -0 → -Inf (subnormals read as signed zero); +Inf → +0.
    2. Unbiased exponent ``e = E - 127``, parity ``π = e & 1``, ``k = e >> 1`` (floor);
       ``A = m << π`` (Q2.23, a = A·2**-23 in [1, 4)) so ``x = a·4**k``.
       Seed ``y0 = rsqrt_seed_table(p)[(π << p) | (man >> (23-p))] << (W - s)`` (Q1.31).
    3. Two Newton steps (``y ← y·(3 - a·y²)/2``) in signed int64 with floor shifts:
       ``s2 = (y·y) >> 31``; ``t = (A·s2) >> 23`` (≈ 1, Q.31); ``δ = 2**31 - t``;
       ``y = y + ((y·δ) >> 32)``.  The result is within 2**-27 of 1/sqrt(a) for every
       table_bits >= 6 (2**-30.7 with the default; checked for all parities and mantissas);
       step 4 needs < 2**-25.
    4. Correct rounding: ``q = y >> 7`` (Q0.24 truncated significand), ``h = 2q + 1``;
       the sign of ``A·h² - 2**73`` says whether the midpoint (q + 1/2)·2**-24 lies above
       1/sqrt(a).  That difference is below 2**52 in magnitude, so the RTL needs only the low
       64 bits of ``A·h²`` (taken as a signed number); significand = ``q + (A·h² < 2**73)``.
    5. Biased exponent ``126 - k`` (+1 on a carry to 2**24); always normal.

    Parameters
    ----------
    x:
        fp32 values.
    table_bits:
        seed index bits per parity, 6…12 (default 7: 2 × 128 entries of 10 bits).
    """
    p = _check_int("table_bits", table_bits, _SEED_TABLE_BITS_RANGE)
    w = RSQRT_FRAC_BITS
    x32 = _as_f32(x, "rsqrt")
    shape = x32.shape
    sign, biased, man = _fields(x32.ravel())
    e = biased - 127
    parity = e & 1
    k = e >> 1
    a_fixed = (man | _HIDDEN) << parity
    q = _rsqrt_newton(parity, man, p) >> (w - 24)
    h = (2 * q + 1).astype(np.uint64)
    # Low 64 bits of A·h² (wrapping uint64 products); 2**73 ≡ 0 (mod 2**64), so as int64 this
    # is A·h² - 2**73 exactly because that difference is far below 2**63 in magnitude.
    low = (a_fixed.astype(np.uint64) * (h * h)).view(np.int64)
    sig = q + (low < 0)
    out = _finish(np.zeros_like(sig), sig, 126 - k)
    zero_in = biased == 0
    is_nan = (biased == 255) & (man != 0)
    out = np.where(zero_in, (sign << 31) | _POS_INF, out)
    out = np.where((biased == 255) & (man == 0) & (sign == 0), 0, out)
    out = np.where(is_nan | ((sign == 1) & ~zero_in), F32_CANONICAL_NAN, out)
    return _pack(out, shape)


# ---------------------------------------------------------------------------------------------
# sigmoid


def sigmoid(
    x,
    *,
    exp_table_bits: int = DEFAULT_EXP_TABLE_BITS,
    exp_degree: int = DEFAULT_EXP_DEGREE,
    reciprocal_table_bits: int = DEFAULT_RECIPROCAL_TABLE_BITS,
) -> np.ndarray:
    """fp32 logistic ``1/(1 + e**-x)`` from the units above, in this order:

    ``e = exp(-x)`` (a sign flip, then :func:`exp`); ``s = f32_add(1, e)``;
    ``y = reciprocal(s)``.

    Saturations follow from the units: for x >= 16.635532 (0x41851592) e <= 2**-24, so
    s rounds to 1 and y = 1.0 exactly (the correctly rounded value is 1 - 2**-24 up to
    x = 17.33, a 1-ulp difference inside the bound).  For x <= -87.33655 (0xC2AEAC50, the same
    threshold as exp) y is below 2**-126 and flushes to +0; beyond -88.72 exp overflows,
    s = +Inf and y = +0.  sigmoid(+Inf) = 1, sigmoid(-Inf) = +0, sigmoid(±0) = 0.5,
    NaN → NaN; the result is never negative and is monotonic.

    Error: <= 2.64 ulp (analytic: exp's 0.5695 ulp is at most 1.14·2**-24 relative, the add
    rounds by at most 2**-24 relative, so s is within 2.14·2**-24 and the correctly rounded
    reciprocal adds 0.5 ulp).  Measured 2.46 ulp at x = -16.637 where exp(-x) ≈ 2**24.
    """
    x32 = _as_f32(x, "sigmoid")
    neg = f32_from_bits(x32.view(np.uint32) ^ np.uint32(_SIGN))
    e = exp(neg, table_bits=exp_table_bits, degree=exp_degree)
    return reciprocal(f32_add(np.float32(1.0), e), table_bits=reciprocal_table_bits)
