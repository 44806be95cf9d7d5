"""Model shapes (:class:`ModelSpec`) and host-side weights (:class:`ModelWeights`).

A model is described once, independently of where its weights come from (a GGUF file, a
``transformers`` model, random initialisation): ``ModelSpec`` holds the shape, ``ModelWeights``
the float32 tensors under their Hugging Face names, so the same object builds the engine model
(:mod:`.decoder`) and the ``transformers`` reference (:mod:`.reference`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["ARCHS", "ModelSpec", "ModelWeights"]

#: Supported decoder families.
ARCHS = ("llama", "gpt2")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Shape of a decoder-only transformer.

    Attributes
    ----------
    arch : ``"llama"`` (RMSNorm, RoPE, grouped-query attention, SiLU-gated MLP, no biases) or
        ``"gpt2"`` (LayerNorm, learned positions, biases, GELU MLP).
    vocab_size, hidden_size, layers, heads, kv_heads, head_dim, intermediate_size
        The usual sizes; ``heads · head_dim`` need not equal ``hidden_size`` for Llama.
    norm_eps : RMSNorm / LayerNorm epsilon.
    rope_theta : RoPE base (Llama).
    max_positions : longest sequence the model supports (GPT-2: rows of the position table).
    tie_embeddings : the LM head reuses the token embedding table.
    name : a label for reports.
    """

    arch: str
    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    norm_eps: float
    rope_theta: float = 10000.0
    max_positions: int = 2048
    tie_embeddings: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; allowed: {', '.join(ARCHS)}")
        for f in ("vocab_size", "hidden_size", "layers", "heads", "kv_heads", "head_dim",
                  "intermediate_size", "max_positions"):
            value = getattr(self, f)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelSpec.{f} must be a positive int, not {value!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads "
                             f"({self.kv_heads})")
        if self.arch == "gpt2" and (self.kv_heads != self.heads or
                                    self.heads * self.head_dim != self.hidden_size):
            raise ValueError("gpt2 needs kv_heads == heads and heads·head_dim == hidden_size")
        if not (math.isfinite(self.norm_eps) and self.norm_eps > 0):
            raise ValueError(f"norm_eps must be positive, not {self.norm_eps!r}")

    @property
    def q_dim(self) -> int:
        """Width of the query projection (heads · head_dim)."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of each of the key and value projections."""
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """``{name: (N, K)}`` of one block's linear layers (the engine's names)."""
        h, f = self.hidden_size, self.intermediate_size
        if self.arch == "llama":
            return {"q": (self.q_dim, h), "k": (self.kv_dim, h), "v": (self.kv_dim, h),
                    "o": (h, self.q_dim), "gate": (f, h), "up": (f, h), "down": (h, f)}
        return {"q": (h, h), "k": (h, h), "v": (h, h), "o": (h, h), "fc": (f, h),
                "proj": (h, f)}

    @property
    def params(self) -> int:
        """Parameter count (the embedding table once when tied; norms and biases included)."""
        h = self.hidden_size
        per_block = sum(n * k for n, k in self.linear_shapes().values())
        if self.arch == "llama":
            per_block += 2 * h
            extra = h
        else:
            per_block += sum(n for n, _ in self.linear_shapes().values()) + 4 * h
            extra = 2 * h + self.max_positions * h
        head = 0 if self.tie_embeddings else self.vocab_size * h
        return self.vocab_size * h + head + self.layers * per_block + extra

    @property
    def streamed_params(self) -> int:
        """Weights a decode step multiplies with: every linear layer and the LM head (the
        embedding table is only gathered)."""
        per_block = sum(n * k for n, k in self.linear_shapes().values())
        return self.layers * per_block + self.vocab_size * self.hidden_size

    @classmethod
    def from_hf(cls, config: Any, name: str = "") -> ModelSpec:
        """The spec of a ``transformers`` ``LlamaConfig`` or ``GPT2Config``."""
        kind = getattr(config, "model_type", "")
        if kind == "llama":
            head_dim = getattr(config, "head_dim", None) or \
                config.hidden_size // config.num_attention_heads
            rope = getattr(config, "rope_theta", None)
            if rope is None:
                params = getattr(config, "rope_parameters", None) or {}
                rope = params.get("rope_theta", 10000.0)
            return cls(arch="llama", vocab_size=config.vocab_size,
                       hidden_size=config.hidden_size, layers=config.num_hidden_layers,
                       heads=config.num_attention_heads,
                       kv_heads=config.num_key_value_heads or config.num_attention_heads,
                       head_dim=head_dim, intermediate_size=config.intermediate_size,
                       norm_eps=float(config.rms_norm_eps), rope_theta=float(rope),
                       max_positions=config.max_position_embeddings,
                       tie_embeddings=bool(config.tie_word_embeddings), name=name)
        if kind == "gpt2":
            inner = config.n_inner or 4 * config.n_embd
            return cls(arch="gpt2", vocab_size=config.vocab_size, hidden_size=config.n_embd,
                       layers=config.n_layer, heads=config.n_head, kv_heads=config.n_head,
                       head_dim=config.n_embd // config.n_head, intermediate_size=inner,
                       norm_eps=float(config.layer_norm_epsilon),
                       max_positions=config.n_positions,
                       tie_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
                       name=name)
        raise ValueError(f"unsupported transformers config type {kind!r}; allowed llama, gpt2")

    def hf_config(self) -> Any:
        """The equivalent ``transformers`` config (for the float32 reference)."""
        import transformers

        if self.arch == "llama":
            return transformers.LlamaConfig(
                vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                intermediate_size=self.intermediate_size, num_hidden_layers=self.layers,
                num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
                head_dim=self.head_dim, hidden_act="silu", rms_norm_eps=self.norm_eps,
                rope_theta=self.rope_theta, max_position_embeddings=self.max_positions,
                tie_word_embeddings=self.tie_embeddings, attention_bias=False, mlp_bias=False)
        return transformers.GPT2Config(
            vocab_size=self.vocab_size, n_embd=self.hidden_size, n_layer=self.layers,
            n_head=self.heads, n_inner=self.intermediate_size, n_positions=self.max_positions,
            layer_norm_epsilon=self.norm_eps, activation_function="gelu_new",
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            tie_word_embeddings=self.tie_embeddings)


