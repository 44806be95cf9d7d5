"""Trace export (unified_engine.trace): synthetic entries with hand-derived answers, wraps,
unterminated and orphan events, overflow, the JSON schema, and real model-backend runs whose
exported busy time per unit equals the engine's busy counters."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from unified_engine.config import EngineConfig
from unified_engine.host import Engine
from unified_engine.host.engine import RunResult, TraceEntry
from unified_engine.isa_enums import Queue
from unified_engine.regs import TRACE_UNIT_DISPATCHER, TraceKind
from unified_engine.trace import (
    busy_cycles,
    chrome_trace,
    intervals,
    join_runs,
    main,
    timeline_png,
    unwrap_timestamps,
    write_chrome_json,
)

S, E, M, H = TraceKind.START, TraceKind.END, TraceKind.MARKER, TraceKind.HALT
LOAD, ARRAY, VECTOR, STORE = (q.value for q in Queue)
D = TRACE_UNIT_DISPATCHER


def te(t: int, kind: TraceKind, unit: int, payload: int) -> TraceEntry:
    return TraceEntry(t, kind, unit, payload)


def _events(obj: dict, ph: str) -> list[dict]:
    return [e for e in obj["traceEvents"] if e["ph"] == ph]


SIMPLE = [te(5, M, D, 7), te(10, S, LOAD, 3), te(20, S, ARRAY, 4), te(30, E, LOAD, 3),
          te(70, E, ARRAY, 4), te(80, H, D, 9)]


def test_simple_timeline_hand_derived():
    obj = chrome_trace({"engine0": SIMPLE}, clock_mhz=100.0)
    xs = sorted(_events(obj, "X"), key=lambda e: e["ts"])
    # 100 MHz: 1 cycle = 0.01 µs; load 10→30, array 20→70
    assert [(e["tid"], e["ts"], e["dur"], e["args"]["pc"]) for e in xs] == \
        [(LOAD, pytest.approx(0.10), pytest.approx(0.20), 3),
         (ARRAY, pytest.approx(0.20), pytest.approx(0.50), 4)]
    inst = sorted(_events(obj, "i"), key=lambda e: e["ts"])
    assert [(e["name"], e["tid"], e["ts"]) for e in inst] == \
        [("marker 7", D, pytest.approx(0.05)), ("HALT", D, pytest.approx(0.80))]
    assert busy_cycles(SIMPLE) == {"load": 20, "array": 50, "vector": 0, "store": 0}
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in _events(obj, "M")
             if e["name"] == "thread_name"}
    assert names == {(0, LOAD): "load", (0, ARRAY): "array", (0, VECTOR): "vector",
                     (0, STORE): "store", (0, D): "dispatcher"}
    assert obj["otherData"]["lost_events"] == {"engine0": 0}


def test_one_process_per_engine():
    obj = chrome_trace({"engine0": SIMPLE, "engine1": SIMPLE[:3]}, clock_mhz=200.0)
    procs = {e["pid"]: e["args"]["name"] for e in _events(obj, "M")
             if e["name"] == "process_name"}
    assert procs == {0: "engine0", 1: "engine1"}
    # engine1 holds START load 10 and START array 20, no ENDs: both closed at its last
    # timestamp (20) and flagged
    x1 = {e["tid"]: e for e in _events(obj, "X") if e["pid"] == 1}
    assert x1[LOAD]["dur"] == pytest.approx(10 / 200.0) and x1[LOAD]["args"]["unterminated"]
    assert x1[ARRAY]["dur"] == 0 and x1[ARRAY]["args"]["unterminated"]
    assert obj["otherData"]["unterminated"] == {"engine0": 0, "engine1": 2}


def test_timestamp_wrap():
    top = 1 << 32
    entries = [te(top - 10, S, ARRAY, 1), te(5, E, ARRAY, 1), te(7, S, STORE, 2),
               te(20, E, STORE, 2)]
    spans, _ = intervals(entries)
    assert [(s.unit, s.start, s.end) for s in spans] == \
        [(ARRAY, top - 10, top + 5), (STORE, top + 7, top + 20)]
    assert busy_cycles(entries)["array"] == 15
    # a small step back is not a wrap (kept as is); two wraps add 2·2³²
    assert unwrap_timestamps([100, 98, 99]) == [100, 98, 99]
    assert unwrap_timestamps([top - 1, 0, top - 1, 3]) == [top - 1, top, 2 * top - 1,
                                                            2 * top + 3]


def test_fifo_pairing_and_orphan_end():
    # two instructions on one queue with the same pc (a loop body): FIFO pairing
    entries = [te(0, S, VECTOR, 5), te(4, E, VECTOR, 5), te(6, S, VECTOR, 5),
               te(9, E, VECTOR, 5), te(12, E, STORE, 8)]
    spans, instants = intervals(entries)
    assert [(s.start, s.end) for s in spans] == [(0, 4), (6, 9)]
    assert [(i.unit, i.payload, i.orphan) for i in instants] == [(STORE, 8, True)]
    obj = chrome_trace({"e": entries}, clock_mhz=1.0)
    orphan = [e for e in _events(obj, "i") if e["args"].get("orphan")]
    assert len(orphan) == 1 and "END without START" in orphan[0]["name"]


def test_join_runs_offsets_and_counts_lost():
    r0 = RunResult(100, 3, 0, {}, [te(0, S, LOAD, 1), te(40, E, LOAD, 1), te(100, H, D, 2)], 3)
    # second run: its buffer kept 2 of 5 events (3 lost)
    r1 = RunResult(50, 3, 0, {}, [te(1, S, ARRAY, 1), te(30, E, ARRAY, 1)], 5)
    entries, lost = join_runs([r0, r1])
    assert lost == 3
    assert [e.timestamp for e in entries] == [0, 40, 100, 101, 130]
    obj = chrome_trace({"engine0": entries}, clock_mhz=10.0, lost={"engine0": lost})
    over = [e for e in _events(obj, "i") if "overflow" in e["name"]]
    assert len(over) == 1 and "3 events lost" in over[0]["name"]
    assert over[0]["ts"] == pytest.approx(13.0)           # last timestamp 130 at 10 MHz
    assert obj["otherData"]["lost_events"] == {"engine0": 3}


@pytest.mark.parametrize("bad, exc, words", [
    (dict(timelines=[], clock_mhz=1.0), TypeError, "mapping"),
    (dict(timelines={}, clock_mhz=1.0), ValueError, "empty"),
    (dict(timelines={"e": SIMPLE}, clock_mhz=0), ValueError, "positive"),
    (dict(timelines={"e": SIMPLE}, clock_mhz=float("nan")), ValueError, "positive"),
    (dict(timelines={"e": [1, 2]}, clock_mhz=1.0), TypeError, "not a TraceEntry"),
    (dict(timelines={"e": [te(0, S, 7, 0)]}, clock_mhz=1.0), ValueError, "unit"),
    (dict(timelines={"e": [TraceEntry(0, 1, 0, 0)]}, clock_mhz=1.0), ValueError, "kind"),
    (dict(timelines={"e": [te(-1, S, 0, 0)]}, clock_mhz=1.0), ValueError, "timestamp"),
    (dict(timelines={"e": SIMPLE}, clock_mhz=1.0, lost={"x": 1}), ValueError, "not in"),
    (dict(timelines={"e": SIMPLE}, clock_mhz=1.0, lost={"e": -1}), ValueError, "lost"),
    (dict(timelines={"": SIMPLE}, clock_mhz=1.0), ValueError, "non-empty"),
])
def test_bad_arguments_raise(bad, exc, words):
    with pytest.raises(exc, match=words):
        chrome_trace(bad.pop("timelines"), **bad)


def _schema_ok(obj: dict) -> None:
    json.dumps(obj)                                         # serialisable
    assert set(obj) == {"traceEvents", "displayTimeUnit", "otherData"}
    for e in obj["traceEvents"]:
        assert e["ph"] in ("X", "i", "M")
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] != "M":
            assert isinstance(e["name"], str) and e["ts"] >= 0
        if e["ph"] == "X":
            assert e["dur"] >= 0
        if e["ph"] == "i":
            assert e["s"] in ("t", "p", "g")


def _traced(eng: Engine) -> None:
    run = eng.run
    eng.run = lambda program, **kw: run(program, **{**kw, "trace": True})


def test_model_run_busy_equals_counters(tmp_path):
    """The model books ``<unit>_busy += end − start`` per instruction and records START/END at
    the same start/end, so with no overflow the exported busy time equals the counter."""
    config = EngineConfig()
    rng = np.random.default_rng(1)
    with Engine.open("model", config, dram_bytes=64 << 20) as eng:
        _traced(eng)
        eng.matmul(rng.standard_normal((64, 96), np.float32),
                   rng.standard_normal((96, 80), np.float32), softmax=True)
        runs = eng.last_run.runs
        counters = eng.last_run.counters
    entries, lost = join_runs(runs)
    assert lost == 0 and entries
    busy = busy_cycles(entries)
    assert all(busy[q.name.lower()] == counters[f"{q.name.lower()}_busy"] for q in Queue)
    assert busy["array"] > 0 and busy["vector"] > 0
    obj = write_chrome_json(tmp_path / "t.json", {"engine0": entries},
                            clock_mhz=config.clock_mhz)
    _schema_ok(json.loads((tmp_path / "t.json").read_text()))
    assert not any(e["args"].get("unterminated") for e in _events(obj, "X"))
    assert sum(e["name"] == "HALT" for e in _events(obj, "i")) == len(runs)


def test_model_overflow_is_reported():
    """A 16-entry buffer: the run records more events than it holds; the export counts the
    difference and everything in it still pairs (the buffer keeps the *first* events)."""
    config = dataclasses.replace(EngineConfig(), trace_depth=16)
    rng = np.random.default_rng(2)
    with Engine.open("model", config, dram_bytes=64 << 20) as eng:
        _traced(eng)
        eng.matmul(rng.standard_normal((64, 256), np.float32),
                   rng.standard_normal((256, 64), np.float32))
        runs = eng.last_run.runs
    assert all(len(r.trace) <= 16 for r in runs)
    entries, lost = join_runs(runs)
    assert lost == sum(r.trace_count for r in runs) - len(entries) > 0
    obj = chrome_trace({"engine0": entries}, clock_mhz=config.clock_mhz,
                       lost={"engine0": lost})
    assert obj["otherData"]["lost_events"]["engine0"] == lost
    assert any(f"{lost} events lost" in e["name"] for e in _events(obj, "i"))
    _schema_ok(obj)


def test_cli_writes_json_and_png(tmp_path, capsys):
    out, png = tmp_path / "t.json", tmp_path / "t.png"
    assert main(["--op", "rmsnorm", "--shape", "16,64", "-o", str(out), "--png", str(png)]) == 0
    obj = json.loads(out.read_text())
    _schema_ok(obj)
    assert _events(obj, "X") and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "| vector |" in text
    with pytest.raises(SystemExit):
        main(["--op", "matmul", "--shape", "16,64", "-o", str(out)])
    with pytest.raises(SystemExit):
        main(["--op", "matmul", "--shape", "a,b,c", "-o", str(out)])


def test_png_of_two_engines(tmp_path):
    path = tmp_path / "two.png"
    timeline_png({"engine0": SIMPLE, "engine1": SIMPLE[:3]}, path, clock_mhz=100.0)
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="clock_mhz"):
        timeline_png({"engine0": SIMPLE}, path, clock_mhz=-1)


@pytest.mark.slow
def test_verilator_run_busy_equals_counters():
    """On the RTL the trace buffer's START/END events and the busy counters are separate
    hardware; the exported busy time per queue must still equal the counters (small config;
    builds the small Verilator model once if it is not cached)."""
    from firmware import golden as G

    config = G.small_config()
    rng = np.random.default_rng(3)
    with Engine.open("verilator", config, dram_bytes=1 << 22) as eng:
        _traced(eng)
        eng.matmul(rng.standard_normal((5, 16), np.float32),
                   rng.standard_normal((16, 12), np.float32), softmax=True)
        runs, counters = eng.last_run.runs, eng.last_run.counters
    entries, lost = join_runs(runs)
    assert lost == 0 and entries
    busy = busy_cycles(entries)
    assert all(busy[q.name.lower()] == counters[f"{q.name.lower()}_busy"] for q in Queue)
    assert busy["array"] > 0 and busy["vector"] > 0
    _schema_ok(chrome_trace({"engine0": entries}, clock_mhz=config.clock_mhz))
