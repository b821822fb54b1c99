"""Small inline SVG charts: horizontal bars, histograms, intervals, heatmaps and reliability."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

BAR_HEIGHT = 18  # px per bar
LABEL_WIDTH = 180  # px reserved for labels
CHART_WIDTH = 420  # px for the bars themselves


def bar_chart(items: Sequence[tuple[str, float]], *, unit: str = "", limit: int = 40) -> str:
    """Horizontal bars, largest first as given; at most `limit` bars."""
    shown = list(items)[:limit]
    if not shown:
        return "<p><em>no data</em></p>"
    top = max(value for _, value in shown) or 1.0
    height = BAR_HEIGHT * len(shown) + 4
    rows = []
    for index, (label, value) in enumerate(shown):
        y = index * BAR_HEIGHT + 2
        width = max(1.0, CHART_WIDTH * value / top)
        rows.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 13}" text-anchor="end">{escape(label[:28])}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT - 4}" fill="#4c78a8"/>'
            f'<text x="{LABEL_WIDTH + width + 4:.1f}" y="{y + 13}">{value:,.4g}{escape(unit)}</text>'
        )
    total_width = LABEL_WIDTH + CHART_WIDTH + 80
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">{"".join(rows)}</svg>'
    )


def histogram(edges: Sequence[float], counts: Sequence[int], *, marker: float | None = None) -> str:
    """Vertical bars for a histogram; `marker` draws a red line (e.g. max_length) if in range."""
    if not counts:
        return "<p><em>no data</em></p>"
    width, height, pad = 560, 160, 24
    top = max(counts) or 1
    bar = (width - 2 * pad) / len(counts)
    parts = []
    for index, count in enumerate(counts):
        h = (height - 2 * pad) * count / top
        x = pad + index * bar
        parts.append(
            f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}" '
            f'fill="#72b7b2"><title>{edges[index]:.0f}-{edges[index + 1]:.0f}: {count}</title></rect>'
        )
    low, high = edges[0], edges[-1]
    parts.append(f'<text x="{pad}" y="{height - 6}">{low:.0f}</text>')
    parts.append(f'<text x="{width - pad}" y="{height - 6}" text-anchor="end">{high:.0f} tokens</text>')
    if marker is not None and low <= marker <= high and high > low:
        x = pad + (width - 2 * pad) * (marker - low) / (high - low)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{pad / 2}" y2="{height - pad}" stroke="#e45756"/>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">{"".join(parts)}</svg>'
    )


@dataclass(frozen=True)
class IntervalBar:
    """One row of `interval_chart`: a rate in [0, 1], its interval and an optional second marker."""

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    marker: float | None = None
    """A second value drawn as a diamond on the same axis (e.g. the baseline's)."""
    note: str = ""
    """Text after the bar, next to the value (e.g. the change against the baseline)."""


def _x(value: float, left: float, width: float) -> float:
    return left + width * min(max(value, 0.0), 1.0)


def interval_chart(rows: Sequence[IntervalBar], *, marker_label: str = "") -> str:
    """Horizontal bars on a fixed 0-100% axis, in the order given, with the 95% interval as a
    whisker and `marker` as a diamond; `marker_label` names the diamonds in a legend."""
    if not rows:
        return "<p><em>no data</em></p>"
    top = 18 if marker_label else 4  # px above the first bar: room for the legend
    height = top + BAR_HEIGHT * len(rows) + 16  # 16 px for the axis labels below
    parts = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = _x(tick, LABEL_WIDTH, CHART_WIDTH)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - 14}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{height - 3}" text-anchor="middle" fill="#777">{tick * 100:.0f}%</text>'
        )
    if marker_label:
        parts.append(
            f'<path d="M{LABEL_WIDTH} 8 l4 -4 l4 4 l-4 4 z" fill="#222"/>'
            f'<text x="{LABEL_WIDTH + 12}" y="12">{escape(marker_label)}</text>'
        )
    for index, row in enumerate(rows):
        y = top + index * BAR_HEIGHT
        middle = y + (BAR_HEIGHT - 4) / 2
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 12}" text-anchor="end">'
            f"<title>{escape(row.label)}</title>{escape(row.label[:28])}</text>"
        )
        end = float(LABEL_WIDTH)  # px where the value text may start
        if row.value is not None:
            end = _x(row.value, LABEL_WIDTH, CHART_WIDTH)
            parts.append(
                f'<rect class="bar" x="{LABEL_WIDTH}" y="{y}" width="{max(end - LABEL_WIDTH, 1.0):.1f}" '
                f'height="{BAR_HEIGHT - 4}" fill="#4c78a8"/>'
            )
        if row.low is not None and row.high is not None:
            x1, x2 = _x(row.low, LABEL_WIDTH, CHART_WIDTH), _x(row.high, LABEL_WIDTH, CHART_WIDTH)
            end = max(end, x2)
            parts.append(
                f'<path class="whisker" d="M{x1:.1f} {middle:.1f} H{x2:.1f} M{x1:.1f} {middle - 4:.1f} '
                f'V{middle + 4:.1f} M{x2:.1f} {middle - 4:.1f} V{middle + 4:.1f}" stroke="#222" fill="none"/>'
            )
        if row.marker is not None:
            x = _x(row.marker, LABEL_WIDTH, CHART_WIDTH)
            end = max(end, x + 5)
            parts.append(
                f'<path class="marker" d="M{x:.1f} {middle - 5:.1f} l5 5 l-5 5 l-5 -5 z" fill="#222">'
                f"<title>{escape(marker_label)} {row.marker * 100:.1f}%</title></path>"
            )
        shown = "–" if row.value is None else f"{row.value * 100:.1f}%"
        note = f" ({escape(row.note)})" if row.note else ""
        parts.append(f'<text x="{end + 6:.1f}" y="{y + 12}">{shown}{note}</text>')
    total_width = LABEL_WIDTH + CHART_WIDTH + 200
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">{"".join(parts)}</svg>'
    )


