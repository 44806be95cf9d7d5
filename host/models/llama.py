"""Llama-family decoder (SmolLM2, Llama 3.2 shapes) on the engine.

Per block, with ``x`` the bf16 hidden state ``[S, H]`` on the device::

    h = rmsnorm(x, γ₁)                      q, k, v = linear(h, Wq | Wk | Wv)
    q, k, v → head-major [H, S, D]          q, k = rope(q | k, cos, sin)   (HF rotate-half)
    append k, v to the KV cache             o = attention(q, K, V, causal mask)   (GQA, 1/√D)
    x = x + linear(o, Wo)
    h = rmsnorm(x, γ₂)                      g = linear(h, Wgate, activation="silu")  (fused)
    x = x + linear(g · linear(h, Wup), Wdown)

then ``rmsnorm(x, γ)`` and the LM head (the embedding table when tied).  The RoPE tables
``cos``/``sin`` ``[max_positions, D]`` live on the device (bf16, computed in float64 as
Hugging Face's default rotary embedding: ``θ_i = base^(−2i/D)``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from unified_engine.firmware.rope import rope_spec

from .decoder import DecoderModel
from .kvcache import KVCache
from .runtime import Scope, view
from .spec import ModelWeights

__all__ = ["LlamaModel", "rope_tables"]

_PROJ = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
         "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
         "down": "mlp.down_proj"}


def rope_tables(positions: int, head_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """``cos``, ``sin`` float32 ``[positions, head_dim]`` (both halves repeat the
    ``head_dim/2`` frequencies, as Hugging Face's ``rotate_half`` convention needs)."""
    inv = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    ang = np.arange(positions, dtype=np.float64)[:, None] * inv[None, :]
    ang = np.concatenate([ang, ang], axis=1)
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


class LlamaModel(DecoderModel):
    """See the module docstring; constructor as :class:`~.decoder.DecoderModel`."""

    _tags: ClassVar[dict[str, str]] = {"q": "attn.q", "k": "attn.k", "v": "attn.v",
                                       "o": "attn.o", "gate": "mlp.gate", "up": "mlp.up",
                                       "down": "mlp.down"}

    def _upload_block(self, weights: ModelWeights, i: int) -> dict[str, Any]:
        pre = f"model.layers.{i}."
        blk = {name: self._linear(f"layers.{i}.{name}", weights[f"{pre}{hf}.weight"])
               for name, hf in _PROJ.items()}
        blk["norm1"] = self._tensor(weights[pre + "input_layernorm.weight"])
        blk["norm2"] = self._tensor(weights[pre + "post_attention_layernorm.weight"])
        if not hasattr(self, "cos"):
            self._upload_rope()
        return blk

    def _upload_rope(self) -> None:
        cos, sin = rope_tables(self.spec.max_positions, self.spec.head_dim,
                               self.spec.rope_theta)
        self.cos, self.sin = self._tensor(cos), self._tensor(sin)

    def _upload_globals(self, weights: ModelWeights) -> None:
        table = weights["model.embed_tokens.weight"]
        self.embed_table = self._tensor(table)
        self.norm = self._tensor(weights["model.norm.weight"])
        head = table if self.spec.tie_embeddings else weights["lm_head.weight"]
        self.lm_head = self._linear("lm_head", head)

    def _embed(self, ids: np.ndarray, pos: int) -> Any:
        return self._op("embed", self.engine.embedding, ids, self.embed_table)

    def _final_norm(self, x: Any) -> Any:
        return self._op("norm", self.engine.rmsnorm, x, self.norm, eps=self.spec.norm_eps)

    def _rope(self, x: Any, pos: int) -> Any:
        """RoPE of head-major ``x`` ``[H, S, D]`` at positions ``pos … pos+S−1``.

        Workaround: ``firmware.rope`` advances its x/out address registers by a whole block
        after a partial last block, so with H > 1 and S not a multiple of its block size the
        heads after the first read and write the wrong rows.  Then the heads are treated as
        one slice of H·S rows, with the position tables repeated per head (uploaded from the
        host: the same float32 → bf16 rounding as the device tables)."""
        h, s, d = x.shape
        cos = view(self.cos, (s, d), pos * d)
        sin = view(self.sin, (s, d), pos * d)
        if h > 1 and s % rope_spec(self.engine.config, h, s, d).rb:
            c, sn = rope_tables(pos + s, d, self.spec.rope_theta)
            y = self._op("rope", self.engine.rope, view(x, (1, h * s, d)),
                         np.tile(c[pos:], (h, 1)), np.tile(sn[pos:], (h, 1)))
            y.shape = (h, s, d)
            return y
        return self._op("rope", self.engine.rope, x, cos, sin)

    def block(self, i: int, x: Any, cache: KVCache) -> Any:
        eng, spec, w = self.engine, self.spec, self.blocks[i]
        s = x.shape[0]
        op = self._op
        with Scope() as sc:
            h = sc(op("norm", eng.rmsnorm, x, w["norm1"], eps=spec.norm_eps))
            q = sc(self._apply(w["q"], h))
            k = sc(self._apply(w["k"], h))
            v = sc(self._apply(w["v"], h))
            qr = sc(self._rope(self._heads(sc, q, spec.heads, s), cache.length))
            kr = sc(self._rope(self._heads(sc, k, spec.kv_heads, s), cache.length))
            vh = self._heads(sc, v, spec.kv_heads, s)
            o = self._attend(sc, i, qr, kr, vh, cache, s)
            a = sc(self._apply(w["o"], o))
            x1 = sc(op("residual", eng.add, x, a))
            h2 = sc(op("norm", eng.rmsnorm, x1, w["norm2"], eps=spec.norm_eps))
            g = sc(self._apply(w["gate"], h2, activation="silu"))
            u = sc(self._apply(w["up"], h2))
            m = sc(op("mlp.mul", eng.mul, g, u))
            dn = sc(self._apply(w["down"], m))
            return op("residual", eng.add, x1, dn)
