"""The ``transformers`` float32 reference and the agreement figures the docs report.

:func:`hf_model` builds ``LlamaForCausalLM`` / ``GPT2LMHeadModel`` (offline, from a config) and
loads a :class:`~.spec.ModelWeights` into it, so the engine model and the reference use the
very same weights; :func:`device_weights` gives the weights a built engine model really
multiplies with (bf16-rounded, or decoded from a 4-bit format), so the reference can also
measure the engine alone, without the quantization loss.  :func:`compare_logits` reduces two
``[S, V]`` logit matrices to the figures of ``docs/models.md``: top-1 agreement, mean/min
cosine similarity per position, and the largest absolute difference relative to the
reference logits' standard deviation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from unified_engine.numerics import fp

from .spec import ModelSpec, ModelWeights

__all__ = ["Agreement", "compare_logits", "device_weights", "hf_logits", "hf_model",
           "random_weights"]

#: Hugging Face names of a Llama block's linear layers, by the engine's short names.
_LLAMA_LINEARS = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
                  "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
                  "down": "mlp.down_proj"}


def _transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")   # never reach for the network
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


def hf_model(weights: ModelWeights) -> Any:
    """A float32 ``transformers`` model (eval mode) holding ``weights``."""
    tf = _transformers()
    import torch

    config = weights.spec.hf_config()
    cls = tf.LlamaForCausalLM if weights.spec.arch == "llama" else tf.GPT2LMHeadModel
    torch.manual_seed(0)          # the random init is overwritten below; seeded for repeatability
    model = cls(config).float()
    state = weights.state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    # the model's own buffers (causal masks, rotary inv_freq) and the tied head are not weights
    missing = [m for m in missing if not m.endswith(("attn.bias", "masked_bias", "inv_freq"))
               and m != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the reference model: missing {missing}, "
                         f"unexpected {unexpected}")
    if weights.spec.tie_embeddings:
        model.tie_weights()
    return model.eval()


def _bf16(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to bf16 (the engine's rounding), as float32."""
    return fp.bf16_to_f32(fp.f32_to_bf16(np.ascontiguousarray(x, np.float32)))


def device_weights(weights: ModelWeights, model: Any) -> ModelWeights:
    """The weights ``model`` (a :class:`~.decoder.DecoderModel` built from ``weights``)
    really computes with, as float32 ``ModelWeights`` for :func:`hf_model`.

    Every linear layer is replaced by what the array multiplies with
    (``PackedWeight.dequantized``: the bf16 rounding, or the decoded block-quantized values of
    ``if4``/``int4``/…), every other tensor (embeddings, norms, biases, RoPE-free tables) is
    rounded to bf16 as the device stores it.  A quantized LM head differs from the (bf16)
    embedding table it was tied to, so the result is untied.  A reference holding these
    weights measures the engine's arithmetic alone; one holding ``weights`` measures the
    engine plus the quantization loss.
    """
    import ml_dtypes

    if not model.full:
        raise ValueError("device_weights needs the whole model (built without layers=)")

    def deq(lin: Any) -> np.ndarray:
        bits = lin.packed.dequantized()
        return bits.view(ml_dtypes.bfloat16).astype(np.float32)

    spec = weights.spec
    t = {name: _bf16(v) for name, v in weights.tensors.items()}
    for i, blk in model.blocks.items():
        if spec.arch == "llama":
            for short, hf in _LLAMA_LINEARS.items():
                t[f"model.layers.{i}.{hf}.weight"] = deq(blk[short])
        else:                                  # GPT-2 Conv1D weights are [in, out]
            pre = f"transformer.h.{i}."
            t[pre + "attn.c_attn.weight"] = np.concatenate(
                [deq(blk[n]).T for n in "qkv"], axis=1)
            for short, hf in (("o", "attn.c_proj"), ("fc", "mlp.c_fc"),
                              ("proj", "mlp.c_proj")):
                t[f"{pre}{hf}.weight"] = np.ascontiguousarray(deq(blk[short]).T)
    t["lm_head.weight"] = deq(model.lm_head)
    return ModelWeights(dataclasses.replace(spec, tie_embeddings=False), t)


def random_weights(spec: ModelSpec, seed: int = 0) -> ModelWeights:
    """Weights of a randomly initialised ``transformers`` model of ``spec`` (its own init
    scheme, seeded), e.g. GPT-2 with random weights from a config."""
    tf = _transformers()
    import torch

    torch.manual_seed(seed)
    cls = tf.LlamaForCausalLM if spec.arch == "llama" else tf.GPT2LMHeadModel
    model = cls(spec.hf_config()).float().eval()
    if spec.arch == "llama":
        # HF initialises RMSNorm weights to 1; vary them so the test sees γ applied
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
    return ModelWeights.from_state_dict(spec, model.state_dict())


def hf_logits(model: Any, ids: Sequence[int]) -> np.ndarray:
    """float32 logits ``[S, V]`` of the reference model for one sequence."""
    import torch

    with torch.no_grad():
        out = model(torch.tensor([list(ids)], dtype=torch.long), use_cache=False)
    return out.logits[0].float().numpy()


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Engine vs reference logits over ``positions`` positions.

    ``top1``: fraction of positions whose argmax agrees; ``cosine_mean`` / ``cosine_min``:
    cosine similarity of the logit vectors per position; ``max_abs_rel``: the largest
    ``|engine − reference|`` divided by the standard deviation of the reference logits;
    ``top1_in_top4``: fraction where the reference's top-1 is among the engine's top 4.
    """

    positions: int
    top1: float
    top1_in_top4: float
    cosine_mean: float
    cosine_min: float
    max_abs_rel: float

    def __str__(self) -> str:
        return (f"{self.positions} positions: top-1 {100 * self.top1:.1f} %, ref top-1 in "
                f"top-4 {100 * self.top1_in_top4:.1f} %, cosine mean {self.cosine_mean:.5f} "
                f"min {self.cosine_min:.5f}, max |Δ|/σ {self.max_abs_rel:.4f}")


def compare_logits(engine: np.ndarray, reference: np.ndarray) -> Agreement:
    """:class:`Agreement` of two ``[S, V]`` logit matrices."""
    e = np.asarray(engine, np.float64)
    r = np.asarray(reference, np.float64)
    if e.shape != r.shape or e.ndim != 2:
        raise ValueError(f"logits must both be [S, V], got {e.shape} and {r.shape}")
    top1 = np.argmax(e, axis=1) == np.argmax(r, axis=1)
    top4 = np.argsort(-e, axis=1, kind="stable")[:, :4]
    in4 = (top4 == np.argmax(r, axis=1)[:, None]).any(axis=1)
    cos = (e * r).sum(1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(r, axis=1))
    rel = np.abs(e - r).max() / r.std()
    return Agreement(e.shape[0], float(top1.mean()), float(in4.mean()), float(cos.mean()),
                     float(cos.min()), float(rel))
