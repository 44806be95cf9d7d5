"""GPT-2 on the engine.

Per block, with ``x`` the bf16 hidden state ``[S, H]`` on the device::

    h = layernorm(x, γ₁, β₁)                q, k, v = linear(h, W· , b·)   (c_attn split in 3)
    q, k, v → head-major [H, S, D]          append k, v to the KV cache
    o = attention(q, K, V, causal mask)     x = x + linear(o, Wproj, bproj)
    h = layernorm(x, γ₂, β₂)                f = linear(h, Wfc, bfc, activation="gelu")  (fused)
    x = x + linear(f, Wmlp, bmlp)

Embedding: ``wte[ids] + wpe[pos …]`` (two gathers and an add); final ``layernorm`` and the LM
head tied to ``wte``.  Splitting ``c_attn`` into three linears computes the very same dot
products as the fused projection.  GELU is the engine's activation block preset
``x·σ(1.702x)`` (``numerics.activation``); GPT-2 uses the tanh form ("gelu_new").  They differ
by at most ≈0.02 (absolute) per activation, one of the terms the documented logits bound covers
(``docs/models.md``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .decoder import DecoderModel
from .kvcache import KVCache
from .runtime import Scope, view
from .spec import ModelWeights

__all__ = ["Gpt2Model"]


class Gpt2Model(DecoderModel):
    """See the module docstring; constructor as :class:`~.decoder.DecoderModel`."""

    _tags: ClassVar[dict[str, str]] = {"q": "attn.q", "k": "attn.k", "v": "attn.v",
                                       "o": "attn.o", "fc": "mlp.fc", "proj": "mlp.proj"}

    def _upload_block(self, weights: ModelWeights, i: int) -> dict[str, Any]:
        pre = f"transformer.h.{i}."
        hsz = self.spec.hidden_size
        # Conv1D stores [in, out]; a linear weight is [out, in]
        attn_w, attn_b = weights[pre + "attn.c_attn.weight"], weights[pre + "attn.c_attn.bias"]
        blk: dict[str, Any] = {}
        for j, name in enumerate("qkv"):
            cols = slice(j * hsz, (j + 1) * hsz)
            blk[name] = self._linear(f"layers.{i}.{name}", attn_w[:, cols].T, attn_b[cols])
        for name, hf in (("o", "attn.c_proj"), ("fc", "mlp.c_fc"), ("proj", "mlp.c_proj")):
            blk[name] = self._linear(f"layers.{i}.{name}", weights[f"{pre}{hf}.weight"].T,
                                     weights[f"{pre}{hf}.bias"])
        for n in ("1", "2"):
            blk[f"ln{n}_w"] = self._tensor(weights[f"{pre}ln_{n}.weight"])
            blk[f"ln{n}_b"] = self._tensor(weights[f"{pre}ln_{n}.bias"])
        return blk

    def _upload_globals(self, weights: ModelWeights) -> None:
        wte = weights["transformer.wte.weight"]
        self.wte = self._tensor(wte)
        self.wpe = self._tensor(weights["transformer.wpe.weight"])
        self.ln_f = (self._tensor(weights["transformer.ln_f.weight"]),
                     self._tensor(weights["transformer.ln_f.bias"]))
        head = wte if self.spec.tie_embeddings else weights["lm_head.weight"]
        self.lm_head = self._linear("lm_head", head)

    def _embed(self, ids: np.ndarray, pos: int) -> Any:
        hsz = self.spec.hidden_size
        s = int(ids.size)
        with Scope() as sc:
            tok = sc(self._op("embed", self.engine.embedding, ids, self.wte))
            return self._op("embed", self.engine.add, tok, view(self.wpe, (s, hsz), pos * hsz))

    def _final_norm(self, x: Any) -> Any:
        return self._op("norm", self.engine.layernorm, x, *self.ln_f, eps=self.spec.norm_eps)

    def block(self, i: int, x: Any, cache: KVCache) -> Any:
        eng, spec, w = self.engine, self.spec, self.blocks[i]
        s = x.shape[0]
        op = self._op
        with Scope() as sc:
            h = sc(op("norm", eng.layernorm, x, w["ln1_w"], w["ln1_b"], eps=spec.norm_eps))
            q = self._heads(sc, sc(self._apply(w["q"], h)), spec.heads, s)
            k = self._heads(sc, sc(self._apply(w["k"], h)), spec.heads, s)
            v = self._heads(sc, sc(self._apply(w["v"], h)), spec.heads, s)
            o = self._attend(sc, i, q, k, v, cache, s)
            x1 = sc(op("residual", eng.add, x, sc(self._apply(w["o"], o))))
            h2 = sc(op("norm", eng.layernorm, x1, w["ln2_w"], w["ln2_b"], eps=spec.norm_eps))
            f = sc(self._apply(w["fc"], h2, activation="gelu"))
            return op("residual", eng.add, x1, sc(self._apply(w["proj"], f)))
