"""Tests of ``unified_engine.numerics.reduce`` (multi-input add, max tree, argmax top-4).

References are independent of the code under test: a scalar exact-rational model of the
multi_add definition, exact sums (Python integers scaled by 2**149 — every fp32 value is an
integer multiple of 2**-149), SoftFloat-checked ``fp.f32_add`` / ``fp.f32_max``, and sort-based
and streaming-insertion models of top-4. Expected values in named cases are worked out by hand.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import reduce

import numpy as np
import pytest

from unified_engine.numerics import fp
from unified_engine.numerics.reduce import (
    DEFAULT_GUARD_BITS,
    TOP4_FILL_INDEX,
    argmax_top4,
    max_reduce,
    multi_add,
    multi_add_adder_width,
    multi_add_error_bound,
)

from .exact_ref import (
    CANON_NAN,
    NEG_INF,
    POS_INF,
    SIGN,
    ftz_bits,
    is_inf,
    is_nan,
    round_to_f32_bits,
    to_fraction,
)

SPECIALS = np.array(
    [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC12345, 0x7F800001,
     0x00000001, 0x807FFFFF, 0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000,
     0xBF800000], np.uint32)


def _f32(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def _bits(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def _normals(rng, shape, exp_lo, exp_hi, positive=False) -> np.ndarray:
    sign = np.zeros(shape, np.uint32) if positive else rng.integers(0, 2, shape, np.uint32) << 31
    exp = rng.integers(exp_lo, exp_hi + 1, shape, dtype=np.uint32) << 23
    return (sign | exp | rng.integers(0, 1 << 23, shape, dtype=np.uint32)).astype(np.uint32)


def _mixed_rows(rng, rows: int, n: int) -> np.ndarray:
    """Bit patterns of rows covering the interesting distributions (no NaN/Inf)."""
    kind = rng.integers(0, 6, rows)
    out = np.empty((rows, n), np.uint32)
    for r in range(rows):
        k = kind[r]
        if k == 0:  # narrow exponent range: mostly exact alignment
            out[r] = _normals(rng, n, 125, 128)
        elif k == 1:  # wide exponent spread: many addends fully jammed
            out[r] = _normals(rng, n, 1, 254 - 10)
        elif k == 2:  # moderate spread, same sign
            out[r] = _normals(rng, n, 110, 140, positive=True)
        elif k == 3:  # massive cancellation: x, -x pairs plus a few small values
            half = _normals(rng, (n + 1) // 2, 120, 140)
            row = np.concatenate([half, half ^ np.uint32(SIGN)])[:n]
            row[rng.integers(0, n)] = _normals(rng, 1, 90, 125)[0]
            out[r] = rng.permutation(row)
        elif k == 4:  # tiny values near the flush threshold, subnormals and zeros
            row = _normals(rng, n, 1, 4)
            row[rng.random(n) < 0.3] = rng.integers(0, 1 << 23, dtype=np.uint32)
            row[rng.random(n) < 0.2] = rng.choice([0, SIGN])
            out[r] = row
        else:  # near overflow
            out[r] = _normals(rng, n, 250, 254)
    return out


# --------------------------------------------------------------------------- references


def _spec_multi_add(bits, g: int) -> int:
    """The multi_add definition, written over exact rationals (scalar, independent)."""
    bits = [ftz_bits(int(b)) for b in bits]
    if any(is_nan(b) for b in bits) or (POS_INF in bits and NEG_INF in bits):
        return CANON_NAN
    if POS_INF in bits:
        return POS_INF
    if NEG_INF in bits:
        return NEG_INF
    values = [to_fraction(b) for b in bits]
    nonzero = [v for v in values if v != 0]
    if not nonzero:
        return SIGN if all(b == SIGN for b in bits) else 0
    # Unbiased exponent of the largest input: |v| in [2**emax, 2**(emax + 1)).
    emax = max(math.frexp(float(v))[1] - 1 for v in nonzero)
    unit = Fraction(2) ** (emax - 23 - g)  # weight of the window's LSB
    total = 0
    for v in nonzero:
        q = abs(v) / unit
        a = q.numerator // q.denominator
        if a != q:
            a |= 1  # sticky jam
        total += a if v > 0 else -a
    return round_to_f32_bits(total * unit)


def _exact_sum_2p149(bits_row) -> int | None:
    """Exact sum of the FTZ'd finite inputs, in units of 2**-149 (None if any is not finite)."""
    total = 0
    for b in bits_row:
        b = ftz_bits(int(b))
        if is_nan(b) or is_inf(b):
            return None
        total += int(to_fraction(b) * 2**149)
    return total


