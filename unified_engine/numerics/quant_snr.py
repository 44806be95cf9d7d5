"""Measure the signal-to-noise ratio of the quantized formats (the table in docs/numerics.md §5).

``python -m unified_engine.numerics.quant_snr`` prints a Markdown table of the mean SNR over
several random ``[N, K]`` matrices of Gaussian and Student-t weights.  The reference is the
bf16-rounded weight matrix (the quantizer's input), so the numbers measure the quantization
alone; bf16 storage itself is ~50 dB on the same data.
"""

from __future__ import annotations

import argparse

import numpy as np

from .fp import bf16_to_f32, f32_to_bf16
from .quant import DEFAULT_BLOCK, QUANT_FORMATS, quantize

__all__ = ["measure_snr", "snr_db", "snr_table"]

#: Degrees of freedom of the heavy-tailed test distribution (finite variance, heavy tails).
STUDENT_T_DOF = 3.0


def snr_db(reference, approximation) -> float:
    """``10·log10(Σ ref² / Σ (ref − approx)²)`` in dB over all elements (float64)."""
    ref = np.asarray(reference, dtype=np.float64)
    approx = np.asarray(approximation, dtype=np.float64)
    if ref.shape != approx.shape:
        raise ValueError(f"snr_db: shapes differ: {ref.shape} vs {approx.shape}")
    noise = float(np.sum((ref - approx) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(signal / noise)


def _weights(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    if kind == "gaussian":
        return rng.standard_normal(shape)
    if kind == "student_t":
        return rng.standard_t(STUDENT_T_DOF, shape)
    raise ValueError(f"unknown weight distribution {kind!r}; allowed: 'gaussian', 'student_t'")


def measure_snr(
    fmt: str,
    kind: str,
    *,
    shape: tuple[int, int] = (256, 1024),
    block: int = DEFAULT_BLOCK,
    trials: int = 4,
    seed: int = 0,
) -> float:
    """Mean SNR in dB of ``fmt`` over ``trials`` random matrices of ``kind`` weights."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(trials):
        bits = f32_to_bf16(_weights(kind, shape, rng).astype(np.float32))
        decoded = quantize(bits, fmt, block).dequantize()
        values.append(snr_db(bf16_to_f32(bits), bf16_to_f32(decoded)))
    return float(np.mean(values))


def snr_table(**kwargs) -> str:
    """Markdown table: one row per format, Gaussian and Student-t columns, plus bits/weight."""
    shape = kwargs.get("shape", (256, 1024))
    block = kwargs.get("block", DEFAULT_BLOCK)
    probe = np.zeros(shape, np.uint16)
    lines = [
        f"| format | bits/weight | Gaussian SNR (dB) | Student-t ν={STUDENT_T_DOF:g} SNR (dB) |",
        "|---|---|---|---|",
    ]
    for fmt in QUANT_FORMATS:
        bpw = quantize(probe, fmt, block).bits_per_weight
        gauss = measure_snr(fmt, "gaussian", **kwargs)
        heavy = measure_snr(fmt, "student_t", **kwargs)
        lines.append(f"| {fmt} | {bpw:.3f} | {gauss:.2f} | {heavy:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--block", type=int, default=DEFAULT_BLOCK)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(
        snr_table(
            shape=(args.rows, args.cols), block=args.block, trials=args.trials, seed=args.seed
        )
    )


if __name__ == "__main__":
    main()
