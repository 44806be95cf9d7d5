# amaranth: UnusedElaboratable=no
"""ArgmaxTop4 RTL vs the golden model ``reduce.argmax_top4``, bit for bit (values and indices),
through its stream ports: at full throughput (one beat per cycle, checking the stated latency)
and under random input gaps and output back-pressure."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Const, Fragment
from streamsim import simulate_stream, unpack

from unified_engine.config import EngineConfig
from unified_engine.numerics.reduce import TOP4_FILL_INDEX, argmax_top4
from unified_engine.rtl.argmax import MAX_LANES, ArgmaxTop4

# Patterns whose ranks collide or sit at the edges: ±0 and subnormals (all rank as 0),
# ±Inf, NaNs with different payloads and signs (all rank above +Inf), ±1, the largest finite.
CORNERS = np.array(
    [
        0x00000000, 0x80000000, 0x00000001, 0x807FFFFF,
        0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001,
        0x3F800000, 0xBF800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x00800000,
    ],
    dtype=np.uint32,
)  # fmt: skip


def _vector(rng, cls: str, length: int) -> np.ndarray:
    if cls == "random_bits":  # any pattern, exponents over the whole range
        return rng.integers(0, 1 << 32, length, dtype=np.uint64).astype(np.uint32)
    if cls == "corners":  # many equal ranks: ties go by index, NaN above Inf, -0 == +0
        return CORNERS[rng.integers(0, len(CORNERS), length)]
    if cls == "few_values":  # random values drawn from a small pool: ties everywhere
        pool = rng.integers(0x3F000000, 0x3F000010, 3).astype(np.uint32)
        return np.r_[pool, pool | 0x80000000][rng.integers(0, 6, length)].astype(np.uint32)
    if cls == "equal":  # every element the same: the top-4 are indices 0…3
        return np.full(length, CORNERS[rng.integers(0, len(CORNERS))], np.uint32)
    if cls == "ascending":  # the best elements come last: every beat displaces the registers
        return np.sort(rng.integers(0, 0x7F800000, length).astype(np.uint32))
    if cls == "neg_inf":  # real -Inf (and -0/+0) against the -Inf filler of short vectors
        return np.array([0xFF800000, 0x80000000, 0x00000000])[rng.integers(0, 3, length)].astype(
            np.uint32
        )
    raise AssertionError(cls)


CLASSES = ("random_bits", "corners", "few_values", "equal", "ascending", "neg_inf")


def make_vectors(rng, count: int, lanes: int, max_beats: int = 4) -> list[np.ndarray]:
    """Vectors of every class; lengths 1…3 (filler slots), around beat edges, and longer."""
    out = []
    for k in range(count):
        pick = rng.random()
        if pick < 0.3:
            length = int(rng.integers(1, 4))
        elif pick < 0.9:
            length = int(rng.integers(1, max_beats * lanes + 1))
        else:
            length = int(rng.integers(8, 20)) * lanes + int(rng.integers(0, lanes))
        out.append(_vector(rng, CLASSES[k % len(CLASSES)], length))
    return out


def to_beats(dut: ArgmaxTop4, vectors, rng, *, partial_middle: bool = False):
    """Beat payloads for ``vectors`` and, per vector, the element index of each kept element.

    Lanes past ``count`` carry random garbage (the unit must ignore them). A full beat's count
    is ``lanes`` or, at random, any larger value the field holds. With ``partial_middle``,
    beats inside a vector may be short too: their missing lanes still use up indices.
    """
    lanes, count_max = dut.lanes, (1 << len(dut.i.payload.count)) - 1
    payloads, kept = [], []
    for vec in vectors:
        indices, pos, index = [], 0, 0
        while True:
            take = lanes
            if partial_middle and rng.random() < 0.4:
                take = int(rng.integers(0, lanes + 1))
            take = min(take, len(vec) - pos)
            last = pos + take == len(vec)
            lane_data = rng.integers(0, 1 << 32, lanes, dtype=np.uint64)
            lane_data[:take] = vec[pos : pos + take]
            count = take if take < lanes else int(rng.integers(lanes, count_max + 1))
            payload = dut.in_layout.const(
                {"data": [int(v) for v in lane_data], "count": count, "last": int(last)}
            )
            payloads.append(Const.cast(payload).value)
            indices += range(index, index + take)
            pos, index = pos + take, index + lanes
            if last:
                break
        kept.append(np.array(indices, np.int64))
    return payloads, kept


def decode(dut: ArgmaxTop4, payload: int) -> tuple[list[int], list[int]]:
    layout = dut.out_layout
    values = unpack(payload >> layout["values"].offset, 32, 4)
    indices = unpack(payload >> layout["indices"].offset, 32, 4)
    return values, indices


def expected(vec: np.ndarray, kept: np.ndarray) -> tuple[list[int], list[int]]:
    """Golden top-4 of the kept elements, indices mapped back to beat positions (the map is
    increasing, so the golden model's lower-index-first tie rule carries over)."""
    values, indices = argmax_top4(vec.view(np.float32))
    mapped = [int(kept[i]) if i != TOP4_FILL_INDEX else TOP4_FILL_INDEX for i in indices]
    return [int(v) for v in values.view(np.uint32)], mapped


def check_outputs(dut, vectors, kept, log):
    assert len(log.outputs) == len(vectors)
    for k, (vec, idx, payload) in enumerate(zip(vectors, kept, log.outputs, strict=True)):
        got, want = decode(dut, payload), expected(vec, idx)
        assert got == want, (
            f"vector {k} (length {len(vec)}): {[hex(v) for v in vec[:12]]}…\n"
            f"  got    {[hex(v) for v in got[0]]} {got[1]}\n"
            f"  wanted {[hex(v) for v in want[0]]} {want[1]}"
        )


def run_top4(lanes, vectors, rng, *, partial_middle=False, **flow):
    dut = ArgmaxTop4(lanes)
    payloads, kept = to_beats(dut, vectors, rng, partial_middle=partial_middle)
    log = simulate_stream(dut, payloads, len(vectors), **flow)
    check_outputs(dut, vectors, kept, log)
    return dut, payloads, log


# --------------------------------------------------------------------------- vectors


def test_vectors_reach_every_corner_class():
    """Judged from the golden results: the situations the RTL tests claim to cover occur."""
    vectors = make_vectors(np.random.default_rng(3), 400, 4)
    seen = dict.fromkeys(
        ("NaN reported", "NaN ties", "-0 reported", "real -Inf beside filler", "filler only",
         "equal values by index", "top-4 spans beats"),
        0,
    )  # fmt: skip
    for vec in vectors:
        values, indices = argmax_top4(vec.view(np.float32))
        bits = values.view(np.uint32)
        real = indices != TOP4_FILL_INDEX
        seen["NaN reported"] += bool((bits == 0x7FC00000).any())
        seen["NaN ties"] += int((bits == 0x7FC00000).sum() > 1)
        seen["-0 reported"] += bool((bits == 0x80000000).any())
        seen["real -Inf beside filler"] += bool(((bits == 0xFF800000) & real).any() & ~real.all())
        seen["filler only"] += int(real.sum() < 4)
        seen["equal values by index"] += int(len(set(bits[real].tolist())) < real.sum())
        seen["top-4 spans beats"] += int(len(set((indices[real] // 4).tolist())) > 1)
    assert min(seen.values()) >= 10, seen


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("lanes", "error"),
    [
        (0, ValueError),
        (3, ValueError),
        (2 * MAX_LANES, ValueError),
        (4.0, TypeError),
        (True, TypeError),
    ],
)
def test_rejects_bad_parameters(lanes, error):
    with pytest.raises(error, match="ArgmaxTop4"):
        ArgmaxTop4(lanes)


def test_from_config_uses_lanes():
    config = EngineConfig.preset("sim_small")
    dut = ArgmaxTop4.from_config(config)
    assert dut.lanes == config.lanes
    Fragment.get(dut, None)  # it elaborates (and is not reported as an unused elaboratable)
    with pytest.raises(TypeError, match="EngineConfig"):
        ArgmaxTop4.from_config(16)


def test_documented_latencies():
    assert [ArgmaxTop4(lanes).latency for lanes in (1, 2, 4, 8, 16, 32)] == [2, 3, 3, 4, 5, 6]


# --------------------------------------------------------------------------- bit-exactness


@pytest.mark.parametrize("lanes", [1, 2, 4, 8, 16])
def test_bit_exact_at_full_throughput(lanes):
    rng = np.random.default_rng(lanes)
    vectors = make_vectors(rng, 150 if lanes < 16 else 90, lanes)
    dut, payloads, log = run_top4(lanes, vectors, rng)
    assert log.accepted == list(range(len(payloads))), "a beat was refused without back-pressure"
    lasts = [
        c
        for c, p in zip(log.accepted, payloads, strict=True)
        if p >> dut.in_layout["last"].offset & 1
    ]
    assert [c for c, _ in log.delivered] == [c + dut.latency for c in lasts]


@pytest.mark.parametrize("lanes", [4, 8])
def test_bit_exact_with_gaps_and_backpressure(lanes):
    rng = np.random.default_rng(100 + lanes)
    # Mostly short vectors, so results pile up against the stalled output register.
    vectors = make_vectors(rng, 150, lanes, max_beats=2)
    _, _, log = run_top4(
        lanes, vectors, rng, seed=lanes, gap_probability=0.3, stall_probability=0.5
    )
    assert np.diff([c for c, _ in log.delivered]).max() > 1


@pytest.mark.parametrize("lanes", [4, 8])
def test_bit_exact_with_partial_middle_beats(lanes):
    """Short beats inside a vector: their missing lanes are skipped but still use indices."""
    rng = np.random.default_rng(200 + lanes)
    run_top4(lanes, make_vectors(rng, 100, lanes), rng, partial_middle=True, seed=3,
             gap_probability=0.2, stall_probability=0.2)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [4, 16, 32])
def test_bit_exact_sweep(lanes):
    rng = np.random.default_rng(300 + lanes)
    run_top4(lanes, make_vectors(rng, 1500, lanes, max_beats=6), rng, partial_middle=True,
             seed=lanes, gap_probability=0.1, stall_probability=0.3)  # fmt: skip


@pytest.mark.synth
def test_synth_estimate_engine_lanes():
    """Yosys estimate (xc7) of the 16-lane unit. Measured with Yosys 0.70 (yowasp): 4484 LUT,
    2195 FF, 206 CARRY4, no DSP; ~55 s. The bounds are a regression guard (±25 %)."""
    from unified_engine.rtl.synth import synth_estimate

    dut = ArgmaxTop4.from_config(EngineConfig.preset("kintex7"))
    assert dut.lanes == 16
    res = synth_estimate(dut, "argmax", "xc7")
    print({k: res[k] for k in ("LUT", "FF", "CARRY", "DSP", "seconds")})
    assert res["DSP"] == 0 and res["BRAM36"] == res["BRAM18"] == 0
    assert 0.75 * 4484 <= res["LUT"] <= 1.25 * 4484, res
    assert 0.75 * 2195 <= res["FF"] <= 1.25 * 2195, res