CELL = 24  # px per confusion-matrix cell; 25 labels make a 600 px grid


def heatmap(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    """A confusion matrix: rows are targets, columns predictions, each cell its count. The diagonal
    (right answers) is shaded blue against its own maximum and the confusions red against theirs,
    so that a few confusions still show beside thousands of right answers."""
    if not labels:
        return "<p><em>no data</em></p>"
    size = len(labels)
    left, top = LABEL_WIDTH, 120  # px for the row labels and the slanted column labels
    right_max = max((matrix[i][i] for i in range(size)), default=0) or 1
    wrong_max = max((matrix[i][j] for i in range(size) for j in range(size) if i != j), default=0) or 1
    parts = [
        f'<text x="{left - 6}" y="{top - 22}" text-anchor="end" fill="#777">prediction →</text>',
        f'<text x="{left - 6}" y="{top - 6}" text-anchor="end" fill="#777">target ↓</text>',
    ]
    for index, label in enumerate(labels):
        x = left + index * CELL + CELL / 2
        y = top + index * CELL + CELL / 2 + 4
        parts.append(
            f'<text x="{left - 6}" y="{y:.0f}" text-anchor="end">{escape(label[:26])}</text>'
            f'<text transform="translate({x:.0f} {top - 6}) rotate(-60)">{escape(label[:18])}</text>'
        )
    for i in range(size):
        for j in range(size):
            count = matrix[i][j]
            share = count / (right_max if i == j else wrong_max)
            colour = "#f4f4f4" if not count else "#4c78a8" if i == j else "#e45756"
            x, y = left + j * CELL, top + i * CELL
            parts.append(
                f'<rect class="cell" x="{x}" y="{y}" width="{CELL - 1}" height="{CELL - 1}" fill="{colour}" '
                f'fill-opacity="{0.15 + 0.85 * share if count else 1:.2f}"><title>{escape(labels[i])} → '
                f"{escape(labels[j])}: {count}</title></rect>"
            )
            if count:
                ink = "#fff" if share > 0.55 else "#222"
                parts.append(
                    f'<text x="{x + CELL / 2 - 0.5:.1f}" y="{y + CELL / 2 + 3:.1f}" text-anchor="middle" '
                    f'font-size="9" fill="{ink}">{count}</text>'
                )
    width, height = left + size * CELL + 70, top + size * CELL + 10  # 70 px for the last slanted label
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">{"".join(parts)}</svg>'
    )


