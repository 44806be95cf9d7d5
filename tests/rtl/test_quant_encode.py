# amaranth: UnusedElaboratable=no
"""QuantEncoder RTL vs the golden ``quant_blocks.encode_int4/fp4/if4`` and ``if_metric``.

Whole blocks are streamed through the encoder and every output beat (codes and scale) is
compared with the golden encoder; for IF4 blocks the two fp32 metrics the RTL computed are
also compared bit for bit with ``if_metric``. The configurations with every format round
through the dividers (``_grid.py``), the 4-bit-only ones through the midpoint comparators;
the 8-bit formats and NVFP4 are in ``test_quant_encode_nv8.py``. Block contents cover the
corner classes of the contract: ±0 and subnormal inputs, zero blocks (all zero, or absmax·R
flushed for one or both formats), non-finite blocks, the largest finite bf16, exact ties
``|x| = M·scale`` (checked to be real ties), scales that round down (top code clamped), wide
dynamic range inside a block.
The arithmetic helpers the metric uses are also tested on their own against ``fp``.
"""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from encodebench import (
    GRIDS,
    W,
    bf16,
    check,
    check_blocks,
    golden,
    golden_scale_value,
    make_blocks,
    random_block,
    simulate,
    tie_block,
)
from quantbench import config, pack, run_stream, unpack

from unified_engine.numerics import fp
from unified_engine.numerics import quant_blocks as qb
from unified_engine.rtl.quant import QuantDecoder, QuantEncoder
from unified_engine.rtl.quant._arith import add_nonnegative_f32
from unified_engine.rtl.quant._metric import error_parts, square_f32

