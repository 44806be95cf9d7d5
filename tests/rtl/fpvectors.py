"""Operand generators for the floating-point RTL tests: random bits plus every corner class.

All functions return ``uint32`` (fp32) or ``uint16`` (bf16) bit-pattern arrays. The classes
target the places where an fp datapath goes wrong: signed zeros, infinities, NaN payloads,
subnormal inputs and outputs, overflow, exact RNE ties (sparse mantissas make them common),
massive and exact cancellation, alignment shifts around the 24..27-bit sticky boundary and
products that round up to exactly 2**-126.
"""

from __future__ import annotations

import numpy as np

from unified_engine.numerics import fp

F32_SPECIALS = np.array(
    [
        0x00000000, 0x80000000,  # ±0
        0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00400000,  # subnormals
        0x00800000, 0x80800000, 0x00800001, 0x00FFFFFF,  # smallest normals
        0x3F800000, 0xBF800000, 0x3F800001, 0x3F7FFFFF, 0x3FFFFFFF,  # around 1
        0x33800000, 0x34000000, 0x4B800000,  # 2**-24, 2**-23, 2**24
        0x7F7FFFFF, 0xFF7FFFFF, 0x7F000000, 0x73000000,  # max finite, 2**127, 2**103
        0x7F800000, 0xFF800000,  # ±Inf
        0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0xFFFFFFFF,  # NaNs (quiet, signalling)
    ],
    dtype=np.uint32,
)  # fmt: skip

BF16_SPECIALS = np.array(
    [
        0x0000, 0x8000, 0x0001, 0x807F, 0x0040,  # ±0, subnormals
        0x0080, 0x8080, 0x00FF, 0x3F80, 0xBF80, 0x3F81, 0x3FFF, 0x3F7F,
        0x7F7F, 0xFF7F, 0x7F00, 0x1F80, 0x2000, 0x5F80, 0x6000,  # extremes, 2**±63/64
        0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0xFFFF,  # ±Inf, NaNs
    ],
    dtype=np.uint16,
)  # fmt: skip


