# amaranth: UnusedElaboratable=no
"""VectorUnit RTL vs a golden composition of the numerics models, bit for bit.

The golden model (``vector_golden``) is written here from ``fp``, ``transcendental`` and
``reduce`` alone: per lane the binary op and the function, then the reduction over the lanes
that are not excluded (``multi_add`` / ``max_reduce`` of that subset), then the running value
per chain (sequential ``f32_add`` from +0 / ``f32_max``). Default tests use L = 2 and L = 4
(``sim_small`` with ``lanes`` replaced); the Python simulator is slow, so bigger sweeps are
``slow``.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Value
from fpvectors import F32_SPECIALS, adder_pairs, f32_make, multiplier_pairs
from lanebench import Phase, field_of, pack, pack_struct, run_streams, unpack
from simhelpers import assert_bits_equal, drive_pipeline, run

from unified_engine.config import EngineConfig
from unified_engine.numerics import fp, reduce, transcendental
from unified_engine.rtl.vector import (
    FUNCTIONS,
    BSource,
    Reduce,
    VectorFn,
    VectorLane,
    VectorOp,
    VectorUnit,
)

NEG_ZERO = np.uint32(0x80000000)
NEG_INF = np.uint32(0xFF800000)


def lanes_config(lanes: int) -> EngineConfig:
    return dataclasses.replace(EngineConfig.preset("sim_small"), lanes=lanes)


# ------------------------------------------------------------------------------ golden model


def _f(bits):
    return fp.f32_from_bits(np.asarray(bits, np.uint32))


def _bits(x):
    return fp.f32_to_bits(x).astype(np.uint32)


_BINOPS = {
    VectorOp.COPY: lambda a, b: fp.ftz32(a),
    VectorOp.ADD: fp.f32_add,
    VectorOp.SUB: fp.f32_sub,
    VectorOp.MUL: fp.f32_mul,
    VectorOp.MAX: fp.f32_max,
    VectorOp.MIN: fp.f32_min,
}
_FNS = {
    VectorFn.EXP: ("exp", transcendental.exp),
    VectorFn.RECIPROCAL: ("reciprocal", transcendental.reciprocal),
    VectorFn.RSQRT: ("rsqrt", transcendental.rsqrt),
}


def vector_golden(beats, b_beats, scalars, *, lanes, guard_bits, chains, function_lanes=None,
                  sum_init="zero"):  # fmt: skip
    """Expected (data lanes, reduce value) per beat, as uint32 arrays [N, L] and [N].

    ``function_lanes`` maps a function name to the number of lanes (from lane 0) that have
    it (default: every function in every lane); elsewhere the function gives NaN. A first
    SUM beat of a chain gives ``f32_add(+0, s)`` (``sum_init="zero"``) or ``s``
    (``"value"``)."""
    if function_lanes is None:
        function_lanes = dict.fromkeys(FUNCTIONS, lanes)
    n = len(beats)
    a = np.array([bt["data"] for bt in beats], np.uint32).reshape(n, lanes)
    b = np.empty_like(a)
    b_iter = iter(b_beats)
    for k, bt in enumerate(beats):
        src = bt["b_src"]
        if src == BSource.SELF:
            b[k] = a[k]
        elif src == BSource.STREAM:
            b[k] = next(b_iter)
        elif src == BSource.LANE0:
            b[k] = next(b_iter)[0]
        else:
            b[k] = scalars[k]
    assert next(b_iter, None) is None, "test bug: unused B beats"
    fa, fb = _f(a), _f(b)
    binop = np.empty_like(a)
    for op, func in _BINOPS.items():
        rows = np.array([bt["op"] == op for bt in beats], bool)
        binop[rows] = _bits(func(fa[rows], fb[rows]))
    out = binop.copy()
    for code, (name, func) in _FNS.items():
        rows = np.array([bt["fn"] == code for bt in beats], bool)
        have = function_lanes.get(name, 0)
        out[rows, :have] = _bits(func(_f(binop[rows, :have])))
        out[rows, have:] = fp.F32_CANONICAL_NAN
    red = np.zeros(n, np.uint32)
    state = [np.float32(0.0)] * chains  # a chain's value after reset is +0
    for k, bt in enumerate(beats):
        kept = _f(out[k][~np.asarray(bt["exclude"], bool)])
        if bt["reduce"] == Reduce.SUM:
            r = reduce.multi_add(kept, guard_bits=guard_bits) if len(kept) else _f(NEG_ZERO)
        elif bt["reduce"] == Reduce.MAX:
            r = reduce.max_reduce(kept) if len(kept) else _f(NEG_INF)
        else:
            red[k] = 0
            continue
        r = np.float32(r)
        if bt["accumulate"]:
            c = bt["chain"]
            if bt["reduce"] == Reduce.SUM:
                if not bt["first"]:
                    r = fp.f32_add(state[c], r)
                elif sum_init == "zero":
                    r = fp.f32_add(np.float32(0.0), r)
            elif not bt["first"]:
                r = fp.f32_max(state[c], r)
            state[c] = np.float32(r)
        red[k] = _bits(r)
    return out, red


def test_golden_accumulation_is_sequential():
    """The golden accumulation is the sequential f32 sum of per-beat multi_adds, checked on
    a case where the order matters: 2**24 + 1 + 1 - 2**24 loses both ones one at a time."""
    big, one = np.uint32(0x4B800000), np.uint32(0x3F800000)
    beats = [
        dict(data=[x, NEG_ZERO], op=VectorOp.COPY, fn=VectorFn.NONE, b_src=BSource.SELF,
             reduce=Reduce.SUM, accumulate=1, first=int(k == 0), chain=1, exclude=[0, 0])
        for k, x in enumerate([big, one, one, big | NEG_ZERO])
    ]  # fmt: skip
    _, red = vector_golden(beats, [], [0] * 4, lanes=2, guard_bits=4, chains=4)
    assert list(red) == [0x4B800000, 0x4B800000, 0x4B800000, 0]
    # ... whereas one multi_add of all four keeps them (the sum is exactly 2).
    assert _bits(reduce.multi_add(_f([big, one, one, big | NEG_ZERO]), guard_bits=4)) == 0x40000000


# ------------------------------------------------------------------------------ stimulus


def _operand_pairs(rng, count):
    """fp32 operand pairs over the corner classes of the adder and multiplier generators."""
    a1, b1 = adder_pairs(rng, count)
    a2, b2 = multiplier_pairs(rng, count)
    a, b = np.concatenate([a1, a2]), np.concatenate([b1, b2])
    pick = rng.choice(len(a), count, replace=False)
    return a[pick], b[pick]


def _function_inputs(rng, count):
    """Arguments that exercise exp / reciprocal / rsqrt: in-range values, thresholds and the
    specials (the function tests sweep the units themselves; this checks the wiring)."""
    k = count // 4
    mid = f32_make(rng.integers(0, 2, k), rng.integers(110, 134, k), rng.integers(0, 1 << 23, k))
    thresholds = rng.choice(
        np.array([0x42B17217, 0x42B17218, 0xC2AEAC4F, 0xC2AEAC50, 0x7F000000, 0x00800000,
                  0x3F800000, 0x40800000], np.uint32), k)  # fmt: skip
    spec = rng.choice(F32_SPECIALS, k)
    rand = rng.integers(0, 1 << 32, count - 3 * k, dtype=np.uint64).astype(np.uint32)
    out = np.concatenate([mid, thresholds, spec, rand]).astype(np.uint32)
    return out[rng.permutation(len(out))]


def random_beats(rng, dut, count, *, accumulate=True, chains_round_robin=False, functions=True):
    """Random beats over every op, function, B source and reduction, with B beats and
    per-beat scalars. Returns (beats, b_beats, scalars)."""
    lanes = dut.lanes
    ops, srcs = list(VectorOp), list(BSource)
    fns = list(VectorFn) if functions else [VectorFn.NONE]
    a_vals, b_vals = _operand_pairs(rng, count * lanes)
    fn_vals = _function_inputs(rng, count * lanes)
    beats, b_beats = [], []
    scalars = rng.choice(np.concatenate([F32_SPECIALS, b_vals[:64]]), count).astype(np.uint32)
    started = set()
    for k in range(count):
        fn = fns[rng.integers(len(fns))]
        op = ops[rng.integers(len(ops))] if fn == VectorFn.NONE or rng.random() < 0.3 else (
            VectorOp.COPY)
        data = (fn_vals if op == VectorOp.COPY and fn != VectorFn.NONE else a_vals)
        data = data[k * lanes : (k + 1) * lanes]
        src = srcs[rng.integers(len(srcs))]
        if src in (BSource.STREAM, BSource.LANE0):
            b_beats.append(b_vals[k * lanes : (k + 1) * lanes])
        red = Reduce(int(rng.choice(3, p=[0.2, 0.4, 0.4])))
        if chains_round_robin:
            chain = k % dut.chains
        elif beats and rng.random() < 0.5:  # often the previous beat's chain: RAW hazards
            chain = beats[-1]["chain"]
        else:
            chain = int(rng.integers(dut.chains))
        acc = int(accumulate and rng.random() < 0.75)
        first = int(chain not in started or rng.random() < 0.2)
        if acc and red != Reduce.NONE:
            started.add(chain)
        exclude = (rng.random(lanes) < 0.2).astype(int)
        beats.append(dict(data=data, op=op, fn=fn, b_src=src, reduce=red, accumulate=acc,
                          first=first, last=int(rng.random() < 0.3), chain=chain,
                          exclude=exclude))  # fmt: skip
    return beats, b_beats, scalars


def encode(dut, beats, b_beats):
    a_payloads = [
        pack_struct(dut.a_layout, **{**bt, "exclude": pack(bt["exclude"], 1)}) for bt in beats
    ]
    return a_payloads, [pack(bb, 32) for bb in b_beats]


def check_outputs(dut, beats, log, expected_lanes, expected_red):
    lanes = dut.lanes
    outs = log.outputs
    assert len(outs) == len(beats)
    got_lanes = np.array([unpack(field_of(dut.o_layout, p, "data"), 32, lanes) for p in outs])
    got_red = np.array([field_of(dut.o_layout, p, "reduce") for p in outs], np.uint32)
    for name in ("first", "last", "chain"):
        got = [field_of(dut.o_layout, p, name) for p in outs]
        assert got == [int(bt[name]) for bt in beats], f"{name} flags not passed through"
    bad = np.argwhere(got_lanes != expected_lanes)
    if len(bad):
        k, lane = bad[0]
        bt = beats[k]
        raise AssertionError(
            f"{len(bad)} lane mismatches; first: beat {k} lane {lane} op={bt['op'].name} "
            f"fn={bt['fn'].name} b_src={bt['b_src'].name} a={int(bt['data'][lane]):08x}: "
            f"got {int(got_lanes[k, lane]):08x}, expected {int(expected_lanes[k, lane]):08x}"
        )
    bad = np.flatnonzero(got_red != expected_red)
    if len(bad):
        k = bad[0]
        bt = beats[k]
        raise AssertionError(
            f"{len(bad)} reduce mismatches; first: beat {k} reduce={bt['reduce'].name} "
            f"acc={bt['accumulate']} first={bt['first']} chain={bt['chain']} "
            f"lanes={[f'{int(v):08x}' for v in expected_lanes[k]]} "
            f"exclude={[int(v) for v in bt['exclude']]}:"
            f" got {int(got_red[k]):08x}, expected {int(expected_red[k]):08x}"
        )


def simulate(dut, beats, b_beats, scalars, **kwargs):
    a_payloads, b_payloads = encode(dut, beats, b_beats)
    phase = Phase(
        inputs={"a": a_payloads, "b": b_payloads},
        outputs=len(beats),
        sideband={"a": (dut.scalar, [int(s) for s in scalars])},
    )
    (log,) = run_streams(dut, [phase], **kwargs)
    return log


def golden_for(dut, beats, b_beats, scalars):
    return vector_golden(
        beats, b_beats, scalars, lanes=dut.lanes, guard_bits=dut.config.reduce_guard_bits,
        chains=dut.chains, function_lanes=dut.function_lanes, sum_init=dut.sum_init,
    )  # fmt: skip


# ------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("lanes", [2, 4])
def test_full_throughput_fixed_latency(lanes):
    """No gaps, no stalls, accumulation chains used round-robin: one beat per cycle in and
    out, every result exactly ``latency`` cycles after its beat, bit-exact."""
    dut = VectorUnit(lanes_config(lanes), functions=())
    rng = np.random.default_rng(lanes)
    beats, b_beats, scalars = random_beats(rng, dut, 48, chains_round_robin=True, functions=False)
    log = simulate(dut, beats, b_beats, scalars)
    check_outputs(dut, beats, log, *golden_for(dut, beats, b_beats, scalars))
    acc = np.array(log.accepted["a"])
    assert (np.diff(acc) == 1).all(), f"input bubbles at full throughput: {np.diff(acc)}"
    assert (np.array(log.out_cycles) - acc == dut.latency).all()
    assert dut.latency == 4 + dut.reduce_latency + 4


@pytest.mark.parametrize("lanes", [2, 4])
def test_random_backpressure_and_hazards(lanes):
    """Random input gaps (A and B independently), output stalls and random chains (so
    accumulation hazards stall the front of the pipe): results unchanged and in order."""
    dut = VectorUnit(lanes_config(lanes), functions=())
    rng = np.random.default_rng(10 + lanes)
    beats, b_beats, scalars = random_beats(rng, dut, 60, functions=False)
    log = simulate(dut, beats, b_beats, scalars, seed=lanes, gap_probability=0.3,
                   stall_probability=0.3)  # fmt: skip
    check_outputs(dut, beats, log, *golden_for(dut, beats, b_beats, scalars))


@pytest.mark.parametrize("lanes", [2, 4])
def test_functions_bit_exact(lanes):
    """exp / reciprocal / rsqrt after every binary op (e.g. exp(a - b)), random gaps and
    stalls; the latency includes the deepest function. With 4 lanes, reciprocal is built in
    lanes 0-1 only and rsqrt in lane 0 only (NaN elsewhere)."""
    functions = FUNCTIONS if lanes == 2 else {"exp": 4, "reciprocal": 2, "rsqrt": 1}
    dut = VectorUnit(lanes_config(lanes), functions=functions)
    assert dut.latency == 4 + 16 + dut.reduce_latency + 4
    rng = np.random.default_rng(20 + lanes)
    beats, b_beats, scalars = random_beats(rng, dut, 40)
    log = simulate(dut, beats, b_beats, scalars, seed=lanes, gap_probability=0.2,
                   stall_probability=0.2)  # fmt: skip
    check_outputs(dut, beats, log, *golden_for(dut, beats, b_beats, scalars))


# ------------------------------------------------------------------------------ one lane


def lane_golden(a, b, ops, fns, functions=FUNCTIONS):
    """fn(op(a, b)) per element from the fp / transcendental models."""
    fa, fb = _f(a), _f(b)
    ops, fns = np.asarray(ops), np.asarray(fns)
    out = np.zeros(len(a), np.uint32)
    for op, func in _BINOPS.items():
        rows = ops == op.value
        out[rows] = _bits(func(fa[rows], fb[rows]))
    res = out.copy()
    for code, (name, func) in _FNS.items():
        rows = fns == code.value
        res[rows] = _bits(func(_f(out[rows]))) if name in functions else fp.F32_CANONICAL_NAN
    return res


def simulate_lane(dut, a, b, ops, fns):
    out = {}

    async def bench(ctx):
        ports = [(dut.a, a), (dut.b, b), (Value.cast(dut.op), ops), (Value.cast(dut.fn), fns)]
        (out["r"],) = await drive_pipeline(ctx, ports, [dut.result], dut.latency)

    run(dut, bench)
    return np.array(out["r"], np.uint32)


def lane_stimulus(rng, n):
    """Operand pairs over the adder / multiplier corner classes for the binary ops, and
    function arguments (through COPY) for exp / reciprocal / rsqrt; op and fn change every
    cycle."""
    a, b = _operand_pairs(rng, n)
    ops = rng.integers(0, len(VectorOp), n)
    fns = np.where(rng.random(n) < 0.5, 0, rng.integers(1, len(VectorFn), n))
    # Half of the function beats get a function argument through COPY (the other half see
    # whatever the binary op produced, e.g. exp(a - b)).
    direct = (fns != 0) & (rng.random(n) < 0.5)
    a = np.where(direct, _function_inputs(rng, n), a).astype(np.uint32)
    ops = np.where(direct, VectorOp.COPY.value, ops)
    return a, b, ops, fns


def test_lane_every_op_and_function_bit_exact():
    """One lane, op and fn changing every cycle, over the corner classes."""
    dut = VectorLane()
    assert dut.latency == 4 + 16
    a, b, ops, fns = lane_stimulus(np.random.default_rng(5), 1200)
    got = simulate_lane(dut, a, b, ops, fns)
    assert_bits_equal(got, lane_golden(a, b, ops, fns), a, b, ops, fns, name="lane")


def test_lane_without_some_functions():
    """A lane built without reciprocal / rsqrt returns NaN for them (and is shallower)."""
    dut = VectorLane(functions=("exp",))
    assert dut.latency == 4 + 11
    a, b, ops, fns = lane_stimulus(np.random.default_rng(6), 200)
    got = simulate_lane(dut, a, b, ops, fns)
    expected = lane_golden(a, b, ops, fns, functions=("exp",))
    assert_bits_equal(got, expected, a, b, ops, fns, name="lane")
    assert (expected[fns >= VectorFn.RECIPROCAL.value] == fp.F32_CANONICAL_NAN).all()


# ------------------------------------------------------------------------------ accumulation


def chain_beats(rng, dut, count, chains):
    """``count`` accumulate beats on chains 0 … chains-1 round-robin, each chain starting
    with a ``first`` beat; SUM and MAX mixed (a chain keeps one kind per row). Every other
    first beat sums to -0 (all lanes -0), where the two ``sum_init`` rules differ."""
    lanes = dut.lanes
    vals = _operand_pairs(rng, count * lanes)[0]
    beats = []
    for k in range(count):
        chain, step = k % chains, k // chains
        row = step // 6  # rows of 6 beats per chain
        if step % 12 == 0:
            vals[k * lanes:(k + 1) * lanes] = NEG_ZERO
        beats.append(dict(
            data=vals[k * lanes:(k + 1) * lanes], op=VectorOp.COPY, fn=VectorFn.NONE,
            b_src=BSource.SELF, reduce=Reduce.SUM if (row + chain) % 2 == 0 else Reduce.MAX,
            accumulate=1, first=int(step % 6 == 0), last=int(step % 6 == 5), chain=chain,
            exclude=np.zeros(lanes, int)))  # fmt: skip
    return beats


@pytest.mark.parametrize("sum_init", ["zero", "value"])
def test_accumulation_throughput_per_chain(sum_init):
    """One chain accepts a continuing beat every 4 cycles (the accumulator's depth), two
    chains alternate 1 and 3 cycles apart, four chains run at one beat per cycle; results
    bit-exact (running f32_add / f32_max per chain) under both ``sum_init`` rules."""
    dut = VectorUnit(lanes_config(2), functions=(), sum_init=sum_init)
    rng = np.random.default_rng(3)
    cases = {1: chain_beats(rng, dut, 14, 1), 2: chain_beats(rng, dut, 24, 2),
             4: chain_beats(rng, dut, 24, 4)}  # fmt: skip
    # The stimulus tells the two rules apart (a -0 first sum).
    other = "value" if sum_init == "zero" else "zero"
    beats = cases[4]
    golden = [vector_golden(beats, [], [0] * len(beats), lanes=2, guard_bits=4, chains=4,
                            function_lanes={}, sum_init=rule)[1] for rule in (sum_init, other)]
    assert (golden[0] != golden[1]).any()
    phases = [Phase(inputs={"a": encode(dut, beats, [])[0], "b": []}, outputs=len(beats))
              for beats in cases.values()]  # fmt: skip
    logs = run_streams(dut, phases)
    for (chains, beats), log in zip(cases.items(), logs, strict=True):
        check_outputs(dut, beats, log, *golden_for(dut, beats, [], [0] * len(beats)))
        gaps = np.diff(log.out_cycles)
        if chains == 1:  # a first beat may follow its predecessor in the next cycle
            cont = [bt["first"] == 0 for bt in beats[1:]]
            assert (gaps[cont] == 4).all() and (gaps[~np.array(cont)] == 1).all(), gaps
        elif chains == 2:
            assert sorted(set(gaps[2:].tolist())) == [1, 3], gaps
        else:
            assert (gaps == 1).all(), gaps


# ------------------------------------------------------------------------------ misc


def test_stimulus_reaches_the_classes():
    """The random beats of the back-pressure test contain every op, function, B source and
    reduction, accumulation hazards (a continuing beat within 3 beats of its chain's previous
    one), excluded lanes, fully excluded beats, and NaN / Inf / ±0 lanes."""
    # Same generator calls as the simulations (seeds 12 and 22), without building a unit.
    dut = SimpleNamespace(lanes=2, chains=4)
    beats, _, _ = random_beats(np.random.default_rng(12), dut, 60, functions=False)
    assert {bt["op"] for bt in beats} == set(VectorOp)
    assert {bt["b_src"] for bt in beats} == set(BSource)
    assert {bt["reduce"] for bt in beats} == set(Reduce)
    fn_beats, _, _ = random_beats(np.random.default_rng(22), dut, 40)
    assert {bt["fn"] for bt in fn_beats} == set(VectorFn)
    hazards = 0
    for k, bt in enumerate(beats):
        if bt["accumulate"] and not bt["first"] and bt["reduce"] != Reduce.NONE:
            prev = [p for p in beats[max(0, k - 3):k]
                    if p["accumulate"] and p["chain"] == bt["chain"] and p["reduce"] != Reduce.NONE]
            hazards += bool(prev)
    assert hazards >= 8
    excl = np.array([bt["exclude"] for bt in beats])
    assert excl.any(axis=1).sum() >= 5 and excl.all(axis=1).sum() >= 1
    data = np.concatenate([bt["data"] for bt in beats])
    for pattern in (0x7FC00000, 0x7F800000, 0xFF800000, 0x00000000, 0x80000000):
        assert (data == pattern).any(), hex(pattern)


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (("sim_small",), {}, TypeError, "EngineConfig"),
        ((lanes_config(2),), {"functions": "exp"}, TypeError, "collection"),
        ((lanes_config(2),), {"functions": ("exp", "log")}, ValueError, "unknown function"),
        ((lanes_config(2),), {"functions": ("exp", "exp")}, ValueError, "twice"),
        ((lanes_config(2),), {"functions": {"exp": 3}}, ValueError, "lane count in 0…2"),
        ((lanes_config(2),), {"functions": {"rsqrt": True}}, ValueError, "lane count"),
        ((lanes_config(2),), {"functions": {"sin": 1}}, ValueError, "unknown function"),
        ((lanes_config(2),), {"sum_init": "one"}, ValueError, "sum_init"),
    ],
)
def test_rejects_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        VectorUnit(*args, **kwargs)



# ------------------------------------------------------------------------------ slow tier


@pytest.mark.slow
def test_lane_large_sweep():
    dut = VectorLane()
    a, b, ops, fns = lane_stimulus(np.random.default_rng(55), 60000)
    got = simulate_lane(dut, a, b, ops, fns)
    assert_bits_equal(got, lane_golden(a, b, ops, fns), a, b, ops, fns, name="lane")


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [4, 16])
def test_large_random_with_functions(lanes):
    """The default engine's 16 lanes (and 4), every feature, gaps and stalls."""
    dut = VectorUnit(lanes_config(lanes) if lanes == 4 else EngineConfig())
    rng = np.random.default_rng(300 + lanes)
    beats, b_beats, scalars = random_beats(rng, dut, 1000 if lanes == 4 else 400)
    log = simulate(dut, beats, b_beats, scalars, seed=lanes, gap_probability=0.15,
                   stall_probability=0.15)  # fmt: skip
    check_outputs(dut, beats, log, *golden_for(dut, beats, b_beats, scalars))


# ------------------------------------------------------------------------------ synthesis


def _synth(dut, top):
    from amaranth.hdl import Const

    from unified_engine.rtl.synth import synth_estimate

    # Enum-typed ports (op, fn) are passed as plain values.
    ports = [Value.cast(v) for _, _, v in dut.signature.flatten(dut) if not isinstance(v, Const)]
    res = synth_estimate(dut, top, "xc7", ports=ports)
    print({k: res[k] for k in ("LUT", "LUTRAM", "FF", "CARRY", "DSP", "seconds")})
    return res


@pytest.mark.synth
def test_synth_estimate_one_lane():
    """One lane with every function (Yosys 0.70, xc7): 1945 LUT, 328 LUTRAM, 1106 FF,
    37 DSP (fp32 multiplier 2, exp 9, reciprocal 9, rsqrt 17); under a minute. Bounds +10 %."""
    res = _synth(VectorLane(), "vector_lane")
    assert res["DSP"] == 37
    assert res["LUT"] <= 2150 and res["FF"] <= 1220


@pytest.mark.synth
def test_synth_estimate_default_lanes_without_functions():
    """The default engine's 16 lanes without function units: the lanes' binary ops, the
    16-input adder tree, the max tree and the accumulator (Yosys 0.70, xc7): 20176 LUT,
    1230 LUTRAM, 10804 FF, 32 DSP; about 2-4 minutes. Bounds +10 %."""
    res = _synth(VectorUnit(EngineConfig(), functions=()), "vector_unit")
    assert res["DSP"] == 32
    assert res["LUT"] <= 22200 and res["FF"] <= 11900
