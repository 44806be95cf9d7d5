"""Trace export: the engine's trace buffer as Chrome/Perfetto JSON and a PNG timeline.

``python -m unified_engine.trace`` runs one op on a backend with the trace buffer recording
every queue instruction (``Engine.run(trace=True)``) and writes the events as a Chrome trace
(open it in https://ui.perfetto.dev or chrome://tracing) and, with ``--png``, a timeline::

    python -m unified_engine.trace --backend model --op matmul --shape 256,256,256 \\
        -o t.json --png t.png

Library API (the multi-engine runtime calls it with one timeline per engine):

* :func:`chrome_trace` — ``{name: [TraceEntry, …]}`` → the JSON object: one *process* per
  timeline (an engine), one *thread* per unit (the LOAD, ARRAY, VECTOR and STORE queues and the
  dispatcher); a queue instruction's START/END pair becomes a complete (``"X"``) event, MARKER,
  HALT and ERROR become instant (``"i"``) events; timestamps are µs at ``clock_mhz``.
* :func:`write_chrome_json`, :func:`timeline_png` — the same as a file / as a matplotlib plot.
* :func:`join_runs` — the entries of several :class:`~unified_engine.host.RunResult` (an op's
  programs, which run one after another) on one time axis, and how many events were lost.
* :func:`intervals`, :func:`busy_cycles` — the decoded spans, and busy cycles per unit.

Contract of the decoding (``regs.TRACE_ENTRY``: a 32-bit timestamp, cycles since START):

* Entries are in time order (the buffer keeps the first ``trace_depth`` events of a run in
  time order).  A timestamp that is smaller than the previous one by more than half the
  timestamp range is a wrap of the 32-bit counter and adds 2³² to it and all that follow; a
  smaller decrease is kept as it is (not a wrap).  A run of more than 2³² cycles *between* two
  consecutive events cannot be seen and is not corrected.
* A queue runs one instruction at a time, so START and END pair per unit by instruction index
  (payload), first in first out.  A START without END when the buffer ends (the buffer was
  full, or the run stopped on an error) is closed at the last timestamp of the timeline and
  flagged ``unterminated``; an END without a START is reported as a flagged instant event.
* Events beyond the buffer are lost; :func:`join_runs` counts them (``trace_count`` − entries
  read) and :func:`chrome_trace` reports the count per timeline (``lost``) as an instant event
  and in ``otherData``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .isa_enums import Queue
from .regs import TRACE_ENTRY, TRACE_UNIT_DISPATCHER, TraceKind

__all__ = ["UNIT_NAMES", "Instant", "Interval", "busy_cycles", "chrome_trace", "intervals",
           "join_runs", "main", "timeline_png", "unwrap_timestamps", "write_chrome_json"]

#: Width of the trace entry's timestamp field (the counter that wraps).
TIMESTAMP_BITS: int = dict(TRACE_ENTRY)["timestamp"].width
#: Thread names: the unit number of an entry → its name.
UNIT_NAMES: dict[int, str] = {q.value: q.name.lower() for q in Queue} | \
    {TRACE_UNIT_DISPATCHER: "dispatcher"}
_UNIT_ORDER = [q.value for q in Queue] + [TRACE_UNIT_DISPATCHER]


@dataclasses.dataclass(frozen=True)
class Interval:
    """One queue instruction: ``[start, end)`` in cycles on the timeline's axis."""

    unit: int
    pc: int
    start: int
    end: int
    unterminated: bool = False  #: END missing; closed at the timeline's last timestamp

    @property
    def cycles(self) -> int:
        """Length in cycles."""
        return self.end - self.start


@dataclasses.dataclass(frozen=True)
class Instant:
    """A MARKER, HALT or ERROR event, or an END without its START (``orphan``)."""

    unit: int
    kind: TraceKind
    payload: int
    time: int
    orphan: bool = False


