# amaranth: UnusedElaboratable=no
"""Epilogue RTL vs ``epilogue_golden``, a composition of the numerics models, bit for bit.

``epilogue_golden`` is the contract: acc → + bias (bf16 widened, ``fp.f32_add``) and
× scale (``fp.f32_mul``) in the command's order → ``activation.activate`` → round
(``fp.f32_to_bf16``) or fp32, plus the running row max (``f32_max`` of the row's values as
written, restarted by ``first``). Default tests use C = 2 and C = 4 (``sim_small`` with
``cols`` replaced); every command of ``COMMANDS`` runs in one simulation, one after another.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from fpvectors import BF16_SPECIALS, F32_SPECIALS, f32_make
from lanebench import Phase, field_of, pack_struct, run_streams, unpack

from unified_engine.config import EngineConfig
from unified_engine.isa import ActKind, BiasMode, ElemFormat
from unified_engine.numerics import activation, fp, reduce, transcendental
from unified_engine.rtl.epilogue import Epilogue, Order, epilogue_command


def cols_config(cols: int) -> EngineConfig:
    return dataclasses.replace(EngineConfig.preset("sim_small"), cols=cols)


# ------------------------------------------------------------------------------ golden model


def epilogue_golden(acc, bias_lanes, rows, firsts, *, bias="none", scale=1.0,
                    act="identity", params=None, output="bf16", order="scale_bias",
                    row_state=None):  # fmt: skip
    """Expected output lanes [N, C] (uint32) and running row max [N] (uint32).

    ``b = bf16_to_f32(bias)`` per lane for "col" / "full", lane 0 broadcast for "row";
    ``x = f32_mul(f32_add(acc, b), scale)`` ("bias_scale") or ``f32_add(f32_mul(acc, scale),
    b)`` ("scale_bias"), the add skipped for bias "none"; ``y = activation.activate(x, act,
    params)``; written lanes ``w = f32_to_bf16(y)`` in the upper half ("bf16") or the bits of
    ``y`` ("fp32"). Row max: ``m = max_reduce(w[n])``; slot ``rows[n]`` becomes ``m`` when
    ``firsts[n]``, else ``f32_max(slot, m)``. ``row_state`` is the list of slot values,
    updated in place (the hardware's slots are +0 after reset and keep their values from one
    command to the next).
    """
    x = fp.f32_from_bits(np.asarray(acc, np.uint32))
    bias_lanes = np.asarray(bias_lanes, np.uint16)
    scale = np.float32(scale)

    def add_bias(v):
        if bias in ("col", "full"):
            return fp.f32_add(v, fp.bf16_to_f32(bias_lanes))
        if bias == "row":
            return fp.f32_add(v, fp.bf16_to_f32(bias_lanes[:, :1]))
        assert bias == "none"
        return v

    assert order in ("bias_scale", "scale_bias")
    x = fp.f32_mul(add_bias(x), scale) if order == "bias_scale" else add_bias(fp.f32_mul(x, scale))
    y = activation.activate(x, act, params)
    if output == "bf16":
        lanes = fp.f32_to_bf16(y).astype(np.uint32) << np.uint32(16)
    else:
        lanes = fp.f32_to_bits(y).astype(np.uint32)
    written = fp.f32_from_bits(lanes)
    state = row_state if row_state is not None else [np.float32(0.0)] * (max(rows) + 1)
    row_max = np.zeros(len(x), np.uint32)
    for n, (r, first) in enumerate(zip(rows, firsts, strict=True)):
        m = reduce.max_reduce(written[n])
        state[r] = np.float32(m if first else fp.f32_max(state[r], m))
        row_max[n] = fp.f32_to_bits(state[r])
    return lanes, row_max


def test_golden_orders():
    """(acc + bias)·scale vs acc·scale + bias: (1 + 1)·3 = 6 and 1·3 + 1 = 4."""
    args = ([[0x3F800000]], [[0x3F80]], [0], [1])
    lanes, _ = epilogue_golden(*args, bias="col", scale=3.0, output="fp32", order="bias_scale")
    assert lanes[0, 0] == 0x40C00000
    lanes, _ = epilogue_golden(*args, bias="col", scale=3.0, output="fp32")  # ISA order
    assert lanes[0, 0] == 0x40800000


def test_golden_row_max_is_of_written_values():
    """With bf16 output the row max is the maximum of the rounded values, so exp(x - max)
    is exactly 1 at the maximum: 1 + 2**-9 rounds (tie to even) to 1.0 in bf16."""
    lanes, row_max = epilogue_golden([[0x3F804000, 0x3F800000]], [[0, 0]], [0], [1])
    assert list(lanes[0]) == [0x3F800000, 0x3F800000] and row_max[0] == 0x3F800000


# ------------------------------------------------------------------------------ stimulus

#: (name, epilogue_command kwargs) — every bias mode, activation mode and output format, plus
#: scale and parameter corners (0·Inf under IEEE for the scale, zero-dominant in the block).
# fmt: off
COMMANDS = [
    ("gelu", dict(bias="col", activation="gelu")),
    ("silu_row_fp32", dict(bias="row", scale=0.125, activation="silu", output="fp32")),
    ("identity", dict()),
    ("relu_x2", dict(activation="relu", scale=2.0)),  # exact scaling: keeps the bf16 ties
    ("relu_full_scale_first", dict(bias="full", scale=-3.0, activation="relu",
                                   order="scale_bias")),
    ("clamp_overflow_fp32", dict(bias="col", scale=2.0**100, activation="clamp",
                                 params=(-1.5, 6.0), output="fp32")),
    ("tanh_scale_first", dict(bias="row", scale=0.75, activation="tanh", order="scale_bias")),
    ("sigmoid_fp32", dict(activation="sigmoid", scale=0.0, output="fp32")),
    ("unified_zero_params", dict(activation="unified", params=(0.0, 0.0, 0.0, 0.0),
                                 output="fp32")),
    ("unified_custom", dict(bias="col", activation="unified",
                            params=(-0.5, 2.0**100, 3.0, 0.25), output="fp32")),
    ("clamp_signed_zero", dict(activation="clamp", params=(-0.0, 0.0))),
    ("clamp_inf_scale_first", dict(bias="full", activation="clamp", params=(-np.inf, np.inf),
                                   scale=0.5, order="scale_bias", output="fp32")),
]
# fmt: on


#: Accumulator values every command sees at least once: ±Inf (the activation limits and the
#: zero-dominant multiply), ±0, NaNs with payloads, subnormals and the largest finite values.
MUST_HAVE = np.array([0x7F800000, 0xFF800000, 0x00000000, 0x80000000, 0x7FC00000, 0xFFFFFFFF,
                      0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF], np.uint32)  # fmt: skip


def _acc_values(rng, n):
    """fp32 accumulators: MUST_HAVE, then bf16 RNE ties (low half 0x8000, and its
    neighbours), activation-range values, wider values, the specials, values near the ends of
    the exponent range (flush, overflow) and random bit patterns."""
    r = n - len(MUST_HAVE)
    k_tie, k_mid, k_wide, k_spec, k_edge = r // 3, r // 6, r // 6, r // 8, r // 8

    def normals(count, lo, hi):
        return f32_make(rng.integers(0, 2, count), rng.integers(lo, hi, count),
                        rng.integers(0, 1 << 23, count))  # fmt: skip

    ties = (normals(k_tie, 110, 140) & np.uint32(0xFFFF0000)) | rng.choice(
        np.array([0x8000, 0x8000, 0x8000, 0x7FFF, 0x8001], np.uint32), k_tie)  # fmt: skip
    edge = f32_make(rng.integers(0, 2, k_edge), rng.choice(np.r_[0:3, 250:255], k_edge),
                    rng.integers(0, 1 << 23, k_edge))  # fmt: skip
    rand_n = r - k_tie - k_mid - k_wide - k_spec - k_edge
    out = np.concatenate([
        MUST_HAVE, ties, normals(k_mid, 118, 133), normals(k_wide, 90, 140),
        rng.choice(F32_SPECIALS, k_spec), edge,
        rng.integers(0, 1 << 32, rand_n, dtype=np.uint64).astype(np.uint32),
    ]).astype(np.uint32)  # fmt: skip
    return out[rng.permutation(n)]


def _bias_values(rng, n):
    k = n // 3
    mid = (rng.integers(0, 2, k) << 15) | (rng.integers(118, 133, k) << 7) | rng.integers(0, 128, k)
    spec = rng.choice(BF16_SPECIALS, k)
    rand = rng.integers(0, 1 << 16, n - 2 * k)
    out = np.concatenate([mid, spec, rand]).astype(np.uint16)
    return out[rng.permutation(n)]


def make_beats(rng, dut, count):
    cols = dut.cols
    acc = _acc_values(rng, count * cols).reshape(count, cols)
    bias = _bias_values(rng, count * cols).reshape(count, cols)
    # Cancellation: about 1 in 8 accumulators is minus its bias lane widened to fp32, exactly
    # (the sum is +0) or up to a few ulps off (massive cancellation).
    cancel = (rng.random(acc.shape) < 0.125) & ((bias & 0x7F80) != 0x7F80)
    cancel &= ~np.isin(acc, MUST_HAVE)
    near = (bias.astype(np.uint32) << np.uint32(16)) ^ np.uint32(0x80000000)
    near = near + rng.choice(np.array([0, 0, 1, 3, 0x8000, 0xFFFF], np.uint32), acc.shape)
    acc = np.where(cancel, near, acc).astype(np.uint32)
    rows = rng.integers(0, dut.slots, count)
    firsts = (rng.random(count) < 0.3).astype(int)
    lasts = (rng.random(count) < 0.3).astype(int)
    return acc, bias, rows, firsts, lasts


def encode(dut, acc, bias, rows, firsts, lasts):
    return [
        pack_struct(dut.i_layout, acc=list(a), bias=list(b), row=r, first=f, last=la)
        for a, b, r, f, la in zip(acc, bias, rows, firsts, lasts, strict=True)
    ]


def golden_kwargs(kw):
    return dict(bias=kw.get("bias", "none"), scale=kw.get("scale", 1.0),
                act=kw.get("activation", "identity"), params=kw.get("params"),
                output=kw.get("output", "bf16"), order=kw.get("order", "scale_bias"))  # fmt: skip


def check(dut, name, log, beats, kw, state):
    """Compare one phase's outputs; ``state`` carries the row-max slots across phases."""
    acc, bias, rows, firsts, lasts = beats
    lanes, expected_max = epilogue_golden(acc, bias, rows, firsts, **golden_kwargs(kw),
                                          row_state=state)  # fmt: skip
    outs = log.outputs
    assert len(outs) == len(acc)
    got = np.array([unpack(field_of(dut.o_layout, p, "data"), 32, dut.cols) for p in outs])
    got_max = np.array([field_of(dut.o_layout, p, "row_max") for p in outs], np.uint32)
    for field, want in (("row", rows), ("first", firsts), ("last", lasts)):
        assert [field_of(dut.o_layout, p, field) for p in outs] == list(want), field
    bad = np.argwhere(got != lanes)
    if len(bad):
        n, k = bad[0]
        raise AssertionError(
            f"[{name}] {len(bad)} lane mismatches; first: beat {n} lane {k} "
            f"acc={int(acc[n, k]):08x} bias={[f'{int(b):04x}' for b in bias[n]]}: "
            f"got {int(got[n, k]):08x}, expected {int(lanes[n, k]):08x}"
        )
    bad = np.flatnonzero(got_max != expected_max)
    if len(bad):
        n = bad[0]
        raise AssertionError(
            f"[{name}] {len(bad)} row-max mismatches; first: beat {n} row {rows[n]} "
            f"first={firsts[n]}: got {int(got_max[n]):08x}, expected {int(expected_max[n]):08x}"
        )


