"""The model backend's cycle counts predict the RTL's: every kernel case of
``test_cosim_kernels`` within 5 % (issue 6 must-show).

Each case runs once on ``Engine.open("model")`` and once on ``Engine.open("verilator")`` (the
Verilated RTL of the same small ``EngineConfig``, cached build); the test prints the
side-by-side table and asserts ``|model − rtl| ≤ 5 %`` of the RTL's cycles for each case.  The
timing rules are in ``host/timing.py``: they follow the RTL's structure (checked instruction by
instruction against the trace buffer's START/END events), with no per-kernel factors.  The
default 8×8 configuration and larger shapes: ``test_cosim_default.py`` (``slow``).
"""

from __future__ import annotations

import pytest

from firmware import golden as G

from . import test_cosim_kernels as K

TOLERANCE = 0.05


def _cases() -> list[tuple[object, tuple]]:
    cases: list[tuple[object, tuple]] = []
    cases += [(K.test_matmul, s) for s in [(1, 1, 1), (3, 5, 7), (8, 16, 8), (9, 33, 17)]]
    cases += [(K.test_linear_bias_activation, (a,)) for a in [None, "gelu", "silu", "relu"]]
    cases += [(K.test_quantized_linear, (f,))
              for f in ["int4", "fp4", "if4", "nvfp4", "int8", "fp8", "if8"]]
    cases += [(K.test_matmul_softmax, ())]
    cases += [(K.test_rowwise, (s,)) for s in [(3, 7), (5, 33)]]
    cases += [(K.test_eltwise, ()), (K.test_transpose, ()), (K.test_rope, ())]
    cases += [(K.test_attention, (c,)) for c in [False, True]]
    cases += [(K.test_embedding, ())]
    return cases


def timing_table(pair: K.Pair) -> list[tuple[str, int, int]]:
    """Run every kernel case on both backends; (case, model cycles, RTL cycles) rows."""
    first = len(K.COSIM_REPORT)
    for fn, args in _cases():
        fn(pair, *args)
    return K.COSIM_REPORT[first:]


def format_table(rows: list[tuple[str, int, int]]) -> str:
    lines = [f"{'case':28s} {'model':>7s} {'rtl':>7s} {'error':>7s}"]
    lines += [f"{name:28s} {m:7d} {r:7d} {100 * (m - r) / r:+6.1f}%" for name, m, r in rows]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def small():
    pair = K.Pair(G.small_config(), 1 << 22)
    yield pair
    pair.close()


def test_model_predicts_rtl_cycles(small):
    rows = timing_table(small)
    print("\n" + format_table(rows))
    off = [(name, m, r) for name, m, r in rows if abs(m - r) > TOLERANCE * r]
    assert not off, "model cycles off by more than 5 %:\n" + format_table(off)
