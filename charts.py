"""Small inline SVG charts for the dashboard: no JavaScript, no CDN, readable in a browser with no internet access.

    svg = line_chart("F1 per release", {"F1": [(1, 0.61), (2, 0.86)]}, y_range=(0, 1))

Every point is a <circle> carrying a <title> tooltip, so a person can hover for the value and a test can count points.
"""
from __future__ import annotations

import math
from html import escape

from markupsafe import Markup

PALETTE = ["#1f5a96", "#d9730d", "#2e8540", "#b0283a", "#6b4fa0", "#7a6a55", "#0f8a8a", "#999999"]
WIDTH, HEIGHT = 460, 230
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 40  # room for the axis labels and the title


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1.5))]


def _fmt(v: float) -> str:
    """A tick or tooltip number, short."""
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.3g}"


def _finite(pts: list[tuple]) -> list[tuple[float, float, str | None]]:
    """The drawable points of a series as (x, y, label), skipping missing values."""
    return [(p[0], float(p[1]), p[2] if len(p) > 2 else None) for p in pts
            if p[1] is not None and math.isfinite(float(p[1]))]


def line_chart(title: str, series: dict[str, list[tuple]], x_label: str = "run", y_label: str = "",
               y_range: tuple[float, float] | None = None, integer_x: bool = True,
               dashed: frozenset[str] = frozenset(), legend_bottom: bool = False) -> Markup:
    """An SVG line chart of series of (x, y) or (x, y, label) points, with axes, ticks, a legend and tooltips."""
    points = [p for pts in series.values() for p in _finite(pts)]
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
             f'data-title="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" class="chart-title">{escape(title)}</text>']
    if not points:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="chart-empty">'
                     'no data yet</text></svg>')
        return Markup("".join(parts))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = y_range or (min(0.0, min(ys)), max(ys) * 1.05 or 1.0)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        """A data x as a pixel column."""
        return LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        """A data y as a pixel row, clipped to the plot."""
        return TOP + plot_h - (min(max(y, y_lo), y_hi) - y_lo) / ((y_hi - y_lo) or 1) * plot_h

    for t in nice_ticks(y_lo, y_hi):
        if y_lo <= t <= y_hi:
            parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(t):.1f}" y2="{sy(t):.1f}"/>'
                         f'<text class="tick" x="{LEFT - 4}" y="{sy(t) + 3:.1f}" text-anchor="end">{_fmt(t)}</text>')
    x_ticks = [t for t in nice_ticks(x_lo, x_hi, 6) if x_lo <= t <= x_hi and (not integer_x or t == int(t))]
    for t in x_ticks:
        parts.append(f'<text class="tick" x="{sx(t):.1f}" y="{TOP + plot_h + 14}" text-anchor="middle">'
                     f'{_fmt(t)}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
                 f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}"/>'
                 f'<text class="axis-label" x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
                 f'{escape(x_label)}</text>'
                 f'<text class="axis-label" transform="translate(11 {TOP + plot_h / 2}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        good = _finite(pts)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _ in good)
        dash = ' stroke-dasharray="4 3"' if name in dashed else ""
        parts.append(f'<g class="series" data-series="{escape(name)}" data-points="{len(good)}">'
                     f'<polyline fill="none" stroke="{color}" stroke-width="1.8"{dash} points="{path}"/>')
        if name not in dashed:
            parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.6" fill="{color}"><title>{escape(name)}, '
                      f'{escape(label or f"{x_label} {_fmt(x)}")}: {_fmt(y)}</title></circle>' for x, y, label in good]
        parts.append("</g>")
        if legend_bottom:  # stacked in the lower right, where a ROC curve leaves room
            lx, ly = WIDTH - RIGHT - 100, TOP + plot_h - 8 - (len(series) - 1 - i) * 12
        else:  # rows of three along the top
            lx, ly = LEFT + 8 + (i % 3) * (plot_w / 3), TOP + 6 + (i // 3) * 12
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 6}" width="10" height="3" fill="{color}"/>'
                     f'<text class="legend" x="{lx + 14:.1f}" y="{ly - 2}">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