def run_commands(dut, commands, beats_per_command, *, seed, gap=0.0, stall=0.0, watch=()):
    rng = np.random.default_rng(seed)
    phases, stimuli = [], []
    for _, kw in commands:
        beats = make_beats(rng, dut, beats_per_command)
        stimuli.append(beats)
        phases.append(Phase(inputs={"i": encode(dut, *beats)}, outputs=beats_per_command,
                            static=[(dut.cmd, epilogue_command(**kw))]))  # fmt: skip

    def idle_check(ctx):
        assert not ctx.get(dut.busy), "busy after every output was taken"

    logs = run_streams(dut, phases, seed=seed, gap_probability=gap, stall_probability=stall,
                       idle_check=idle_check, watch=watch)  # fmt: skip
    state = [np.float32(0.0)] * dut.slots
    for (name, kw), log, beats in zip(commands, logs, stimuli, strict=True):
        check(dut, name, log, beats, kw, state)
    return logs


# ------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("cols", [2, 4])
def test_every_mode_bit_exact_with_backpressure(cols):
    """Every command of COMMANDS, random input gaps and output stalls."""
    dut = Epilogue(cols_config(cols))
    run_commands(dut, COMMANDS, 16, seed=cols, gap=0.25, stall=0.25)


@pytest.mark.parametrize("cols", [2, 4])
def test_full_throughput_fixed_latency(cols):
    """GELU with column bias, no gaps or stalls: one beat per cycle, each result exactly
    ``latency`` cycles after its beat."""
    dut = Epilogue(cols_config(cols))
    (log,) = run_commands(dut, COMMANDS[:1], 40, seed=100 + cols, watch=[dut.busy])
    accepted = np.array(log.accepted["i"])
    busy = {cycle: values[0] for cycle, values in log.watched}
    # busy rises the cycle after the first beat is taken and stays up until the last leaves
    assert not busy[accepted[0]] and all(busy[c] for c in range(accepted[0] + 1,
                                                                log.out_cycles[-1] + 1))
    assert (np.diff(accepted) == 1).all()
    assert (np.array(log.out_cycles) - accepted == dut.latency).all()
    assert dut.latency == 4 + 4 + 10 + dut.sigmoid_latency + 1 + (cols - 1).bit_length() + 1


