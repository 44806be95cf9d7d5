"""Pieces of the model runtime: specs, format policies, KV cache, row copies, projections."""

import numpy as np
import pytest

from unified_engine.config import EngineConfig
from unified_engine.host.generate import parse_weights
from unified_engine.host.models import KVCache, ModelSpec, WeightFormats
from unified_engine.host.models.perf import anchor_scaled, tokens_per_second
from unified_engine.host.models.runtime import CopySpec, copy_rows, view
from unified_engine.numerics import fp

from .conftest import TINY_GPT2, TINY_LLAMA, live_blocks


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_gpt2"])
def test_spec_parameter_count_matches_transformers(which, request):
    weights, ref = request.getfixturevalue(which)
    assert weights.spec.params == sum(p.numel() for p in ref.parameters())
    assert ModelSpec.from_hf(ref.config, weights.spec.name) == weights.spec


def test_spec_validation():
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        ModelSpec(**{**TINY_LLAMA.__dict__, "kv_heads": 3})
    with pytest.raises(ValueError, match="unknown arch"):
        ModelSpec(**{**TINY_LLAMA.__dict__, "arch": "mamba"})
    with pytest.raises(ValueError, match="gpt2 needs"):
        ModelSpec(**{**TINY_GPT2.__dict__, "kv_heads": 1})


def test_weight_format_policies():
    assert WeightFormats("if4")("layers.3.q") == "if4"
    assert WeightFormats("if4")("lm_head") == "if4"
    p = WeightFormats({"lm_head": "bf16", "layers.0.*": "int4", "*.down": "nvfp4"})
    assert [p(n) for n in ("lm_head", "layers.0.down", "layers.5.down", "layers.5.q")] == \
        ["bf16", "int4", "nvfp4", "bf16"]      # first match wins, unmatched → bf16
    assert parse_weights("lm_head=bf16,*=int4")("layers.1.up") == "int4"
    assert parse_weights("fp4").label == "fp4"
    with pytest.raises(ValueError, match="bad weight format"):
        WeightFormats("int3")
    with pytest.raises(ValueError, match="pattern=format"):
        parse_weights("=int4")


def test_kv_cache_appends_on_the_device(engine):
    cache = KVCache(engine, layers=2, kv_heads=3, head_dim=32, capacity=20)
    try:
        assert cache.capacity == 64 and cache.length == 0
        rng = np.random.default_rng(0)
        rows = []
        for s in (5, 1, 2):
            k = rng.standard_normal((3, s, 32)).astype(np.float32)
            kd, vd = engine.tensor(k, dtype="bf16"), engine.tensor(-k, dtype="bf16")
            runs = cache.append(1, kd, vd)
            assert all(r.cycles > 0 for r in runs)
            cache.advance(s)
            kd.free()
            vd.free()
            rows.append(fp.f32_to_bf16(k))
        want = np.concatenate(rows, axis=1)                       # [3, 8, 32]
        got = cache.k[1].bits()
        assert np.array_equal(got[:, :8], want)
        assert np.array_equal(cache.v[1].bits()[:, :8], fp.f32_to_bf16(-fp.bf16_to_f32(want)))
        assert not got[:, 8:].any() and not cache.k[0].bits().any()
        mask = cache.mask(2)                      # positions 8 and 9
        assert mask.shape == (2, 64)
        assert mask[0].sum() == 9 and mask[1].sum() == 10 and mask[1, :10].all()
        with pytest.raises(ValueError, match="do not fit"):
            cache.advance(60)
    finally:
        cache.free()
    assert live_blocks(engine) == []


def test_copy_rows_with_pitches(engine):
    src = np.arange(4 * 7 * 16, dtype=np.float32).reshape(4, 7, 16)
    s_dev = engine.tensor(src, dtype="bf16")
    d_dev = engine.tensor(np.zeros((4, 10, 16), np.float32), dtype="bf16")
    try:
        spec = CopySpec(groups=4, rows=7, row_bytes=32, src_pitch=7 * 32, dst_pitch=10 * 32)
        copy_rows(engine, s_dev.addr, d_dev.addr + 3 * 32, spec)
        got = d_dev.bits()
        assert np.array_equal(got[:, 3:], fp.f32_to_bf16(src))
        assert not got[:, :3].any()
    finally:
        s_dev.free()
        d_dev.free()


def test_views_stay_inside_their_tensor(engine):
    t = engine.tensor(np.zeros((4, 8), np.float32), dtype="bf16")
    try:
        v = view(t, (2, 8), 16)
        assert v.addr == t.addr + 32 and v.shape == (2, 8)
        v.free()                                 # a view never frees its owner's memory
        with pytest.raises(ValueError, match="exceeds"):
            view(t, (3, 8), 16)
    finally:
        t.free()


def test_board_projections():
    assert tokens_per_second(2e6, "kintex7") == pytest.approx(100.0)       # 200 MHz
    assert tokens_per_second(3.33e6, "ku15p") == pytest.approx(100.0)      # 333 MHz
    assert tokens_per_second(3e6, "alveo_u50") == pytest.approx(100.0)     # 300 MHz
    assert EngineConfig.preset("kintex7").clock_mhz == 200.0
    scaled = anchor_scaled(100_000_000)
    assert set(scaled) == {"kintex7", "ku15p", "alveo_u50"}
    # Llama 3.2 1B at 8.2 tok/s and Gemma 3 1B at 10.3 tok/s on Kintex-7: the better one wins
    assert scaled["kintex7"][0] == pytest.approx(10.3 * 999_885_952 / 1e8)
    with pytest.raises(ValueError):
        tokens_per_second(0, "kintex7")
    # several engines: one sequence each, capped by the board's DRAM bandwidth
    from unified_engine.host.models.perf import board_dram_bandwidth, soc_tokens_per_second

    assert EngineConfig.preset("alveo_u50").engines == 8
    assert soc_tokens_per_second(3e6, "alveo_u50", 1e6) == (pytest.approx(800.0), "engines")
    rate, bound = soc_tokens_per_second(2e6, "kintex7", 1e9)            # 1 GB per token
    assert bound == "dram" and rate == pytest.approx(board_dram_bandwidth("kintex7") / 1e9)
    assert 1e9 < board_dram_bandwidth("kintex7") < board_dram_bandwidth("alveo_u50")
    eight = anchor_scaled(100_000_000, engines=8)
    assert set(eight) == {"alveo_u50"} and eight["alveo_u50"][0] > scaled["alveo_u50"][0]


def test_run_timeout_shadows_the_engine_run_only_inside(engine):
    from unified_engine.host.models.runtime import run_timeout

    calls = []
    original = type(engine).run

    def spy(self, *args, **kw):
        calls.append(kw.get("timeout"))
        return original(self, *args, **kw)

    type(engine).run = spy
    try:
        with run_timeout(engine, 1234.0):
            engine.add(np.ones((2, 16), np.float32), 1.0)
            with run_timeout(engine, 5.0):           # nested: the outer setting stays
                engine.add(np.ones((2, 16), np.float32), 1.0)
        assert "run" not in engine.__dict__
        engine.add(np.ones((2, 16), np.float32), 1.0)
    finally:
        type(engine).run = original
    assert calls == [1234.0, 1234.0, None]
