"""Bad input to the op API: each raises a specific exception with a clear message, leaks no
device memory, and leaves the engine usable."""

import dataclasses

import numpy as np
import pytest
import torch

from firmware import golden as G
from unified_engine.host import Engine, OutOfDeviceMemory
from unified_engine.host.ops import UnsupportedOp
from unified_engine.numerics import fp

SMALL = G.small_config()


@pytest.fixture
def eng():
    return Engine.open("model", SMALL, dram_bytes=1 << 22)


def free_bytes(eng):
    return {r: eng.allocator.free_bytes(r) for r in eng.allocator.regions if r != "programs"}


def still_works(eng):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    y = eng.matmul(a, a.T.copy())
    np.testing.assert_array_equal(G.b16(y), fp.pe_matmul(G.b16(a), G.b16(a.T)))


A = np.ones((3, 4), np.float32)
B = np.ones((4, 5), np.float32)

BAD = [
    ("rank", lambda e: e.matmul(np.ones(4, np.float32), B), ValueError, "must be 2-D"),
    ("shapes", lambda e: e.matmul(A, np.ones((3, 5), np.float32)), ValueError,
     "a's K=4 ≠ b's K=3"),
    ("empty", lambda e: e.matmul(np.ones((0, 4), np.float32), B), ValueError, "empty"),
    ("float64", lambda e: e.matmul(A.astype(np.float64), B), TypeError, "float64"),
    ("int", lambda e: e.matmul(A.astype(np.int32), B), TypeError, "unsupported dtype"),
    ("float16 torch", lambda e: e.matmul(torch.ones(3, 4, dtype=torch.float16), B), TypeError,
     "torch.float16"),
    ("not a tensor", lambda e: e.matmul("a", B), TypeError, "numpy array"),
    ("bias shape", lambda e: e.matmul(A, B, bias=np.ones(4, np.float32)), ValueError,
     r"bias must be \[N\]"),
    ("activation", lambda e: e.matmul(A, B, activation="swish"), ValueError,
     "unknown activation"),
    ("activation params", lambda e: e.matmul(A, B, activation=(1, 2, 3)), TypeError,
     "4-tuple"),
    ("activation nan", lambda e: e.matmul(A, B, activation=(0, float("nan"), 1, 0)),
     ValueError, "finite"),
    ("scale", lambda e: e.matmul(A, B, scale=float("inf")), ValueError, "scale"),
    ("softmax flag", lambda e: e.matmul(A, B, softmax=1), TypeError, "bool"),
    ("linear K", lambda e: e.linear(A, np.ones((5, 3), np.float32)), ValueError, "K=4 ≠"),
    ("linear bias", lambda e: e.linear(A, np.ones((5, 4), np.float32),
                                       bias=np.ones((1, 5), np.float32)), ValueError, "bias"),
    ("quant format", lambda e: e.quantize(np.ones((4, 64), np.float32), "int3"), ValueError,
     "unknown quantized format"),
    ("quant K", lambda e: e.quantize(np.ones((4, 60), np.float32), "int4"), ValueError,
     "multiple of"),
    ("quant NaN", lambda e: e.quantize(np.full((4, 64), np.nan, np.float32), "int4"),
     ValueError, "non-finite"),
    ("eps", lambda e: e.rmsnorm(A, eps=0.0), ValueError, "eps"),
    ("gamma", lambda e: e.layernorm(A, gamma=np.ones(3, np.float32)), ValueError, "gamma"),
    ("softmax dim", lambda e: e.softmax(A, dim=0), ValueError, "last dimension"),
    ("broadcast", lambda e: e.add(A, np.ones((3, 2), np.float32)), ValueError,
     "cannot broadcast"),
    ("ids range", lambda e: e.embedding([0, 9], np.ones((9, 4), np.float32)), IndexError,
     "out of range"),
    ("ids dtype", lambda e: e.embedding(np.array([0.5]), np.ones((9, 4), np.float32)),
     TypeError, "integers"),
    ("rope tables", lambda e: e.rope(np.ones((3, 8), np.float32), np.ones((3, 4), np.float32),
                                     np.ones((3, 8), np.float32)), ValueError, "cos must be"),
    ("heads", lambda e: e.attention(np.ones((3, 2, 8), np.float32),
                                    np.ones((2, 2, 8), np.float32),
                                    np.ones((2, 2, 8), np.float32)), ValueError, "multiple"),
    ("causal+mask", lambda e: e.attention(np.ones((2, 8), np.float32),
                                          np.ones((2, 8), np.float32),
                                          np.ones((2, 8), np.float32),
                                          mask=np.ones((2, 2), bool), causal=True),
     ValueError, "either mask or causal"),
    ("mask NaN", lambda e: e.attention(np.ones((2, 8), np.float32), np.ones((2, 8), np.float32),
                                       np.ones((2, 8), np.float32),
                                       mask=np.full((2, 2), np.nan, np.float32)), ValueError,
     "NaN"),
    ("row too long", lambda e: e.softmax(np.ones((2, 20000), np.float32)), UnsupportedOp,
     "does not fit"),
    ("rope alignment", lambda e: e.rope(np.ones((3, 6), np.float32), np.ones((3, 6), np.float32),
                                        np.ones((3, 6), np.float32)), UnsupportedOp, "beat"),
]


@pytest.mark.parametrize(("name", "call", "exc", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_and_engine_stays_usable(eng, name, call, exc, match):
    before = free_bytes(eng)
    with pytest.raises(exc, match=match):
        call(eng)
    assert free_bytes(eng) == before, "temporary device buffers leaked"
    still_works(eng)


def test_too_large_for_device_memory(eng):
    before = free_bytes(eng)
    big = np.ones((1024, 1024), np.float32)          # 2 MiB of bf16: more than the region
    with pytest.raises(OutOfDeviceMemory, match="cannot fit"):
        eng.matmul(big, np.ones((1024, 8), np.float32))
    # the operands were uploaded before the output allocation failed: all freed again
    with pytest.raises(OutOfDeviceMemory):
        eng.matmul(np.ones((600, 600), np.float32), np.ones((600, 600), np.float32))
    assert free_bytes(eng) == before
    still_works(eng)


def test_format_not_built_in():
    cfg = dataclasses.replace(SMALL, formats=("bf16", "int8"))
    eng = Engine.open("model", cfg, dram_bytes=1 << 22)
    with pytest.raises(UnsupportedOp, match="not built into this engine"):
        eng.quantize(np.ones((4, 64), np.float32), "int4")
    q = eng.quantize(np.ones((4, 64), np.float32), "int8")
    assert eng.linear(np.ones((2, 64), np.float32), q).shape == (2, 4)


def test_packed_weight_of_another_engine(eng):
    other = Engine.open("model", SMALL, dram_bytes=1 << 22)
    w = other.pack_weight(np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="another engine"):
        eng.linear(A, w)


def test_kernel_library_needs_registers():
    cfg = dataclasses.replace(SMALL, address_registers=8)
    eng = Engine.open("model", cfg, dram_bytes=1 << 22)
    with pytest.raises(UnsupportedOp, match="address_registers ≥ 16"):
        eng.matmul(A, B)