# ------------------------------------------------------------------------------ stimulus, API


def test_stimulus_reaches_the_classes():
    """The commands and beats of the mode test hit what they claim to: the zero-dominant rule
    changes some results (IEEE 0·Inf would give NaN), bf16 ties are rounded, the scale
    overflows, acc + bias cancels exactly, NaN / ±Inf / ±0 reach every command, slots restart
    and continue."""
    rng = np.random.default_rng(2)  # the mode test's stream for cols = 2
    dut = SimpleNamespace(cols=2, slots=4)
    zero_dominant = ties = overflow = restarts = continues = cancelled = 0
    for _, kw in COMMANDS:
        acc, bias, rows, firsts, _ = make_beats(rng, dut, 16)
        if kw.get("bias") in ("col", "full"):  # acc + bias == ±0 exactly for nonzero acc
            total = fp.f32_add(fp.f32_from_bits(acc), fp.bf16_to_f32(bias))
            cancelled += int(((total == 0) & ((acc & 0x7F800000) != 0)).sum())
        assert {0x7F800000, 0xFF800000, 0x7FC00000, 0x00000000, 0x80000000} <= set(acc.ravel())
        g = golden_kwargs(kw)
        y, _ = epilogue_golden(acc, bias, rows, firsts, **{**g, "output": "fp32"})
        if g["act"] in activation.ACTIVATIONS or g["act"] == "unified":
            ieee = _ieee_unified(acc, bias, g)
            zero_dominant += int((ieee != y).sum())
        if g["output"] == "bf16":
            low = y & np.uint32(0xFFFF)
            ties += int(((low == 0x8000) & ((y & 0x7F800000) != 0x7F800000)).sum())
        if g["scale"] == 2.0**100:  # × scale overflows to ±Inf before the clamp
            pre, _ = epilogue_golden(acc, bias, rows, firsts, **{**g, "act": "identity",
                                     "params": None, "output": "fp32"})  # fmt: skip
            finite = (acc & 0x7F800000) != 0x7F800000
            overflow += int((finite & ((pre & 0x7FFFFFFF) == 0x7F800000)).sum())
        restarts += int(firsts.sum())
        continues += int((firsts == 0).sum())
    assert zero_dominant >= 4 and ties >= 5 and overflow >= 4, (zero_dominant, ties, overflow)
    assert restarts >= 20 and continues >= 20 and cancelled >= 4, (restarts, continues,
                                                                   cancelled)


