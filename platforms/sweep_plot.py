"""The ``--sweep`` chart: LUT share of the device (bars, with the LUT budget) and peak GFLOP/s
(line) per configuration.

:func:`write_svg` needs nothing beyond the standard library and is always written;
:func:`write_png` draws the same chart with matplotlib when it is installed (it is not a
dependency of the project) and returns ``None`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

__all__ = ["labels", "write_png", "write_svg"]


def labels(rows: Sequence[dict[str, Any]], swept: Sequence[str]) -> list[str]:
    """``"engines=2, rows=8"`` per row, from the swept parameters."""
    return [", ".join(f"{k}={r[k]}" for k in swept if k in r) for r in rows]


def write_svg(path: Path, title: str, rows: Sequence[dict[str, Any]], swept: Sequence[str],
              lut_budget_pct: float) -> Path:
    """The chart as SVG (bars: ``LUT_pct``; dashed line: the budget; dots: ``peak_gflops``)."""
    width, height, left, right, top, bottom = 720, 400, 60, 70, 40, 110
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(rows))
    slot = plot_w / n
    pct_max = max([100.0, lut_budget_pct] + [float(r["LUT_pct"]) for r in rows])
    gf_max = max([1.0] + [float(r["peak_gflops"]) for r in rows])

    def y_pct(v: float) -> float:
        return top + plot_h * (1 - v / pct_max)

    def y_gf(v: float) -> float:
        return top + plot_h * (1 - v / gf_max)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">'
           f'{escape(title)}</text>',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
           'stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
           f'<text x="15" y="{top + plot_h / 2}" transform="rotate(-90 15 {top + plot_h / 2})" '
           'text-anchor="middle">LUT share of the device (%)</text>',
           f'<text x="{width - 15}" y="{top + plot_h / 2}" transform="rotate(90 {width - 15} '
           f'{top + plot_h / 2})" text-anchor="middle">peak GFLOP/s</text>']
    for frac in (0, 0.25, 0.5, 0.75, 1):
        y = top + plot_h * (1 - frac)
        out.append(f'<text x="{left - 5}" y="{y + 4}" text-anchor="end">'
                   f'{pct_max * frac:.0f}</text>')
        out.append(f'<text x="{left + plot_w + 5}" y="{y + 4}">{gf_max * frac:.0f}</text>')
    points = []
    for i, (row, label) in enumerate(zip(rows, labels(rows, swept), strict=True)):
        x = left + slot * i
        bar_top = y_pct(float(row["LUT_pct"]))
        fill = "#4878a8" if row.get("fits") != "no" else "#c05050"
        out.append(f'<rect x="{x + slot * 0.2:.1f}" y="{bar_top:.1f}" width="{slot * 0.6:.1f}" '
                   f'height="{top + plot_h - bar_top:.1f}" fill="{fill}"/>')
        cx = x + slot / 2
        out.append(f'<text x="{cx:.1f}" y="{top + plot_h + 14}" text-anchor="end" '
                   f'transform="rotate(-35 {cx:.1f} {top + plot_h + 14})">{escape(label)}</text>')
        points.append((cx, y_gf(float(row["peak_gflops"]))))
    yb = y_pct(lut_budget_pct)
    out.append(f'<line x1="{left}" y1="{yb:.1f}" x2="{left + plot_w}" y2="{yb:.1f}" '
               'stroke="red" stroke-dasharray="6,4"/>')
    out.append(f'<text x="{left + plot_w - 4}" y="{yb - 4:.1f}" text-anchor="end" '
               f'fill="red">LUT budget {lut_budget_pct:.0f} %</text>')
    if points:
        out.append('<polyline fill="none" stroke="black" points="'
                   + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>')
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"/>' for x, y in points]
    out.append(f'<text x="{left}" y="{height - 8}">bars: LUT % (red: does not fit); '
               'line: peak GFLOP/s</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
    return path


def write_png(path: Path, title: str, rows: Sequence[dict[str, Any]], swept: Sequence[str],
              lut_budget_pct: float) -> Path | None:
    """The same chart as PNG with matplotlib, or ``None`` if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = labels(rows, swept)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(names, [r["LUT_pct"] for r in rows], label="LUT %")
    ax.set_ylabel("LUT share of the device (%)")
    ax.axhline(lut_budget_pct, color="red", linestyle="--", label="LUT budget")
    ax2 = ax.twinx()
    ax2.plot(names, [r["peak_gflops"] for r in rows], "ko-", label="peak GFLOP/s")
    ax2.set_ylabel("peak GFLOP/s")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
