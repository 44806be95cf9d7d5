"""The timing model's rules (``host/timing.py``) against hand derivations of its documented
formulas: DMA bursts in flight, TRANSPOSE tiles, the VECTOR write port, ARGMAX4."""

from __future__ import annotations

import pytest

from unified_engine import EngineConfig
from unified_engine.host import TimingParams
from unified_engine.isa import VecOp
from unified_engine.isa_enums import ElemFormat, MemTarget, VecBcast, WeightFormat

SMALL = EngineConfig.preset("sim_small")
DEFAULT = EngineConfig()


def _dma(tm: TimingParams, cfg: EngineConfig, rows: int, row_bytes: int, stride: int,
         sram_stride: int, store: bool = False) -> int:
    return tm.dma(cfg, {"dram": 0, "rows": rows, "row_bytes": row_bytes, "dram_stride": stride,
                        "sram": 0, "sram_stride": sram_stride, "mem": MemTarget.SCRATCHPAD},
                  store=store)


@pytest.mark.parametrize("store", [False, True])
def test_dma_bursts_in_flight(store):
    tm = TimingParams.for_config(SMALL)
    b, lat = SMALL.axi_bytes, tm.dram_latency
    over = tm.store_overhead if store else tm.load_overhead
    # one-beat rows, one burst each: 8 fit in flight, the 9th waits for the 1st to complete
    # (data time 1) plus the latency, the rest follow one per cycle
    assert _dma(tm, SMALL, 8, b, 2 * b, 2 * b, store) == lat + 8 + over
    assert _dma(tm, SMALL, 16, b, 2 * b, 2 * b, store) == lat + (1 + lat + 8) + over
    # more bursts in flight: no wait
    wide = TimingParams.for_config(SMALL, dma_outstanding=16)
    assert _dma(wide, SMALL, 16, b, 2 * b, 2 * b, store) == lat + 16 + over
    # a packed transfer is one row, cut into 64-beat chunks: 2 bursts, no wait
    assert _dma(tm, SMALL, 16, 8 * b, 8 * b, 8 * b, store) == lat + 128 + over


def test_transpose_tiles():
    def transpose(cfg, rows, length, src=ElemFormat.BF16, dst=ElemFormat.BF16):
        tm = TimingParams.for_config(cfg)
        return tm.vector(cfg, {"op": VecOp.TRANSPOSE, "rows": rows, "length": length,
                               "src0_fmt": src, "dst_fmt": dst})

    # sim_small: T = 4 rows per tile, Ps = 4 bf16 per 8-byte beat; 5×11 → row groups {4, 1},
    # column tiles {4, 4, 3}: Σ(rows + 1 + columns) over the 6 tiles, + 2
    assert transpose(SMALL, 5, 11) == (4 + 1 + 4) * 2 + (4 + 1 + 3) + (1 + 1 + 4) * 2 \
        + (1 + 1 + 3) + 2
    # default: T = 16, Ps = 16; 64×64 is 4×4 full tiles
    assert transpose(DEFAULT, 64, 64) == 16 * (16 + 1 + 16) + 2
    # fp32 source: Ps = 8 per 32-byte beat; fp32 result: T = min(16, 32 / 4) = 8
    assert transpose(DEFAULT, 8, 8, ElemFormat.FP32, ElemFormat.FP32) == 8 + 1 + 8 + 2


def test_vector_write_port_and_argmax():
    tm = TimingParams.for_config(DEFAULT)
    f = {"op": VecOp.COPY, "rows": 2, "length": 64, "src0_fmt": ElemFormat.BF16,
         "src1_fmt": ElemFormat.BF16, "dst_fmt": ElemFormat.BF16, "bcast": VecBcast.TENSOR}
    fixed = tm.vector_latency + tm.vector_unit_latency(DEFAULT)
    assert tm.vector_unit_latency(DEFAULT) == 4 + 16 + 8 + 4  # 16-lane adder tree: 8
    # bf16 → bf16: a 16-lane beat reads and writes one 32-byte row
    assert tm.vector(DEFAULT, f) == fixed + 2 * 4
    # bf16 → fp32: 64 fp32 results are 8 rows to write, 4 beats to read
    assert tm.vector(DEFAULT, {**f, "dst_fmt": ElemFormat.FP32}) == fixed + 2 * 8
    # a reduction writes a few bytes per row: only its reads count
    red = {**f, "op": VecOp.RSUM, "dst_fmt": ElemFormat.FP32}
    assert tm.vector(DEFAULT, red) == fixed + tm.reduce_latency + 2 * 4
    # ARGMAX4 on 16 lanes: ArgmaxTop4 2 + 1 + log2(16 / 4) = 5, the 32-byte result is 1 row
    am = {**f, "op": VecOp.ARGMAX4}
    assert tm.vector(DEFAULT, am) == fixed + tm.reduce_latency + tm.argmax_latency + 5 + 2 * 4
    # sim_small: 4 lanes → tree 3, the result spans 4 rows of 8 bytes → 3 more
    assert TimingParams.for_config(SMALL).argmax_extra(SMALL) == 3 + 3


def test_quantize_formats_have_bits():
    tm = TimingParams.for_config(SMALL)
    for fmt in WeightFormat:
        if fmt is WeightFormat.BF16:
            continue
        f = {"op": VecOp.DEQUANTIZE, "rows": 1, "length": 64, "qfmt": fmt,
             "dst_fmt": ElemFormat.BF16}
        assert tm.vector(SMALL, f) > tm.move_latency
