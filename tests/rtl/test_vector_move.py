# amaranth: UnusedElaboratable=no
"""``VectorMove`` (QUANTIZE, DEQUANTIZE, TRANSPOSE) vs the ISA simulator, byte for byte.

Every test resolves its instructions like the dispatcher (``Machine._resolve``), runs them on
the ISA simulator (``host.units.vector``) and on the RTL against ``SramModel`` memories with
the same initial contents, and compares every byte of the scratchpad and the scale memory
(``movebench``). Covered: every quantized format in both directions (bf16 and fp32 output),
packed and explicit strides, odd row counts, NVFP4 tensor scales that saturate or shrink block
scales, transposes of odd shapes in all four format pairs (with subnormal and NaN bits),
groups of rows beyond one tile, empty instructions, random memory stalls and latency, and a
few cases on the default configuration.
"""

import dataclasses

import numpy as np
import pytest
from movebench import (
    SIM_SMALL,
    MoveBench,
    bf16_rows,
    block_of,
    elem_bytes,
    element_bits,
    make,
    rows_of,
    tensor_scale_bits,
    write_bytes,
)

from unified_engine.config import EngineConfig
from unified_engine.isa import ElemFormat, VecOp, WeightFormat
from unified_engine.rtl.vector_move import VectorMove

W, E = WeightFormat, ElemFormat
QUANT_FORMATS = [f for f in W if f != W.BF16]


def quantize(bench: MoveBench, fmt: W, rows: int, blocks: int, src: int, dst: int, qscale: int,
             src_stride: int = 0, dst_stride: int = 0):
    """A QUANTIZE of fresh bf16 data (written into the bench's scratchpad at ``src``)."""
    cfg, rng = bench.config, bench.rng
    length = blocks * block_of(cfg, fmt)
    beat = cfg.axi_bytes
    x = bf16_rows(rng, rows * length)
    stride = src_stride or rows_of(2 * length, beat)
    write_bytes(bench.spad, src, beat, x.view(np.uint8), stride, rows)
    imm = tensor_scale_bits(rng, x) if fmt == W.NVFP4 else int(rng.integers(0, 1 << 32))
    return make(cfg, VecOp.QUANTIZE, src0=src, dst=dst, rows=rows, length=length,
                src0_stride=src_stride, dst_stride=dst_stride, qfmt=fmt, qscale=qscale,
                imm=imm)


def dequantize(bench: MoveBench, fmt: W, rows: int, blocks: int, src: int, dst: int,
               qscale: int, out: E, src_stride: int = 0, dst_stride: int = 0, imm=None):
    """A DEQUANTIZE of whatever codes and scale entries the memories hold."""
    cfg, rng = bench.config, bench.rng
    length = blocks * block_of(cfg, fmt)
    if imm is None:
        ts = float(2.0 ** rng.integers(-30, 30) * rng.uniform(1, 2))
        imm = int(np.float32(ts).view(np.uint32))
    return make(cfg, VecOp.DEQUANTIZE, src0=src, dst=dst, rows=rows, length=length,
                src0_stride=src_stride, dst_stride=dst_stride, qfmt=fmt, qscale=qscale,
                dst_fmt=out, imm=imm)


def transpose(bench: MoveBench, rows: int, length: int, src: int, dst: int, src_fmt: E,
              dst_fmt: E, src_stride: int = 0, dst_stride: int = 0):
    """A TRANSPOSE of fresh corner-rich elements (written at ``src``)."""
    beat = bench.config.axi_bytes
    stride = src_stride or rows_of(length * elem_bytes(src_fmt), beat)
    write_bytes(bench.spad, src, beat, element_bits(bench.rng, rows * length, src_fmt),
                stride, rows)
    return make(bench.config, VecOp.TRANSPOSE, src0=src, dst=dst, rows=rows, length=length,
                src0_stride=src_stride, dst_stride=dst_stride, src0_fmt=src_fmt,
                dst_fmt=dst_fmt)