def _check_entries(entries: Any, what: str) -> list:
    if isinstance(entries, str | bytes) or not isinstance(entries, Iterable):
        raise TypeError(f"{what} must be a sequence of TraceEntry, not "
                        f"{type(entries).__name__}")
    out = list(entries)
    for i, e in enumerate(out):
        missing = [a for a in ("timestamp", "kind", "unit", "payload") if not hasattr(e, a)]
        if missing:
            raise TypeError(f"{what}[{i}] is a {type(e).__name__}, not a TraceEntry "
                            f"(lacks {', '.join(missing)})")
        if not isinstance(e.kind, TraceKind):
            raise ValueError(f"{what}[{i}].kind is {e.kind!r}; allowed: TraceKind members "
                             f"{', '.join(k.name for k in TraceKind)}")
        if e.unit not in UNIT_NAMES:
            raise ValueError(f"{what}[{i}].unit is {e.unit!r}; allowed: "
                             + ", ".join(f"{u} ({n})" for u, n in UNIT_NAMES.items()))
        if isinstance(e.timestamp, bool) or not isinstance(e.timestamp, int) \
                or e.timestamp < 0:
            raise ValueError(f"{what}[{i}].timestamp is {e.timestamp!r}; it must be a "
                             "non-negative int (cycles)")
    return out


def unwrap_timestamps(timestamps: Iterable[int]) -> list[int]:
    """Absolute cycle counts of time-ordered ``timestamps`` of a wrapping 32-bit counter.

    A drop of more than 2³¹ from one timestamp to the next is a wrap (adds 2³² from there
    on); a smaller drop is an out-of-order pair and is kept.
    """
    span, half = 1 << TIMESTAMP_BITS, 1 << (TIMESTAMP_BITS - 1)
    out: list[int] = []
    base = 0
    prev = None
    for t in timestamps:
        if prev is not None and prev - t > half:
            base += span
        prev = t
        out.append(t + base)
    return out


def intervals(entries: Sequence[Any]) -> tuple[list[Interval], list[Instant]]:
    """Decode one timeline: queue instructions (START/END pairs) and instant events.

    See the module docstring for wraps, unterminated STARTs and orphan ENDs.
    """
    entries = _check_entries(entries, "entries")
    times = unwrap_timestamps(e.timestamp for e in entries)
    last = max(times, default=0)
    spans: list[Interval] = []
    instants: list[Instant] = []
    open_starts: dict[int, deque[tuple[int, int]]] = {}  # unit → FIFO of (pc, start)
    for e, t in zip(entries, times, strict=True):
        if e.kind is TraceKind.START:
            open_starts.setdefault(e.unit, deque()).append((e.payload, t))
        elif e.kind is TraceKind.END:
            fifo = open_starts.get(e.unit, deque())
            match = next((i for i, (pc, _) in enumerate(fifo) if pc == e.payload), None)
            if match is None:
                instants.append(Instant(e.unit, e.kind, e.payload, t, orphan=True))
                continue
            pc, start = fifo[match]
            del fifo[match]
            spans.append(Interval(e.unit, pc, start, t))
        else:
            instants.append(Instant(e.unit, e.kind, e.payload, t))
    for unit, fifo in open_starts.items():
        spans.extend(Interval(unit, pc, start, last, unterminated=True) for pc, start in fifo)
    spans.sort(key=lambda s: (s.start, s.unit))
    return spans, instants


def busy_cycles(entries: Sequence[Any]) -> dict[str, int]:
    """Cycles each queue spent on instructions (sum of END − START), by unit name."""
    spans, _ = intervals(entries)
    out = {UNIT_NAMES[q.value]: 0 for q in Queue}
    for s in spans:
        out[UNIT_NAMES[s.unit]] += s.cycles
    return out


