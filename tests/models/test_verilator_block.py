"""One transformer block of each model on the Verilator backend, bit-identical to the model
backend (slow: builds/loads the Verilated small configuration, then ~1–2 M simulated cycles
per block).

Configuration: ``tests/firmware/golden.small_config()`` (2×2 array, P = 2, 4 lanes, 64-bit
AXI, 16 KiB scratchpad).  Its scratchpad cannot hold a 1536-wide SmolLM2 MLP row for the
element-wise ops (``UnsupportedOp``), and a full-width block would take ~10⁷ simulated cycles,
so both blocks are **reduced in width**:

* Llama / SmolLM2 shape: real SmolLM2-135M weights of block 7 cut by
  :func:`~unified_engine.host.models.block.narrow_llama` to 192 channels, 2 KV heads with
  their 6 query heads (GQA 3:1, head_dim 64 as in SmolLM2), 512 MLP units;
* GPT-2 shape: random ``transformers`` weights, 128 wide, 2 heads of 64, 512 MLP units.

Each block runs 9 rows as a prefill of 8 and one cached decode step (``split=(8, 1)``), so
the prefill ``linear`` path, the KV-cache append, masked attention over the cache and the
one-row GEMV path all run on the RTL; the Llama block runs once more with if4 weights (the
array's block-format decode).  The comparison is the whole output, bit for bit.
"""

import numpy as np
import pytest

from unified_engine.host import Engine
from unified_engine.host.models import gpt2_spec, run_block
from unified_engine.host.models.block import narrow_llama

pytestmark = pytest.mark.slow

DRAM = 1 << 24


def _small_config():
    from firmware import golden

    return golden.small_config()


@pytest.fixture(scope="module")
def engines():
    config = _small_config()
    model = Engine.open("model", config, dram_bytes=DRAM)
    rtl = Engine.open("verilator", config, dram_bytes=DRAM)
    yield model, rtl
    model.close()
    rtl.close()


def _llama_block():
    from unified_engine.host.models import load
    from unified_engine.host.models.gguf_loader import smollm2_path

    try:
        smollm2_path()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    weights, _ = load("smollm2-135m")
    return narrow_llama(weights, layer=7, hidden=192, kv_heads=2, intermediate=512)


def _gpt2_block():
    pytest.importorskip("transformers")
    from unified_engine.host.models.reference import random_weights

    spec = gpt2_spec(layers=1, hidden=128, heads=2, vocab=512, positions=64)
    return random_weights(spec, seed=5)


@pytest.mark.parametrize(("make", "formats"), [(_llama_block, "bf16"), (_gpt2_block, "bf16"),
                                               (_llama_block, "if4")],
                         ids=["smollm2-narrow-bf16", "gpt2-narrow-bf16", "smollm2-narrow-if4"])
def test_block_is_bit_identical_on_verilator(engines, make, formats):
    model_eng, rtl_eng = engines
    weights = make()
    runs = [run_block(eng, weights, 0, s=9, split=(8, 1), formats=formats, timeout=7200)
            for eng in (model_eng, rtl_eng)]
    want, got = runs
    print(f"{weights.spec.name} {formats}: model {want.cycles:,} cycles, "
          f"RTL {got.cycles:,} cycles")
    assert np.isfinite(want.values).all() and np.abs(want.values).max() > 0
    assert got.bits.shape == want.bits.shape == (9, weights.spec.hidden_size)
    assert np.array_equal(got.bits, want.bits), \
        f"{int((got.bits != want.bits).sum())} of {got.bits.size} outputs differ"
    assert set(got.breakdown) == set(want.breakdown)
