"""Test-bench helpers for ``QuantEncoder``: block generators, simulation and golden checks.

Blocks are bf16 bit patterns (``uint16`` arrays of the format's block length: ``quant_block``,
or 16 for NVFP4). ``simulate`` streams whole blocks through the encoder (with the block's
format, and for NVFP4 its tensor scale, as side inputs) and splits the output beats back into
per-block codes and scale entries; ``check_blocks`` compares them (and, for IF blocks, the two
fp32 metrics the RTL computed) with the golden ``quant_blocks`` encoders.
"""

from __future__ import annotations

import numpy as np
from quantbench import pack, run_stream, unpack

from unified_engine.isa import WeightFormat
from unified_engine.numerics import fp
from unified_engine.numerics import quant_blocks as qb
from unified_engine.numerics.quant_grids import FP4_E2M1, FP8_E4M3, INT4, INT8
from unified_engine.rtl.quant import QuantEncoder
from unified_engine.rtl.quant.layout import EIGHT_BIT_FORMATS

W = WeightFormat
ENCODERS = {
    W.INT4: qb.encode_int4, W.FP4: qb.encode_fp4, W.IF4: qb.encode_if4,
    W.INT8: qb.encode_int8, W.FP8: qb.encode_fp8, W.IF8: qb.encode_if8,
}
DECODERS = {
    W.INT4: qb.decode_int4, W.FP4: qb.decode_fp4, W.INT8: qb.decode_int8, W.FP8: qb.decode_fp8,
}
#: Element grid of each single-grid format (NVFP4 elements are E2M1).
GRIDS = {W.INT4: INT4, W.FP4: FP4_E2M1, W.INT8: INT8, W.FP8: FP8_E4M3, W.NVFP4: FP4_E2M1}
#: The INT and FP halves of the IF formats.
IF_PARTS = {W.IF4: (W.INT4, W.FP4), W.IF8: (W.INT8, W.FP8)}


def bf16(values) -> np.ndarray:
    return fp.f32_to_bf16(np.asarray(values, np.float32))


def block_size(fmt: W, quant_block: int) -> int:
    return qb.NVFP4_BLOCK if fmt == W.NVFP4 else quant_block


def golden_scale_value(fmt: W, absmax: float) -> float:
    """|scale| the golden encoder of a bf16-scaled ``fmt`` derives from ``absmax``."""
    block = np.zeros((1, 16), np.uint16)
    block[0, 0] = bf16(absmax)
    return float(fp.bf16_to_f32(ENCODERS[fmt](block)[1] & 0x7FFF)[0])


# ----- block generators ------------------------------------------------------------------------

# Significant bits of the tie blocks' scales: M·scale must stay exact in bf16 for the small
# midpoints, and absmax = max·scale too (127 has 7 bits, 448 = 7·2**6 has 3).
_TIE_SCALE_BITS = {W.INT4: 4, W.FP4: 4, W.INT8: 1, W.FP8: 3}


def tie_block(rng, fmt: W, size: int):
    """A block with exact ties ``|x| = M·scale`` on midpoints ``M`` of ``fmt``'s grid.

    Returns ``(block, tensor_scale)`` (the tensor scale is ``None`` except for NVFP4, where the
    ties are ``M·block_scale·ts``). Only midpoints whose products are exact in bf16 are used.
    """
    if fmt in IF_PARTS:
        fmt = IF_PARTS[fmt][int(rng.integers(0, 2))]
    grid = GRIDS[fmt]
    ts = None
    while True:
        if fmt == W.NVFP4:
            ts = np.float32(2.0 ** int(rng.integers(-30, 10)))
            code = int(rng.integers(0x08, 0x7F))  # a normal E4M3 block scale
            divisor = float(FP8_E4M3.values(np.uint8(code))) * float(ts)
            absmax = 6.0 * divisor  # e4m3(absmax / (6·ts)) = code exactly
        else:
            bits = _TIE_SCALE_BITS[fmt]
            sig = int(rng.integers(1 << (bits - 1), 1 << bits))
            divisor = sig * 2.0 ** int(rng.integers(-40, 40))
            absmax = grid.max_value * divisor
            if golden_scale_value(fmt, absmax) != divisor:
                continue
        ties = grid.midpoints * divisor
        ties = ties[fp.bf16_to_f32(bf16(ties)).astype(np.float64) == ties]
        ties = ties[ties >= 2.0**-126]
        if len(ties):
            break
    values = np.resize(ties, size - 1) * np.where(rng.random(size - 1) < 0.5, -1.0, 1.0)
    block = np.concatenate([[absmax], values])
    rng.shuffle(block)
    out = bf16(block)
    assert np.all(fp.bf16_to_f32(out).astype(np.float64) == block)  # exact in bf16
    return out, ts