def _ieee_unified(acc, bias, g):
    """The unified block with IEEE multiplies (0·Inf = NaN) instead of zero-dominant ones."""
    lanes, _ = epilogue_golden(acc, bias, [0] * len(acc), [1] * len(acc),
                               **{**g, "act": "identity", "params": None,
                                  "output": "fp32"})  # fmt: skip
    x = fp.f32_from_bits(lanes)
    a, b, c, d = (activation.ACTIVATIONS[g["act"]] if g["act"] != "unified" else
                  tuple(np.float32(v) for v in g["params"]))  # fmt: skip
    s = transcendental.sigmoid(fp.f32_mul(b, x))
    y = fp.f32_add(fp.f32_mul(fp.f32_add(a, fp.f32_mul(c, x)), s), d)
    return fp.f32_to_bits(y)


def test_command_encoding():
    """Presets resolve to UNIFIED with the model's parameters; relu and clamp to CLAMP with
    (lo, hi) in (a, b), as in docs/isa.md's EPI entry."""
    cmd = epilogue_command(bias="row", scale=0.5, activation="gelu", output="fp32",
                           order="scale_bias")  # fmt: skip
    assert cmd.bias_mode == BiasMode.ROW and cmd.act == ActKind.UNIFIED
    assert cmd.out_fmt == ElemFormat.FP32 and cmd.order == Order.SCALE_BIAS
    assert cmd.scale == 0x3F000000
    assert [cmd.a, cmd.b, cmd.c, cmd.d] == [0, 0x3FD9DB23, 0x3F800000, 0]  # fp32(1.702)
    cmd = epilogue_command(bias="full", activation="clamp", params=(-np.inf, 2.0))
    assert cmd.bias_mode == BiasMode.FULL and cmd.act == ActKind.CLAMP
    assert (cmd.a, cmd.b) == (0xFF800000, 0x40000000)
    assert cmd.order == Order.SCALE_BIAS and cmd.out_fmt == ElemFormat.BF16
    cmd = epilogue_command(activation="relu")
    assert cmd.act == ActKind.CLAMP and (cmd.a, cmd.b) == (0, 0x7F800000)
    assert epilogue_command().act == ActKind.IDENTITY
    cmd = epilogue_command(activation="unified", params=(1.0, np.float32(1e-40), -0.0, 2.0))
    assert (cmd.a, cmd.b, cmd.c, cmd.d) == (0x3F800000, 0, 0x80000000, 0x40000000)  # FTZ


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(bias="column"), ValueError, "unknown bias mode"),
        (dict(order="scale_first"), ValueError, "unknown order"),
        (dict(output="fp16"), ValueError, "unknown output format"),
        (dict(activation="gelu2"), ValueError, "unknown activation"),
        (dict(activation="gelu", params=(0, 1, 1, 0)), ValueError, "takes no params"),
        (dict(activation="unified", params=(0, 1, 1)), ValueError, "needs params"),
        (dict(activation="clamp"), ValueError, "needs params"),
        (dict(activation="clamp", params=(1.0, -1.0)), ValueError, "lo <= hi"),
        (dict(activation="clamp", params=(0.0, -0.0)), ValueError, "lo <= hi"),
        (dict(activation="clamp", params=(np.nan, 1.0)), ValueError, "NaN"),
        (dict(activation="unified", params=(0, np.inf, 1, 0)), ValueError, "finite"),
        (dict(scale=0.1), ValueError, "not exactly representable"),
        (dict(scale=1e39), ValueError, "finite"),
        (dict(scale="1.0"), TypeError, "real number"),
        (dict(scale=True), TypeError, "real number"),
    ],
)
def test_command_rejects_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        epilogue_command(**kwargs)


