"""Generate text with a transformer on the engine: ``python -m unified_engine.host.generate``.

::

    python -m unified_engine.host.generate --model smollm2-135m \\
        --prompt "The capital of France is" --backend model --max-new-tokens 32

streams the greedy continuation token by token, then prints, for prefill and decode: the
engine's cycles per token (every program of the step, START to HALT, DMA included), the host
process's tokens/s (on the model backend that is the speed of the ISA simulator), and the
cycles projected to tokens/s of one engine at each board preset's clock (kintex7 200 MHz,
ku15p 333 MHz, alveo_u50 300 MHz).  Weight formats per layer with ``--weights``: a format
(``bf16``, ``if4``, ``int4``, ``fp4``, ``nvfp4``, ``int8``, ``fp8``, ``if8``) or rules such as
``lm_head=bf16,*=int4`` (``fnmatch`` patterns over ``layers.{i}.{proj}`` and ``lm_head``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from unified_engine.config import PRESETS, EngineConfig

from .models import MODELS, build, gpt2_spec, load
from .models.evaluate import dram_bytes_for
from .models.formats import WeightFormats
from .models.perf import (
    BOARDS,
    anchor_scaled,
    board_clock_mhz,
    board_engines,
    soc_tokens_per_second,
    tokens_per_second,
)

__all__ = ["main", "parse_weights"]


def parse_weights(text: str) -> WeightFormats:
    """``"if4"`` or ``"lm_head=bf16,*=int4"`` → a :class:`WeightFormats` policy."""
    if "=" not in text:
        return WeightFormats(text)
    rules = {}
    for part in text.split(","):
        pattern, sep, fmt = part.partition("=")
        if not sep or not pattern:
            raise ValueError(f"bad --weights rule {part!r}; write pattern=format")
        rules[pattern.strip()] = fmt.strip()
    return WeightFormats(rules)


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m unified_engine.host.generate",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, default="smollm2-135m")
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("--chat", action="store_true",
                    help="wrap the prompt as a chat user turn (SmolLM2-Instruct template)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--ignore-eos", action="store_true", help="do not stop at end-of-text")
    ap.add_argument("--backend", default="model", help="model (ISA simulator) or verilator")
    ap.add_argument("--config", default="default", choices=["default", *sorted(PRESETS)],
                    help="EngineConfig: the default or a board preset")
    ap.add_argument("--weights", default="bf16", help="weight format or per-layer rules")
    ap.add_argument("--timeout", type=float, default=3600.0,
                    help="host seconds one program may run (the ISA simulator is slow)")
    ap.add_argument("--no-gemv", action="store_true",
                    help="decode with Engine.linear only (no weight-as-A one-row products)")
    ap.add_argument("--gemv-all", action="store_true",
                    help="quantized layers too decode through a row-major bf16 copy of their "
                    "decoded values (bit-identical, ~3x faster decode, +2 bytes/weight DRAM)")
    ap.add_argument("--layers", type=int, default=2, help="gpt2: blocks (random weights)")
    ap.add_argument("--hidden", type=int, default=768, help="gpt2: width")
    ap.add_argument("--heads", type=int, default=12, help="gpt2: attention heads")
    ap.add_argument("--seed", type=int, default=0, help="gpt2: weight seed")
    args = ap.parse_args(argv)
    if args.max_new_tokens < 1:
        ap.error("--max-new-tokens must be ≥ 1")
    if args.no_gemv and args.gemv_all:
        ap.error("--no-gemv and --gemv-all exclude each other")
    return args


def _gemv(args: argparse.Namespace) -> bool | str:
    return "all" if args.gemv_all else not args.no_gemv


def _report(out: TextIO, steps: list, model_params: int, bytes_per_token: int) -> None:
    prefill = steps[0]
    decode = steps[1:]
    p_cpt = prefill.cycles / prefill.tokens
    print(f"\nprefill: {prefill.tokens} tokens, {prefill.cycles:,} cycles "
          f"({p_cpt:,.0f} cycles/token), host {prefill.seconds:.2f} s "
          f"({prefill.tokens / prefill.seconds:.3g} tok/s)", file=out)
    d_cpt = None
    if decode:
        d_cycles = sum(s.cycles for s in decode)
        d_secs = sum(s.seconds for s in decode)
        d_cpt = d_cycles / len(decode)
        print(f"decode:  {len(decode)} tokens, {d_cpt:,.0f} cycles/token, host "
              f"{d_secs / len(decode):.2f} s/token ({len(decode) / d_secs:.3g} tok/s)", file=out)
    anchor = anchor_scaled(model_params)
    print("projected, one engine (cycles of this run at the board's preset clock):", file=out)
    print(f"  {'board':<10} {'clock':>8} {'prefill tok/s':>14} {'decode tok/s':>13}   "
          "anchor decode, 1B figure scaled by parameters", file=out)
    for board in BOARDS:
        dec = f"{tokens_per_second(d_cpt, board):13.1f}" if d_cpt else f"{'-':>13}"
        ref, src = anchor.get(board, (None, ""))
        ref_text = f"{ref:.0f} tok/s ({src})" if ref else ""
        print(f"  {board:<10} {board_clock_mhz(board):5.0f} MHz "
              f"{tokens_per_second(p_cpt, board):14.1f} {dec}   {ref_text}", file=out)
    if d_cpt:
        print(f"projected, every engine of the preset SoC decoding its own sequence (capped by "
              f"the board's peak DRAM bandwidth / {bytes_per_token / 2**20:.1f} MiB of weights "
              "per token):", file=out)
        for board in BOARDS:
            rate, bound = soc_tokens_per_second(d_cpt, board, bytes_per_token)
            print(f"  {board:<10} {board_engines(board)} engines {rate:10.1f} tok/s "
                  f"({bound}-bound)", file=out)
    breakdown: dict[str, int] = {}
    for s in decode or [prefill]:
        for k, v in s.breakdown.items():
            breakdown[k] = breakdown.get(k, 0) + v
    total = sum(breakdown.values())
    top = sorted(breakdown.items(), key=lambda kv: -kv[1])[:6]
    print(f"{'decode' if decode else 'prefill'} cycles by op: " + ", ".join(
        f"{k} {100 * v / total:.0f} %" for k, v in top), file=out)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = _args(argv)
    out = out or sys.stdout
    err = sys.stderr
    t0 = time.perf_counter()
    if args.model == "gpt2":
        from .models.reference import random_weights
        from .models.tokenizer import gpt2_tokenizer

        weights = random_weights(gpt2_spec(args.layers, args.hidden, args.heads), args.seed)
        tok = gpt2_tokenizer()
    else:
        weights, tok = load(args.model)
    config = EngineConfig() if args.config == "default" else EngineConfig.preset(args.config)
    formats = parse_weights(args.weights)
    print(f"{weights.spec.name}: {weights.spec.params / 1e6:.1f} M parameters, weights "
          f"{formats.label}, backend {args.backend} (loaded in {time.perf_counter() - t0:.1f} s)",
          file=err)
    from . import Engine

    opts = {"dram_bytes": dram_bytes_for(weights)} if args.backend == "model" else {}
    with Engine.open(args.backend, config, **opts) as eng:
        t0 = time.perf_counter()
        model = build(eng, weights, formats, gemv=_gemv(args), timeout=args.timeout)
        print(f"weights on the device: {model.weight_bytes / 2**20:.1f} MiB in "
              f"{time.perf_counter() - t0:.1f} s", file=err)
        prompt = tok.chat_prompt(args.prompt) if args.chat else args.prompt
        ids = tok.encode(prompt)
        if not ids:
            print("the prompt encodes to no tokens", file=err)
            return 2
        stop = () if args.ignore_eos else tuple(tok.eos_ids)
        stream = tok.stream()
        print(args.prompt if not args.chat else prompt, end="", file=out, flush=True)
        steps = []
        cache = eng.kernel_cache
        base, compiled = cache.misses, []     # programs compiled by each step (cache misses)
        for step in model.generate(ids, args.max_new_tokens, stop=stop):
            compiled.append(cache.misses - base - sum(compiled))
            steps.append(step)
            print(stream.feed(step.token), end="", file=out, flush=True)
        print(file=out)
        _report(out, steps, weights.spec.params, model.decode_bytes_per_token)
        print(f"programs: {compiled[0]} compiled for the prefill, {sum(compiled[1:])} more for "
              f"{len(steps) - 1} decode steps; {cache.hits} reused from the kernel cache",
              file=out)
        model.free()
    return 0


if __name__ == "__main__":
    sys.exit(main())
