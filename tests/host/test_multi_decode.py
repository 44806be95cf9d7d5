"""Device-resident row-split matmul (shard_matmul_device) and the tensor-parallel decode
facade (TensorParallel): bit-identical with one engine, fewer cycles."""

import dataclasses

import numpy as np
import pytest

from firmware import golden as G
from unified_engine.config import EngineConfig
from unified_engine.host import Engine
from unified_engine.host.multi import MultiEngine
from unified_engine.host.multi_decode import TensorParallel
from unified_engine.host.ops_shard import shard_matmul_device

DRAM = 1 << 23
SMALL = dataclasses.replace(G.small_config(), engines=4)


@pytest.mark.parametrize("e", [2, 3])
@pytest.mark.parametrize("bias", [None, "col", "full"])
def test_device_row_split_matmul_is_bit_exact(e, bias):
    rng = np.random.default_rng(e)
    m, k, n = 29, 20, 6
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bv = None if bias is None else rng.standard_normal((n,) if bias == "col" else (m, n)
                                                       ).astype(np.float32)
    single = Engine.open("model", SMALL, dram_bytes=DRAM)
    ref = single.matmul(single.tensor(a, "bf16"), single.tensor(b, "bf16"),
                        bias=None if bv is None else single.tensor(bv, "bf16"),
                        activation="silu").bits()
    multi = MultiEngine.open("model", SMALL, engines=e, dram_bytes=DRAM)
    out, run = shard_matmul_device(multi, multi.tensor(a, "bf16"), multi.tensor(b, "bf16"),
                                   None if bv is None else multi.tensor(bv, "bf16"),
                                   activation="silu")
    np.testing.assert_array_equal(out.bits(), ref)
    assert out.shape == (m, n) and run.engines == e
    with pytest.raises(TypeError, match="bf16 DeviceTensor"):
        shard_matmul_device(multi, a, multi.tensor(b, "bf16"))
    with pytest.raises(ValueError, match="bias must be"):
        shard_matmul_device(multi, multi.tensor(a, "bf16"), multi.tensor(b, "bf16"),
                            multi.tensor(np.ones(n + 1, np.float32), "bf16"))


def test_tensor_parallel_decode_steps_are_bit_identical_and_faster():
    """Two decode steps of a small Llama-shaped model (random weights): the logits of the
    2-engine run equal the single engine's bit for bit, its GEMVs ran sharded, and each step
    took fewer cycles."""
    from unified_engine.host.models.spec import ModelSpec, ModelWeights
    from unified_engine.host.models.zoo import build

    spec = ModelSpec(arch="llama", vocab_size=256, hidden_size=128, layers=1, heads=4,
                     kv_heads=2, head_dim=32, intermediate_size=192, norm_eps=1e-5,
                     max_positions=16)
    rng = np.random.default_rng(0)
    h, i, d = spec.hidden_size, spec.intermediate_size, spec.head_dim

    def w(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    layer = "model.layers.0."
    weights = ModelWeights(spec, {
        "model.embed_tokens.weight": w(spec.vocab_size, h),
        "model.norm.weight": 1 + w(h) / 4,
        layer + "input_layernorm.weight": 1 + w(h) / 4,
        layer + "post_attention_layernorm.weight": 1 + w(h) / 4,
        layer + "self_attn.q_proj.weight": w(spec.heads * d, h),
        layer + "self_attn.k_proj.weight": w(spec.kv_heads * d, h),
        layer + "self_attn.v_proj.weight": w(spec.kv_heads * d, h),
        layer + "self_attn.o_proj.weight": w(h, spec.heads * d),
        layer + "mlp.gate_proj.weight": w(i, h),
        layer + "mlp.up_proj.weight": w(i, h),
        layer + "mlp.down_proj.weight": w(h, i),
    })
    cfg = dataclasses.replace(EngineConfig(), engines=2)

    def steps(eng):
        model = build(eng, weights)
        cache = model.new_cache(4)
        out = []
        for tok in (3, 7):
            with model.log.section() as cycles:
                logits = model.forward([tok], cache)
            out.append((logits.bits().copy(), sum(cycles.values())))
            logits.free()
        return out

    ref = steps(Engine.open("model", cfg, dram_bytes=1 << 27))
    tp = TensorParallel(MultiEngine.open("model", cfg, engines=2, dram_bytes=1 << 28))
    got = steps(tp)
    assert tp.sharded > 0
    for (want, c1), (have, c2) in zip(ref, got, strict=True):
        np.testing.assert_array_equal(have, want)
        assert c2 < c1
    with pytest.raises(TypeError, match="needs a MultiEngine"):
        TensorParallel(Engine.open("model", cfg, dram_bytes=1 << 24))
