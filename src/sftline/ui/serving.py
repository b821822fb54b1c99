"""The Serving page: request rate, latency percentiles, contract-invalid rate, and canary against
production, from `serving_minutes`; and the prediction log, page by page.

Plain counts are summed in SQL by minute and route, and by version and route. The status codes and
latency histograms are JSON columns, so they are added up here, over the window's rows only (one
per minute, version and route: an hour of one production and one canary version is 120 rows).
Percentiles and errors are the monitoring station's (`sftline.monitoring.slis`), so this page and
`sftline monitor` agree: a percentile is interpolated linearly inside the histogram bucket holding
it, as Prometheus' histogram_quantile does (one in the open top bucket is the last edge), and an
error is a 5xx or a 408, never a caller's own 4xx."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.orm import Session

from sftline.monitoring.slis import errors_of, latency_quantile
from sftline.record import queries
from sftline.reports.svg import line_chart
from sftline.ui.format import Page, when

WINDOWS = (15, 60, 360)
"""Window lengths a visitor may pick, in minutes. Six hours at most: the histograms are JSON and
added up here, and a day of them (2,880 rows of two versions) took the page past 300 ms on the
bench's record; longer views belong to the monitoring station's rollups."""
QUANTILES = (0.5, 0.95, 0.99)
CHART_POINTS = 120
"""Points per series at most: a longer window adds its minutes up into steps of several minutes
(requests per minute averaged over the step, percentiles of the step's summed histogram)."""


def add_counts(rows: Iterable[Mapping[str, Any] | None]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in rows:
        for key, count in (counts or {}).items():
            total[str(key)] = total.get(str(key), 0) + int(count)
    return total


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def serving_page(session: Session, window: int, page: Page) -> dict[str, Any]:
    """The window of `window` minutes up to the newest minute served (or now, when nothing was)."""
    newest = queries.latest_serving_minute(session)
    end = _aware(newest) if newest is not None else datetime.now(timezone.utc)
    since = end - timedelta(minutes=window - 1)
    minutes = queries.serving_totals_by_minute(session, since=since)
    versions = queries.serving_totals_by_version(session, since=since)
    histograms = queries.serving_histograms(session, since=since)

    step = -(-window // CHART_POINTS)  # minutes per chart point: a day is drawn as 120 points

    positions: dict[datetime, float] = {}

    def x(moment: datetime) -> float:
        """The chart's x of a minute: minutes before the window's end, rounded down to a step
        (each minute is met once per version and route: computed once)."""
        if moment not in positions:
            before = (_aware(moment) - end).total_seconds() / 60
            positions[moment] = float(-step * (-before // step)) if step > 1 else before
        return positions[moment]

    served: dict[tuple[str, float], float] = {}
    invalids: dict[tuple[str, float], float] = {}
    for row in minutes:
        point = (row.route, x(row.minute))
        served[point] = served.get(point, 0.0) + float(row.requests)
        invalids[point] = invalids.get(point, 0.0) + float(row.contract_invalid)
    rate: dict[str, list[tuple[float, float]]] = {}
    invalid: dict[str, list[tuple[float, float]]] = {}
    for (route, at), count in sorted(served.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        rate.setdefault(route, []).append((at, count / step))
        if count:
            invalid.setdefault(route, []).append((at, invalids[(route, at)] / count))
    per_point: dict[float, list[Mapping[str, Any]]] = {}
    per_version: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    statuses: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in histograms:
        per_point.setdefault(x(row.minute), []).append(row.latency_buckets)
        per_version.setdefault((row.model_version, row.route), []).append(row.latency_buckets)
        statuses.setdefault((row.model_version, row.route), []).append(row.status_counts)
    latency: dict[str, list[tuple[float, float]]] = {}
    for at, point_rows in sorted(per_point.items()):
        added = add_counts(point_rows)
        for quantile in QUANTILES:
            value = latency_quantile(added, quantile)
            if value is not None:
                latency.setdefault(f"p{quantile * 100:g}", []).append((at, value))
    ticks = [(-float(window - 1), when(since)[11:16]), (0.0, when(end)[11:16])]
    table = []
    for row in versions:
        buckets = add_counts(per_version.get((row.model_version, row.route), []))
        status = add_counts(statuses.get((row.model_version, row.route), []))
        requests = int(row.requests or 0)
        table.append(
            {
                "model": row.model_name,
                "version": row.model_version,
                "route": row.route,
                "requests": requests,
                "per_minute": requests / window,
                "mean_ms": row.latency_sum_ms / requests if requests else None,
                **{f"p{q * 100:g}": latency_quantile(buckets, q) for q in QUANTILES},
                "invalid_rate": row.contract_invalid / requests if requests else None,
                "error_rate": errors_of(status) / requests if requests else None,
                "abstention_rate": row.abstentions / requests if requests else None,
            }
        )
    predictions, total = queries.predictions_page(session, offset=page.offset, limit=page.size)
    return {
        "window": window,
        "windows": WINDOWS,
        "since": since,
        "end": end,
        "served": newest is not None,
        "rate_chart": line_chart(
            rate, x_label="minutes before the end", y_label="requests/min", x_ticks=ticks
        ),
        "latency_chart": line_chart(latency, x_label="minutes before the end", y_label="ms", x_ticks=ticks),
        "invalid_chart": line_chart(
            invalid, x_label="minutes before the end", y_label="invalid share", x_ticks=ticks
        ),
        "versions": table,
        "canary": [r for r in table if r["route"] in ("canary", "production")],
        "predictions": predictions,
        "page": page.counted(total),
    }
