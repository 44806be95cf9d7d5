"""``Engine.run_timeout``: the host timeout every op's programs run under (docs/ops.md,
"Timeouts"), on the model backend."""

import math

import numpy as np
import pytest

from firmware import golden as G
from unified_engine.asm import Program
from unified_engine.host import DeviceTimeout, Engine
from unified_engine.host.engine import DEFAULT_RUN_TIMEOUT
from unified_engine.numerics import fp

SMALL = G.small_config()
BAD = [(0, ValueError), (-1.0, ValueError), (math.nan, ValueError), (math.inf, ValueError),
       ("5", TypeError), (True, TypeError), (None, TypeError)]


@pytest.fixture
def eng():
    return Engine.open("model", SMALL, dram_bytes=1 << 22)


def _matmul_works(eng) -> None:
    a = np.arange(24, dtype=np.float32).reshape(3, 8) / 8
    y = eng.matmul(a, a.T.copy())
    np.testing.assert_array_equal(G.b16(y), fp.pe_matmul(G.b16(a), G.b16(a.T)))


def _free(eng) -> dict[str, int]:
    return {r: eng.allocator.free_bytes(r) for r in eng.allocator.regions if r != "programs"}


def test_default_and_open_option():
    assert Engine.open("model", SMALL, dram_bytes=1 << 22).run_timeout == DEFAULT_RUN_TIMEOUT
    eng = Engine.open("model", SMALL, dram_bytes=1 << 22, run_timeout=7)
    assert eng.run_timeout == 7.0 and isinstance(eng.run_timeout, float)


def test_tiny_timeout_stops_an_op_and_the_engine_recovers(eng):
    # a 128³ matmul simulates for ~0.4 s on an idle core (583 721 engine cycles, sim_small)
    a = np.ones((128, 128), np.float32)
    before = _free(eng)
    eng.run_timeout = 0.01
    with pytest.raises(DeviceTimeout, match=r"did not stop within 0\.01 s; it was soft-reset"):
        eng.matmul(a, a)
    assert isinstance(DeviceTimeout("x"), TimeoutError)
    assert not eng.busy
    assert _free(eng) == before  # the op's temporaries were freed
    eng.run_timeout = DEFAULT_RUN_TIMEOUT
    _matmul_works(eng)
    y = eng.matmul(a, a)  # the same kernel runs to completion now
    np.testing.assert_array_equal(G.b16(y), fp.pe_matmul(G.b16(a), G.b16(a)))


def test_tiny_timeout_from_open_applies_to_row_ops():
    eng = Engine.open("model", SMALL, dram_bytes=1 << 22, run_timeout=0.01)
    with pytest.raises(DeviceTimeout):
        eng.softmax(np.ones((256, 256), np.float32))  # ~4 s of simulation
    eng.run_timeout = 60
    _matmul_works(eng)


@pytest.mark.parametrize(("value", "exc"), BAD, ids=[repr(b[0]) for b in BAD])
def test_bad_values_are_refused(eng, value, exc):
    with pytest.raises(exc, match="run_timeout"):
        eng.run_timeout = value
    assert eng.run_timeout == DEFAULT_RUN_TIMEOUT  # unchanged
    with pytest.raises(exc, match="run_timeout"):
        Engine.open("model", SMALL, dram_bytes=1 << 22, run_timeout=value)


@pytest.mark.parametrize(("value", "exc"), BAD[:4], ids=[repr(b[0]) for b in BAD[:4]])
def test_bad_run_timeout_argument(eng, value, exc):
    prog = Program(SMALL)
    prog.halt()
    with pytest.raises(exc, match="timeout"):
        eng.run(prog, timeout=value)
    assert not eng.busy
    assert eng.run(prog, timeout=5).halt_code == 0