def test_quantize_every_format():
    """Each format, odd row counts, packed and explicit strides; then DEQUANTIZE it back."""
    bench = MoveBench(seed=1)
    program = []
    qscale = 3
    for k, fmt in enumerate(QUANT_FORMATS):
        rows, blocks = (3, 2) if k % 2 else (1, 3)
        src, dst = 40 + 120 * k, 1100 + 60 * k
        src_stride = 0 if k % 3 else rows_of(2 * blocks * block_of(SIM_SMALL, fmt), 8) + 3
        dst_stride = 5 if k % 2 else 0
        program.append(quantize(bench, fmt, rows, blocks, src, dst, qscale, src_stride,
                                dst_stride))
        program.append(dequantize(bench, fmt, rows, blocks, dst, 1600 + 50 * k, qscale,
                                  E.FP32 if k % 2 else E.BF16, dst_stride, 0,
                                  imm=program[-1].fields["imm"]))
        qscale += rows * blocks + 2
    result = bench.run(program)
    assert len(result.cycles) == len(program)


def test_dequantize_random_codes_and_scales():
    """Arbitrary code bytes and scale entries (NaN/Inf/zero/subnormal scales, both INT flags)."""
    bench = MoveBench(seed=2)
    program = []
    for k, fmt in enumerate(QUANT_FORMATS):
        for out in (E.BF16, E.FP32):
            rows = 1 + 2 * (k % 2)
            program.append(dequantize(bench, fmt, rows, 2, 8 * k + 3, 700 + 90 * k +
                                      (40 if out == E.FP32 else 0), 37 * k + 1, out,
                                      src_stride=4 if out == E.FP32 else 0))
    bench.run(program)


PAIRS = [(E.BF16, E.BF16), (E.FP32, E.FP32), (E.BF16, E.FP32), (E.FP32, E.BF16)]


@pytest.mark.parametrize(("src_fmt", "dst_fmt"), PAIRS)
def test_transpose_odd_shapes(src_fmt, dst_fmt):
    """Odd shapes in one format pair: a single row or column, partial tiles and beats, more
    rows than a tile, explicit strides; the source holds random bits (subnormals, NaNs)."""
    bench = MoveBench(seed=3)
    program = []
    dst = 1200
    for rows, length, src_stride, dst_stride in ((5, 7, 0, 0), (1, 9, 0, 3), (9, 1, 2, 0),
                                                 (6, 13, 8, 0), (4, 4, 0, 0)):
        es, ed = elem_bytes(src_fmt), elem_bytes(dst_fmt)
        program.append(transpose(bench, rows, length, 20 + 60 * len(program), dst, src_fmt,
                                 dst_fmt, src_stride, dst_stride))
        dst += length * (dst_stride or rows_of(rows * ed, 8)) + 1
        assert es * length <= 8 * max(src_stride, rows_of(es * length, 8))
    bench.run(program)