def join_runs(runs: Sequence[Any]) -> tuple[list[Any], int]:
    """The trace entries of consecutive runs on one axis, and the number of events lost.

    Run ``i``'s timestamps are unwrapped and shifted by the ``cycles`` of runs ``0 … i−1`` (the
    host time between runs is not on the device's clock).  Lost events: ``trace_count`` −
    entries read, summed (a run whose buffer overflowed).
    """
    from .host.engine import TraceEntry

    out: list[Any] = []
    lost = offset = 0
    for i, r in enumerate(runs):
        for attr in ("trace", "trace_count", "cycles"):
            if not hasattr(r, attr):
                raise TypeError(f"runs[{i}] is a {type(r).__name__}, not a RunResult "
                                f"(lacks {attr})")
        entries = _check_entries(r.trace, f"runs[{i}].trace")
        times = unwrap_timestamps(e.timestamp for e in entries)
        out.extend(TraceEntry(t + offset, e.kind, e.unit, e.payload)
                   for e, t in zip(entries, times, strict=True))
        lost += max(0, r.trace_count - len(entries))
        offset += max(r.cycles, times[-1] if times else 0)
    return out, lost


def _check_timelines(timelines: Any) -> dict[str, list]:
    if not isinstance(timelines, Mapping):
        raise TypeError(f"timelines must be a mapping {{name: [TraceEntry, …]}}, not "
                        f"{type(timelines).__name__}")
    if not timelines:
        raise ValueError("timelines is empty; give at least one {name: entries}")
    out = {}
    for name, entries in timelines.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"timeline names must be non-empty strings, not {name!r}")
        out[name] = _check_entries(entries, f"timelines[{name!r}]")
    return out


def _check_clock(clock_mhz: Any) -> float:
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, int | float) or \
            not math.isfinite(clock_mhz) or clock_mhz <= 0:
        raise ValueError(f"clock_mhz must be a positive finite number of MHz, not "
                         f"{clock_mhz!r}")
    return float(clock_mhz)


def _check_lost(lost: Any, names: Iterable[str]) -> dict[str, int]:
    lost = {} if lost is None else lost
    if not isinstance(lost, Mapping):
        raise TypeError(f"lost must be a mapping {{name: events lost}}, not "
                        f"{type(lost).__name__}")
    names = set(names)
    for k, v in lost.items():
        if k not in names:
            raise ValueError(f"lost names timeline {k!r}, which is not in timelines "
                             f"({', '.join(sorted(names))})")
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"lost[{k!r}] must be a non-negative int, not {v!r}")
    return dict(lost)


def chrome_trace(timelines: Mapping[str, Sequence[Any]], *, clock_mhz: float,
                 lost: Mapping[str, int] | None = None) -> dict:
    """The Chrome/Perfetto trace (JSON object format) of ``timelines``.

    Parameters
    ----------
    timelines:
        ``{process name: TraceEntry sequence}``, e.g. ``{"engine0": run.trace}`` (several
        runs: :func:`join_runs`).
    clock_mhz:
        The engine clock: a cycle is ``1 / clock_mhz`` µs (Chrome's ``ts`` unit).
    lost:
        ``{process name: events lost}`` when the buffer overflowed: reported as an instant
        event at the end of that timeline and under ``otherData.lost_events``.
    """
    timelines = _check_timelines(timelines)
    clock = _check_clock(clock_mhz)
    lost = _check_lost(lost, timelines)
    events: list[dict] = []
    unterminated = {}
    for pid, (name, entries) in enumerate(timelines.items()):
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"name": name}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"sort_index": pid}})
        for order, unit in enumerate(_UNIT_ORDER):
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": unit,
                           "args": {"name": UNIT_NAMES[unit]}})
            events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": unit,
                           "args": {"sort_index": order}})
        spans, instants = intervals(entries)
        unterminated[name] = sum(s.unterminated for s in spans)
        for s in spans:
            args: dict[str, Any] = {"pc": s.pc, "start_cycle": s.start, "end_cycle": s.end}
            if s.unterminated:
                args["unterminated"] = True
            events.append({"name": UNIT_NAMES[s.unit].upper()
                           + (" (unterminated)" if s.unterminated else ""),
                           "cat": UNIT_NAMES[s.unit], "ph": "X", "pid": pid, "tid": s.unit,
                           "ts": s.start / clock, "dur": s.cycles / clock, "args": args})
        for i in instants:
            label = {TraceKind.MARKER: f"marker {i.payload}", TraceKind.HALT: "HALT",
                     TraceKind.ERROR: "ERROR"}.get(i.kind, i.kind.name)
            args = {"payload": i.payload, "cycle": i.time}
            if i.orphan:
                label = f"END without START (pc {i.payload})"
                args["orphan"] = True
            events.append({"name": label, "cat": UNIT_NAMES[i.unit], "ph": "i",
                           "s": "p" if i.kind in (TraceKind.HALT, TraceKind.ERROR) else "t",
                           "pid": pid, "tid": i.unit, "ts": i.time / clock, "args": args})
        if lost.get(name):
            end = max((s.end for s in spans), default=0)
            end = max([end] + [i.time for i in instants])
            events.append({"name": f"trace buffer overflow: {lost[name]} events lost",
                           "cat": "dispatcher", "ph": "i", "s": "p", "pid": pid,
                           "tid": TRACE_UNIT_DISPATCHER, "ts": end / clock,
                           "args": {"lost_events": lost[name]}})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"clock_mhz": clock, "lost_events": {n: lost.get(n, 0)
                                                              for n in timelines},
                          "unterminated": unterminated}}


