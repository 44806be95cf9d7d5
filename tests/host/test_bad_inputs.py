"""The host bad-input matrix: every public op of ``Engine`` × every class of bad input, and
``Engine.open`` / ``Engine.run`` against bad programs, hung and foreign devices.

Each bad call must raise a *specific* exception whose message names the problem, leave no
temporary device memory behind, and leave the engine usable: after every case the test runs
a correct op and checks its result bit for bit.  Inputs with a defined behaviour instead of an
error (non-contiguous, Fortran-order, misaligned and negative-stride arrays; NaN and Inf) must
give exactly the result of the same values passed as a fresh contiguous array.
``docs/reliability.md`` has the table this file checks.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from firmware import golden as G
from unified_engine.asm import Addr, Program
from unified_engine.host import Engine, OutOfDeviceMemory
from unified_engine.host.errors import (
    BuildIdMismatch,
    DeviceBusy,
    DeviceError,
    DeviceTimeout,
    NotAnEngine,
)
from unified_engine.host.model import ModelDevice
from unified_engine.host.ops import UnsupportedOp
from unified_engine.numerics import fp
from unified_engine.regs import ErrorCode, reg

SMALL = G.small_config()
K = 64  # a multiple of the quantization block, so every op accepts the good shape
GOOD = (2, K)


def f32(*shape: int) -> np.ndarray:
    return np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)


def _tables(x) -> tuple[np.ndarray, np.ndarray]:
    """rope's cos / sin tables for ``x`` ([S, D] of its last two dimensions)."""
    shape = tuple(getattr(x, "shape", GOOD))[-2:]
    return f32(*shape) if len(shape) == 2 else f32(*GOOD), f32(*GOOD)


@pytest.fixture(scope="module")
def eng():
    return Engine.open("model", SMALL, dram_bytes=1 << 22)


def free_bytes(eng) -> dict[str, int]:
    return {r: eng.allocator.free_bytes(r) for r in eng.allocator.regions if r != "programs"}


def still_works(eng) -> None:
    a = f32(3, 8)
    y = eng.matmul(a, a.T.copy())
    np.testing.assert_array_equal(G.b16(y), fp.pe_matmul(G.b16(a), G.b16(a.T)))


# ----- the op matrix -------------------------------------------------------------------------
# Each op is called with the bad tensor as its first tensor argument; the other arguments fit
# the good shape [2, 64].  ``ranks``: the ranks the op accepts for that argument.

OPS = {
    "matmul": (lambda e, x: e.matmul(x, f32(K, 4)), {2}),
    "linear": (lambda e, x: e.linear(x, f32(4, K)), {1, 2, 3, 4, 5}),
    "pack_weight": (lambda e, x: e.pack_weight(x), {2}),
    "quantize": (lambda e, x: e.quantize(x, "int8"), {2}),
    "transpose": (lambda e, x: e.transpose(x), {2, 3, 4, 5}),
    "softmax": (lambda e, x: e.softmax(x), {1, 2, 3, 4, 5}),
    "rmsnorm": (lambda e, x: e.rmsnorm(x), {1, 2, 3, 4, 5}),
    "layernorm": (lambda e, x: e.layernorm(x), {1, 2, 3, 4, 5}),
    "add": (lambda e, x: e.add(x, np.float32(0.5)), {1, 2, 3, 4, 5}),
    "mul": (lambda e, x: e.mul(x, f32(K)), {1, 2, 3, 4, 5}),
    "activation": (lambda e, x: e.activation(x, "silu"), {1, 2, 3, 4, 5}),
    "argmax_top4": (lambda e, x: e.argmax_top4(x), {1, 2, 3, 4, 5}),
    "embedding": (lambda e, x: e.embedding(np.array([1, 0]), x), {2}),
    "rope": (lambda e, x: e.rope(x, *_tables(x)), {2, 3, 4, 5}),
    "attention": (lambda e, x: e.attention(x, x, x), {2, 3, 4}),
}

# Unsupported element types: (name, value of the good shape, message fragment).
BAD_TYPES = [
    ("float64", f32(*GOOD).astype(np.float64), "unsupported dtype float64"),
    ("float16", f32(*GOOD).astype(np.float16), "unsupported dtype float16"),
    ("int32", np.ones(GOOD, np.int32), "unsupported dtype int32"),
    ("bool", np.ones(GOOD, bool), "unsupported dtype bool"),
    ("complex64", np.ones(GOOD, np.complex64), "unsupported dtype complex64"),
    ("torch.float16", torch.ones(GOOD, dtype=torch.float16), "torch.float16"),
    ("torch.int64", torch.ones(GOOD, dtype=torch.int64), "torch.int64"),
    ("python list", f32(*GOOD).tolist(), "list"),
    ("None", None, "not NoneType"),
    ("str", "x", "not str"),
]


