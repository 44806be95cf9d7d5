"""Measure a model on an engine: agreement with ``transformers`` and cycles per token.

``python -m unified_engine.host.models.evaluate --model smollm2-135m --formats bf16,if4,int4``
prints, per weight format, the figures of ``docs/models.md``:

* **teacher forcing**: one prefill over :data:`TEXT` (its first ``--positions`` tokens) with
  logits at every position, compared with two float32 ``transformers`` references
  (:func:`.reference.compare_logits`: top-1 agreement, cosine similarity, max ``|Δ|/σ``):
  ``agreement`` — the reference holds the model's own weights (for SmolLM2 the GGUF's,
  dequantized on the host), so a 4-bit format's figures include its quantization loss;
  ``device_agreement`` — the reference holds the weights the engine really multiplies with
  (:func:`.reference.device_weights`: bf16-rounded, or decoded from ``if4``/``int4``/…), so
  the figures measure the engine's arithmetic alone;
* **answer**: greedy continuation of ``"The capital of France is"``;
* **cycles**: a generation prefill of the first 64 text tokens (last-row logits) and the decode
  steps after it, per token, projected to tokens/s per board preset (:mod:`.perf`), and the
  decode cycles split by op (``decode_breakdown``, summed over the decode steps).

Everything runs on ``--backend`` (default the model backend, the bit-exact ISA simulator).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from unified_engine.config import EngineConfig

from .perf import BOARDS, tokens_per_second
from .reference import Agreement, compare_logits, device_weights, hf_logits, hf_model
from .spec import ModelSpec, ModelWeights
from .tokenizer import Tokenizer
from .zoo import MODELS, build, load

__all__ = ["PROMPT", "TEXT", "FormatResult", "dram_bytes_for", "evaluate_format", "main",
           "random_model_errors"]

#: The coherence prompt: SmolLM2 must continue it with " Paris".
PROMPT = "The capital of France is"

#: Teacher-forcing text (plain encyclopaedic English, written for this test; ~120 tokens).
TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the "
    "tower from 1887 to 1889. Locally nicknamed \"La dame de fer\" (French for \"Iron Lady\"), "
    "it was constructed as the centrepiece of the 1889 World's Fair, and to crown the "
    "centennial anniversary of the French Revolution. Although initially criticised by some "
    "of France's leading artists and intellectuals for its design, it has since become a "
    "global cultural icon of France and one of the most recognisable structures in the world."
)


@dataclasses.dataclass
class FormatResult:
    """Figures of one weight format (see the module docstring)."""

    model: str
    formats: str
    agreement: Agreement | None = None
    device_agreement: Agreement | None = None
    answer: str = ""
    prefill_tokens: int = 0
    prefill_cycles: int = 0
    decode_cycles: list[int] = dataclasses.field(default_factory=list)
    decode_breakdown: dict[str, int] = dataclasses.field(default_factory=dict)
    weight_bytes: int = 0
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def prefill_cycles_per_token(self) -> float:
        return self.prefill_cycles / self.prefill_tokens if self.prefill_tokens else 0.0

    @property
    def decode_cycles_per_token(self) -> float:
        return float(np.mean(self.decode_cycles)) if self.decode_cycles else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("agreement", "device_agreement"):
            value = getattr(self, key)
            out[key] = dataclasses.asdict(value) if value else None
        out["prefill_cycles_per_token"] = self.prefill_cycles_per_token
        out["decode_cycles_per_token"] = self.decode_cycles_per_token
        for phase in ("prefill", "decode"):
            cpt = getattr(self, f"{phase}_cycles_per_token")
            out[f"{phase}_tok_s"] = {b: tokens_per_second(cpt, b) for b in BOARDS} if cpt else {}
        return out


def dram_bytes_for(weights: ModelWeights) -> int:
    """Device DRAM for a model: twice the float32 size of its weights (room for bf16 weights
    in two layouts plus activations, KV cache and programs), a power of two, ≥ 256 MiB."""
    need = 2 * 4 * sum(t.size for t in weights.tensors.values())
    return max(1 << 28, 1 << (need - 1).bit_length())


def evaluate_format(engine: Any, weights: ModelWeights, tok: Tokenizer, formats: Any, *,
                    ref_logits: np.ndarray | None, text_ids: Sequence[int],
                    answer_tokens: int = 4, decode_steps: int = 2,
                    device_reference: bool = True, gemv: bool | str = True,
                    timeout: float | None = 3600.0, log=print) -> FormatResult:
    """All figures of one weight format on ``engine`` (module docstring); with
    ``device_reference`` the teacher-forced logits are also compared with a reference holding
    the device's weights (``device_agreement``)."""
    t0 = time.perf_counter()
    model = build(engine, weights, formats, timeout=timeout, gemv=gemv)
    res = FormatResult(weights.spec.name, model.formats.label, weight_bytes=model.weight_bytes)
    res.seconds["upload"] = time.perf_counter() - t0
    try:
        if ref_logits is not None:
            t0 = time.perf_counter()
            logits = model.logits(text_ids)
            res.agreement = compare_logits(logits, ref_logits)
            res.seconds["teacher_forcing"] = time.perf_counter() - t0
            log(f"  {res.formats} vs the model's weights: {res.agreement}")
            if device_reference:
                t0 = time.perf_counter()
                ref = hf_model(device_weights(weights, model))
                res.device_agreement = compare_logits(logits, hf_logits(ref, text_ids))
                del ref
                res.seconds["device_reference"] = time.perf_counter() - t0
                log(f"  {res.formats} vs the device's weights: {res.device_agreement}")
        if answer_tokens:
            t0 = time.perf_counter()
            out = [s.token for s in model.generate(tok.encode(PROMPT), answer_tokens)]
            res.answer = tok.decode(out)
            res.seconds["answer"] = time.perf_counter() - t0
            log(f"  {res.formats}: {PROMPT!r} → {res.answer!r}")
        if decode_steps:
            t0 = time.perf_counter()
            prompt = list(text_ids[:64])
            for step in model.generate(prompt, 1 + decode_steps):
                if step.phase == "prefill":
                    res.prefill_tokens, res.prefill_cycles = step.tokens, step.cycles
                else:
                    res.decode_cycles.append(step.cycles)
                    for op, cycles in step.breakdown.items():
                        res.decode_breakdown[op] = res.decode_breakdown.get(op, 0) + cycles
            res.seconds["cycles"] = time.perf_counter() - t0
            log(f"  {res.formats}: prefill {res.prefill_cycles_per_token:,.0f} cycles/token "
                f"({res.prefill_tokens} tokens), decode {res.decode_cycles_per_token:,.0f} "
                "cycles/token")
    finally:
        model.free()
    return res


