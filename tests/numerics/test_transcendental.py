"""exp / exp2 / reciprocal / rsqrt / sigmoid golden models against independent references.

References: float64 numpy (ulp errors), Berkeley SoftFloat (``softfloatpy``: correctly rounded
fp32 division, binary128 square root), exact integer arithmetic, and the f64_ref helpers.
The bounds asserted here are the ones docs/numerics.md states.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import softfloatpy as sf

from unified_engine.numerics import transcendental as tr
from unified_engine.numerics.fp import f32_to_bf16

from .f64_ref import (
    F32_FLUSH_MIDPOINT,
    F32_MIN_NORMAL,
    F32_OVERFLOW_MIDPOINT,
    bf16_rne,
    f32_bits,
    flush_f32,
    sigmoid64,
    ulp_error,
)

# Bounds stated in the docs (measured maxima in parentheses there).
EXP_MAX_ULP = 0.57  # exp, exp2 with the default tables: analytic 0.5695 (measured 0.5603)
SIGMOID_MAX_ULP = 2.64  # analytic bound of the unit composition (measured 2.46)
BF16_CORRECT_MIN = 0.9999  # fraction of outputs whose bf16 rounding is the correct bf16

CANON_NAN = 0x7FC00000
NAN_INPUTS = f32_bits([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x7FA5A5A5])

# Every bf16 bit pattern widened to fp32, subnormals read as zero (the contract's input rule).
BF16_SWEEP = flush_f32(f32_bits(np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)))


def random_bits(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return flush_f32(f32_bits(rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)))


def f64(x) -> np.ndarray:
    """float32 → float64 (quietly: signalling-NaN inputs raise 'invalid' on the cast)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(x, dtype=np.float32).astype(np.float64)


def exp64(x) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.exp(f64(x))