def test_rejects_bad_config():
    with pytest.raises(TypeError, match="EngineConfig"):
        Epilogue(cols_config(2).to_dict())


# ------------------------------------------------------------------------------ slow tier


def _random_unified(rng):
    """Random (a, b, c, d): fp32 values of moderate range, with zeros now and then."""
    vals = fp.f32_from_bits(f32_make(rng.integers(0, 2, 4), rng.integers(110, 140, 4),
                                     rng.integers(0, 1 << 23, 4)))  # fmt: skip
    vals[rng.random(4) < 0.2] = 0.0
    return tuple(np.float32(v) for v in vals)


@pytest.mark.slow
@pytest.mark.parametrize("cols", [4, 8])
def test_large_every_mode(cols):
    """C = 8 (the default engine) and C = 4, every command plus random unified parameters."""
    dut = Epilogue(cols_config(cols) if cols == 4 else EngineConfig())
    rng = np.random.default_rng(700 + cols)
    extra = [(f"unified_random{k}", dict(bias=("col", "row", "none", "full")[k % 4],
                                         activation="unified", params=_random_unified(rng),
                                         output=("bf16", "fp32")[k % 2],
                                         order=("bias_scale", "scale_bias")[k // 3]))
             for k in range(6)]  # fmt: skip
    run_commands(dut, COMMANDS + extra, 128, seed=cols, gap=0.15, stall=0.15)


# ------------------------------------------------------------------------------ synthesis


@pytest.mark.synth
def test_synth_estimate_default_cols():
    """Yosys estimate (xc7) of the default engine's epilogue, C = 8. Measured (Yosys 0.70):
    27660 LUT, 2342 LUTRAM (the delay lines as SRLs), 15200 FF, 208 DSP; about 7 minutes.
    Per column: 18 DSP pieces of the sigmoid (exp + reciprocal) and 2 per fp32 multiplier
    (scale, b·x, c·x, g·s). The bounds are a regression guard (+10 %)."""
    from amaranth.hdl import Const, Value

    from unified_engine.rtl.synth import synth_estimate

    dut = Epilogue(EngineConfig())
    ports = [Value.cast(v) for _, _, v in dut.signature.flatten(dut) if not isinstance(v, Const)]
    res = synth_estimate(dut, "epilogue", "xc7", ports=ports)
    print({k: res[k] for k in ("LUT", "LUTRAM", "FF", "CARRY", "DSP", "seconds")})
    assert res["DSP"] == 8 * 26
    assert res["LUT"] <= 30400 and res["FF"] <= 16700
    assert res["LUTRAM"] > 1000  # the delay lines did become shift-register LUTs