CONFIGS = {"l4_b16": config(4, 16), "l8_b64": config(8, 64)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_encode_random_full_throughput(name):
    cfg = CONFIGS[name]
    n = 48 if cfg.lanes == 4 else 12
    dut, _fmts, _blocks, log = check(cfg, np.random.default_rng(1), n)
    beats = n * dut.beats_per_block
    # A beat in and a beat out every cycle; the first output `latency` cycles after the
    # first block's last input beat.
    assert log.accepted == list(range(beats))
    out_cycles = [c for c, _ in log.delivered]
    assert out_cycles[0] == dut.beats_per_block - 1 + dut.latency
    assert out_cycles == list(range(out_cycles[0], out_cycles[0] + beats))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_encode_with_gaps_and_backpressure(name):
    cfg = CONFIGS[name]
    n = 32 if cfg.lanes == 4 else 8
    check(cfg, np.random.default_rng(2), n, gap_probability=0.3, stall_probability=0.5, seed=3)


def test_encode_corner_blocks():
    """Each corner class in each format, with the coverage of the classes asserted."""
    cfg = CONFIGS["l4_b16"]
    rng = np.random.default_rng(4)
    fmts, blocks = [], []
    for fmt in (W.INT4, W.FP4, W.IF4):
        for kind in ("top", "bottom", "sparse", "zero", "nonfinite", "wide"):
            fmts.append(fmt)
            blocks.append(random_block(rng, kind, 16))
        for _ in range(3):
            fmts.append(fmt)
            blocks.append(tie_block(rng, fmt, 16)[0])
        # absmax·R flushes for INT4 (R = 1/7) but not for FP4 (R = 1/6), and the reverse
        # cannot happen: the block at the boundary 6.5·2**-126.
        fmts.append(fmt)
        blocks.append(bf16([6.5 * 2.0**-126, -2.0**-126] + [0.0] * 14))
        fmts.append(fmt)
        blocks.append(np.array([0x7F7F, 0xFF7F] + [0x7F00] * 14, np.uint16))
    blocks = np.array(blocks, np.uint16)
    # The classes are really hit: the tie blocks hold exact ties, the boundary block is a
    # zero block for INT4 only, and 0x7F7F's top INT4 code decodes to +Inf.
    ci, si = qb.encode_int4(blocks)
    _cf, sf = qb.encode_fp4(blocks)
    assert (si[-2] & 0x7FFF) == 0 and (sf[-2] & 0x7FFF) != 0
    assert (qb.decode_int4(ci[-1:], si[-1:]) == 0x7F80).any()
    check_given(cfg, fmts, blocks)


def check_given(cfg, fmts, blocks, tensor_scales=None, **stream_kw):
    return check_blocks(cfg, fmts, blocks, tensor_scales, **stream_kw)


def test_tie_blocks_hold_real_ties_and_clamps_occur():
    """The generators reach the classes they claim: exact midpoint ties, rounded-down scales."""
    rng = np.random.default_rng(5)
    for fmt in (W.INT4, W.FP4):
        grid = GRIDS[fmt]
        block, _ = tie_block(rng, fmt, 16)
        scale = golden_scale_value(fmt, float(np.abs(fp.bf16_to_f32(block)).max()))
        q = np.abs(fp.bf16_to_f32(block).astype(np.float64)) / scale
        assert np.isin(grid.midpoints, q).all()
    # Random Gaussian blocks: some scales round down, so absmax/scale exceeds the top code.
    _fmts, blocks, _ = make_blocks(rng, 200, 16, (W.INT4,))
    blocks = np.array(blocks)
    x = np.abs(fp.bf16_to_f32(blocks).astype(np.float64)).max(axis=1)
    s = fp.bf16_to_f32(qb.encode_int4(blocks)[1] & 0x7FFF).astype(np.float64)
    finite = np.isfinite(x) & (s > 0)
    assert (x[finite] / s[finite] > 7).sum() > 10


def test_encode_if4_zero_and_flushed_blocks_tie_to_int():
    """Zero blocks have both metrics +0: the tie keeps INT (scale 0x8000)."""
    cfg = CONFIGS["l4_b16"]
    blocks = np.array([random_block(np.random.default_rng(k), "bottom", 16) for k in range(3)]
                      + [np.zeros(16, np.uint16), np.full(16, 0x8000, np.uint16)], np.uint16)
    _dut, _codes, scales, log = simulate(cfg, [W.IF4] * len(blocks), blocks)
    assert all(s & 0x8000 for s in scales)
    assert all(w == (0, 0) for w in log.watched[3:])


def test_encode_subset_int4_only():
    """Only INT4 built (no metric datapath): FP4/IF4/NVFP4 requests give zero codes, 0x7FC0."""
    cfg = config(4, 16, formats=("bf16", "int4"))
    dut, _, _, log = check(cfg, np.random.default_rng(6), 24,
                           formats=(W.INT4, W.FP4, W.IF4, W.NVFP4))
    assert not hasattr(dut, "metric_valid") and dut.formats == (W.INT4,)
    # Without the metric the decision is ready with the codes: a shorter latency.
    assert dut.latency == 3 + 2 + 3 + 2 + 2
    assert log.delivered[0][0] == dut.beats_per_block - 1 + dut.latency


def test_encode_4bit_only_compares_thresholds():
    """INT4/FP4/IF4 without an 8-bit format or NVFP4: no dividers, the midpoint comparators of
    ``_elements.py`` round (the all-format configurations above divide instead)."""
    cfg = config(4, 16, formats=("bf16", "int4", "fp4", "if4"))
    rng = np.random.default_rng(14)
    fmts, blocks, _ = make_blocks(rng, 30, 16)
    for fmt in (W.INT4, W.FP4, W.IF4):
        fmts += [fmt] * 3
        blocks += [tie_block(rng, fmt, 16)[0] for _ in range(3)]
    dut, _ = check_blocks(cfg, fmts, blocks, stall_probability=0.2)
    assert not dut._int_div and not dut._fp_div and dut._div_segments == 1


def test_encode_subset_fp4_with_8bit_layout():
    """FP4 and INT8: 8-bit code field, FP4's 4-bit codes in its low half (INT8 divided)."""
    cfg = config(8, 16, formats=("bf16", "fp4", "int8"))
    dut, *_ = check(cfg, np.random.default_rng(7), 16, formats=(W.FP4, W.INT8),
                    stall_probability=0.3)
    assert dut.geometry.code_bits == 8


def test_encode_one_beat_per_block():
    """lanes == quant_block: a block per beat, still one beat per cycle."""
    cfg = config(16, 16)
    dut, _fmts, _blocks, log = check(cfg, np.random.default_rng(8), 8)
    assert dut.beats_per_block == 1
    assert log.accepted == list(range(8))
    assert [c for c, _ in log.delivered] == list(range(dut.latency, dut.latency + 8))


def test_encode_narrow_metric_timing():
    """metric_lanes 1 of 4: IF4 blocks take 4 cycles per beat, INT4/FP4 blocks still one."""
    cfg = CONFIGS["l4_b16"]
    rng = np.random.default_rng(11)
    n, bpb, slices = 6, 4, 4
    fmts, blocks, _ = make_blocks(rng, n, 16, (W.IF4,))
    dut, log = check_blocks(cfg, fmts, blocks, metric_lanes=1)
    out = [c for c, _ in log.delivered]
    assert out[0] == bpb - 1 + dut.latency
    assert dut.latency == dut.latency_plain + bpb * (slices - 1)
    # The metric is the bottleneck: one block every bpb·slices cycles, beats back to back.
    assert out == [out[0] + j * bpb * slices + k for j in range(n) for k in range(bpb)]
    fmts, blocks, _ = make_blocks(rng, n, 16, (W.INT4, W.FP4))
    dut, log = check_blocks(cfg, fmts, blocks, metric_lanes=1)
    out = [c for c, _ in log.delivered]
    assert log.accepted == list(range(n * bpb))
    assert out == list(range(bpb - 1 + dut.latency_plain, bpb - 1 + dut.latency_plain + n * bpb))


def test_encode_narrow_metric_mixed_with_backpressure():
    cfg = CONFIGS["l8_b64"]
    fmts, blocks, _ = make_blocks(np.random.default_rng(12), 8, 64)
    check_blocks(cfg, fmts, blocks, metric_lanes=2, stall_probability=0.4,
                 gap_probability=0.2, seed=4)


class _RoundTrip(wiring.Component):
    """QuantEncoder → QuantDecoder (read as IF4: the scale flag picks INT or FP per block)."""

    def __init__(self, cfg):
        self.enc, self.dec = QuantEncoder(cfg), QuantDecoder(cfg)
        super().__init__({"i": In(self.enc.i.signature.flip()), "fmt": In(W),
                          "o": Out(self.dec.o.signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.enc, m.submodules.dec = self.enc, self.dec
        wiring.connect(m, wiring.flipped(self.i), self.enc.i)
        wiring.connect(m, self.enc.o, self.dec.i)
        wiring.connect(m, self.dec.o, wiring.flipped(self.o))
        m.d.comb += [self.enc.fmt.eq(self.fmt), self.dec.fmt.eq(W.IF4)]
        return m


def test_encoder_output_feeds_decoder():
    """The encoder's output layout is the decoder's input: decode(encode(x)) end to end."""
    cfg = CONFIGS["l4_b16"]
    fmts, blocks, _ = make_blocks(np.random.default_rng(13), 8, 16)
    dut = _RoundTrip(cfg)
    beats = [{"payload": pack(block[j * 4 : (j + 1) * 4], 16), "fmt": fmt}
             for fmt, block in zip(fmts, blocks, strict=True) for j in range(4)]
    log = run_stream(dut, beats, len(beats), stall_probability=0.2)
    got = np.array([unpack(p, 16, 4) for p in log.outputs], np.uint16).reshape(8, 16)
    for b, (fmt, block) in enumerate(zip(fmts, blocks, strict=True)):
        codes, scale = golden(fmt, block)
        assert (got[b] == qb.decode_if4(codes[None], np.array([scale], np.uint16))[0]).all(), b


def test_encode_rejects_bad_config():
    with pytest.raises(TypeError, match="EngineConfig"):
        QuantEncoder("sim_small")
    with pytest.raises(ValueError, match="needs a block format"):
        QuantEncoder(config(4, 16, formats=("bf16",)))
    with pytest.raises(ValueError, match="lanes ≤ quant_block"):
        QuantEncoder(config(32, 16))
    with pytest.raises(ValueError, match="with NVFP4, lanes ≤ 16"):
        QuantEncoder(config(32, 64))
    QuantEncoder(config(32, 64, formats=("bf16", "int8")))  # 32 lanes: fine without NVFP4
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="div_steps"):
            QuantEncoder(config(4, 16), div_steps=bad)
    for bad in (0, 3, 8):
        with pytest.raises(ValueError, match="metric_lanes"):
            QuantEncoder(config(4, 16), metric_lanes=bad)
    with pytest.raises(TypeError, match="metric_lanes"):
        QuantEncoder(config(4, 16), metric_lanes=2.0)


# ----- the metric's building blocks on their own ------------------------------------------------


def test_metric_exponent_claim_exhaustive_over_significands():
    """The RTL forms d = x − x̂ with a one-place alignment: check that this always suffices.

    For every absmax significand (two binades) and every bf16 x from absmax·2**-6 up to absmax
    (smaller x always code 0, so x̂ = 0): a non-zero finite x̂ has x's sign and an exponent
    within one of x's. Rounding is scale invariant away from flush/overflow, so this covers
    every relative position of x, absmax and the scale.
    """
    for fmt, encode, decode in ((W.INT4, qb.encode_int4, qb.decode_int4),
                                (W.FP4, qb.encode_fp4, qb.decode_fp4)):
        blocks = []
        for absmax_bits in range(0x4000, 0x4100):  # 2.0 … just below 8.0
            lo = absmax_bits - (6 << 7)
            xs = np.arange(lo, absmax_bits + 1)
            xs = np.concatenate([xs, xs | 0x8000])
            rows = np.resize(xs, (len(xs) + 14) // 15 * 15).reshape(-1, 15)
            blocks.append(np.concatenate([np.full((len(rows), 1), absmax_bits), rows], axis=1))
        blocks = np.concatenate(blocks).astype(np.uint16)
        codes, scales = encode(blocks)
        xhat = decode(codes, scales)
        ex, eh = (blocks >> 7) & 0xFF, (xhat >> 7) & 0xFF
        nonzero = (eh != 0) & (eh != 0xFF)
        assert nonzero.sum() > 100_000, fmt
        assert (np.abs(ex[nonzero].astype(int) - eh[nonzero]) <= 1).all(), fmt
        assert ((blocks[nonzero] ^ xhat[nonzero]) & 0x8000 == 0).all(), fmt


class _Harness(wiring.Component):
    """Registers the output of a combinational helper so the test can step a clock."""

    def __init__(self, build, widths):
        self._build = build
        super().__init__({**{k: In(w) for k, w in widths.items() if k != "out"},
                          "out": Out(widths["out"])})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.out.eq(self._build(m, self))
        return m


def run_harness(dut, columns: dict, count: int):
    got = []

    async def bench(ctx):
        for k in range(count):
            for name, values in columns.items():
                ctx.set(getattr(dut, name), int(values[k]))
            await ctx.tick()  # the harness registers the result of this cycle's inputs
            got.append(ctx.get(dut.out))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got, np.uint64)


def nonnegative_f32_pairs(rng, n):
    """Non-negative fp32 operands: close exponents, exact half-ulp ties, zeros, Inf, overflow."""
    ea = rng.integers(1, 255, n)
    eb = np.clip(ea - rng.integers(0, 30, n), 0, 254)
    a = (ea << 23) | rng.integers(0, 1 << 23, n)
    b = (eb << 23) | rng.integers(0, 1 << 23, n)
    kind = rng.integers(0, 8, n)
    # Ties: b's significand shifted out exactly half an ulp of a's (d = 24 → lsb only).
    tie = kind == 0
    b[tie] = ((ea[tie] - 24).clip(1) << 23)
    a[kind == 1] = 0
    b[kind == 2] = 0
    a[kind == 3] = 0x7F800000
    big = kind == 4
    a[big] = (254 << 23) | rng.integers(0x600000, 1 << 23, big.sum())
    b[big] = (254 << 23) | rng.integers(0x600000, 1 << 23, big.sum())
    swap = rng.random(n) < 0.5
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    return a.astype(np.uint32), b.astype(np.uint32)


def test_add_nonnegative_f32_bit_exact():
    a, b = nonnegative_f32_pairs(np.random.default_rng(9), 3000)
    dut = _Harness(lambda m, d: add_nonnegative_f32(m, d.a, d.b, "add"),
                   {"a": 32, "b": 32, "out": 32})
    got = run_harness(dut, {"a": a, "b": b}, len(a))
    want = fp.f32_to_bits(fp.f32_add(fp.f32_from_bits(a), fp.f32_from_bits(b)))
    bad = np.flatnonzero(got != want)
    assert not len(bad), [(hex(a[k]), hex(b[k]), hex(got[k]), hex(want[k])) for k in bad[:5]]


def test_square_error_bit_exact():
    """|d|² from (x, x̂) magnitudes whose exponents differ by ≤ 1 (or x̂ = 0 / Inf)."""
    rng = np.random.default_rng(10)
    n = 3000
    ex = rng.integers(0, 255, n)
    ex[: n // 4] = rng.integers(1, 20, n // 4)  # squares that flush
    ex[n // 4 : n // 2] = rng.integers(180, 255, n // 4)  # squares that overflow
    eh = np.clip(ex + rng.integers(-1, 2, n), 1, 254)
    x = (ex << 7) | rng.integers(0, 128, n)
    xh = (eh << 7) | rng.integers(0, 128, n)
    xh[rng.random(n) < 0.1] = 0
    xh[rng.random(n) < 0.03] = 0x7F80
    x = np.where(ex == 255, 0x7F7F, x)

    def build(m, d):
        parts = error_parts(m, d.x, d.xh, "err")
        return square_f32(m, *parts, "sq")

    dut = _Harness(build, {"x": 15, "xh": 15, "out": 32})
    got = run_harness(dut, {"x": x, "xh": xh}, n)
    d = fp.f32_sub(fp.bf16_to_f32(x.astype(np.uint16)), fp.bf16_to_f32(xh.astype(np.uint16)))
    want = fp.f32_to_bits(fp.f32_mul(d, d))
    bad = np.flatnonzero(got != want)
    assert not len(bad), [(hex(x[k]), hex(xh[k]), hex(got[k]), hex(want[k])) for k in bad[:5]]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_encode_random_large(name):
    cfg = CONFIGS[name]
    n = 1500 if cfg.lanes == 4 else 300
    check(cfg, np.random.default_rng(20), n, gap_probability=0.05, stall_probability=0.1)