def _rank_shape(rank: int) -> tuple[int, ...]:
    return {0: (), 1: (K,), 2: GOOD, 3: (1, 2, K), 4: (1, 1, 2, K), 5: (1, 1, 1, 2, K)}[rank]


def _bad_rank_cases():
    for op, (_, ranks) in OPS.items():
        for rank in (0, 1, 3, 5):
            if rank not in ranks:
                yield pytest.param(op, rank, id=f"{op}-rank{rank}")


@pytest.mark.parametrize(("op", "rank"), list(_bad_rank_cases()))
def test_wrong_rank(eng, op, rank):
    call, _ = OPS[op]
    x = f32(*_rank_shape(rank)) if rank else np.float32(0.5)
    before = free_bytes(eng)
    with pytest.raises(ValueError, match=r"2-D|\[\.\.\.|\[S, D\]|\[V, D\]|got shape|got \("):
        call(eng, x)
    assert free_bytes(eng) == before
    still_works(eng)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(0, K), (2, 0)], ids=["no rows", "no columns"])
def test_empty_tensor(eng, op, shape):
    call, _ = OPS[op]
    before = free_bytes(eng)
    with pytest.raises(ValueError, match="empty"):
        call(eng, f32(*shape))
    assert free_bytes(eng) == before
    still_works(eng)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("kind", "value", "match"), BAD_TYPES, ids=[b[0] for b in BAD_TYPES])
def test_unsupported_type(eng, op, kind, value, match):
    call, _ = OPS[op]
    before = free_bytes(eng)
    with pytest.raises(TypeError, match=match):
        call(eng, value)
    assert free_bytes(eng) == before
    still_works(eng)


