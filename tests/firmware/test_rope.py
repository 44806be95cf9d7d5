"""firmware.rope through ``Engine.rope`` on the model backend: several heads × sequence lengths
around the position block (RB), bit-exact against the numerics golden models.

Regression for the partial-last-block bug: x / out advanced by a whole block after a partial
block, so every head after the first read and wrote the wrong rows when S % RB ≠ 0.
"""

import numpy as np
import pytest

from unified_engine import EngineConfig
from unified_engine.firmware.rope import rope_spec
from unified_engine.host import Engine
from unified_engine.numerics import fp

from . import golden as G

HEADS = [1, 2, 3]
POSITIONS = [1, 127, 128, 129, 200, 257]
# (config, head_dim, largest block RB): the default config blocks 128 positions; sim_small's
# scratchpad fits at most 102 rows of D = 8 (RB 64 for long S, 63 for S = 127), so its tails
# fall elsewhere.
CONFIGS = {"default": (EngineConfig(), 64, 128), "small": (G.small_config(), 8, 64)}


@pytest.fixture(scope="module", params=list(CONFIGS))
def case(request):
    config, d, rb = CONFIGS[request.param]
    return Engine.open("model", config, dram_bytes=1 << 22), d, rb


def tables(s: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Hugging Face cos / sin tables ([S, D], both halves equal)."""
    inv = 1.0 / 10000 ** (np.arange(0, d, 2) / d)
    ang = np.arange(s)[:, None] * inv[None, :]
    emb = np.concatenate([ang, ang], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def rope_bits(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """bf16 bits of the kernel's definition (firmware/rope.py, docs/ops.md): exact fp32
    products of the bf16 inputs, one fp32 add/sub, one rounding to bf16."""
    xb, cb, sb = (G.w32(G.b16(v)) for v in (x, cos, sin))
    h = x.shape[-1] // 2
    y1 = fp.f32_sub(fp.f32_mul(xb[..., :h], cb[:, :h]), fp.f32_mul(xb[..., h:], sb[:, :h]))
    y2 = fp.f32_add(fp.f32_mul(xb[..., h:], cb[:, h:]), fp.f32_mul(xb[..., :h], sb[:, h:]))
    return fp.f32_to_bf16(np.concatenate([y1, y2], axis=-1))


@pytest.mark.parametrize("s", POSITIONS)
@pytest.mark.parametrize("heads", HEADS)
def test_rope_heads_by_positions(case, heads, s):
    eng, d, rb = case
    spec = rope_spec(eng.config, heads, s, d)
    assert spec.rb <= rb
    assert s <= 128 or s % spec.rb, "the longer sequences must end with a partial block"
    rng = np.random.default_rng(heads * 1000 + s)
    # distinct values per head: a head reading another head's rows cannot pass by accident
    x = rng.standard_normal((heads, s, d)).astype(np.float32)
    cos, sin = tables(s, d)
    got = G.b16(eng.rope(x, cos, sin))
    G.assert_bits_equal(got, rope_bits(x, cos, sin), f"rope {heads}×{s}×{d}")


def test_rope_leading_dims_flatten_to_heads(case):
    """[B, H, S, D] with S % RB ≠ 0: every (batch, head) slice is its own rope."""
    eng, d, rb = case
    s = rb + 3
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, s, d)).astype(np.float32)
    cos, sin = tables(s, d)
    got = G.b16(eng.rope(x, cos, sin))
    for b in range(2):
        for h in range(3):
            G.assert_bits_equal(got[b, h], rope_bits(x[b, h], cos, sin), f"slice {b},{h}")