def _bits(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    return rng.integers(low, high, n, dtype=np.uint64).astype(np.uint32)


def f32_make(sign, exp, man) -> np.ndarray:
    """Assemble fp32 patterns from field arrays."""
    sign = np.asarray(sign, dtype=np.uint32)
    exp = np.asarray(exp, dtype=np.uint32)
    man = np.asarray(man, dtype=np.uint32)
    return ((sign << 31) | (exp << 23) | (man & 0x7FFFFF)).astype(np.uint32)


def sparse_mantissa(rng: np.random.Generator, n: int, bits: int = 23) -> np.ndarray:
    """Mantissas with 0–3 set bits: sums and products of these often land on exact ties."""
    man = np.zeros(n, dtype=np.uint32)
    for _ in range(3):
        pos = rng.integers(0, bits, n)
        keep = rng.random(n) < 0.6
        man |= np.where(keep, np.uint32(1) << pos.astype(np.uint32), 0).astype(np.uint32)
    return man


def special_pairs(rng: np.random.Generator, count: int | None = None):
    """All pairs of ``F32_SPECIALS`` (900), or a random subset of ``count`` of them."""
    sa, sb = np.meshgrid(F32_SPECIALS, F32_SPECIALS)
    sa, sb = sa.ravel(), sb.ravel()
    if count is not None:
        pick = rng.choice(len(sa), count, replace=False)
        sa, sb = sa[pick], sb[pick]
    return sa, sb


def adder_pairs(
    rng: np.random.Generator, n: int, specials: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """About ``n`` fp32 operand pairs for the adder, spread over the corner classes, plus
    all special pairs (or ``specials`` random ones)."""
    k = n // 8
    sign = lambda: rng.integers(0, 2, k)  # noqa: E731
    exp_mid = lambda: rng.integers(100, 156, k)  # noqa: E731
    classes = []
    # 1. random bit patterns (all exponents, NaN payloads, subnormals).
    classes.append((_bits(rng, k, 0, 2**32), _bits(rng, k, 0, 2**32)))
    # 2. close exponents, random mantissas, random signs: cancellation and carries.
    e = exp_mid()
    classes.append(
        (f32_make(sign(), e, _bits(rng, k, 0, 2**23)),
         f32_make(sign(), e + rng.integers(-2, 3, k), _bits(rng, k, 0, 2**23)))
    )  # fmt: skip
    # 3. exact cancellation and near cancellation (b = -(a ± a few ulp)).
    a = f32_make(sign(), exp_mid(), _bits(rng, k, 0, 2**23))
    b = (a + rng.integers(-3, 4, k).astype(np.int64)).astype(np.uint32) ^ np.uint32(0x80000000)
    classes.append((a, b))
    # 4. sparse mantissas, exponent gaps 0..30 (ties, guard/sticky boundary, shifted out).
    e = exp_mid()
    classes.append(
        (f32_make(sign(), e, sparse_mantissa(rng, k)),
         f32_make(sign(), e - rng.integers(0, 31, k), sparse_mantissa(rng, k)))
    )  # fmt: skip
    # 5. exact half-ulp ties: b is half an ulp of a (or 1.5 ulp), same or opposite sign.
    e = exp_mid()
    a = f32_make(sign(), e, _bits(rng, k, 0, 2**23))
    b = f32_make(sign(), e - 24, rng.choice([0, 1 << 22], k))
    classes.append((a, b))
    # 6. tiny operands: sums below 2**-126 flush to signed zero; subnormal inputs.
    classes.append(
        (f32_make(sign(), rng.integers(0, 4, k), _bits(rng, k, 0, 2**23)),
         f32_make(sign(), rng.integers(0, 4, k), _bits(rng, k, 0, 2**23)))
    )  # fmt: skip
    # 7. overflow: large same-sign operands, including max + half ulp (a tie to Inf).
    s = sign()
    classes.append(
        (f32_make(s, rng.integers(250, 255, k), _bits(rng, k, 2**22, 2**23)),
         f32_make(s ^ (rng.random(k) < 0.1), rng.integers(226, 255, k), _bits(rng, k, 0, 2**23)))
    )  # fmt: skip
    # 8. pairs of specials.
    classes.append(special_pairs(rng, specials))
    a = np.concatenate([c[0] for c in classes]).astype(np.uint32)
    b = np.concatenate([c[1] for c in classes]).astype(np.uint32)
    order = rng.permutation(len(a))
    return a[order], b[order]


def near_underflow_products(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose exact product lies just below 2**-126 (some round up to exactly 2**-126)."""
    # |a| in [2**-63, 2**-1) keeps the partner b = 2**-126 / a a normal number.
    a = f32_make(rng.integers(0, 2, n), rng.integers(64, 126, n), _bits(rng, n, 0, 2**23))
    a64 = fp.f32_from_bits(a).astype(np.float64)
    target = 2.0**-126
    b = (target / np.abs(a64)).astype(np.float32)
    # Step b down until |a*b| < 2**-126 (exact in float64); then it is the largest such b.
    for _ in range(3):
        too_big = np.abs(a64) * b.astype(np.float64) >= target
        b = np.where(too_big, np.nextafter(b, np.float32(0)), b)
    b_bits = fp.f32_to_bits(b) | (rng.integers(0, 2, n).astype(np.uint32) << np.uint32(31))
    return a, b_bits.astype(np.uint32)


def rounding_edge_products(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose 48-bit significand product is a tie plus one unit in its lowest bit: the
    guard bit is set and the only other discarded one is product bit 0, with both values of
    the kept LSB and both normalisations. Only a complete sticky OR rounds these up.

    Built by modular inversion: for a random odd significand ``ma`` pick ``mb`` with
    ``ma * mb`` congruent to the wanted low bits.
    """
    out_a, out_b = [], []
    while len(out_a) < n:
        ma = int(rng.integers(1 << 23, 1 << 24)) | 1
        high = int(rng.integers(0, 2))
        lsb = int(rng.integers(0, 2))
        width = 24 + high  # low bits fixed: kept LSB, guard, zeros, a one in bit 0
        target = (lsb << (width - 1)) | (1 << (width - 2)) | 1
        mb = target * pow(ma, -1, 1 << width) % (1 << width)
        if (1 << 23) <= mb < (1 << 24) and (ma * mb) >> 47 == high:
            out_a.append(ma & 0x7FFFFF)
            out_b.append(mb & 0x7FFFFF)
    return (f32_make(rng.integers(0, 2, n), rng.integers(100, 156, n), out_a),
            f32_make(rng.integers(0, 2, n), rng.integers(100, 156, n), out_b))  # fmt: skip


def multiplier_pairs(
    rng: np.random.Generator, n: int, specials: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """About ``n`` fp32 operand pairs for the fp32 multiplier over its corner classes, plus
    all special pairs (or ``specials`` random ones)."""
    k = n // 7
    sign = lambda: rng.integers(0, 2, k)  # noqa: E731
    classes = [
        rounding_edge_products(rng, k),
        (_bits(rng, k, 0, 2**32), _bits(rng, k, 0, 2**32)),
        # sparse mantissas: exact ties in the 48-bit product
        (f32_make(sign(), rng.integers(100, 156, k), sparse_mantissa(rng, k)),
         f32_make(sign(), rng.integers(100, 156, k), sparse_mantissa(rng, k))),
        # exponent sums around underflow (-126) and overflow (+128)
        (f32_make(sign(), rng.integers(1, 70, k), _bits(rng, k, 0, 2**23)),
         f32_make(sign(), rng.integers(1, 70, k), _bits(rng, k, 0, 2**23))),
        (f32_make(sign(), rng.integers(190, 255, k), _bits(rng, k, 0, 2**23)),
         f32_make(sign(), rng.integers(120, 140, k), _bits(rng, k, 0, 2**23))),
        near_underflow_products(rng, k),
    ]  # fmt: skip
    classes.append(special_pairs(rng, specials))
    a = np.concatenate([c[0] for c in classes]).astype(np.uint32)
    b = np.concatenate([c[1] for c in classes]).astype(np.uint32)
    order = rng.permutation(len(a))
    return a[order], b[order]


def bf16_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """bf16 patterns: random bits, mid-range values, extremes and the specials."""
    k = n // 4
    sign = rng.integers(0, 2, k).astype(np.uint16) << np.uint16(15)
    mid = (sign | (rng.integers(100, 156, k).astype(np.uint16) << np.uint16(7))
           | rng.integers(0, 128, k).astype(np.uint16))  # fmt: skip
    ext_exp = rng.choice(np.r_[1:40, 215:255], k).astype(np.uint16)
    ext = (rng.integers(0, 2, k).astype(np.uint16) << np.uint16(15)) | (ext_exp << np.uint16(7))
    ext |= rng.integers(0, 128, k).astype(np.uint16)
    rand = rng.integers(0, 2**16, n - 3 * k, dtype=np.uint32).astype(np.uint16)
    out = np.concatenate([rand, mid, ext, rng.choice(BF16_SPECIALS, k)]).astype(np.uint16)
    return out[rng.permutation(len(out))]


def f32_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """fp32 patterns for unary units: random bits, bf16 ties, extremes and the specials."""
    k = n // 4
    rand = _bits(rng, n - 3 * k, 0, 2**32)
    # Low 16 bits exactly 0x8000 (a tie) or near it, with odd and even bf16 LSBs.
    ties = (_bits(rng, k, 0, 2**32) & np.uint32(0xFFFF0000)) | rng.choice(
        np.array([0x8000, 0x7FFF, 0x8001, 0x0000, 0xFFFF], dtype=np.uint32), k
    )
    ext_exp = rng.choice(np.r_[0:3, 252:256], k)
    ext = f32_make(rng.integers(0, 2, k), ext_exp, _bits(rng, k, 0, 2**23))
    spec = rng.choice(F32_SPECIALS, k)
    out = np.concatenate([rand, ties, ext, spec]).astype(np.uint32)
    return out[rng.permutation(len(out))]


def matmul_operands(rng: np.random.Generator, m: int, k: int, n: int, kind: str):
    """bf16 operand tiles A[m, k], B[k, n] for array tests.

    ``kind``: ``"normal"`` (mid-range exponents, products and sums of similar size),
    ``"ties"`` (sparse mantissas: many exact RNE ties while accumulating), ``"cancel"``
    (column pairs whose products cancel exactly), ``"wide"`` (the full exponent range:
    overflow to Inf, underflow to zero, subnormal operands), ``"zeros"`` (70% ±0 in A: sums
    of signed zeros) or ``"specials"`` (5% ±0, ±Inf, NaN and subnormals on top of ``"normal"``).
    """

    def mid(shape, lo=110, hi=145):
        sign = rng.integers(0, 2, shape).astype(np.uint16) << np.uint16(15)
        exp = rng.integers(lo, hi, shape).astype(np.uint16) << np.uint16(7)
        return sign | exp | rng.integers(0, 128, shape).astype(np.uint16)

    if kind == "normal":
        a, b = mid((m, k)), mid((k, n))
    elif kind == "ties":
        a, b = mid((m, k), 120, 135), mid((k, n), 120, 135)
        a = (a & np.uint16(0xFF80)) | (np.uint16(1) << rng.integers(0, 7, (m, k)).astype(np.uint16))
        b &= np.uint16(0xFF80)
    elif kind == "cancel":
        a, b = mid((m, k)), mid((k, n))
        a[:, 1::2] = a[:, 0::2][:, : a[:, 1::2].shape[1]]
        b[1::2] = b[0::2][: b[1::2].shape[0]] ^ np.uint16(0x8000)
    elif kind == "wide":
        a = rng.integers(0, 2**16, (m, k), dtype=np.uint32).astype(np.uint16)
        b = rng.integers(0, 2**16, (k, n), dtype=np.uint32).astype(np.uint16)
        # Keep most values finite so the sums, not just NaN propagation, are exercised.
        finite = lambda x: np.where((x & 0x7F80) == 0x7F80, x & np.uint16(0xBFFF), x)  # noqa: E731
        a, b = finite(a), finite(b)
    elif kind == "zeros":
        a, b = mid((m, k)), mid((k, n))
        a[rng.random(a.shape) < 0.7] &= np.uint16(0x8000)  # ±0: ±0 products, sign rules
    elif kind == "specials":
        a, b = mid((m, k)), mid((k, n))
        for x in (a, b):
            hit = rng.random(x.shape) < 0.05
            x[hit] = rng.choice(BF16_SPECIALS, hit.sum())
    else:
        raise ValueError(f"unknown operand kind {kind!r}")
    return a.astype(np.uint16), b.astype(np.uint16)
