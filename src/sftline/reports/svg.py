"""Small inline SVG charts: horizontal bars and histograms."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

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