def random_model_errors(spec: ModelSpec, seeds: Sequence[int], positions: int,
                        engine: Any) -> list[Agreement]:
    """Agreement of random-weight models of ``spec`` (one per seed, ``transformers``
    initialisation) with their float32 reference on ``positions`` random tokens each: the
    measurements the GPT-2 bound of ``docs/models.md`` is derived from."""
    from .reference import random_weights

    out = []
    for seed in seeds:
        weights = random_weights(spec, seed)
        ids = [int(i) for i in
               np.random.default_rng(1000 + seed).integers(0, spec.vocab_size, positions)]
        model = build(engine, weights, timeout=3600.0)
        try:
            got = model.logits(ids)
        finally:
            model.free()
        out.append(compare_logits(got, hf_logits(hf_model(weights), ids)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unified_engine.host.models.evaluate",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, default="smollm2-135m")
    ap.add_argument("--layers", type=int, default=2, help="GPT-2 blocks (random weights)")
    ap.add_argument("--seed", type=int, default=0, help="GPT-2 weight seed")
    ap.add_argument("--formats", default="bf16,if4,int4",
                    help="comma-separated weight formats, one run each")
    ap.add_argument("--positions", type=int, default=0,
                    help="teacher-forced tokens (default: the whole text)")
    ap.add_argument("--answer-tokens", type=int, default=4)
    ap.add_argument("--decode-steps", type=int, default=2)
    ap.add_argument("--backend", default="model")
    ap.add_argument("--gemv", choices=("bf16", "off", "all"), default="bf16",
                    help="one-row products with row-major weight copies: bf16 layers only "
                    "(default), none, or quantized layers too (DecoderModel's gemv)")
    ap.add_argument("--no-agreement", action="store_true",
                    help="skip teacher forcing and the references (cycles and answer only)")
    ap.add_argument("--no-device-reference", action="store_true",
                    help="skip the reference holding the device's (rounded/decoded) weights")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    weights, tok = load(args.model, layers=args.layers, seed=args.seed)
    ids = tok.encode(TEXT)
    if args.positions:
        ids = ids[:args.positions]
    print(f"{weights.spec.name}: {weights.spec.params / 1e6:.1f} M parameters, "
          f"{len(ids)} teacher-forced tokens (loaded in {time.perf_counter() - t0:.1f} s)")
    ref = None
    if not args.no_agreement:
        t0 = time.perf_counter()
        ref = hf_logits(hf_model(weights), ids)
        print(f"transformers float32 reference: {time.perf_counter() - t0:.1f} s")
    from unified_engine.host import Engine

    results = []
    for fmt in args.formats.split(","):
        opts = {"dram_bytes": dram_bytes_for(weights)} if args.backend == "model" else {}
        with Engine.open(args.backend, EngineConfig(), **opts) as eng:
            res = evaluate_format(eng, weights, tok, fmt, ref_logits=ref, text_ids=ids,
                                  answer_tokens=args.answer_tokens,
                                  decode_steps=args.decode_steps,
                                  device_reference=not args.no_device_reference,
                                  gemv={"bf16": True, "off": False, "all": "all"}[args.gemv])
        results.append(res.to_dict())
        print(json.dumps(results[-1]), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