def random_block(rng, kind: str, size: int) -> np.ndarray:
    if kind == "gauss":
        return bf16(rng.standard_normal(size) * 2.0 ** int(rng.integers(-60, 60)))
    if kind == "heavy":
        return bf16(rng.standard_t(2, size) * 2.0 ** int(rng.integers(-30, 30)))
    if kind == "wide":  # any finite bf16, so huge dynamic range inside a block
        bits = rng.integers(0, 1 << 16, size).astype(np.uint16)
        return np.where((bits & 0x7F80) == 0x7F80, bits & 0x807F, bits).astype(np.uint16)
    if kind == "top":  # near and at the largest finite bf16
        bits = rng.integers(0x7E00, 0x7F80, size) | (rng.integers(0, 2, size) << 15)
        bits[rng.integers(0, size)] = 0x7F7F | (int(rng.integers(0, 2)) << 15)
        return bits.astype(np.uint16)
    if kind == "bottom":  # subnormals and the smallest normals: absmax·R flushes
        bits = rng.integers(0, 0x0200, size) | (rng.integers(0, 2, size) << 15)
        return bits.astype(np.uint16)
    if kind == "sparse":  # mostly ±0 and subnormals, a few normal values
        bits = rng.choice([0x0000, 0x8000, 0x0001, 0x807F], size)
        pick = rng.random(size) < 0.2
        bits[pick] = bf16(rng.standard_normal(pick.sum()) * 100)
        return bits.astype(np.uint16)
    if kind == "zero":
        return rng.choice([0x0000, 0x8000], size).astype(np.uint16)
    if kind == "nonfinite":
        block = bf16(rng.standard_normal(size))
        block[rng.integers(0, size)] = rng.choice([0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x7F81])
        return block
    raise ValueError(kind)


KINDS = ["gauss", "gauss", "heavy", "wide", "top", "bottom", "sparse", "zero", "nonfinite", "tie"]


def random_tensor_scale(rng, block) -> np.float32:
    """A tensor scale for an NVFP4 block: the block's own (as ``quantize`` would choose, when
    finite), or one far off so that block scales saturate at 448 or become E4M3 subnormals."""
    x = fp.bf16_to_f32(block)
    finite = np.isfinite(x).all()
    base = qb.nvfp4_tensor_scale(block) if finite else np.float32(1.0)
    shift = int(rng.choice([0, 0, 0, -12, -6, 5, 9, 14]))
    ts = float(base) * 2.0**shift * float(rng.uniform(0.6, 1.7))
    return np.float32(min(max(ts, 2.0**-126), 2.0**127))


def make_blocks(rng, n, quant_block, formats=(W.INT4, W.FP4, W.IF4)):
    """``n`` blocks of random formats and kinds: ``(fmts, blocks, tensor_scales)``."""
    fmts = [formats[k] for k in rng.integers(0, len(formats), n)]
    kinds = [KINDS[k] for k in rng.integers(0, len(KINDS), n)]
    blocks, scales = [], []
    for fmt, kind in zip(fmts, kinds, strict=True):
        size = block_size(fmt, quant_block)
        ts = None
        if kind == "tie" and (fmt in GRIDS or fmt in IF_PARTS):
            block, ts = tie_block(rng, fmt, size)
        else:
            block = random_block(rng, "gauss" if kind == "tie" else kind, size)
        if fmt == W.NVFP4 and ts is None:
            ts = random_tensor_scale(rng, block)
        blocks.append(block)
        scales.append(ts)
    return fmts, blocks, scales


# ----- golden models -----------------------------------------------------------------------------


def golden(fmt, block, ts=None):
    """Codes (one per byte) and the 16-bit scale entry; ``fmt=None``: a format not built."""
    if fmt is None or fmt == W.BF16:
        return np.zeros(block.shape, np.uint8), 0x7FC0
    if fmt == W.NVFP4:
        codes, scales = qb.encode_nvfp4(block[None], np.float32(ts))
        return codes[0], int(scales[0])
    codes, scales = ENCODERS[fmt](block[None])
    return codes[0], int(scales[0])