# Mismatched shapes of the other operands: (op, call, message fragment).
MISMATCH = [
    ("matmul K", lambda e: e.matmul(f32(*GOOD), f32(K + 1, 4)), "K=64 ≠ b's K=65"),
    ("matmul bias", lambda e: e.matmul(f32(*GOOD), f32(K, 4), bias=f32(3)), r"bias must be \[N\]"),
    ("linear K", lambda e: e.linear(f32(*GOOD), f32(4, K - 1)), "K=64 ≠ w's K=63"),
    ("linear bias", lambda e: e.linear(f32(*GOOD), f32(4, K), bias=f32(2, 4)), "bias"),
    ("add", lambda e: e.add(f32(*GOOD), f32(2, 3)), "cannot broadcast"),
    ("mul", lambda e: e.mul(f32(*GOOD), f32(K + 1)), "cannot broadcast"),
    ("rmsnorm gamma", lambda e: e.rmsnorm(f32(*GOOD), f32(K - 1)), "gamma"),
    ("layernorm beta", lambda e: e.layernorm(f32(*GOOD), f32(K), f32(3)), "beta"),
    ("rope cos", lambda e: e.rope(f32(*GOOD), f32(2, K // 2), f32(*GOOD)), "cos must be"),
    ("attention k/v", lambda e: e.attention(f32(*GOOD), f32(3, K), f32(4, K)), r"k|v"),
    ("attention D", lambda e: e.attention(f32(*GOOD), f32(2, K - 2), f32(2, K - 2)), r"D|k"),
    ("attention mask", lambda e: e.attention(f32(*GOOD), f32(*GOOD), f32(*GOOD),
                                             mask=np.ones((3, 3), bool)), "mask"),
    ("embedding ids", lambda e: e.embedding(np.array([[0, 2]]), f32(*GOOD)), "out of range"),
]


@pytest.mark.parametrize(("name", "call", "match"), MISMATCH, ids=[m[0] for m in MISMATCH])
def test_mismatched_shapes(eng, name, call, match):
    before = free_bytes(eng)
    exc = IndexError if name.startswith("embedding") else ValueError
    with pytest.raises(exc, match=match):
        call(eng)
    assert free_bytes(eng) == before
    still_works(eng)


def _layouts(x: np.ndarray):
    """``x``'s values in the memory layouts the host must accept."""
    wide = np.zeros((x.shape[0], 2 * x.shape[1]), np.float32)
    wide[:, ::2] = x
    raw = np.zeros(x.nbytes + 1, np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(x.shape)  # data at an odd address
    misaligned[...] = x
    flipped = np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1]
    return {"strided": wide[:, ::2], "fortran": np.asfortranarray(x),
            "misaligned": misaligned, "negative strides": flipped,
            "torch non-contiguous": torch.from_numpy(np.ascontiguousarray(x.T)).T}


def _bits(result) -> list[np.ndarray]:
    parts = result if isinstance(result, tuple) else (result,)
    out = []
    for p in parts:
        if isinstance(p, torch.Tensor):
            p = p.numpy()
            out.append(p.view(np.uint32) if p.dtype == np.float32 else p)
        elif hasattr(p, "dequantized"):  # PackedWeight: what the array multiplies with
            out.append(np.asarray(p.dequantized()).view(np.uint16))
        else:
            arr = np.asarray(p)
            out.append(arr.view(np.uint32) if arr.dtype == np.float32 else arr)
    return out


@pytest.mark.parametrize("op", [o for o in OPS if o not in ("pack_weight",)])
def test_non_contiguous_and_misaligned_arrays_are_accepted(eng, op):
    """Defined behaviour: the host copies the values; the result is that of a contiguous
    array with the same values, bit for bit."""
    call, _ = OPS[op]
    x = f32(*GOOD)
    want = _bits(call(eng, x.copy()))
    for name, layout in _layouts(x).items():
        got = _bits(call(eng, layout))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=name)


# NaN / ±Inf (documented behaviour, docs/reliability.md): the engine computes with them as the
# golden models define (IEEE Inf arithmetic, one canonical NaN, zero-dominant products in the
# activation block).  A special value in row 0 never changes row 1 (rows are independent);
# what it does to row 0 is checked per op.
ROW_OPS = ("matmul", "linear", "softmax", "rmsnorm", "layernorm", "rope")
ELEMENT_OPS = ("add", "mul", "activation", "transpose", "embedding")


def _as_f32(result) -> np.ndarray:
    return np.asarray(result[0] if isinstance(result, tuple) else result, np.float32)


@pytest.mark.parametrize("op", [o for o in OPS if o not in ("quantize", "pack_weight")])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nan_and_inf_inputs(eng, op, value):
    call, _ = OPS[op]
    clean = f32(*GOOD)
    x = clean.copy()
    x[0, 3] = value
    got, ref = call(eng, x), call(eng, clean)
    g, r = _as_f32(got), _as_f32(ref)
    if op == "argmax_top4":
        idx = np.asarray(got[1])
        if value == -np.inf:  # ranks last: row 0's top 4 are unchanged
            np.testing.assert_array_equal(idx[0], np.asarray(ref[1])[0])
        else:  # NaN ranks above +Inf; either is row 0's first
            assert idx[0, 0] == 3 and (np.isnan(g[0, 0]) if np.isnan(value) else g[0, 0] == value)
    elif op == "attention":  # x is q, k and v: key 0 reaches every query
        assert np.isnan(g).any()
    else:
        t = g.T if op == "transpose" else g
        tr = r.T if op == "transpose" else r
        if op == "embedding":  # ids [1, 0]: table row 0 is output row 1
            t, tr = t[::-1], tr[::-1]
        np.testing.assert_array_equal(t[1].view(np.uint32), tr[1].view(np.uint32),
                                      err_msg="row 1 changed")
        if op in ELEMENT_OPS:
            rest = np.delete(np.arange(K), 3)
            np.testing.assert_array_equal(t[0, rest].view(np.uint32),
                                          tr[0, rest].view(np.uint32))
            want = {"add": np.float32(value) + np.float32(0.5),
                    "mul": np.float32(value) * np.sign(f32(K)[3]),
                    "activation": np.float32(value) if value > 0 else np.float32(0.0),
                    "transpose": np.float32(value), "embedding": np.float32(value)}[op]
            if np.isnan(value):
                assert np.isnan(t[0, 3])  # the canonical NaN (bits kept by data movement)
            else:
                assert t[0, 3] == want, f"{op}({value}) gave {t[0, 3]}, expected {want}"
        elif op == "softmax" and value == -np.inf:  # exp(−Inf) = 0, the rest renormalised
            assert t[0, 3] == 0 and np.isfinite(t[0]).all()
        elif op in ("matmul", "linear", "rope"):
            assert not np.isfinite(t[0]).all()  # ±Inf or NaN reaches row 0's outputs
        elif op == "rmsnorm" and not np.isnan(value):
            # rsqrt(mean(x²)) = rsqrt(Inf) = 0: finite x·0 = ±0, Inf·0 = NaN
            assert np.isnan(t[0, 3]) and (np.delete(t[0], 3) == 0).all(), t[0]
        else:  # softmax(+Inf): Inf − Inf; layernorm: x − Inf; NaN anywhere: NaN
            assert np.isnan(t[0]).all(), f"{op}({value}): row 0 is {t[0]}"
    still_works(eng)


def test_nan_in_weights_is_refused_by_quantize_kept_by_pack_weight(eng):
    w = f32(4, K)
    w[1, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        eng.quantize(w, "int8")
    y = eng.linear(f32(*GOOD), eng.pack_weight(w))
    assert np.isnan(y[:, 1]).all() and np.isfinite(np.delete(y, 1, axis=1)).all()


def test_too_large_tensor(eng):
    before = free_bytes(eng)
    with pytest.raises(OutOfDeviceMemory, match="cannot fit"):
        eng.tensor(np.ones((1024, 1024), np.float32))  # 4 MiB of float32 in a 4 MiB device
    with pytest.raises(OutOfDeviceMemory):
        eng.rmsnorm(np.ones((2048, 512), np.float32))
    with pytest.raises(UnsupportedOp, match="does not fit"):
        eng.softmax(np.ones((1, 40000), np.float32))
    assert free_bytes(eng) == before
    still_works(eng)


# ----- Engine.open -------------------------------------------------------------------------


def test_open_unknown_backend_and_bad_config():
    with pytest.raises(ValueError, match="unknown backend 'fpga'"):
        Engine.open("fpga")
    with pytest.raises(TypeError, match="EngineConfig"):
        Engine(ModelDevice(SMALL, dram_bytes=1 << 20), config={"rows": 2})
    with pytest.raises(TypeError, match="Device"):
        Engine("model")


def test_open_build_id_mismatch():
    with pytest.raises(BuildIdMismatch, match="does not match the host's"):
        Engine.open("model", SMALL, dram_bytes=1 << 20, build_id=0x1234)
    other = dataclasses.replace(SMALL, lanes=2)
    with pytest.raises(BuildIdMismatch, match=r"different configuration \(differs in \['lanes'\]"):
        Engine(ModelDevice(SMALL, dram_bytes=1 << 20), other)
    Engine.open("model", SMALL, dram_bytes=1 << 20).close()  # the matching pair opens


class _Gone(ModelDevice):
    """A device that fell off the bus: every register reads all-ones (PCIe convention)."""

    def csr_read(self, offset: int) -> int:
        return 0xFFFFFFFF


def test_open_a_device_that_is_not_an_engine():
    with pytest.raises(NotAnEngine, match=r"ID reads 0xffffffff"):
        Engine(_Gone(SMALL, dram_bytes=1 << 20), SMALL)


def test_two_model_engines_are_independent():
    """The model backend has no shared device: each ``open`` builds its own simulator, so a
    second opener (in this or another process) cannot disturb the first."""
    a = Engine.open("model", SMALL, dram_bytes=1 << 20)
    b = Engine.open("model", SMALL, dram_bytes=1 << 20)
    a.write(0x1000, b"\x5a" * 8)
    b.write(0x1000, b"\xa5" * 8)
    assert a.read(0x1000, 8) == b"\x5a" * 8
    still_works(a)
    still_works(b)


_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from host.test_xdma import ModelCard, open_engine
    from unified_engine.host.errors import DeviceBusy
    folder = Path({folder!r})
    folder.mkdir()
    try:
        open_engine(ModelCard(folder), engine=0).close()
    except DeviceBusy as exc:
        print("BUSY", exc)
    else:
        print("OPENED")
""")


def test_second_process_on_one_device_is_refused(tmp_path, monkeypatch):
    """xdma backend (the one with a shared device): a second *process* opening the same
    engine gets ``DeviceBusy`` naming the holder; the holder keeps working; after it closes,
    the engine can be opened again."""
    xdma_card = pytest.importorskip("host.test_xdma", reason="the xdma test card (tests/host/"
                                    "test_xdma.py) is not in this tree")
    ModelCard, open_engine = xdma_card.ModelCard, xdma_card.open_engine

    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    monkeypatch.setenv("UNIFIED_ENGINE_LOCK_DIR", str(lock_dir))
    (tmp_path / "mine").mkdir()
    tests = str(Path(__file__).resolve().parent.parent)

    def child(name: str) -> str:
        script = _CHILD.format(tests=tests, folder=str(tmp_path / name))
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=120, env={**os.environ})
        assert run.returncode == 0, run.stderr
        return run.stdout

    first = open_engine(ModelCard(tmp_path / "mine"), engine=0)
    try:
        out = child("other")
        assert out.startswith("BUSY") and f"in use by process {os.getpid()}" in out, out
        y = first.matmul(f32(2, 8), f32(8, 2))  # the holder is unaffected
        assert y.shape == (2, 2)
    finally:
        first.close()
    assert child("again").startswith("OPENED")


# ----- Engine.run --------------------------------------------------------------------------


def _spin(config) -> Program:
    """A program that never halts."""
    p = Program(config)
    p.label("top")
    p.jump("top")
    return p


def test_run_bad_programs(eng):
    with pytest.raises(TypeError, match="Program or bytes"):
        eng.run("halt")
    with pytest.raises(ValueError, match="multiple of 32 bytes, got 31"):
        eng.run(b"\0" * 31)
    with pytest.raises(ValueError, match="different EngineConfig"):
        eng.run(Program(dataclasses.replace(SMALL, gprs=32)))
    halt = Program(SMALL)
    halt.halt()
    with pytest.raises(ValueError, match="trace must be"):
        eng.run(halt, trace="some")
    with pytest.raises(ValueError, match="GPR index 99 is out of range"):
        eng.run(halt, args={99: 1})
    with pytest.raises(ValueError, match="does not fit 32 bits"):
        eng.run(halt, args={1: 1 << 32})
    still_works(eng)


@pytest.mark.parametrize("program", [Program(SMALL), b""], ids=["Program", "bytes"])
def test_run_empty_program(eng, program):
    """An empty program is refused before anything is allocated or started (docs/ops.md)."""
    before = free_bytes(eng), eng.allocator.free_bytes("programs")
    with pytest.raises(ValueError, match="empty"):
        eng.run(program)
    assert (free_bytes(eng), eng.allocator.free_bytes("programs")) == before
    assert not eng.busy
    still_works(eng)


def test_run_device_error_names_code_and_instruction(eng):
    p = Program(SMALL)
    p.nop()
    p.load(dram=Addr(imm=eng.device.dram_size - 8), sram=0, row_bytes=64)  # past the window
    p.halt()
    with pytest.raises(DeviceError, match=r"DMA_OUT_OF_WINDOW.*at instruction 1") as info:
        eng.run(p)
    assert info.value.code is ErrorCode.DMA_OUT_OF_WINDOW and info.value.pc == 1
    still_works(eng)


def test_run_cycle_budget(eng):
    with pytest.raises(DeviceError, match="CYCLE_BUDGET"):
        eng.run(_spin(SMALL), cycle_budget=1000)
    still_works(eng)


def test_run_timeout_soft_resets(eng):
    with pytest.raises(DeviceTimeout, match=r"did not stop within 0\.05 s; it was soft-reset"):
        eng.run(_spin(SMALL), timeout=0.05)
    assert not eng.busy
    still_works(eng)


def test_run_while_busy(eng):
    eng.set_csr64("PROGRAM_ADDR", eng.load_program(_spin(SMALL)))
    eng.set_csr("CONTROL", reg("CONTROL").pack(START=1))
    try:
        with pytest.raises(DeviceBusy, match="already running"):
            eng.run(Program(SMALL))
        with pytest.raises(DeviceBusy, match="idle"):
            eng.set_gpr(1, 5)
    finally:
        eng.soft_reset()
    still_works(eng)


class _Hung(ModelDevice):
    """A device that never reports done and records the soft reset it gets."""

    resets = 0

    def wait_done(self, timeout: float) -> bool:
        return False

    def csr_write(self, offset: int, value: int) -> None:
        if offset == reg("CONTROL").offset and value & 0b10:
            self.resets += 1
        super().csr_write(offset, value)


def test_device_that_does_not_answer():
    dev = _Hung(SMALL, dram_bytes=1 << 22)
    eng = Engine(dev, SMALL)
    p = Program(SMALL)
    p.halt()
    with pytest.raises(DeviceTimeout, match="soft-reset"):
        eng.run(p, timeout=0.01)
    assert dev.resets == 1
