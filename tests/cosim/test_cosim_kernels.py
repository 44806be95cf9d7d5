"""Co-simulation: every kernel of the library gives the same bytes on the Verilated RTL as on
the ISA simulator, and the cycle counts of both are recorded side by side.

Each case runs one ``Engine`` op with identical inputs on ``Engine.open("model")`` and
``Engine.open("verilator")`` (the generated RTL of the same ``EngineConfig``) and compares the
results bit for bit.  The default tier uses the small configuration (2×2 array, 4 lanes, 64-bit
AXI: tiny tiles, so small shapes exercise every loop of the kernels); the default 8×8
configuration and larger shapes are ``slow``.  ``COSIM_REPORT`` collects (case, model cycles,
RTL cycles) for ``python -m unified_engine.bench --cosim``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from firmware import golden as G
from unified_engine.config import EngineConfig
from unified_engine.host import Engine

COSIM_REPORT: list[tuple[str, int, int]] = []


def _bits(y) -> bytes:
    if isinstance(y, tuple):
        return b"".join(_bits(v) for v in y)
    if isinstance(y, torch.Tensor):
        y = y.contiguous().view(torch.uint8).numpy() if y.dtype != torch.bfloat16 else \
            y.contiguous().view(torch.int16).numpy()
    return np.ascontiguousarray(np.asarray(y)).tobytes()


class Pair:
    """The same op on the model and the RTL; compares results and records cycles."""

    def __init__(self, config: EngineConfig, dram_bytes: int) -> None:
        self.config = config
        self.model = Engine.open("model", config, dram_bytes=dram_bytes)
        self.rtl = Engine.open("verilator", config, dram_bytes=dram_bytes)

    def check(self, name: str, op) -> None:
        want = op(self.model)
        model_cycles = self.model.last_run.cycles
        got = op(self.rtl)
        rtl_cycles = self.rtl.last_run.cycles
        COSIM_REPORT.append((name, model_cycles, rtl_cycles))
        assert _bits(got) == _bits(want), f"{name}: RTL result differs from the ISA simulator"

    def close(self) -> None:
        self.model.close()
        self.rtl.close()


@pytest.fixture(scope="module")
def small():
    pair = Pair(G.small_config(), 1 << 22)
    yield pair
    pair.close()


def _rand(seed: int, *shape, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (3, 5, 7), (8, 16, 8), (9, 33, 17)])
def test_matmul(small, m, k, n):
    a, b = _rand(m, m, k), _rand(n, k, n)
    small.check(f"matmul {m}x{k}x{n}", lambda e: e.matmul(a, b))


@pytest.mark.parametrize("activation", [None, "gelu", "silu", "relu"])
def test_linear_bias_activation(small, activation):
    x, w, bias = _rand(1, 6, 24), _rand(2, 10, 24), _rand(3, 10)
    small.check(f"linear+bias+{activation}",
                lambda e: e.linear(x, w, bias=bias, activation=activation))


@pytest.mark.parametrize("fmt", ["int4", "fp4", "if4", "nvfp4", "int8", "fp8", "if8"])
def test_quantized_linear(small, fmt):
    x, w = _rand(4, 5, 64), _rand(5, 6, 64)

    def op(e):
        return e.linear(x, e.quantize(w, fmt))

    small.check(f"linear {fmt}", op)


def test_matmul_softmax(small):
    a, b = _rand(6, 5, 16), _rand(7, 16, 12)
    small.check("softmax(A·B)", lambda e: e.matmul(a, b, softmax=True))


@pytest.mark.parametrize("shape", [(3, 7), (5, 33)])
def test_rowwise(small, shape):
    x = _rand(8, *shape)
    g, b = _rand(9, shape[-1]), _rand(10, shape[-1])
    small.check(f"softmax {shape}", lambda e: e.softmax(x))
    small.check(f"rmsnorm {shape}", lambda e: e.rmsnorm(x, g))
    small.check(f"layernorm {shape}", lambda e: e.layernorm(x, g, b))
    small.check(f"gelu {shape}", lambda e: e.activation(x, "gelu"))
    small.check(f"argmax_top4 {shape}", lambda e: e.argmax_top4(x))


def test_eltwise(small):
    x, y = _rand(11, 4, 9), _rand(12, 4, 9)
    small.check("add", lambda e: e.add(x, y))
    small.check("sub col", lambda e: e.sub(x, y[0]))
    small.check("mul row", lambda e: e.mul(x, y[:, :1]))
    small.check("mul scalar", lambda e: e.mul(x, 0.5))


def test_transpose(small):
    x = _rand(13, 5, 11)
    small.check("transpose", lambda e: e.transpose(x))


def test_rope(small):
    x = _rand(14, 2, 6, 8)
    cos, sin = _rand(15, 6, 8), _rand(16, 6, 8)
    small.check("rope", lambda e: e.rope(x, cos, sin))


@pytest.mark.parametrize("causal", [False, True])
def test_attention(small, causal):
    q, k, v = _rand(17, 1, 5, 8), _rand(18, 1, 7, 8), _rand(19, 1, 7, 8)
    small.check(f"attention causal={causal}", lambda e: e.attention(q, k, v, causal=causal))


def test_embedding(small):
    table = _rand(20, 17, 8)
    ids = np.array([3, 0, 16, 3], np.int64)
    small.check("embedding", lambda e: e.embedding(ids, table))