@dataclasses.dataclass
class ModelWeights:
    """A model's float32 weights under Hugging Face parameter names.

    Llama: ``model.embed_tokens.weight``, ``model.layers.{i}.{input_layernorm,
    post_attention_layernorm}.weight``, ``…self_attn.{q,k,v,o}_proj.weight``,
    ``…mlp.{gate,up,down}_proj.weight``, ``model.norm.weight`` (and ``lm_head.weight`` when not
    tied).  GPT-2: ``transformer.{wte,wpe}.weight``, ``transformer.h.{i}.{ln_1,ln_2}.*``,
    ``…attn.c_attn.*``, ``…attn.c_proj.*``, ``…mlp.c_fc.*``, ``…mlp.c_proj.*`` (``Conv1D``
    weights, ``[in, out]``), ``transformer.ln_f.*``.
    """

    spec: ModelSpec
    tensors: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"model weights have no tensor {name!r}") from None

    @classmethod
    def from_state_dict(cls, spec: ModelSpec, state: Mapping[str, Any]) -> ModelWeights:
        """Weights from a torch ``state_dict`` (or any mapping of array-likes); float32 copies.

        Buffers that are not parameters (GPT-2's ``attn.bias`` masks, rotary ``inv_freq``) are
        dropped; a tied ``lm_head.weight`` is dropped too.
        """
        out: dict[str, np.ndarray] = {}
        for name, value in state.items():
            if name.endswith((".attn.bias", ".attn.masked_bias", "inv_freq")):
                continue
            if name == "lm_head.weight" and spec.tie_embeddings:
                continue
            if type(value).__module__.split(".")[0] == "torch":
                value = value.detach().float().cpu().numpy()
            out[name] = np.ascontiguousarray(np.asarray(value, np.float32))
        return cls(spec, out)

    @classmethod
    def from_hf_model(cls, model: Any, name: str = "") -> ModelWeights:
        """Weights of a ``transformers`` ``LlamaForCausalLM`` / ``GPT2LMHeadModel``."""
        spec = ModelSpec.from_hf(model.config, name)
        return cls.from_state_dict(spec, model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """A torch ``state_dict`` (float32 tensors) for the ``transformers`` reference."""
        import torch

        return {k: torch.from_numpy(v.copy()) for k, v in self.tensors.items()}