def write_chrome_json(path: str | os.PathLike, timelines: Mapping[str, Sequence[Any]], *,
                      clock_mhz: float, lost: Mapping[str, int] | None = None) -> dict:
    """Write :func:`chrome_trace` to ``path``; returns the object written."""
    obj = chrome_trace(timelines, clock_mhz=clock_mhz, lost=lost)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh)
    return obj


def timeline_png(timelines: Mapping[str, Sequence[Any]], path: str | os.PathLike, *,
                 clock_mhz: float, title: str | None = None) -> None:
    """A PNG timeline: one bar row per queue per timeline, markers and HALT as ticks."""
    timelines = _check_timelines(timelines)
    clock = _check_clock(clock_mhz)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = [q.value for q in Queue]
    rows = len(units) * len(timelines)
    fig, ax = plt.subplots(figsize=(12, 0.5 * rows + 1.5))
    colors = {q.value: c for q, c in zip(Queue, ("tab:blue", "tab:orange", "tab:green",
                                                 "tab:purple"), strict=True)}
    labels, y = [], 0
    for name, entries in timelines.items():
        spans, instants = intervals(entries)
        for unit in units:
            bars = [(s.start / clock, max(s.cycles, 1) / clock) for s in spans
                    if s.unit == unit and not s.unterminated]
            ax.broken_barh(bars, (y - 0.4, 0.8), facecolors=colors[unit], linewidth=0)
            cut = [(s.start / clock, max(s.cycles, 1) / clock) for s in spans
                   if s.unit == unit and s.unterminated]
            if cut:
                ax.broken_barh(cut, (y - 0.4, 0.8), facecolors="none", edgecolors="red",
                               hatch="//")
            labels.append(f"{name} {UNIT_NAMES[unit]}" if len(timelines) > 1
                          else UNIT_NAMES[unit])
            y += 1
        for i in instants:
            if i.kind is not TraceKind.MARKER:
                ax.axvline(i.time / clock, color="red" if i.kind is TraceKind.ERROR or
                           i.orphan else "black", linewidth=0.8)
    ax.set_yticks(range(y), labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"µs at {clock:g} MHz")
    ax.set_title(title or "engine timeline (trace buffer)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----- command line ---------------------------------------------------------------------------

_OPS = {  # name: (shape arity, description)
    "matmul": (3, "M,K,N: A[M,K]·B[K,N]"),
    "matmul_softmax": (3, "M,K,N: softmax(A·B) fused"),
    "linear_if4": (3, "M,K,N: A·Wᵀ with W[N,K] quantized to IF4"),
    "attention": (3, "H,S,D: heads, sequence length, head dim"),
    "softmax": (2, "M,N"),
    "rmsnorm": (2, "M,N"),
    "layernorm": (2, "M,N"),
    "add": (2, "M,N"),
}


def _run_op(eng: Any, op: str, shape: tuple[int, ...], seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)

    def r(*s: int) -> np.ndarray:
        return rng.standard_normal(s).astype(np.float32)

    if op == "matmul":
        m, k, n = shape
        eng.matmul(r(m, k), r(k, n))
    elif op == "matmul_softmax":
        m, k, n = shape
        eng.matmul(r(m, k), r(k, n), softmax=True)
    elif op == "linear_if4":
        m, k, n = shape
        w = eng.quantize(r(n, k), "if4")
        eng.linear(r(m, k), w)
    elif op == "attention":
        h, s, d = shape
        eng.attention(r(1, h, s, d), r(1, h, s, d), r(1, h, s, d))
    elif op in ("softmax", "rmsnorm", "layernorm"):
        getattr(eng, op)(r(*shape))
    else:
        eng.add(r(*shape), r(*shape))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: run one op traced and export its trace."""
    from .config import PRESETS, EngineConfig

    ap = argparse.ArgumentParser(prog="python -m unified_engine.trace", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="model", choices=("model", "verilator"),
                    help="engine backend (default model)")
    ap.add_argument("--preset", default="default", choices=["default", *sorted(PRESETS)],
                    help="engine configuration (default: EngineConfig())")
    ap.add_argument("--op", default="matmul", choices=sorted(_OPS),
                    help="; ".join(f"{k}: {v[1]}" for k, v in _OPS.items()))
    ap.add_argument("--shape", default="256,256,256", help="comma-separated sizes of --op")
    ap.add_argument("-o", "--output", default="trace.json", help="Chrome trace JSON file")
    ap.add_argument("--png", metavar="FILE", help="also write a PNG timeline")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        shape = tuple(int(s) for s in args.shape.split(","))
    except ValueError:
        ap.error(f"--shape must be comma-separated ints, not {args.shape!r}")
    arity = _OPS[args.op][0]
    if len(shape) != arity or min(shape) < 1:
        ap.error(f"--op {args.op} takes {arity} positive sizes ({_OPS[args.op][1]}), "
                 f"got {args.shape!r}")

    from .host import Engine

    config = EngineConfig() if args.preset == "default" else EngineConfig.preset(args.preset)
    opts: dict[str, Any] = {"dram_bytes": 1 << 30, "run_timeout": 24 * 3600.0}
    with Engine.open(args.backend, config, **opts) as eng:
        run = eng.run

        def traced(program: Any, **kw: Any) -> Any:  # every program of the op records
            return run(program, **{**kw, "trace": True})

        eng.run = traced  # the op methods call self.run
        _run_op(eng, args.op, shape, args.seed)
        last = eng.last_run
    entries, lost = join_runs(last.runs)
    name = "engine0"
    obj = write_chrome_json(args.output, {name: entries}, clock_mhz=config.clock_mhz,
                            lost={name: lost})
    if args.png:
        timeline_png({name: entries}, args.png, clock_mhz=config.clock_mhz,
                     title=f"{args.op} {args.shape} on {args.backend} "
                           f"({config.rows}×{config.cols}, {config.lanes} lanes)")
    busy = busy_cycles(entries)
    counters = last.counters
    print(f"{args.op} {args.shape} on {args.backend}: {last.cycles:,} cycles in "
          f"{len(last.runs)} run(s), {len(entries)} events exported"
          + (f", {lost} LOST (trace buffer of {config.trace_depth} entries overflowed)"
             if lost else "") + f" → {args.output}")
    print("| unit | busy (trace) | busy (counter) |\n|---|---:|---:|")
    for unit, cycles in busy.items():
        print(f"| {unit} | {cycles:,} | {counters.get(f'{unit}_busy', 0):,} |")
    if obj["otherData"]["unterminated"][name]:
        print(f"{obj['otherData']['unterminated'][name]} instruction(s) unterminated "
              "(END not in the buffer)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
