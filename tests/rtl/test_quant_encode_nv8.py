# amaranth: UnusedElaboratable=no
"""QuantEncoder RTL for INT8, FP8, IF8 and NVFP4 vs the golden ``quant_blocks`` encoders.

As ``test_quant_encode.py`` (same benches, ``encodebench``): whole blocks are streamed, every
code and scale entry is compared with ``encode_int8/fp8/if8/nvfp4`` and, for IF8 blocks, the
two fp32 metrics with ``if_metric``. These formats take the divider path (``_grid.py``); the
blocks cover exact ties on the 8-bit grids and on NVFP4's E2M1 grid with ``block scale · ts``
divisors, NVFP4 block scales that saturate at 448 or are E4M3 subnormals or zero, blocks of
both lengths (NVFP4's 16 and ``quant_block``) mixed in one stream, and every corner class of
the contract (±0, subnormal inputs, zero and non-finite blocks, the largest finite bf16).
"""

import numpy as np
import pytest
from encodebench import (
    GRIDS,
    W,
    bf16,
    check,
    check_blocks,
    make_blocks,
    random_block,
    tie_block,
)
from quantbench import config

from unified_engine.numerics import fp
from unified_engine.numerics import quant_blocks as qb
from unified_engine.numerics.quant_grids import FP8_E4M3

NEW = (W.INT8, W.FP8, W.IF8, W.NVFP4)
ALL = (W.INT4, W.FP4, W.IF4, W.NVFP4, W.INT8, W.FP8, W.IF8)


def test_encode_8bit_full_throughput():
    """INT8/FP8/IF8 blocks back to back: a beat in and out every cycle, fixed latency."""
    cfg = config(4, 16)
    n = 40
    dut, _fmts, _blocks, log = check(cfg, np.random.default_rng(21), n,
                                     formats=(W.INT8, W.FP8, W.IF8))
    beats = n * dut.beats_per_block
    assert log.accepted == list(range(beats))
    out = [c for c, _ in log.delivered]
    assert out == list(range(dut.beats_per_block - 1 + dut.latency,
                             dut.beats_per_block - 1 + dut.latency + beats))


def test_encode_nvfp4_latency_and_throughput():
    """NVFP4 blocks (4 beats at quant_block 64, 8 lanes: half a bf16-scaled block)."""
    cfg = config(8, 64)
    n = 16
    dut, _fmts, _blocks, log = check(cfg, np.random.default_rng(22), n, formats=(W.NVFP4,))
    bpb = dut.beats_per_nvfp4_block
    assert bpb == 2 and dut.beats_per_block == 8
    assert log.accepted == list(range(n * bpb))
    out = [c for c, _ in log.delivered]
    assert out == list(range(bpb - 1 + dut.latency_nvfp4, bpb - 1 + dut.latency_nvfp4 + n * bpb))


@pytest.mark.parametrize(("lanes", "block"), [(4, 16), (4, 64), (16, 64)])
def test_encode_all_formats_mixed(lanes, block):
    """Every format in one stream (two block lengths), with gaps and output stalls."""
    n = {16: 24, 64: 10}[block] if lanes == 4 else 12
    check(config(lanes, block), np.random.default_rng(23 + lanes + block), n, formats=ALL,
          gap_probability=0.2, stall_probability=0.3, seed=lanes)


def _nvfp4_scale_codes(blocks, scales):
    return np.array([int(qb.encode_nvfp4(b[None], ts)[1][0]) for b, ts in
                     zip(blocks, scales, strict=True)])