def reliability_diagram(bins: Sequence[Mapping[str, Any]]) -> str:
    """Accuracy per confidence bin as bars against the diagonal (perfect calibration), with each
    bin's example count under the axis. `bins` as `sftline.evals.metrics.reliability` returns
    them: low, high, count, confidence and accuracy (None for an empty bin)."""
    if not bins:
        return "<p><em>no data</em></p>"
    left, top, width, height = 44, 10, 420, 240  # px: the plot area and its offset
    bottom = top + height
    parts = []
    for tick in (0.0, 0.5, 1.0):
        y = bottom - height * tick
        parts.append(
            f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#777">{tick * 100:.0f}%</text>'
            f'<text x="{left + width * tick:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#777">'
            f"{tick * 100:.0f}%</text>"
        )
    for b in bins:
        x1, x2 = left + width * float(b["low"]), left + width * float(b["high"])
        middle = (x1 + x2) / 2
        accuracy, confidence = b.get("accuracy"), b.get("confidence")
        if accuracy is not None:
            h = height * float(accuracy)
            detail = "" if confidence is None else f", mean confidence {float(confidence) * 100:.1f}%"
            parts.append(
                f'<rect class="bin" x="{x1 + 1:.1f}" y="{bottom - h:.1f}" width="{max(x2 - x1 - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="#4c78a8"><title>confidence {float(b["low"]) * 100:.0f}-'
                f"{float(b['high']) * 100:.0f}%: accuracy {float(accuracy) * 100:.1f}% of "
                f"{b['count']}{detail}</title></rect>"
            )
        ink = "#222" if b["count"] else "#bbb"
        parts.append(
            f'<text class="count" x="{middle:.1f}" y="{bottom + 30}" text-anchor="middle" font-size="9" '
            f'fill="{ink}">{b["count"]}</text>'
        )
    parts.append(
        f'<line class="diagonal" x1="{left}" y1="{bottom}" x2="{left + width}" y2="{top}" '
        f'stroke="#e45756" stroke-dasharray="4 3"/>'
        f'<text x="{left - 4}" y="{bottom + 30}" text-anchor="end" fill="#777">n</text>'
        f'<text x="{left + width / 2}" y="{bottom + 46}" text-anchor="middle" fill="#777">confidence</text>'
        f'<text transform="translate(10 {top + height / 2}) rotate(-90)" text-anchor="middle" '
        f'fill="#777">accuracy</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 24}" height="{bottom + 52}" '
        f'font-family="sans-serif" font-size="11">{"".join(parts)}</svg>'
    )


SERIES_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d", "#bab0ac")


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    x_label: str = "",
    y_label: str = "",
    x_ticks: Sequence[tuple[float, str]] = (),
) -> str:
    """Lines of (x, y) points, one colour per series with a legend: loss per step, requests per
    minute. Every point is a circle with its value as a tooltip; the y axis starts at zero unless a
    value is negative. `x_ticks` are (x, label) pairs under the axis (times, say); without them the
    ends of the x range are written."""
    drawn = {name: [(float(x), float(y)) for x, y in points] for name, points in series.items() if points}
    if not drawn:
        return "<p><em>no data</em></p>"
    left, top, width, height = 56, 10 + 14 * len(drawn), 520, 180  # px: plot area and its offset
    bottom = top + height
    xs = [x for points in drawn.values() for x, _ in points]
    ys = [y for points in drawn.values() for _, y in points]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(0.0, min(ys)), max(ys)
    x_span, y_span = (x_high - x_low) or 1.0, (y_high - y_low) or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return left + width * (x - x_low) / x_span, bottom - height * (y - y_low) / y_span

    parts = []
    for tick in (0.0, 0.5, 1.0):
        value = y_low + y_span * tick
        y = bottom - height * tick
        parts.append(
            f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#777">{value:,.4g}</text>'
        )
    ticks = list(x_ticks) or [(x_low, f"{x_low:,.4g}"), (x_high, f"{x_high:,.4g}")]
    for x_value, label in ticks:
        x, _ = at(float(x_value), y_low)
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#777">{escape(label)}</text>'
        )
    for index, (name, points) in enumerate(drawn.items()):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        placed = [at(x, y) for x, y in points]
        path = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f} {py:.1f}" for i, (px, py) in enumerate(placed))
        parts.append(f'<path class="series" d="{path}" stroke="{colour}" fill="none" stroke-width="1.5"/>')
        parts.extend(
            f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="2" fill="{colour}">'
            f"<title>{escape(name)} at {x:,.6g}: {y:,.6g}</title></circle>"
            for (px, py), (x, y) in zip(placed, points, strict=True)
        )
        legend_y = 12 + 14 * index
        parts.append(
            f'<rect x="{left}" y="{legend_y - 8}" width="10" height="3" fill="{colour}"/>'
            f'<text x="{left + 14}" y="{legend_y}">{escape(name)}</text>'
        )
    if x_label:
        parts.append(
            f'<text x="{left + width / 2}" y="{bottom + 30}" text-anchor="middle" fill="#777">'
            f"{escape(x_label)}</text>"
        )
    if y_label:
        parts.append(
            f'<text transform="translate(10 {top + height / 2}) rotate(-90)" text-anchor="middle" '
            f'fill="#777">{escape(y_label)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 24}" height="{bottom + 36}" '
        f'font-family="sans-serif" font-size="11">{"".join(parts)}</svg>'
    )
