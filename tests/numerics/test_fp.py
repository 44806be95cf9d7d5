"""Tests of ``unified_engine.numerics.fp`` against independent references.

References: Berkeley SoftFloat (``softfloatpy``, IEEE 754 with subnormals, mapped onto the
engine contract below), ``ml_dtypes.bfloat16`` for the bf16 conversions, and the exact-rational
scalar model in ``exact_ref.py``. Expected values in the named corner-case tests are worked out
by hand from the contract, never taken from the code under test.

Mapping SoftFloat onto the contract:
  * subnormal operands are flushed to signed zero before SoftFloat sees them (FTZ/DAZ);
  * tininess is detected after rounding, so SoftFloat raises UNDERFLOW exactly when an inexact
    result, rounded to 24 bits with an unbounded exponent, is below 2**-126: the contract's
    flush. Such a result maps to a signed zero even when IEEE rounding on the subnormal grid
    carried it up to 2**-126 (exact product in [2**-126 - 2**-150, 2**-126 - 2**-151)); an exact
    subnormal result maps to a signed zero too;
  * every NaN maps to the canonical NaN.
"""

from __future__ import annotations

import itertools
import math
import struct
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
import softfloatpy as sf

from unified_engine.numerics import fp

from .exact_ref import (
    CANON_NAN,
    SIGN,
    ftz_bits,
    is_nan,
    ref_add,
    ref_mul,
    round_to_f32_bits,
    to_fraction,
)

BF16_NAN = 0x7FC0
MIN_NORMAL = 0x00800000

# Every corner class of fp32, as bit patterns.
F32_CORNERS = [
    0x00000000, 0x80000000,                          # ±0
    0x7F800000, 0xFF800000,                          # ±Inf
    0x7FC00000, 0xFFC00000, 0x7FC12345, 0x7F800001,  # quiet / signalling NaNs, payloads
    0x7FBFFFFF, 0xFFFFFFFF, 0xFF800001,
    0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF,  # subnormals
    0x00400000, 0x80012345,
    0x00800000, 0x80800000, 0x00800001, 0x01000000,  # smallest normals
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FFFFE, 0x7F000000,  # largest normals
    0x3F800000, 0xBF800000, 0x3F800001, 0x3F7FFFFF,  # around 1
    0x33800000, 0x33800001, 0xB3800000, 0x34000000,  # 2**-24 (half an ulp of 1) and friends
    0x40490FDB, 0xC0490FDB, 0x1F800000, 0x20000000,  # pi, 2**-64, 2**-63
    0x5F800000, 0x5F7FFFFF,                          # 2**64
]

BF16_CORNERS = [
    0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0x7FFF, 0x0001, 0x807F, 0x0040,
    0x0080, 0x8080, 0x7F7F, 0xFF7F, 0x3F80, 0xBF80, 0x3F81, 0x3F7F, 0x4049, 0x1F80, 0x2000,
]


@pytest.fixture(autouse=True, scope="module")
def _softfloat_modes():
    """Round to nearest even, tininess detected after rounding (as the contract states)."""
    saved = sf.get_rounding_mode(), sf.get_tininess_mode()
    sf.set_rounding_mode(sf.RoundingMode.NEAR_EVEN)
    sf.set_tininess_mode(sf.TininessMode.AFTER_ROUNDING)
    yield
    sf.set_rounding_mode(saved[0])
    sf.set_tininess_mode(saved[1])


