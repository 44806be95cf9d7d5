"""One transformer block on a given engine: the unit for comparing backends bit for bit.

``run_block(engine, weights, layer)`` uploads only block ``layer`` of a model, runs it on a
host input ``x[S, H]`` (by default ``S`` rows of the model's token embedding table, seeded), and
returns the block's bf16 output bits and device cycles.  The same call on
``Engine.open("model")`` and ``Engine.open("verilator")`` must give identical bits: the program
sequence (norms, projections, RoPE, KV-cache append, attention, MLP, residuals) depends only
on the configuration, not on the backend.  ``split`` feeds the rows in chunks through the KV
cache (e.g. ``(S − 1, 1)``: a prefill then one decode step, which exercises the cached
attention and the one-row GEMV path).

:func:`narrow_llama` cuts a narrower Llama model out of real weights (a subset of channels,
heads and MLP units of one block), so a block with the real weights' statistics fits a small
engine configuration whose scratchpad cannot hold SmolLM2's 1536-wide MLP rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from unified_engine.numerics import fp

from .runtime import run_timeout
from .spec import ModelWeights
from .zoo import build

__all__ = ["BlockRun", "block_input", "narrow_llama", "run_block"]


@dataclasses.dataclass(frozen=True)
class BlockRun:
    """Result of :func:`run_block`: output ``bits`` (bf16, ``uint16 [S, H]``), total device
    ``cycles`` and their split by op name."""

    bits: np.ndarray
    cycles: int
    breakdown: dict[str, int]

    @property
    def values(self) -> np.ndarray:
        """The output as float32 (exact widening of the bf16 bits)."""
        return fp.bf16_to_f32(self.bits)


def block_input(weights: ModelWeights, s: int, seed: int = 0) -> np.ndarray:
    """``s`` rows of the token embedding table (seeded random ids): a realistic block input."""
    name = "model.embed_tokens.weight" if weights.spec.arch == "llama" \
        else "transformer.wte.weight"
    table = weights[name]
    ids = np.random.default_rng(seed).integers(0, table.shape[0], s)
    return np.ascontiguousarray(table[ids], np.float32)


def narrow_llama(weights: ModelWeights, layer: int, hidden: int, kv_heads: int,
                 intermediate: int) -> ModelWeights:
    """A one-block Llama model cut out of block ``layer`` of ``weights``.

    Keeps the first ``hidden`` channels of the residual stream, the first ``kv_heads`` KV
    heads with the query heads that share them (the same GQA ratio, whole heads, the same
    ``head_dim``: RoPE pairs and the per-head scaling are unchanged) and the first
    ``intermediate`` MLP units.  The embedding table keeps its rows (cut to ``hidden``
    columns) so :func:`block_input` still gives realistic inputs.  The result is a different,
    smaller network with real weight statistics, not an approximation of the original block.
    """
    spec = weights.spec
    if spec.arch != "llama":
        raise ValueError("narrow_llama cuts Llama-family weights")
    if not (0 < hidden <= spec.hidden_size and 0 < kv_heads <= spec.kv_heads
            and 0 < intermediate <= spec.intermediate_size):
        raise ValueError(f"cannot cut {hidden}/{kv_heads}/{intermediate} out of {spec}")
    group, d = spec.heads // spec.kv_heads, spec.head_dim
    qd, kd = kv_heads * group * d, kv_heads * d
    pre, new = f"model.layers.{layer}.", "model.layers.0."
    w = weights.tensors
    cut = {
        "self_attn.q_proj": w[pre + "self_attn.q_proj.weight"][:qd, :hidden],
        "self_attn.k_proj": w[pre + "self_attn.k_proj.weight"][:kd, :hidden],
        "self_attn.v_proj": w[pre + "self_attn.v_proj.weight"][:kd, :hidden],
        "self_attn.o_proj": w[pre + "self_attn.o_proj.weight"][:hidden, :qd],
        "mlp.gate_proj": w[pre + "mlp.gate_proj.weight"][:intermediate, :hidden],
        "mlp.up_proj": w[pre + "mlp.up_proj.weight"][:intermediate, :hidden],
        "mlp.down_proj": w[pre + "mlp.down_proj.weight"][:hidden, :intermediate],
        "input_layernorm": w[pre + "input_layernorm.weight"][:hidden],
        "post_attention_layernorm": w[pre + "post_attention_layernorm.weight"][:hidden],
    }
    tensors = {f"{new}{k}.weight": np.ascontiguousarray(v) for k, v in cut.items()}
    tensors["model.embed_tokens.weight"] = \
        np.ascontiguousarray(w["model.embed_tokens.weight"][:, :hidden])
    tensors["model.norm.weight"] = np.ascontiguousarray(w["model.norm.weight"][:hidden])
    small = dataclasses.replace(spec, hidden_size=hidden, layers=1, heads=kv_heads * group,
                                kv_heads=kv_heads, intermediate_size=intermediate,
                                name=f"{spec.name or 'llama'}[{layer}] cut to {hidden} wide")
    return ModelWeights(small, tensors)


def run_block(engine: Any, weights: ModelWeights, layer: int = 0, x: Any = None, *,
              s: int = 8, split: Sequence[int] | None = None, formats: Any = "bf16",
              gemv: bool | str = True, seed: int = 0, timeout: float | None = None) -> BlockRun:
    """Run block ``layer`` of ``weights`` on ``engine`` (see the module docstring).

    Parameters
    ----------
    x : host ``[S, H]`` float32 (rounded to bf16) or bf16; default :func:`block_input` with
        ``s`` rows.
    split : row counts of consecutive steps through the KV cache (sum = S); default one step.
    formats, gemv, timeout : as :class:`~.decoder.DecoderModel`.
    """
    if not 0 <= layer < weights.spec.layers:
        raise ValueError(f"layer {layer} is out of range; the model has "
                         f"{weights.spec.layers} blocks")
    x = block_input(weights, s, seed) if x is None else np.asarray(x)
    if x.ndim != 2 or x.shape[1] != weights.spec.hidden_size:
        raise ValueError(f"x must be [S, {weights.spec.hidden_size}], got {x.shape}")
    steps = [x.shape[0]] if split is None else [int(n) for n in split]
    if sum(steps) != x.shape[0] or min(steps) < 1:
        raise ValueError(f"split {steps} must be positive and sum to S = {x.shape[0]}")
    model = build(engine, weights, formats, layers=[layer], gemv=gemv)
    cache = model.new_cache(x.shape[0])
    outs = []
    try:
        start = 0
        for n in steps:
            xin = engine.tensor(x[start:start + n], dtype="bf16")
            try:
                with run_timeout(engine, timeout):
                    y = model.block(layer, xin, cache)
            finally:
                xin.free()
            try:
                outs.append(y.bits())
            finally:
                y.free()
            cache.advance(n)
            start += n
    finally:
        cache.free()
        model.free()
    return BlockRun(np.concatenate(outs).reshape(x.shape), model.log.total,
                    dict(model.log.cycles))
