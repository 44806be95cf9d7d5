"""The benchmark's plot: utilization per op, ours vs the anchor (``bench --png``).

``python -m unified_engine.bench_plot model.json rtl.json --png docs/img/bench.png`` plots
the rows of several ``bench --json`` files side by side (one bar series per backend and size;
files with the same backend and size are merged).  The anchor's bar is ``our ideal cycles ÷
the anchor's published cycles`` for rows measured at M = K = N = 1024 (the only size its
datasheet gives): for array ops that is its fraction of the same 64 MAC/cycle peak, for
memory ops the fraction of *our* DRAM bound its cycle count reaches.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["main", "utilization_png"]


def _get(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def utilization_png(series: Mapping[str, Sequence[Any]] | Sequence[Any],
                    path: str | os.PathLike, *, title: str = "") -> None:
    """Plot utilization (%) per op: one bar per series (``{label: rows}``; a plain sequence of
    rows is one series) plus the anchor where a row has ``anchor_cycles``."""
    if not isinstance(series, Mapping):
        series = {"ours": series}
    if not series or not any(series.values()):
        raise ValueError("nothing to plot: no benchmark rows given")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops: list[str] = []
    for rows in series.values():
        for r in rows:
            if _get(r, "op") not in ops:
                ops.append(_get(r, "op"))
    anchor: dict[str, float] = {}
    for rows in series.values():
        for r in rows:
            if _get(r, "anchor_cycles"):
                anchor.setdefault(_get(r, "op"), _get(r, "ideal_cycles") / _get(r, "anchor_cycles"))
    bars = {label: {_get(r, "op"): _get(r, "utilization") for r in rows}
            for label, rows in series.items()}
    if anchor:
        bars["anchor (datasheet, 1024)"] = anchor
    n = len(bars)
    height = 0.8 / n
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(ops) * max(2, n) / 2 + 1.8))
    for i, (label, values) in enumerate(bars.items()):
        ys = [j + (i - (n - 1) / 2) * height for j, op in enumerate(ops) if op in values]
        xs = [100 * values[op] for op in ops if op in values]
        ax.barh(ys, xs, height=height, label=label,
                color="lightgray" if label.startswith("anchor") else None)
    ax.set_yticks(range(len(ops)), ops)
    ax.invert_yaxis()
    ax.axvline(97, color="black", linestyle=":", linewidth=0.8)
    ax.set_xlabel("utilization, % (array ops: MACs/(R·C) ÷ cycles; memory ops: DRAM bound "
                  "÷ cycles)")
    ax.set_xlim(0, 105)
    ax.set_title(title or "utilization per op")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Plot ``bench --json`` files."""
    ap = argparse.ArgumentParser(prog="python -m unified_engine.bench_plot",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+", help="files written by bench --json")
    ap.add_argument("--png", required=True, help="output PNG")
    ap.add_argument("--title", default="Unified Engine vs the anchor, default 8×8 config")
    args = ap.parse_args(argv)
    series = {}
    for name in args.json:
        with open(name, encoding="utf-8") as fh:
            doc = json.load(fh)
        if not isinstance(doc, dict) or "rows" not in doc:
            ap.error(f"{name} is not a bench --json file (no 'rows')")
        # files of one backend and size (e.g. rows run in separate processes) form one series
        series.setdefault(f"{doc['backend']}, size {doc['size']}", []).extend(doc["rows"])
    utilization_png(series, args.png, title=args.title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