def _check_rows(got: np.ndarray, rows: np.ndarray, ref) -> None:
    want = np.array([ref(r) for r in rows], np.uint32)
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = bad[0]
        row = " ".join(f"{int(b):08x}" for b in rows[i])
        pytest.fail(f"{bad.size} mismatches; first row [{row}]: got {got[i]:#010x}, "
                    f"want {want[i]:#010x}")


# --------------------------------------------------------------------------- multi_add


@pytest.mark.parametrize(("n", "g"), [(1, 3), (2, 3), (3, 0), (3, 3), (16, 3), (16, 1), (33, 8),
                                      (5, 24)])
def test_multi_add_matches_spec_reference(n, g):
    rng = np.random.default_rng(1000 * n + g)
    rows = _mixed_rows(rng, max(60, 1200 // n), n)
    # Sprinkle specials into some rows.
    sprinkle = rng.random(rows.shape) < 0.02
    rows[sprinkle] = rng.choice(SPECIALS, sprinkle.sum())
    got = _bits(multi_add(_f32(rows), guard_bits=g))
    _check_rows(got, rows, lambda r: _spec_multi_add(r, g))


def test_multi_add_of_two_equals_f32_add():
    """One normalisation and rounding of two addends with G = 3 is the correctly rounded sum."""
    rng = np.random.default_rng(2)
    a = rng.integers(0, 1 << 32, 40000, dtype=np.uint32)
    near = (a & np.uint32(0x7FFFFFFF)).astype(np.int64) + (rng.integers(-30, 30, a.size) << 23)
    near += rng.integers(-999, 999, a.size)
    b = near.clip(0, 0x7FFFFFFF).astype(np.uint32) | (rng.integers(0, 2, a.size, np.uint32) << 31)
    pairs = np.concatenate([np.stack([a, b], 1),
                            np.array(np.meshgrid(SPECIALS, SPECIALS)).reshape(2, -1).T])
    x = _f32(pairs)
    want = _bits(fp.f32_add(x[:, 0], x[:, 1]))
    np.testing.assert_array_equal(_bits(multi_add(x, guard_bits=3)), want)
    np.testing.assert_array_equal(_bits(multi_add(x, guard_bits=5)), want)
    # G = 2 is not enough: it must differ somewhere (documents why the default is 3).
    assert np.any(_bits(multi_add(x, guard_bits=2)) != want)


def test_multi_add_single_input_is_ftz():
    rng = np.random.default_rng(3)
    bits = np.concatenate([SPECIALS, rng.integers(0, 1 << 32, 5000, dtype=np.uint32)])
    got = _bits(multi_add(_f32(bits)[:, None]))
    np.testing.assert_array_equal(got, [ftz_bits(int(b)) for b in bits])


def test_multi_add_correctly_rounded_when_no_bits_are_lost():
    """If every nonzero input is within G binades of the largest, alignment is exact."""
    rng = np.random.default_rng(4)
    for n in (3, 8, 64):
        rows = _normals(rng, (200, n), 124, 124 + DEFAULT_GUARD_BITS)
        got = _bits(multi_add(_f32(rows)))
        want = [round_to_f32_bits(sum(to_fraction(int(b)) for b in r)) for r in rows]
        np.testing.assert_array_equal(got, want)


def test_multi_add_is_order_independent():
    rng = np.random.default_rng(5)
    rows = _mixed_rows(rng, 300, 24)
    rows[rng.random(rows.shape) < 0.01] = 0x7F800000
    base = _bits(multi_add(_f32(rows)))
    for _ in range(4):
        perm = rng.permuted(rows, axis=1)
        np.testing.assert_array_equal(_bits(multi_add(_f32(perm))), base)
    # Any axis, any batch layout: transpose and reduce along axis 0.
    np.testing.assert_array_equal(_bits(multi_add(_f32(rows.T.copy()), axis=0)), base)


def test_multi_add_all_equal_values_are_exact():
    rng = np.random.default_rng(6)
    for n in (2, 4, 16, 1024):
        x = _normals(rng, 100, 100, 150)
        rows = np.repeat(x[:, None], n, axis=1)
        want = (_f32(x).astype(np.float64) * n).astype(np.float32)  # exact: n is a power of 2
        np.testing.assert_array_equal(_bits(multi_add(_f32(rows))), _bits(want))


@pytest.mark.parametrize(
    ("inputs", "want"),
    [
        ([0x80000000, 0x80000000, 0x80000000], 0x80000000),  # all -0 → -0
        ([0x80000000, 0x00000000], 0x00000000),              # -0 + +0 → +0
        ([0x807FFFFF, 0x80000001], 0x80000000),              # negative subnormals are -0
        ([0x3F800000, 0xBF800000], 0x00000000),              # x + (-x) → +0
        ([0x7F800000, 0x3F800000], 0x7F800000),
        ([0xFF800000, 0x3F800000, 0xFF800000], 0xFF800000),
        ([0x7F800000, 0xFF800000], CANON_NAN),               # +Inf and -Inf
        ([0x7F800001, 0x7F800000], CANON_NAN),
        ([0x3F800000, 0xFFC12345], CANON_NAN),
        ([0x7F7FFFFF, 0x7F7FFFFF], 0x7F800000),              # overflow
        ([0xFF7FFFFF, 0xFF7FFFFF, 0x7F7FFFFF], 0xFF7FFFFF),   # no overflow: one rounding
        ([0x7F7FFFFF, 0x7F7FFFFF, 0xFF7FFFFF], 0x7F7FFFFF),
        ([0x3F800000, 0x33800000], 0x3F800000),              # 1 + 2**-24: tie to even
        ([0x3F800001, 0x33800000], 0x3F800002),              # odd + tie: up
        ([0x3F800000, 0x33800000, 0x33800000], 0x3F800001),  # 1 + 2**-23 exactly
        ([0x00C00000, 0x80800000], 0x00000000),              # 2**-127: flushed, sign +
        ([0x80C00000, 0x00800000], 0x80000000),              # ... sign -
        # 2**20 - 2**20 + (1 + 2**-23): window LSB is 2**-6, so 1 + 2**-23 is jammed to
        # 65·2**-6 and nothing cancels it back: the documented non-faithful cancellation case.
        ([0x49800000, 0xC9800000, 0x3F800001], 0x3F820000),
        # 1 + 15 · 2**-100 (G = 3): each tiny addend is jammed to one unit (2**-26), the sum
        # 2**26 + 15 rounds to 1 + 2**-22: two ulps above the exact sum, within the bound.
        ([0x3F800000] + [0x0D800000] * 15, 0x3F800002),
    ],
)
def test_multi_add_named_cases(inputs, want):
    got = int(_bits(multi_add(_f32(np.array(inputs, np.uint32)))))
    assert got == want, f"got {got:#010x}, want {want:#010x}"
    assert _spec_multi_add(inputs, DEFAULT_GUARD_BITS) == want  # the reference agrees by hand


def _error_stats(rows: np.ndarray, g: int):
    """(max |err| / a-priori bound, max |err| / returned bound, max err in ulps of the result)."""
    got = _bits(multi_add(_f32(rows), guard_bits=g))
    bound = multi_add_error_bound(_f32(rows), guard_bits=g)
    worst_apriori = worst_returned = worst_ulps = 0.0
    n = rows.shape[1]
    for r, res, bnd in zip(rows, got, bound, strict=True):
        exact = _exact_sum_2p149(r)
        if exact is None or is_inf(int(res)) or is_nan(int(res)):
            continue
        err = abs(Fraction(exact, 2**149) - to_fraction(int(res)))
        # A-priori bound from the inputs and the result alone:
        # 0.5·ulp(r) (2**-126 for a zero result) + (n - 1)·2**(emax - 23 - g).
        finite = [to_fraction(ftz_bits(int(b))) for b in r]
        emax = max((math.frexp(float(v))[1] - 1 for v in finite if v != 0), default=-126)
        rexp = (int(res) >> 23) & 0xFF
        ulp = Fraction(2) ** (rexp - 150) if rexp else Fraction(2) ** -126
        half = ulp / 2 if rexp else ulp
        apriori = half + (n - 1) * Fraction(2) ** (emax - 23 - g)
        assert err <= apriori
        assert err <= Fraction(float(bnd)), (r, res, err, bnd)
        worst_apriori = max(worst_apriori, float(err / apriori))
        if bnd > 0:
            worst_returned = max(worst_returned, float(err / Fraction(float(bnd))))
        if rexp:
            worst_ulps = max(worst_ulps, float(err / ulp))
    return worst_apriori, worst_returned, worst_ulps


@pytest.mark.parametrize(("n", "g"), [(3, 3), (16, 3), (16, 0), (64, 3), (200, 8)])
def test_multi_add_error_bound_holds_against_exact_sum(n, g):
    rng = np.random.default_rng(7 + n + g)
    rows = _mixed_rows(rng, max(40, 3000 // n), n)
    worst_apriori, worst_returned, _ = _error_stats(rows, g)
    # The bound must be reached to within a factor (else it is not measuring anything).
    assert 0.05 < worst_returned <= 1.0
    assert worst_apriori <= 1.0


@pytest.mark.parametrize(
    ("inputs", "want"),
    [
        ([0x3F800000, 0xBF800000], 0.0),                 # exact zero sum: no error at all
        ([0x3F800000, 0x40000000], 2.0**-23),            # 3.0: half an ulp (2**-22) of 3
        ([0x00C00000, 0x80800000], 2.0**-126),           # flushed sum: the flush threshold
        ([0x7F800000, 0x3F800000], math.inf),            # special result: no finite bound
        ([0x7FC00000], math.inf),
        # 1 + 15 · 2**-100, G = 3: half an ulp of 1 + 2**-22, plus 15 jammed units of 2**-26.
        ([0x3F800000] + [0x0D800000] * 15, 2.0**-24 + 15 * 2.0**-26),
    ],
)
def test_multi_add_error_bound_named(inputs, want):
    assert float(multi_add_error_bound(_f32(np.array(inputs, np.uint32)))) == want


def test_multi_add_same_sign_error_in_ulps():
    """Without cancellation |r| >= 2**emax, so |err| <= (0.5 + (n-1)·2**-G) ulp(r)."""
    rng = np.random.default_rng(8)
    n, g = 16, DEFAULT_GUARD_BITS
    rows = _normals(rng, (300, n), 100, 140, positive=True)
    _, _, worst_ulps = _error_stats(rows, g)
    assert worst_ulps <= 0.5 + (n - 1) * 2.0**-g
    assert worst_ulps > 0.5  # the jam error is real for this spread (bound is not vacuous)


def test_multi_add_adder_width_holds_the_worst_sum():
    # 24 + G + ceil(log2 n) + 1, by hand.
    assert multi_add_adder_width(1) == 28
    assert multi_add_adder_width(16) == 32
    assert multi_add_adder_width(17) == 33
    assert multi_add_adder_width(1024, guard_bits=5) == 40
    for n in (1, 2, 3, 16, 17, 1000):
        for g in (0, 3, 8):
            w = multi_add_adder_width(n, g)
            worst = n * ((1 << (24 + g)) - 1)  # n addends of the largest aligned magnitude
            assert worst < 1 << (w - 1)  # the two's-complement adder holds ±worst ...
            assert worst >= 1 << (w - 2)  # ... and needs every one of its bits


def test_multi_add_batched_shapes_and_axes():
    rng = np.random.default_rng(9)
    x = _f32(_normals(rng, (3, 5, 7), 120, 130))
    for axis in (0, 1, 2, -1, -3):
        got = multi_add(x, axis=axis)
        moved = np.moveaxis(x, axis, -1)
        assert got.shape == moved.shape[:-1] and got.dtype == np.float32
        flat = _bits(moved).reshape(-1, moved.shape[-1])
        want = [_spec_multi_add(r, DEFAULT_GUARD_BITS) for r in flat]
        np.testing.assert_array_equal(_bits(got).ravel(), want)
    # An empty batch is fine (an empty reduction axis is not; see below).
    assert multi_add(np.zeros((0, 5), np.float32)).shape == (0,)


def test_multi_add_rejects_bad_input():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="float32"):
        multi_add(np.ones(3))
    with pytest.raises(TypeError, match="float32"):
        multi_add([1.0, 2.0])
    with pytest.raises(ValueError, match="0-d"):
        multi_add(np.float32(1.0))
    with pytest.raises(ValueError, match="empty axis"):
        multi_add(np.ones((2, 0), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        multi_add(x, axis=2)
    with pytest.raises(TypeError, match="axis must be an int"):
        multi_add(x, axis=1.0)
    with pytest.raises(TypeError, match="guard_bits must be an int"):
        multi_add(x, guard_bits=True)
    with pytest.raises(ValueError, match=r"guard_bits must be in 0\.\.24"):
        multi_add(x, guard_bits=25)
    with pytest.raises(ValueError, match="guard_bits must be in"):
        multi_add(x, guard_bits=-1)
    with pytest.raises(ValueError, match="64-bit adder"):
        multi_add(np.ones(1 << 15, np.float32), guard_bits=24)
    with pytest.raises(ValueError, match="n must be >= 1"):
        multi_add_adder_width(0)
    with pytest.raises(TypeError, match="float32"):
        multi_add_error_bound(np.ones(3, np.float16))


# --------------------------------------------------------------------------- max_reduce


def _ref_max_row(row) -> int:
    bits = [ftz_bits(int(b)) for b in row]
    if any(is_nan(b) for b in bits):
        return CANON_NAN
    # Total order by value, -0 below +0 (independent of fp.f32_order_key).
    return max(bits, key=lambda b: (float(_f32(b)), not b & SIGN))


def test_max_reduce_matches_references():
    rng = np.random.default_rng(10)
    rows = rng.integers(0, 1 << 32, (2000, 9), dtype=np.uint32)
    rows[rng.random(rows.shape) < 0.02] = 0x7FC00000
    rows[:500] = rng.choice(SPECIALS, (500, 9))
    got = _bits(max_reduce(_f32(rows)))
    _check_rows(got, rows, _ref_max_row)
    # Also equal to a sequential fold of the SoftFloat-checked f32_max.
    folded = reduce(fp.f32_max, list(_f32(rows).T))
    np.testing.assert_array_equal(got, _bits(folded))
    # Order independence.
    np.testing.assert_array_equal(_bits(max_reduce(_f32(rng.permuted(rows, axis=1)))), got)


@pytest.mark.parametrize(
    ("inputs", "want"),
    [
        ([0x80000000, 0x00000000], 0x00000000),
        ([0x00000000, 0x80000000], 0x00000000),
        ([0x80000000, 0x80000000], 0x80000000),
        ([0x807FFFFF, 0xBF800000], 0x80000000),  # subnormal is -0
        ([0xFF800000], 0xFF800000),
        ([0xFF800000, 0xFF7FFFFF], 0xFF7FFFFF),
        ([0x7F800000, 0x7FC12345], CANON_NAN),
        ([0xFFFFFFFF, 0x3F800000], CANON_NAN),
        ([0xC0000000, 0xBF800000, 0xC0400000], 0xBF800000),
    ],
)
def test_max_reduce_named(inputs, want):
    assert int(_bits(max_reduce(_f32(np.array(inputs, np.uint32))))) == want


def test_max_reduce_axes_and_errors():
    rng = np.random.default_rng(11)
    x = _f32(rng.integers(0, 1 << 32, (4, 3, 6), dtype=np.uint32))
    for axis in (0, 1, 2):
        got = max_reduce(x, axis=axis)
        moved = _bits(np.moveaxis(x, axis, -1))
        want = np.array([_ref_max_row(r) for r in moved.reshape(-1, moved.shape[-1])])
        np.testing.assert_array_equal(_bits(got).ravel(), want)
    with pytest.raises(TypeError, match="float32"):
        max_reduce(np.ones(3, np.int32))
    with pytest.raises(ValueError, match="empty axis"):
        max_reduce(np.ones((0,), np.float32))


# --------------------------------------------------------------------------- argmax_top4


def _sorted_top4(row_bits) -> tuple[list[int], list[int]]:
    """Reference: stable sort of (NaN first, then value descending), ties by index."""
    flushed = [ftz_bits(int(b)) for b in row_bits]
    order = sorted(
        range(len(flushed)),
        key=lambda i: (0, 0.0, i) if is_nan(flushed[i]) else (1, -float(_f32(flushed[i])), i),
    )[:4]
    values = [flushed[i] for i in order] + [NEG_INF] * (4 - len(order))
    return values, order + [TOP4_FILL_INDEX] * (4 - len(order))


def _streaming_top4(row_bits) -> tuple[list[int], list[int]]:
    """Reference: the documented RTL rule, a sorted 4-entry register list, strict > displaces."""
    slots: list[tuple[float, int, int] | None] = [None] * 4  # (rank, index, value bits)
    for i, b in enumerate(row_bits):
        b = ftz_bits(int(b))
        rank = 0.0 if is_nan(b) else float(_f32(b))  # -0.0 == 0.0 as Python floats
        for p in range(4):
            s = slots[p]
            beats = s is None or _rank_gt((is_nan(b), rank), (is_nan(s[2]), s[0]))
            if beats:
                slots[p + 1 :] = slots[p:3]
                slots[p] = (rank, i, b)
                break
    values = [NEG_INF if s is None else s[2] for s in slots]
    return values, [TOP4_FILL_INDEX if s is None else s[1] for s in slots]


def _rank_gt(a: tuple[bool, float], b: tuple[bool, float]) -> bool:
    """Strict greater-than of (is_nan, value): NaN beats every number, NaN never beats NaN."""
    if a[0] or b[0]:
        return a[0] and not b[0]
    return a[1] > b[1]


def _tie_heavy(rng, shape) -> np.ndarray:
    pool = np.array([0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x7FC00000, 0xFFC00001,
                     0x7F800000, 0xFF800000, 0x3F800000, 0xBF800000, 0x40000000, 0x3F800001],
                    np.uint32)
    return rng.choice(pool, shape)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 16, 40])
def test_argmax_top4_matches_references(n):
    rng = np.random.default_rng(12 + n)
    rows = np.concatenate([_tie_heavy(rng, (300, n)),
                           rng.integers(0, 1 << 32, (300, n), dtype=np.uint32)])
    values, indices = argmax_top4(_f32(rows))
    assert values.shape == (600, 4) and indices.shape == (600, 4)
    assert values.dtype == np.float32 and indices.dtype == np.int64
    for r, v, ix in zip(rows, _bits(values), indices, strict=True):
        want_v, want_i = _sorted_top4(r)
        assert list(ix) == want_i, (r, ix, want_i)
        assert list(v) == want_v
        assert _streaming_top4(r) == (want_v, want_i)


def test_argmax_top4_merge_of_beats_is_tree_independent():
    """Top-4 lists of 16-lane beats merged with (rank desc, index asc) equal the whole result."""
    rng = np.random.default_rng(13)
    x = _f32(_tie_heavy(rng, (50, 64)))
    _, indices = argmax_top4(x)
    beats = x.reshape(50, 4, 16)
    bv, bi = argmax_top4(beats)
    bi = bi + (np.arange(4) * 16)[None, :, None]
    for r in range(50):
        cand = [(v, i) for v, i in zip(_bits(bv[r]).ravel(), bi[r].ravel(), strict=True)]
        order = sorted(cand, key=lambda c: (0, 0.0, c[1]) if is_nan(int(c[0]))
                       else (1, -float(_f32(c[0])), c[1]))[:4]
        assert [int(i) for _, i in order] == list(indices[r])


@pytest.mark.parametrize(
    ("inputs", "want_values", "want_indices"),
    [
        ([0x7FC00000, 0x7F800000, 0xFFC00001], [CANON_NAN, CANON_NAN, POS_INF, NEG_INF],
         [0, 2, 1, TOP4_FILL_INDEX]),
        ([0x80000000, 0x00000000], [0x80000000, 0x00000000, NEG_INF, NEG_INF],
         [0, 1, TOP4_FILL_INDEX, TOP4_FILL_INDEX]),  # -0 == +0: index order, signs kept
        ([0xFF800000], [NEG_INF] * 4, [0] + [TOP4_FILL_INDEX] * 3),
        ([0x3F800000, 0x40000000, 0x3F800000, 0x40000000, 0x3F800000],
         [0x40000000, 0x40000000, 0x3F800000, 0x3F800000], [1, 3, 0, 2]),
        ([0x00000001, 0xBF800000, 0x80000005, 0x00000000, 0xC0000000],
         [0, SIGN, 0, 0xBF800000], [0, 2, 3, 1]),  # subnormals are zeros
    ],
)
def test_argmax_top4_named(inputs, want_values, want_indices):
    values, indices = argmax_top4(_f32(np.array(inputs, np.uint32)))
    assert [int(v) for v in _bits(values)] == want_values
    assert [int(i) for i in indices] == want_indices


def test_argmax_top4_long_vector_and_errors():
    rng = np.random.default_rng(14)
    x = rng.standard_normal(100_000).astype(np.float32)
    values, indices = argmax_top4(x)
    want = np.argsort(-x.astype(np.float64), kind="stable")[:4]
    np.testing.assert_array_equal(indices, want)
    np.testing.assert_array_equal(values, x[want])
    with pytest.raises(TypeError, match="float32"):
        argmax_top4(np.ones(5))
    with pytest.raises(ValueError, match="0-d"):
        argmax_top4(np.float32(1))
    with pytest.raises(ValueError, match="at least one element"):
        argmax_top4(np.ones((3, 0), np.float32))