def _bits(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def _f32(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def _sf32(bits: int) -> sf.Float32:
    return sf.Float32.from_bytes(int(bits).to_bytes(4, "big"))


def _sf_contract(op, a: int, b: int) -> int:
    """Run a SoftFloat binary32 op and map its IEEE result onto the engine contract."""
    a, b = ftz_bits(a), ftz_bits(b)
    sf.set_exception_flags(0)
    out = int.from_bytes(op(_sf32(a), _sf32(b)).to_bytes(), "big")
    flags = int(sf.get_exception_flags())
    if is_nan(out):
        return CANON_NAN
    if flags & int(sf.ExceptionFlag.UNDERFLOW) or (out & 0x7F800000) == 0:
        return out & SIGN
    return out


def _random_normals(rng: np.random.Generator, n: int, exp_lo: int, exp_hi: int) -> np.ndarray:
    """Random fp32 bits: random sign and fraction, biased exponent uniform in [exp_lo, exp_hi]."""
    sign = rng.integers(0, 2, n, dtype=np.uint32) << 31
    exp = rng.integers(exp_lo, exp_hi + 1, n, dtype=np.uint32) << 23
    frac = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    return (sign | exp | frac).astype(np.uint32)


def _binary_cases(seed: int, n_random: int) -> tuple[np.ndarray, np.ndarray]:
    """All corner pairs, uniform random bits, and same-range random normals (cancellation)."""
    rng = np.random.default_rng(seed)
    pairs = np.array(list(itertools.product(F32_CORNERS, repeat=2)), dtype=np.uint32)
    uni = rng.integers(0, 1 << 32, (n_random, 2), dtype=np.uint32)
    close_a = _random_normals(rng, n_random, 100, 140)
    # b within a few binades of a: exercises cancellation and near-ties.
    close_b = (close_a ^ (rng.integers(0, 2, n_random, dtype=np.uint32) << 31)) + rng.integers(
        -(1 << 25), 1 << 25, n_random
    ).astype(np.uint32)
    close = np.stack([close_a, close_b], axis=1)
    allp = np.concatenate([pairs, uni, close])
    return allp[:, 0].copy(), allp[:, 1].copy()


def _check_against(got_bits: np.ndarray, a: np.ndarray, b: np.ndarray, ref) -> None:
    want = np.array([ref(int(x), int(y)) for x, y in zip(a, b, strict=True)], dtype=np.uint32)
    bad = np.flatnonzero(got_bits != want)
    if bad.size:
        i = bad[0]
        pytest.fail(
            f"{bad.size} mismatches; first: a={a[i]:#010x} b={b[i]:#010x} "
            f"got={got_bits[i]:#010x} want={want[i]:#010x}"
        )


# --------------------------------------------------------------------------- bit views, FTZ


def test_bit_views_round_trip_and_keep_nan_payloads():
    rng = np.random.default_rng(1)
    bits = np.concatenate([np.array(F32_CORNERS, np.uint32), rng.integers(0, 1 << 32, 5000,
                                                                          dtype=np.uint32)])
    x = fp.f32_from_bits(bits)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(fp.f32_to_bits(x), bits)
    assert fp.f32_to_bits(x).dtype == np.uint32
    assert float(fp.f32_from_bits(0x3F800000)) == 1.0
    assert float(fp.f32_from_bits(0xC0490FDB)) == struct.unpack(">f", bytes.fromhex("c0490fdb"))[0]


def test_ftz32_matches_reference():
    rng = np.random.default_rng(2)
    bits = np.concatenate([np.array(F32_CORNERS, np.uint32),
                           rng.integers(0, 1 << 32, 20000, dtype=np.uint32),
                           rng.integers(0, 1 << 23, 2000, dtype=np.uint32)])  # subnormals
    got = _bits(fp.ftz32(_f32(bits)))
    want = np.array([ftz_bits(int(b)) for b in bits], np.uint32)
    np.testing.assert_array_equal(got, want)
    # Scalars work and keep the sign of a flushed negative subnormal.
    assert int(_bits(fp.ftz32(np.float32(-1e-40)))) == 0x80000000
    assert int(_bits(fp.ftz32(_f32(0x7F800001)))) == CANON_NAN


# --------------------------------------------------------------------------- add / sub / mul


def test_exact_reference_agrees_with_softfloat():
    """The rational reference (used below and in test_reduce) is itself checked on corners."""
    a, b = _binary_cases(3, 300)
    for x, y in zip(a, b, strict=True):
        assert ref_add(int(x), int(y)) == _sf_contract(sf.f32_add, int(x), int(y))
        assert ref_mul(int(x), int(y)) == _sf_contract(sf.f32_mul, int(x), int(y))


def test_f32_add_matches_softfloat():
    a, b = _binary_cases(4, 1200)
    got = _bits(fp.f32_add(_f32(a), _f32(b)))
    _check_against(got, a, b, lambda x, y: _sf_contract(sf.f32_add, x, y))


def test_f32_sub_matches_softfloat():
    a, b = _binary_cases(5, 1200)
    got = _bits(fp.f32_sub(_f32(a), _f32(b)))
    _check_against(got, a, b, lambda x, y: _sf_contract(sf.f32_sub, x, y))


def test_f32_mul_matches_softfloat():
    rng = np.random.default_rng(6)
    a, b = _binary_cases(6, 1000)
    # Products around the overflow and underflow thresholds.
    hi = _random_normals(rng, 500, 190, 200)
    lo = _random_normals(rng, 500, 30, 70)
    a = np.concatenate([a, hi, lo])
    b = np.concatenate([b, _random_normals(rng, 500, 60, 70), _random_normals(rng, 500, 30, 70)])
    got = _bits(fp.f32_mul(_f32(a), _f32(b)))
    _check_against(got, a, b, lambda x, y: _sf_contract(sf.f32_mul, x, y))


def _products_near_min_normal(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal a, b whose exact product lies just below 2**-126 (within 2**-22 relative)."""
    a = _random_normals(rng, n, 127 - 70, 127 - 50)
    target = 2.0**-126 * (1.0 - rng.uniform(0.0, 2.0**-22, n))
    b = (target / _f32(a).astype(np.float64)).astype(np.float32)  # normal: |b| ~ 2**-76..-56
    b = _bits(np.abs(b) * np.sign(_f32(a)))  # positive products
    return a, b


def test_f32_mul_products_near_min_normal():
    """Tininess after rounding: a product that rounds (24 bits, RNE) to 2**-126 is 2**-126,
    one that rounds to 2**-126 - 2**-150 is flushed."""
    rng = np.random.default_rng(7)
    a, b = _products_near_min_normal(rng, 3000)
    got = _bits(fp.f32_mul(_f32(a), _f32(b)))
    exact = [to_fraction(int(x)) * to_fraction(int(y)) for x, y in zip(a, b, strict=True)]
    # Just below 2**-126 the 24-bit grid has a spacing of 2**-150, so a product rounds up to
    # 2**-126 iff it is at least 2**-126 - 2**-151 (the tie goes to the even 2**-126).
    rounds_up = np.array([2.0**-126 > q >= 2.0**-126 - 2.0**-151 for q in exact])
    # IEEE rounding on the subnormal grid (spacing 2**-149) also carries the products in
    # [2**-126 - 2**-150, 2**-126 - 2**-151) up to 2**-126; the contract flushes them to zero.
    contested = np.array([2.0**-126 - 2.0**-151 > q >= 2.0**-126 - 2.0**-150 for q in exact])
    assert rounds_up.sum() > 100 and contested.sum() > 20 and (~rounds_up).sum() > 100
    np.testing.assert_array_equal(got[rounds_up], MIN_NORMAL)
    np.testing.assert_array_equal(got[contested], 0)
    _check_against(got, a, b, ref_mul)
    _check_against(got, a, b, lambda x, y: _sf_contract(sf.f32_mul, x, y))
    # Constructed: (1 + 2**-23) * 2**-63  ×  (2 - 2**-22) * 2**-64 = 2**-126 * (1 - 2**-46).
    x = _f32(0x20000001)
    y = np.float32((2 - 2.0**-22) * 2.0**-64)
    assert int(_bits(fp.f32_mul(x, y))) == MIN_NORMAL
    # 2**-126 * (1 - 2**-24) is exactly representable with 24 bits, so it is not rounded up.
    assert int(_bits(fp.f32_mul(_f32(0x00800000), _f32(0x3F7FFFFF)))) == 0


@pytest.mark.parametrize(
    ("op", "a", "b", "want"),
    [
        ("add", 0x80000000, 0x80000000, 0x80000000),  # -0 + -0 = -0
        ("add", 0x80000000, 0x00000000, 0x00000000),  # -0 + +0 = +0
        ("add", 0x3F800000, 0xBF800000, 0x00000000),  # x + (-x) = +0
        ("add", 0xC0490FDB, 0x40490FDB, 0x00000000),
        ("add", 0x7F800000, 0xFF800000, CANON_NAN),   # Inf - Inf
        ("add", 0x7F800000, 0x7F7FFFFF, 0x7F800000),
        ("add", 0x7F7FFFFF, 0x7F7FFFFF, 0x7F800000),  # overflow
        ("add", 0xFF7FFFFF, 0xFF7FFFFF, 0xFF800000),
        ("add", 0x7F7FFFFF, 0x73000000, 0x7F800000),  # max + half ulp(max): tie to even → Inf
        ("add", 0x7F7FFFFF, 0x72FFFFFF, 0x7F7FFFFF),  # just below the tie
        ("add", 0x3F800000, 0x33800000, 0x3F800000),  # 1 + 2**-24: tie, stays even
        ("add", 0x3F800001, 0x33800000, 0x3F800002),  # odd + tie rounds up
        ("add", 0x3F800000, 0x33800001, 0x3F800001),  # above the tie
        ("add", 0x00800001, 0x80800000, 0x00000000),  # 2**-149 difference: flushed
        ("add", 0x80800001, 0x00800000, 0x80000000),  # ... keeps the sign
        ("add", 0x00000001, 0x80000000, 0x00000000),  # subnormal input is +0
        ("add", 0x7FC12345, 0x3F800000, CANON_NAN),
        ("add", 0xFF800001, 0x7F800000, CANON_NAN),
        ("mul", 0x00000000, 0x7F800000, CANON_NAN),   # 0 * Inf
        ("mul", 0x00000001, 0xFF800000, CANON_NAN),   # subnormal (= 0) * Inf
        ("mul", 0x80000000, 0x3F800000, 0x80000000),  # -0 * 1 = -0
        ("mul", 0x80000000, 0x80000000, 0x00000000),
        ("mul", 0x1F800000, 0x1F800000, 0x00000000),  # 2**-64 * 2**-64 = 2**-128: flushed
        ("mul", 0x9F800000, 0x1F800000, 0x80000000),
        ("mul", 0x20800000, 0x1F800000, 0x00800000),  # 2**-62 * 2**-64 = 2**-126: exact
        ("mul", 0x20000000, 0x1F800000, 0x00000000),  # 2**-63 * 2**-64 = 2**-127: flushed
        ("mul", 0x5F800000, 0x5F800000, 0x7F800000),  # 2**64 * 2**64 = Inf
        ("mul", 0x3F800001, 0x3F800001, 0x3F800002),  # (1+u)^2 = 1+2u+u^2 → 1+2u
        ("mul", 0xFFC00000, 0x00000000, CANON_NAN),
    ],
)
def test_named_corner_cases(op, a, b, want):
    fn = fp.f32_add if op == "add" else fp.f32_mul
    got = int(_bits(fn(_f32(a), _f32(b))))
    assert got == want, f"{op}({a:#010x}, {b:#010x}) = {got:#010x}, want {want:#010x}"
    assert int(_bits(fn(_f32(b), _f32(a)))) == want  # commutative, including signs of zero


def test_f32_sub_is_add_of_negation_including_zero_signs():
    assert int(_bits(fp.f32_sub(np.float32(0.0), np.float32(0.0)))) == 0x00000000
    assert int(_bits(fp.f32_sub(np.float32(-0.0), np.float32(0.0)))) == 0x80000000
    assert int(_bits(fp.f32_sub(_f32(0x7F800000), _f32(0x7F800000)))) == CANON_NAN
    assert int(_bits(fp.f32_sub(np.float32(1.0), np.float32(1.0)))) == 0x00000000


# --------------------------------------------------------------------------- bf16


def test_bf16_to_f32_exhaustive_vs_ml_dtypes():
    b = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    got = _bits(fp.bf16_to_f32(b))
    with np.errstate(invalid="ignore"):
        ref = b.view(ml_dtypes.bfloat16).astype(np.float32)
    want = _bits(ref).copy()
    exp = (b >> 7) & 0xFF
    man = b & 0x7F
    want[(exp == 0) & (man != 0)] &= np.uint32(SIGN)  # subnormal bf16 reads as signed zero
    want[(exp == 0xFF) & (man != 0)] = CANON_NAN
    np.testing.assert_array_equal(got, want)


def test_bf16_to_f32_vs_softfloat_sample():
    rng = np.random.default_rng(8)
    b = np.concatenate([np.array(BF16_CORNERS, np.uint16),
                        rng.integers(0, 1 << 16, 2000, dtype=np.uint16)])
    got = _bits(fp.bf16_to_f32(b))
    for x, g in zip(b, got, strict=True):
        w = sf.bf16_to_f32(sf.BFloat16.from_bytes(int(x).to_bytes(2, "big")))
        want = ftz_bits(int.from_bytes(w.to_bytes(), "big"))
        assert int(g) == want, f"bf16 {x:#06x}: got {g:#010x} want {want:#010x}"


def _f32_to_bf16_cases(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    upper = rng.integers(0, 1 << 16, 4000, dtype=np.uint32) << 16
    low_halves = np.array([0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    # Ties at 0x8000 with an even and an odd kept LSB, and their neighbours.
    ties = (upper[:, None] | low_halves[None, :]).ravel()
    return np.concatenate([
        np.array(F32_CORNERS, np.uint32),
        np.array([0x3F808000, 0x3F818000, 0x7F7F8000, 0x7F7F7FFF, 0xFF7FFFFF, 0x7F7FFFFF,
                  0x00808000, 0x00FF8000, 0x807FFFFF], np.uint32),
        ties,
        rng.integers(0, 1 << 32, 20000, dtype=np.uint32),
    ])


def test_f32_to_bf16_vs_ml_dtypes():
    bits = _f32_to_bf16_cases(9)
    got = fp.f32_to_bf16(_f32(bits))
    assert got.dtype == np.uint16
    flushed = np.array([ftz_bits(int(x)) for x in bits], np.uint32)
    with np.errstate(invalid="ignore", over="ignore"):
        want = _f32(flushed).astype(ml_dtypes.bfloat16).view(np.uint16).copy()
    want[np.isnan(_f32(flushed))] = BF16_NAN
    np.testing.assert_array_equal(got, want)
    # f32_to_bf16_f32 is the same rounding, widened back.
    np.testing.assert_array_equal(_bits(fp.f32_to_bf16_f32(_f32(bits))),
                                  want.astype(np.uint32) << 16)


def test_f32_to_bf16_vs_softfloat_sample():
    bits = _f32_to_bf16_cases(10)[:4000]
    got = fp.f32_to_bf16(_f32(bits))
    for x, g in zip(bits, got, strict=True):
        w = int.from_bytes(sf.f32_to_bf16(_sf32(ftz_bits(int(x)))).to_bytes(), "big")
        want = BF16_NAN if (w & 0x7F80) == 0x7F80 and (w & 0x7F) else w
        assert int(g) == want, f"f32 {x:#010x}: got {g:#06x} want {want:#06x}"


@pytest.mark.parametrize(
    ("f32", "bf16"),
    [
        (0x3F808000, 0x3F80),  # tie, even LSB: down
        (0x3F818000, 0x3F82),  # tie, odd LSB: up
        (0x3F808001, 0x3F81),
        (0x3F807FFF, 0x3F80),
        (0xBF818000, 0xBF82),
        (0x7F7F8000, 0x7F80),  # tie at the top rounds to even = Inf
        (0x7F7F7FFF, 0x7F7F),
        (0x3FFFFFFF, 0x4000),  # carry into the next binade
        (0x007FFFFF, 0x0000),  # subnormal input flushed
        (0x807FFFFF, 0x8000),
        (0x7F800001, BF16_NAN),
        (0xFFFFFFFF, BF16_NAN),
        (0xFF800000, 0xFF80),
    ],
)
def test_f32_to_bf16_named(f32, bf16):
    assert int(fp.f32_to_bf16(_f32(f32))) == bf16


def test_bf16_mul_is_exact_product():
    rng = np.random.default_rng(11)
    pairs = np.array(list(itertools.product(BF16_CORNERS, repeat=2)), np.uint16)
    rand = rng.integers(0, 1 << 16, (20000, 2), dtype=np.uint16)
    allp = np.concatenate([pairs, rand])
    a, b = allp[:, 0], allp[:, 1]
    got = _bits(fp.bf16_mul(a, b))
    wa = a.astype(np.uint32) << 16
    wb = b.astype(np.uint32) << 16
    # float64: two 8-bit significands multiply exactly in float64 and in fp32, so every normal
    # fp32 result must equal the float64 product of the ml_dtypes-widened operands.
    with np.errstate(invalid="ignore", over="ignore"):
        exact = (a.view(ml_dtypes.bfloat16).astype(np.float64)
                 * b.view(ml_dtypes.bfloat16).astype(np.float64))
    normal_out = ((got & 0x7F800000) != 0) & ((got & 0x7F800000) != 0x7F800000)
    assert normal_out.mean() > 0.5
    np.testing.assert_array_equal(_f32(got[normal_out]).astype(np.float64), exact[normal_out])
    # Every result (specials, flushes, overflow) against the rational reference ...
    _check_against(got, wa, wb, ref_mul)
    # ... and the corner pairs against SoftFloat.
    n = len(pairs)
    _check_against(got[:n], wa[:n], wb[:n], lambda x, y: _sf_contract(sf.f32_mul, x, y))


# --------------------------------------------------------------------------- max / min / compare


def _py_value(bits: int) -> float:
    return struct.unpack(">f", int(bits).to_bytes(4, "big"))[0]


def _ref_max(a: int, b: int, take_max: bool) -> int:
    a, b = ftz_bits(a), ftz_bits(b)
    if is_nan(a) or is_nan(b):
        return CANON_NAN
    va, vb = _py_value(a), _py_value(b)
    if va == vb:  # only the zero signs can differ: -0 < +0
        neg_a = math.copysign(1.0, va) < 0
        return (b if neg_a else a) if take_max else (a if neg_a else b)
    return (a if va > vb else b) if take_max else (a if va < vb else b)


def test_f32_max_min_semantics():
    a, b = _binary_cases(12, 1500)
    got_max = _bits(fp.f32_max(_f32(a), _f32(b)))
    got_min = _bits(fp.f32_min(_f32(a), _f32(b)))
    _check_against(got_max, a, b, lambda x, y: _ref_max(x, y, True))
    _check_against(got_min, a, b, lambda x, y: _ref_max(x, y, False))
    # Named: order independence of the zero signs, NaN wins, FTZ.
    for x, y in [(0x80000000, 0x00000000), (0x00000000, 0x80000000)]:
        assert int(_bits(fp.f32_max(_f32(x), _f32(y)))) == 0x00000000
        assert int(_bits(fp.f32_min(_f32(x), _f32(y)))) == 0x80000000
    assert int(_bits(fp.f32_max(_f32(0x7F800000), _f32(0xFFC00001)))) == CANON_NAN
    assert int(_bits(fp.f32_min(_f32(0xFF800000), _f32(0x7FC00000)))) == CANON_NAN
    assert int(_bits(fp.f32_max(_f32(0x807FFFFF), _f32(0x00000001)))) == 0x00000000
    assert int(_bits(fp.f32_min(_f32(0x807FFFFF), _f32(0x00000001)))) == 0x80000000


def test_f32_order_key_is_a_total_order_on_non_nan():
    rng = np.random.default_rng(13)
    bits = np.concatenate([np.array(F32_CORNERS, np.uint32),
                           rng.integers(0, 1 << 32, 5000, dtype=np.uint32)])
    bits = np.array([ftz_bits(int(x)) for x in bits if not is_nan(ftz_bits(int(x)))], np.uint32)
    bits = np.unique(bits)
    # Independent order: by value, then -0 before +0.
    order = sorted(bits.tolist(), key=lambda x: (_py_value(x), not (x & SIGN)))
    keys = fp.f32_order_key(_f32(np.array(order, np.uint32)))
    assert np.all(np.diff(keys) > 0)
    # Subnormals share the key of the signed zero they flush to.
    assert int(fp.f32_order_key(_f32(0x00000001))) == int(fp.f32_order_key(np.float32(0.0)))
    assert int(fp.f32_order_key(_f32(0x807FFFFF))) == int(fp.f32_order_key(np.float32(-0.0)))
    assert int(fp.f32_order_key(np.float32(-0.0))) < int(fp.f32_order_key(np.float32(0.0)))


def test_f32_lt_eq_match_softfloat_quiet_compares():
    a, b = _binary_cases(14, 800)
    lt = fp.f32_lt(_f32(a), _f32(b))
    eq = fp.f32_eq(_f32(a), _f32(b))
    assert lt.dtype == np.bool_ and eq.dtype == np.bool_
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        fx, fy = _sf32(ftz_bits(int(x))), _sf32(ftz_bits(int(y)))
        assert bool(lt[i]) == sf.f32_lt_quiet(fx, fy), (x, y)
        assert bool(eq[i]) == sf.f32_eq(fx, fy), (x, y)
    assert bool(fp.f32_eq(np.float32(-0.0), np.float32(0.0)))
    assert not bool(fp.f32_lt(np.float32(-0.0), np.float32(0.0)))
    assert not bool(fp.f32_eq(_f32(CANON_NAN), _f32(CANON_NAN)))
    assert bool(fp.f32_eq(_f32(0x00000001), _f32(0x80000002)))  # both flush to zero
    assert not bool(fp.f32_lt(_f32(0x00000001), _f32(0x00000002)))


# --------------------------------------------------------------------------- PE accumulate


def _ref_pe_accumulate(a: np.ndarray, b: np.ndarray, acc_bits: np.ndarray | None) -> np.ndarray:
    """Plain loop: exact product, rounded per contract, then per-step fp32 RNE/FTZ addition."""
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n), np.uint32)
    for i in range(m):
        for j in range(n):
            s = 0 if acc_bits is None else ftz_bits(int(acc_bits[i, j]))
            for t in range(k):
                p = ref_mul(int(a[i, t]) << 16, int(b[t, j]) << 16)
                s = ref_add(s, p)
            out[i, j] = s
    return out


def _ref_f32_to_bf16(bits: np.ndarray) -> np.ndarray:
    """Reference fp32 → bf16 from the exact value (bf16 shares fp32's exponent range)."""
    out = np.zeros(bits.shape, np.uint16)
    for idx, x in np.ndenumerate(bits):
        x = ftz_bits(int(x))
        if is_nan(x):
            out[idx] = BF16_NAN
        elif (x & 0x7F800000) == 0x7F800000 or (x & 0x7FFFFFFF) == 0:
            out[idx] = x >> 16
        else:
            out[idx] = _bf16_round_bits(x)
    return out


def _bf16_round_bits(x: int) -> int:
    """Reference bf16 RNE from the exact value: nearest multiple of the bf16 ulp, ties to even."""
    v = to_fraction(x)
    sign = 0x8000 if v < 0 else 0
    v = abs(v)
    e = v.numerator.bit_length() - v.denominator.bit_length()
    while v >= 2**e:
        e += 1
    while v < 2 ** (e - 1):
        e -= 1
    ulp = Fraction(2) ** (e - 1 - 7)  # 8 significant bits in [2**(e-1), 2**e)
    q = v / ulp
    m = q.numerator // q.denominator
    rest = q - m
    if rest > 0.5 or (rest == 0.5 and m % 2):
        m += 1
    value = m * ulp
    f32 = round_to_f32_bits(value)  # exact: value has ≤ 9 bits; may be Inf on overflow
    return sign | (f32 >> 16)


def _bf16_values(rng, shape, exp_lo=110, exp_hi=140) -> np.ndarray:
    sign = rng.integers(0, 2, shape, dtype=np.uint16) << 15
    exp = rng.integers(exp_lo, exp_hi + 1, shape, dtype=np.uint16) << 7
    frac = rng.integers(0, 1 << 7, shape, dtype=np.uint16)
    return (sign | exp | frac).astype(np.uint16)


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (3, 1, 2), (4, 7, 3), (2, 40, 5)])
def test_pe_accumulate_matches_sequential_reference(m, k, n):
    rng = np.random.default_rng(100 + k)
    a = _bf16_values(rng, (m, k))
    b = _bf16_values(rng, (k, n))
    got = _bits(fp.pe_accumulate(a, b))
    assert got.shape == (m, n)
    np.testing.assert_array_equal(got, _ref_pe_accumulate(a, b, None))
    np.testing.assert_array_equal(fp.pe_matmul(a, b), _ref_f32_to_bf16(got))


def test_pe_accumulate_with_init_and_specials():
    rng = np.random.default_rng(15)
    m, k, n = 4, 9, 4
    a = _bf16_values(rng, (m, k), 100, 150)
    b = _bf16_values(rng, (k, n), 100, 150)
    # Sprinkle every bf16 corner class into the operands.
    a.flat[rng.choice(a.size, 8, replace=False)] = [0x0000, 0x8000, 0x0001, 0x7F80, 0xFF80,
                                                    0x7FC1, 0x807F, 0x7F7F]
    b.flat[rng.choice(b.size, 6, replace=False)] = [0x8000, 0x7F7F, 0xFF7F, 0x0040, 0x0080,
                                                    0xFFC0]
    acc = _random_normals(rng, m * n, 110, 140).reshape(m, n)
    acc.flat[:4] = [0x80000000, 0x00000001, 0x7F800000, 0x807FFFFF]
    got = _bits(fp.pe_accumulate(a, b, _f32(acc)))
    np.testing.assert_array_equal(got, _ref_pe_accumulate(a, b, acc))
    np.testing.assert_array_equal(fp.pe_matmul(a, b, _f32(acc)), _ref_f32_to_bf16(got))


def test_pe_accumulate_overflow_cancellation_and_zero_signs():
    # K=2 rows: big products overflowing, exact cancellation (+0), -0 products from +0 start.
    big = 0x7F00  # 2**127
    a = np.array([[big, big], [0x3F80, 0xBF80], [0x8000, 0x8000], [0x3F80, 0x0000]], np.uint16)
    b = np.array([[0x4000, 0xBF80], [0x3F80, 0x3F80]], np.uint16)
    got = _bits(fp.pe_accumulate(a, b))
    np.testing.assert_array_equal(got, _ref_pe_accumulate(a, b, None))
    # Worked by hand: row 0 col 0 = 2**128 (Inf) + 2**127 = Inf; row 0 col 1 = -2**127 + 2**127.
    assert got[0, 0] == 0x7F800000 and got[0, 1] == 0x00000000
    assert got[1, 0] == 0x3F800000  # 2 - 1 = 1
    assert got[2, 0] == 0x00000000  # +0 + (-0) + (-0) = +0 (start value is +0)
    # An initial -0 stays -0 through -0 products.
    acc = _f32(np.full((4, 2), 0x80000000, np.uint32))
    got = _bits(fp.pe_accumulate(a[2:3], b, acc[2:3]))
    assert got[0, 0] == 0x80000000


def test_pe_accumulate_rejects_bad_shapes():
    a = np.zeros((2, 3), np.uint16)
    with pytest.raises(ValueError, match=r"A\[M,K\]"):
        fp.pe_accumulate(a, np.zeros((4, 2), np.uint16))
    with pytest.raises(ValueError, match=r"A\[M,K\]"):
        fp.pe_accumulate(np.zeros(3, np.uint16), np.zeros((3, 2), np.uint16))