def golden_metrics(fmt, block):
    """fp32 bits of the INT and FP ``if_metric`` of an IF4/IF8 block."""
    x = block[None]
    out = []
    for part in IF_PARTS[fmt]:
        codes, scales = ENCODERS[part](x)
        out.append(int(fp.f32_to_bits(qb.if_metric(x, DECODERS[part](codes, scales)))[0]))
    return tuple(out)


# ----- simulation ---------------------------------------------------------------------------------


def simulate(cfg, fmts, blocks, tensor_scales=None, metric_lanes=None, **stream_kw):
    """Stream the blocks through a ``QuantEncoder(cfg)``; per block codes, entries and the log."""
    dut = QuantEncoder(cfg, metric_lanes=metric_lanes)
    g = dut.geometry
    if tensor_scales is None:
        tensor_scales = [None] * len(blocks)
    beats, owner = [], []
    for b, (fmt, block, ts) in enumerate(zip(fmts, blocks, tensor_scales, strict=True)):
        for j in range(len(block) // g.lanes):
            beat = {"payload": pack(block[j * g.lanes : (j + 1) * g.lanes], 16), "fmt": fmt}
            if hasattr(dut, "tensor_scale"):
                beat["tensor_scale"] = int(fp.f32_to_bits(np.float32(ts if ts else 1.0)))
            beats.append(beat)
            owner.append(b)
    watch = {}
    if hasattr(dut, "metric_valid"):
        watch = dict(watch=(dut.metric_int, dut.metric_fp), watch_when=dut.metric_valid)
    log = run_stream(dut, beats, len(beats), **watch, **stream_kw)
    code_mask = (1 << (g.lanes * g.code_bits)) - 1
    codes = [[] for _ in blocks]
    entries = [set() for _ in blocks]
    for b, payload in zip(owner, log.outputs, strict=True):
        field = payload & code_mask
        if fmts[b] in EIGHT_BIT_FORMATS:
            codes[b].extend(unpack(field, 8, g.lanes))
        else:
            codes[b].extend(unpack(field, 4, g.lanes))
            assert field >> (4 * g.lanes) == 0, "4-bit codes must leave the upper codes zero"
        # Every beat of a block carries the block's entry in every slot.
        entries[b].update(unpack(payload >> (g.lanes * g.code_bits), 16, g.scale_slots))
    assert all(len(e) == 1 for e in entries), "the scale entry changed inside a block"
    return (dut, [np.array(c, np.uint8) for c in codes], [e.pop() for e in entries], log)


def check_blocks(cfg, fmts, blocks, tensor_scales=None, **stream_kw):
    """Simulate, then compare codes, scales and (IF blocks) metrics with the golden model."""
    n = len(blocks)
    built = {W[f.upper()] for f in cfg.formats if f != "bf16"}
    if tensor_scales is None:
        tensor_scales = [None] * n
    dut, codes, entries, log = simulate(cfg, fmts, blocks, tensor_scales, **stream_kw)
    for b, (fmt, block, ts) in enumerate(zip(fmts, blocks, tensor_scales, strict=True)):
        want_codes, want_entry = golden(fmt if fmt in built else None, block, ts)
        assert entries[b] == want_entry and (codes[b] == want_codes).all(), (
            f"block {b} ({fmt.name}, ts={ts}): got entry {entries[b]:#06x} codes "
            f"{codes[b].tolist()}, expected {want_entry:#06x} {want_codes.tolist()}; "
            f"block {[hex(v) for v in block]}"
        )
    if hasattr(dut, "metric_valid"):
        # One metric pair per block (every block runs through the metric datapath); compare
        # those of finite IF blocks (non-finite ones are overridden and not defined).
        assert len(log.watched) == n
        for b, (fmt, block) in enumerate(zip(fmts, blocks, strict=True)):
            finite = np.isfinite(fp.bf16_to_f32(block)).all()
            if fmt in IF_PARTS and finite and fmt in built:
                want = golden_metrics(fmt, block)
                assert log.watched[b] == want, (
                    f"block {b} ({fmt.name}): metrics {[hex(v) for v in log.watched[b]]}, "
                    f"expected {[hex(v) for v in want]}"
                )
    return dut, log


def check(cfg, rng, n, formats=(W.INT4, W.FP4, W.IF4), **stream_kw):
    fmts, blocks, scales = make_blocks(rng, n, cfg.quant_block, formats)
    dut, log = check_blocks(cfg, fmts, blocks, scales, **stream_kw)
    return dut, fmts, blocks, log