def test_encode_corner_blocks_new_formats():
    """Each corner class in each new format, with the coverage of the classes asserted."""
    cfg = config(4, 16)
    rng = np.random.default_rng(24)
    fmts, blocks, scales = [], [], []

    def add(fmt, block, ts=None):
        fmts.append(fmt)
        blocks.append(block)
        scales.append(np.float32(ts) if fmt == W.NVFP4 else None)

    for fmt in NEW:
        for kind in ("top", "bottom", "sparse", "zero", "nonfinite", "wide"):
            block = random_block(rng, kind, 16)
            finite = np.isfinite(fp.bf16_to_f32(block)).all()
            add(fmt, block, qb.nvfp4_tensor_scale(block) if finite else 1.0)
        for _ in range(3):
            add(fmt, *tie_block(rng, fmt, 16))
        # The largest finite bf16: top codes that decode to ±Inf.
        add(fmt, np.array([0x7F7F, 0xFF7F] + [0x7F00] * 14, np.uint16), 2.0**100)
    # NVFP4 block scales: saturated (tiny ts), subnormal E4M3 (large ts), zero (amax/6ts below
    # half the smallest subnormal, 2**-10), and an E4M3 rounding tie (amax/6ts = 1.0625·2**k).
    gauss = bf16(rng.standard_normal(16))
    for ts in (2.0**-20, 2.0**-10, 0.05, 0.5, 2.0**8, 2.0**-126):
        add(W.NVFP4, gauss, ts)
    amax = float(np.abs(fp.bf16_to_f32(gauss)).max())
    add(W.NVFP4, gauss, amax / 6 / 2.0**-6 * 4)  # scale 2**-8: an E4M3 subnormal
    add(W.NVFP4, gauss, amax / 6 * 2.0**12)  # below 2**-10: scale 0, all codes 0
    tie = bf16([1.0625 * 6 * 2.0**-3] + [0.1] * 15)  # amax/(6·ts): tie of 0x20, 0x21
    add(W.NVFP4, tie, 1.0)
    codes = _nvfp4_scale_codes([b for f, b in zip(fmts, blocks, strict=True) if f == W.NVFP4],
                               [s for f, s in zip(fmts, scales, strict=True) if f == W.NVFP4])
    assert (codes == FP8_E4M3.max_code).any() and ((codes > 0) & (codes < 8)).any()
    assert (codes == 0).sum() >= 2 and (codes == qb.NVFP4_E4M3_NAN).any()
    assert 1.0625 * 2.0**-3 in FP8_E4M3.midpoints  # the tie block's amax/(6·ts)
    check_blocks(cfg, fmts, blocks, scales)


def test_new_tie_blocks_hold_real_ties():
    """The tie generator reaches exact midpoints of the INT8, E4M3 and NVFP4 E2M1 grids."""
    rng = np.random.default_rng(25)
    for fmt in (W.INT8, W.FP8, W.NVFP4):
        hits = 0
        for _ in range(5):
            block, ts = tie_block(rng, fmt, 16)
            x = np.abs(fp.bf16_to_f32(block).astype(np.float64))
            if fmt == W.NVFP4:
                scale_code = qb.encode_nvfp4(block[None], ts)[1][0]
                divisor = float(FP8_E4M3.values(scale_code)) * float(ts)
            else:
                entry = qb.encode_int8(block[None])[1][0] if fmt == W.INT8 else \
                    qb.encode_fp8(block[None])[1][0]
                divisor = float(fp.bf16_to_f32(np.uint16(entry & 0x7FFF)))
            hits += np.isin(x / divisor, GRIDS[fmt].midpoints).sum()
        assert hits > 20, fmt


def test_if8_picks_both_grids():
    """IF8 really chooses: some blocks keep INT8 (scale sign set), some FP8 (clear)."""
    rng = np.random.default_rng(26)
    fmts, blocks, _ = make_blocks(rng, 24, 16, (W.IF8,))
    flags = {int(qb.encode_if8(b[None])[1][0]) >> 15 for b in blocks}
    assert flags == {0, 1}
    check_blocks(config(4, 16), fmts, blocks)


@pytest.mark.slow
@pytest.mark.parametrize(("lanes", "block"), [(4, 16), (8, 64), (16, 16)])
def test_encode_new_formats_random_large(lanes, block):
    n = 600 if lanes == 4 else 150
    check(config(lanes, block), np.random.default_rng(27), n, formats=ALL,
          gap_probability=0.05, stall_probability=0.1)