def test_transpose_many_tiles_and_throughput():
    """bf16 with rows a multiple of the tile: about 2·length·rows/T cycles (reads + writes)."""
    bench = MoveBench(seed=4)
    rows, length = 8, 16
    result = bench.run([transpose(bench, rows, length, 10, 600, E.BF16, E.BF16)])
    tile = SIM_SMALL.lanes
    requests = 2 * length * rows // tile
    assert result.spad_reads + result.spad_writes == requests
    tiles = (rows // tile) * (length // 4)
    assert result.cycles[0] <= requests + 2 * tiles + 4, result.cycles


def test_stalls_latency_and_back_to_back():
    """All three ops back to back against memories that stall and answer late, out of order
    of nothing: the responses keep their order but arrive after 2–4 cycles."""
    bench = MoveBench(seed=5)
    program = [
        quantize(bench, W.IF8, 3, 1, 30, 900, 10, dst_stride=3),
        dequantize(bench, W.IF8, 3, 1, 900, 1000, 10, E.FP32, src_stride=3),
        transpose(bench, 5, 6, 30, 1300, E.BF16, E.FP32),
        quantize(bench, W.NVFP4, 2, 2, 200, 950, 40),
        dequantize(bench, W.NVFP4, 2, 2, 950, 1400, 40, E.BF16),
        quantize(bench, W.IF4, 2, 1, 300, 980, 70, src_stride=9),
    ]
    # The NVFP4 DEQUANTIZE must use the tensor scale its QUANTIZE stored.
    program[4] = dequantize(bench, W.NVFP4, 2, 2, 950, 1400, 40, E.BF16,
                            imm=program[3].fields["imm"])
    bench.run(program, stall=0.3, latency=2, jitter=2)


def test_empty_instructions_finish_at_once():
    bench = MoveBench(seed=6)
    program = [
        make(SIM_SMALL, VecOp.QUANTIZE, rows=0, length=16, qfmt=W.INT4),
        make(SIM_SMALL, VecOp.TRANSPOSE, rows=3, length=0),
        make(SIM_SMALL, VecOp.DEQUANTIZE, rows=0, length=0, qfmt=W.FP8),
    ]
    result = bench.run(program)
    assert result.cycles == [1, 1, 1]
    assert result.spad_reads == result.spad_writes == 0


def test_default_config_cases():
    """The default engine (16 lanes, 32-byte rows): one instruction of each kind."""
    cfg = EngineConfig()
    bench = MoveBench(cfg, seed=7)
    program = [
        quantize(bench, W.IF4, 2, 1, 100, 4000, 20, dst_stride=2),
        dequantize(bench, W.NVFP4, 2, 3, 300, 4100, 90, E.FP32),
        transpose(bench, 20, 24, 500, 5000, E.BF16, E.BF16),
        transpose(bench, 3, 10, 700, 5100, E.FP32, E.BF16, dst_stride=2),
    ]
    bench.run(program)


def test_rejects_bad_parameters():
    with pytest.raises(TypeError, match="EngineConfig"):
        VectorMove("sim_small")
    for bad in (1, 3, 8, True):
        with pytest.raises(ValueError, match="encode_lanes"):
            VectorMove(SIM_SMALL, encode_lanes=bad)
    with pytest.raises(ValueError, match="tile_rows"):
        VectorMove(SIM_SMALL, tile_rows=8)
    # Without a block format only TRANSPOSE is built.
    dut = VectorMove(dataclasses.replace(SIM_SMALL, formats=("bf16",)))
    assert not dut.has_quant


def random_program(bench: MoveBench, count: int):
    """Random QUANTIZE / DEQUANTIZE / TRANSPOSE instructions with sources in the lower half
    of the scratchpad and destinations in the upper half (so no instruction overlaps itself)."""
    cfg, rng = bench.config, bench.rng
    half = cfg.scratchpad_rows // 2
    entries = cfg.scale_bytes // 2
    program = []
    for _ in range(count):
        kind = rng.integers(0, 3)
        rows = int(rng.integers(1, 6))
        if kind == 2:
            fmts = [E.BF16, E.FP32]
            length = int(rng.integers(1, 20))
            src_fmt, dst_fmt = (fmts[k] for k in rng.integers(0, 2, 2))
            src_stride = int(rng.choice([0, rows_of(length * 4, cfg.axi_bytes) + 1]))
            program.append(transpose(bench, rows, length, int(rng.integers(0, half // 2)),
                                     half + int(rng.integers(0, half // 2)), src_fmt, dst_fmt,
                                     src_stride=src_stride))
            continue
        fmt = QUANT_FORMATS[rng.integers(0, len(QUANT_FORMATS))]
        blocks = int(rng.integers(1, 4))
        qscale = int(rng.integers(0, entries - rows * blocks - 2))
        src = int(rng.integers(0, half // 2))
        dst = half + int(rng.integers(0, half // 2))
        if kind == 0:
            program.append(quantize(bench, fmt, rows, blocks, src, dst, qscale,
                                    dst_stride=int(rng.choice([0, 7]))))
        else:
            program.append(dequantize(bench, fmt, rows, blocks, src, dst, qscale,
                                      [E.BF16, E.FP32][rng.integers(0, 2)],
                                      src_stride=int(rng.choice([0, 5]))))
    return program


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_random_programs(seed):
    bench = MoveBench(seed=seed)
    bench.run(random_program(bench, 40), stall=0.2 if seed % 2 else 0.0,
              latency=1 + seed % 3, jitter=seed % 2)


@pytest.mark.slow
def test_random_programs_default_config():
    bench = MoveBench(EngineConfig(), seed=14, encode_lanes=8, metric_lanes=2)
    bench.run(random_program(bench, 16), stall=0.1, latency=2)
