# amaranth: UnusedElaboratable=no
"""Fp32ToBf16 RTL vs the golden model ``fp.f32_to_bf16``."""

import numpy as np
import pytest
from fpvectors import F32_SPECIALS, f32_values
from simhelpers import assert_bits_equal, drive_pipeline, run

from unified_engine.numerics import fp
from unified_engine.rtl.fp import Fp32ToBf16


@pytest.mark.parametrize("latency", [0, 1, 2])
def test_to_bf16_bit_exact(latency):
    x = np.concatenate([f32_values(np.random.default_rng(latency), 1200), F32_SPECIALS])
    x = x.astype(np.uint32)
    dut = Fp32ToBf16(latency=latency)
    out = {}

    async def bench(ctx):
        (out["r"],) = await drive_pipeline(ctx, [(dut.a, x)], [dut.result], latency)

    run(dut, bench)
    expected = fp.f32_to_bf16(fp.f32_from_bits(x))
    # The vectors must contain exact ties that round both up and down, and overflow to Inf.
    low = x & 0xFFFF
    assert ((low == 0x8000) & ((x >> 16) & 1 == 0)).sum() >= 10
    assert ((low == 0x8000) & ((x >> 16) & 1 == 1)).sum() >= 10
    assert_bits_equal(out["r"], expected, x, name="f32_to_bf16")


def test_to_bf16_rejects_bad_latency():
    with pytest.raises(ValueError, match="latency"):
        Fp32ToBf16(latency=3)