def bits_of(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def assert_bits(got, expected_bits) -> None:
    got_bits = bits_of(got)
    expected = np.broadcast_to(np.asarray(expected_bits, dtype=np.uint32), got_bits.shape)
    bad = np.flatnonzero(got_bits.ravel() != expected.ravel())
    assert bad.size == 0, (
        f"{bad.size} mismatches, first: got {got_bits.ravel()[bad[0]]:#010x}, "
        f"expected {expected.ravel()[bad[0]]:#010x}"
    )


def measure(model_out, ref64) -> tuple[np.ndarray, np.ndarray]:
    """(ulp errors, bf16-correct flags) over the outputs whose reference is a normal fp32."""
    ref64 = np.asarray(ref64, dtype=np.float64)
    normal = np.isfinite(ref64) & (np.abs(ref64) >= F32_MIN_NORMAL) & (
        np.abs(ref64) < F32_OVERFLOW_MIDPOINT
    )
    y = np.asarray(model_out)[normal]
    errs = ulp_error(y, ref64[normal])
    bf16_ok = f32_to_bf16(y) == bf16_rne(ref64[normal])
    return errs, bf16_ok


# --- SoftFloat references ---------------------------------------------------------------------


def _sf32(bits: int) -> sf.Float32:
    return sf.Float32.from_bytes(int(bits).to_bytes(4, "big"))


def _bits(value) -> int:
    return int.from_bytes(value.to_bytes(), "big")


def softfloat_reciprocal(xs) -> np.ndarray:
    """IEEE 1/x, correctly rounded by SoftFloat (subnormal results as IEEE gives them)."""
    one = _sf32(0x3F800000)
    return np.array([_bits(sf.f32_div(one, _sf32(b))) for b in bits_of(xs)], dtype=np.uint32)


def softfloat_rsqrt(xs) -> np.ndarray:
    """Correctly rounded fp32 1/sqrt(x) for positive normal x: 1/sqrt in binary128 (error
    ~2**-112) then one rounding to fp32.  A fp32 midpoint m has |x·m² - 1| >= 2**-74 (an
    integer residual), so the binary128 value is always on the correct side of it."""
    one = sf.Float128.from_float(1.0)
    out = [
        _bits(sf.f128_to_f32(sf.f128_div(one, sf.f128_sqrt(sf.f32_to_f128(_sf32(b))))))
        for b in bits_of(xs)
    ]
    return np.array(out, dtype=np.uint32)


def test_softfloat_rounds_to_nearest_even():
    assert sf.get_rounding_mode() == sf.RoundingMode.NEAR_EVEN


# --- tables and constants ---------------------------------------------------------------------


def test_log2e_constant():
    lval = tr.log2e_fixed()
    assert lval < 1 << 40  # the 24 × 40-bit product stays below 2**64
    assert abs(lval / 2.0**39 - 1.0 / math.log(2.0)) <= 2.0**-40 + 2.0**-52


@pytest.mark.parametrize("bits", [6, 8])
def test_exp2_table_entries_are_correctly_rounded(bits):
    table = tr.exp2_table(bits)
    size = 1 << bits
    assert len(table) == size and table[0] == 1 << 32 and all(v < 1 << 33 for v in table)
    for i, v in enumerate(table):
        # round-to-nearest of 2**(32 + i/size): (v - 1/2)**size < 2**(32·size + i) < (v + 1/2)**size
        target = 1 << (33 * size + i)  # 2**size · 2**(32·size + i)
        assert (2 * v - 1) ** size < target < (2 * v + 1) ** size, i


def test_exp2_poly_coefficients_are_taylor():
    coeffs = tr.exp2_poly_coefficients(3)
    ln2 = math.log(2.0)
    for k, c in enumerate(coeffs, start=1):
        assert abs(c - ln2**k / math.factorial(k) * 2.0**32) <= 0.5 + 1e-6
    assert tr.exp2_poly_coefficients(2) == coeffs[:2]


@pytest.mark.parametrize("bits", [6, 7, 9])
def test_seed_tables_are_rounded_reciprocals(bits):
    s = tr.seed_frac_bits(bits)
    recip = tr.reciprocal_seed_table(bits)
    rs = tr.rsqrt_seed_table(bits)
    assert len(recip) == 1 << bits and len(rs) == 2 << bits
    for j in range(1 << bits):
        mid = 1.0 + (j + 0.5) / 2**bits
        assert abs(recip[j] - 2.0**s / mid) <= 0.5 + 1e-6
        assert abs(rs[j] - 2.0**s / math.sqrt(mid)) <= 0.5 + 1e-6
        assert abs(rs[(1 << bits) | j] - 2.0**s / math.sqrt(2 * mid)) <= 0.5 + 1e-6
    assert max(recip) < 1 << s and max(rs) < 1 << s


@pytest.mark.parametrize(
    ("func", "bad", "exc"),
    [
        (tr.exp2_table, 1, ValueError),
        (tr.exp2_table, 11, ValueError),
        (tr.exp2_table, 8.0, TypeError),
        (tr.exp2_poly_coefficients, 0, ValueError),
        (tr.exp2_poly_coefficients, True, TypeError),
        (tr.reciprocal_seed_table, 5, ValueError),
        (tr.rsqrt_seed_table, 13, ValueError),
    ],
)
def test_table_generators_validate(func, bad, exc):
    with pytest.raises(exc, match="allowed"):
        func(bad)


# --- input handling ---------------------------------------------------------------------------


@pytest.mark.parametrize("func", [tr.exp, tr.exp2, tr.reciprocal, tr.rsqrt, tr.sigmoid])
def test_input_validation_and_shapes(func):
    with pytest.raises(ValueError, match="not exactly representable in fp32"):
        func(np.array([0.1, 0.5]))  # 0.1 (float64) is not an fp32 value
    with pytest.raises(ValueError, match="not exactly representable"):
        func(np.array([2**24 + 1]))
    with pytest.raises(TypeError, match="fp32 values"):
        func(np.array(["1.0"]))
    with pytest.raises(TypeError, match="fp32 values"):
        func(np.array([True]))
    x = np.float32([[0.5, 2.0, 3.0], [4.0, 0.25, 1.0]])
    assert func(x).shape == (2, 3) and func(x).dtype == np.float32
    assert func(np.float32(2.0)).shape == ()
    # Exactly representable float64 and int inputs equal their float32 counterparts.
    assert_bits(func(f64(x)), bits_of(func(x)))
    assert_bits(func(np.array([1, 2, 4])), bits_of(func(np.float32([1, 2, 4]))))


@pytest.mark.parametrize(
    "kwargs", [{"table_bits": 1}, {"table_bits": 11}, {"degree": 5}, {"table_bits": "8"}]
)
def test_exp_parameter_validation(kwargs):
    with pytest.raises((ValueError, TypeError), match="allowed"):
        tr.exp(np.float32(1.0), **kwargs)


# --- exp / exp2 -------------------------------------------------------------------------------


def test_exp_special_cases():
    x = f32_bits([0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F800000, 0xFF800000])
    assert_bits(tr.exp(x), [0x3F800000, 0x3F800000, 0x3F800000, 0x3F800000, 0x7F800000, 0])
    assert_bits(tr.exp(NAN_INPUTS), CANON_NAN)
    assert_bits(tr.exp2(NAN_INPUTS), CANON_NAN)
    big = np.float32([128.0, 1e30, 3.4028235e38, 100.0, 89.0])
    assert_bits(tr.exp(big), 0x7F800000)
    assert_bits(tr.exp(-big), 0)  # +0, never -0
    assert_bits(tr.exp2(np.float32([128.0, 256.0, 1e30])), 0x7F800000)
    assert_bits(tr.exp2(np.float32([-127.0, -150.0, -256.0, -1e30])), 0)


def _threshold_scan(lo_bits: int, hi_bits: int) -> np.ndarray:
    return f32_bits(np.arange(lo_bits, hi_bits, dtype=np.uint32))


def test_exp_overflow_threshold_matches_float64_both_sides():
    x = _threshold_scan(0x42B16000, 0x42B18000)  # 88.69 … 88.75
    expect_inf = exp64(x) >= F32_OVERFLOW_MIDPOINT
    got_inf = np.isinf(tr.exp(x))
    assert np.array_equal(got_inf, expect_inf)
    # The documented threshold: 0x42B17217 is the largest input with a finite result.
    assert np.isfinite(tr.exp(f32_bits(0x42B17217))) and np.isinf(tr.exp(f32_bits(0x42B17218)))
    assert expect_inf.any() and not expect_inf.all()


def test_exp_flush_threshold_matches_float64_both_sides():
    x = _threshold_scan(0xC2AE9000, 0xC2AEC000)  # -87.29 … -87.38
    expect_zero = exp64(x) < F32_FLUSH_MIDPOINT
    y = tr.exp(x)
    assert np.array_equal(y == 0, expect_zero)
    assert np.all(bits_of(y[~expect_zero]) >= 0x00800000)  # survivors are normal
    # Documented: 0xC2AEAC4F is the most negative input with a nonzero (normal) result.
    assert tr.exp(f32_bits(0xC2AEAC4F)) > 0 and tr.exp(f32_bits(0xC2AEAC50)) == 0
    assert expect_zero.any() and not expect_zero.all()


def test_exp_bf16_sweep():
    errs, bf16_ok = measure(tr.exp(BF16_SWEEP), exp64(BF16_SWEEP))
    assert errs.size > 30000
    assert errs.max() <= EXP_MAX_ULP
    assert bf16_ok.mean() >= BF16_CORRECT_MIN


def test_exp_random():
    rng = np.random.default_rng(11)
    in_range = rng.uniform(-87.3, 88.7, 100_000).astype(np.float32)
    anything = random_bits(100_000, 12)
    x = np.concatenate([in_range, anything])
    y = tr.exp(x)
    ref = exp64(x)
    errs, bf16_ok = measure(y, ref)
    assert errs.max() <= EXP_MAX_ULP
    assert bf16_ok.mean() >= BF16_CORRECT_MIN
    # Outside the normal range the classes agree with the rounded reference.
    assert np.array_equal(np.isinf(y), ref >= F32_OVERFLOW_MIDPOINT)
    assert np.array_equal(y == 0, ref < F32_FLUSH_MIDPOINT)


def test_exp_small_arguments():
    # |x| from 2**-40 to 2**-6, where the result is 1 ± a few ulps and t is mostly fraction.
    mags = f32_bits(np.arange(0x2B800000, 0x3C800000, 997, dtype=np.uint32))
    x = np.concatenate([mags, -mags])
    errs, _ = measure(tr.exp(x), exp64(x))
    assert errs.max() <= EXP_MAX_ULP


def test_exp_datapath_stays_below_two():
    # y = T[i]·(1 + p(r)) must stay in [2**32, 2**33) for the 9-bit rounding of step 6; the
    # largest r of every table slot is the worst case (p is increasing in r).
    tb = tr.DEFAULT_EXP_TABLE_BITS
    i = np.arange(1 << tb, dtype=np.int64)
    for r in (0, (1 << (32 - tb)) - 1):
        n, y = tr._exp2_fixed((i << (32 - tb)) | r, tb, tr.DEFAULT_EXP_DEGREE)
        assert np.all(n == 0) and np.all(y >= 1 << 32) and np.all(y < 1 << 33)


@pytest.mark.parametrize(("table_bits", "degree"), [(6, 3), (4, 4), (7, 2)])
def test_exp_other_table_sizes(table_bits, degree):
    # Analytic bounds 0.53, 0.54 and 0.96 ulp; the test holds them to 1 ulp.
    rng = np.random.default_rng(13)
    x = np.concatenate([BF16_SWEEP, rng.uniform(-87.3, 88.7, 50_000).astype(np.float32)])
    ref = exp64(x)
    errs, _ = measure(tr.exp(x, table_bits=table_bits, degree=degree), ref)
    assert errs.max() <= 1.0


def test_exp_linear_interpolation_is_not_enough():
    # Table + linear term (degree 1) misses the 2-ulp target: the parameters really matter.
    x = np.linspace(-80, 80, 20_001, dtype=np.float32)
    errs, _ = measure(tr.exp(x, degree=1), exp64(x))
    assert errs.max() > 2.0


def test_exp2_integers_are_exact():
    k = np.arange(-126, 128)
    assert_bits(tr.exp2(k.astype(np.float32)), ((k + 127) << 23).astype(np.uint32))


def test_exp2_random():
    rng = np.random.default_rng(14)
    uniform = rng.uniform(-126.0, 128.0, 100_000).astype(np.float32)
    x = np.concatenate([BF16_SWEEP, uniform, random_bits(50_000, 15)])
    y = tr.exp2(x)
    with np.errstate(over="ignore"):
        ref = np.exp2(f64(x))
    errs, bf16_ok = measure(y, ref)
    assert errs.max() <= EXP_MAX_ULP
    assert bf16_ok.mean() >= BF16_CORRECT_MIN
    assert np.array_equal(np.isinf(y), ref >= F32_OVERFLOW_MIDPOINT)
    assert np.array_equal(y == 0, ref < F32_FLUSH_MIDPOINT)


@pytest.mark.slow
def test_exp_dense_sweep():
    """Every 61st fp32 value with |x| in [2**-30, 128): ~ 27 M inputs."""
    worst = 0.0
    for lo, hi in ((0x30800000, 0x43000000), (0xB0800000, 0xC3000000)):
        for start in range(lo, hi, 61 * 1_000_000):
            x = f32_bits(np.arange(start, min(start + 61 * 1_000_000, hi), 61, dtype=np.uint32))
            ref = exp64(x)
            errs, _ = measure(tr.exp(x), ref)
            worst = max(worst, float(errs.max(initial=0.0)))
    assert worst <= EXP_MAX_ULP


# --- reciprocal -------------------------------------------------------------------------------


def test_reciprocal_special_cases():
    x = f32_bits([0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F800000, 0xFF800000])
    assert_bits(tr.reciprocal(x), [0x7F800000, 0xFF800000, 0x7F800000, 0xFF800000, 0, 0x80000000])
    assert_bits(tr.reciprocal(NAN_INPUTS), CANON_NAN)


def test_reciprocal_range_ends():
    x = f32_bits([0x00800000, 0x80800000, 0x7E800000, 0x7E800001, 0x7F7FFFFF, 0xFF7FFFFF])
    # 1/2**-126 = 2**126; 1/2**126 = 2**-126 (normal); anything above 2**126 flushes (signed).
    assert_bits(tr.reciprocal(x), [0x7E800000, 0xFE800000, 0x00800000, 0, 0, 0x80000000])


def test_reciprocal_powers_of_two_are_exact():
    k = np.arange(-126, 127)
    x = np.ldexp(np.float32(1.0), k).astype(np.float32)
    assert_bits(tr.reciprocal(x), ((127 - k) << 23).astype(np.uint32))
    assert_bits(tr.reciprocal(-x), ((127 - k) << 23).astype(np.uint32) | np.uint32(0x80000000))


def test_reciprocal_bf16_sweep_matches_softfloat():
    x = BF16_SWEEP[np.isfinite(BF16_SWEEP) & (BF16_SWEEP != 0)]
    ieee = softfloat_reciprocal(x)
    got = tr.reciprocal(x)
    normal = (ieee & 0x7F800000) != 0
    assert_bits(got[normal], ieee[normal])
    # IEEE subnormal results (|x| > 2**126) are flushed to a signed zero.
    assert_bits(got[~normal], ieee[~normal] & 0x80000000)
    errs, bf16_ok = measure(got, 1.0 / f64(x))
    assert errs.max() <= 0.5 and bf16_ok.all()


@pytest.mark.parametrize("table_bits", [6, 7, 10])
def test_reciprocal_random_is_correctly_rounded(table_bits):
    x = random_bits(100_000, 21)
    x = x[np.isfinite(x) & (x != 0)]
    got = tr.reciprocal(x, table_bits=table_bits)
    # float64 1/x is never within 2**-53 (relative) of an fp32 midpoint -- the midpoint test
    # 2**48 - m·(2q+1) is a nonzero integer -- so one more rounding gives the correct fp32.
    ref = 1.0 / f64(x)
    normal = np.abs(ref) >= F32_FLUSH_MIDPOINT
    assert_bits(got[normal], bits_of(ref[normal].astype(np.float32)))
    assert_bits(got[~normal], bits_of(x[~normal]) & np.uint32(0x80000000))
    sample = x[:5000]
    ieee = softfloat_reciprocal(sample)
    keep = (ieee & 0x7F800000) != 0
    assert_bits(tr.reciprocal(sample, table_bits=table_bits)[keep], ieee[keep])


def _reciprocal_mantissa_check(man: np.ndarray, table_bits: int) -> None:
    m = 1.0 + man / 2.0**23
    y = tr._reciprocal_newton(man, table_bits) / 2.0**32
    # Step 4 needs the Newton iterate within 2**-25 of 1/m; the docs state 2**-27.
    assert np.abs(y - 1.0 / m).max() < 2.0**-27
    x = f32_bits((np.uint32(127) << np.uint32(23)) | man.astype(np.uint32))
    assert_bits(tr.reciprocal(x, table_bits=table_bits), bits_of((1.0 / m).astype(np.float32)))


@pytest.mark.parametrize("table_bits", [pytest.param(6, marks=pytest.mark.slow), 7])
def test_reciprocal_all_mantissas(table_bits):
    """Every 23-bit mantissa: correct rounding for every normal input with a normal result."""
    for start in range(0, 1 << 23, 1 << 21):
        _reciprocal_mantissa_check(np.arange(start, start + (1 << 21), dtype=np.int64), table_bits)


# --- rsqrt ------------------------------------------------------------------------------------


def test_rsqrt_special_cases():
    x = f32_bits(
        [0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F800000, 0xFF800000, 0xBF800000,
         0x80800000, 0xFF7FFFFF]
    )
    expected = [0x7F800000, 0xFF800000, 0x7F800000, 0xFF800000, 0, CANON_NAN, CANON_NAN,
                CANON_NAN, CANON_NAN]
    assert_bits(tr.rsqrt(x), expected)
    assert_bits(tr.rsqrt(NAN_INPUTS), CANON_NAN)


def test_rsqrt_exact_cases_and_range_ends():
    k = np.arange(-63, 64)
    x = np.ldexp(np.float32(1.0), 2 * k).astype(np.float32)  # 4**k
    assert_bits(tr.rsqrt(x), ((127 - k) << 23).astype(np.uint32))
    # 1/sqrt(2**-126) = 2**63; 1/sqrt(FLT_MAX) ≈ 5.42e-20 (normal, checked against SoftFloat).
    ends = f32_bits([0x00800000, 0x7F7FFFFF, 0x00800001, 0x7F000000])
    assert_bits(tr.rsqrt(ends), softfloat_rsqrt(ends))
    assert bits_of(tr.rsqrt(ends))[0] == 0x5F000000


def test_rsqrt_bf16_sweep_matches_softfloat():
    x = BF16_SWEEP[np.isfinite(BF16_SWEEP) & (BF16_SWEEP > 0)]
    got = tr.rsqrt(x)
    assert_bits(got, softfloat_rsqrt(x))
    errs, bf16_ok = measure(got, 1.0 / np.sqrt(f64(x)))
    assert errs.max() <= 0.5 and bf16_ok.all()


@pytest.mark.parametrize("table_bits", [6, 7, 10])
def test_rsqrt_random_is_correctly_rounded(table_bits):
    x = np.abs(random_bits(100_000, 31))
    x = x[np.isfinite(x) & (x > 0)]
    assert_bits(tr.rsqrt(x, table_bits=table_bits), softfloat_rsqrt(x))


def _rsqrt_exact_round(a_num: int, a_den: int) -> int:
    """Correctly rounded 24-bit significand q (2**23 <= q <= 2**24) of 2**24/sqrt(a)."""
    # q = nearest integer to sqrt(2**48 · a_den / a_num); no ties (irrational or integral).
    val = Fraction(1 << 48) * a_den / a_num
    k = math.isqrt(val.numerator // val.denominator)
    return k + 1 if Fraction((2 * k + 1) ** 2, 4) <= val else k


def _rsqrt_mantissa_check(man: np.ndarray, table_bits: int) -> None:
    for parity in (0, 1):
        a = (1.0 + man / 2.0**23) * 2**parity
        y = tr._rsqrt_newton(np.full_like(man, parity), man, table_bits) / 2.0**31
        assert np.abs(y - 1.0 / np.sqrt(a)).max() < 2.0**-27  # step 4 needs < 2**-25
        x = f32_bits(((127 + parity) << 23) | man.astype(np.uint32))  # 2**parity · 1.m
        got = bits_of(tr.rsqrt(x, table_bits=table_bits))
        # The result is in (0.5, 1]: its significand in units of 2**-24 (2**24 for 1.0).
        sig = np.where(got == 0x3F800000, 1 << 24, (got & 0x7FFFFF) | 0x800000).astype(np.int64)
        assert np.all((got >> 23) == np.where(got == 0x3F800000, 127, 126))
        # float64 decides every case more than 2**-20 away from a midpoint; the rest exactly.
        pos = 2.0**24 / np.sqrt(a)
        assert np.all(np.abs(pos - sig) <= 0.5 + 2.0**-20)
        for idx in np.flatnonzero(np.abs(np.abs(pos - sig) - 0.5) <= 2.0**-20):
            a_num = ((1 << 23) + int(man[idx])) << parity
            assert _rsqrt_exact_round(a_num, 1 << 23) == int(sig[idx])


@pytest.mark.parametrize("table_bits", [pytest.param(6, marks=pytest.mark.slow), 7])
def test_rsqrt_all_mantissas(table_bits):
    """Every (parity, 23-bit mantissa): correct rounding for every positive normal input."""
    for start in range(0, 1 << 23, 1 << 21):
        _rsqrt_mantissa_check(np.arange(start, start + (1 << 21), dtype=np.int64), table_bits)


# --- sigmoid ----------------------------------------------------------------------------------


def test_sigmoid_special_cases_and_saturation():
    x = f32_bits([0x00000000, 0x80000000, 0x00000001, 0x7F800000, 0xFF800000])
    assert_bits(tr.sigmoid(x), [0x3F000000, 0x3F000000, 0x3F000000, 0x3F800000, 0])
    assert_bits(tr.sigmoid(NAN_INPUTS), CANON_NAN)
    # Where the correctly rounded logistic is 1.0 (x >= 25·ln 2) the unit returns exactly 1.0;
    # where it flushes (below about -87.34) and beyond exp's overflow, exactly +0.
    assert_bits(tr.sigmoid(np.float32([17.33, 20.0, 100.0, 1e30, 3.4e38])), 0x3F800000)
    assert_bits(tr.sigmoid(np.float32([-87.5, -88.8, -100.0, -1e30, -3.4e38])), 0)
    # The thresholds the docs quote (each side of both).
    assert tr.sigmoid(f32_bits(0x41851592)) == 1.0 and tr.sigmoid(f32_bits(0x41851591)) < 1.0
    assert tr.sigmoid(f32_bits(0xC2AEAC4F)) > 0 and tr.sigmoid(f32_bits(0xC2AEAC50)) == 0


def test_sigmoid_flush_boundary():
    x = _threshold_scan(0xC2AE9000, 0xC2AEC000)  # -87.29 … -87.38, around 2**-126
    ref = sigmoid64(f64(x))
    y = tr.sigmoid(x)
    # Within the error bound of the threshold either class is allowed; outside it must match.
    margin = SIGMOID_MAX_ULP * 2.0**-23
    assert np.all(y[ref >= F32_MIN_NORMAL * (1 + margin)] > 0)
    assert np.all(y[ref < F32_MIN_NORMAL * (1 - margin)] == 0)
    assert np.all(bits_of(y) < 0x80000000)  # never negative


def test_sigmoid_accuracy():
    rng = np.random.default_rng(41)
    x = np.concatenate(
        [
            BF16_SWEEP,
            rng.uniform(-90.0, 20.0, 100_000).astype(np.float32),
            # [-17, -16): exp(-x) straddles 2**24 there, the composition's worst case.
            f32_bits(np.arange(0xC1800000, 0xC1880000, dtype=np.uint32)),
        ]
    )
    y = tr.sigmoid(x)
    errs, bf16_ok = measure(y, sigmoid64(f64(x)))
    assert errs.size > 500_000
    assert errs.max() <= SIGMOID_MAX_ULP
    assert bf16_ok.mean() >= BF16_CORRECT_MIN
    finite = ~np.isnan(x)
    assert np.all((y[finite] >= 0) & (y[finite] <= 1))


def test_sigmoid_is_monotonic_on_bf16_grid():
    xs = np.sort(BF16_SWEEP[np.isfinite(BF16_SWEEP)])
    assert np.all(np.diff(tr.sigmoid(xs).astype(np.float64)) >= 0)
