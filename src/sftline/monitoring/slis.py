"""Service level indicators from the record: the serving station's per-minute aggregates
(`serving_minutes`), the prediction log's sample and the labels that came back as feedback.

Everything here is a pure function of rows already read; `stations/monitor.py` reads them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from sftline.evals.metrics import (
    bootstrap_weights,
    calibration_error,
    estimate,
    macro_f1,
    mean_of,
    reliability,
)
from sftline.monitoring.settings import Slo

BAD_STATUSES = frozenset({408})
"""Besides every 5xx: a request the server took and did not answer in time. Other 4xx are the
caller's (a malformed body, a bad key, its own rate limit); 499 is a caller that hung up."""

Row = Mapping[str, Any]


def is_error(status: int) -> bool:
    return status >= 500 or status in BAD_STATUSES


def _edge(key: str) -> float:
    return float("inf") if key == "+Inf" else float(key)


def merge_buckets(rows: Iterable[Row]) -> dict[str, int]:
    merged: dict[str, int] = defaultdict(int)
    for row in rows:
        for key, n in (row.get("latency_buckets") or {}).items():
            merged[key] += int(n)
    return dict(merged)


def latency_quantile(buckets: Mapping[str, int], q: float) -> float | None:
    """The q-quantile of latency (ms) from bucket counts, interpolated linearly inside its bucket
    (as Prometheus' histogram_quantile does); a quantile in the open top bucket is the last edge."""
    ordered = sorted(((_edge(k), n) for k, n in buckets.items() if n), key=lambda item: item[0])
    total = sum(n for _, n in ordered)
    if not total:
        return None
    rank = q * total
    seen, lower = 0, 0.0
    for edge, n in ordered:
        if seen + n >= rank:
            if edge == float("inf"):
                return lower
            return lower + (edge - lower) * (rank - seen) / n
        seen += n
        lower = edge
    return lower


def good_latency(buckets: Mapping[str, int], threshold_ms: float) -> int:
    """Requests counted in buckets whose upper edge is at or under `threshold_ms` (a bound between
    two edges counts as the edge below it: never more good requests than there were)."""
    return sum(n for key, n in buckets.items() if _edge(key) <= threshold_ms)


def errors_of(status_counts: Mapping[str, int]) -> int:
    return sum(int(n) for code, n in status_counts.items() if code.isdigit() and is_error(int(code)))


def serving_indicators(rows: Sequence[Row], *, price_per_hour: float = 0.0) -> dict[str, Any]:
    """Request-side SLIs over minute rows: volume, success rate, latency percentiles, contract
    validity, abstentions, busy time and cost per 1,000 requests."""
    requests = sum(int(r["requests"]) for r in rows)
    statuses: dict[str, int] = defaultdict(int)
    for row in rows:
        for code, n in (row.get("status_counts") or {}).items():
            statuses[code] += int(n)
    answered = statuses.get("200", 0)
    errors = errors_of(statuses)
    buckets = merge_buckets(rows)
    busy = sum(float(r.get("busy_seconds") or 0) for r in rows)
    invalid = sum(int(r.get("contract_invalid") or 0) for r in rows)
    abstentions = sum(int(r.get("abstentions") or 0) for r in rows)

    def rate(numerator: float, denominator: float) -> float | None:
        return numerator / denominator if denominator else None

    cost = price_per_hour * busy / 3600
    return {
        "requests": requests,
        "answered": answered,
        "errors": errors,
        "status_counts": dict(sorted(statuses.items())),
        "success_rate": rate(requests - errors, requests),
        "latency_ms": {
            "p50": latency_quantile(buckets, 0.50),
            "p95": latency_quantile(buckets, 0.95),
            "p99": latency_quantile(buckets, 0.99),
            "mean": rate(sum(float(r.get("latency_sum_ms") or 0) for r in rows), requests),
        },
        "latency_buckets": buckets,
        "contract_invalid_rate": rate(invalid, answered),
        "abstention_rate": rate(abstentions, answered),
        "prompt_tokens": sum(int(r.get("prompt_tokens") or 0) for r in rows),
        "output_tokens": sum(int(r.get("output_tokens") or 0) for r in rows),
        "busy_seconds": busy,
        "utilisation": None,
        "cost": cost,
        "cost_per_1k_requests": rate(cost * 1000, requests),
    }


def serving_slices(rows: Sequence[Row], *, price_per_hour: float = 0.0) -> dict[str, dict[str, Any]]:
    """`serving_indicators` per served version and route (`support@3 production`)."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[f"{row['model_version']} {row['route']}"].append(row)
    return {
        name: serving_indicators(group, price_per_hour=price_per_hour)
        for name, group in sorted(groups.items())
    }


@dataclass(frozen=True)
class Labelled:
    """A logged prediction whose correct answer came back (feedback or a reviewer)."""

    request_id: str
    at: datetime
    """When the label arrived (the accuracy SLO counts events then)."""
    model_version: str
    route: str
    truth: str
    predicted: str
    confidence: float | None
    top: tuple[str, ...] = ()

    @property
    def correct(self) -> bool:
        return self.predicted.strip() == self.truth.strip()


def feedback_indicators(rows: Sequence[Labelled], *, k: int = 3, seed: int = 0) -> dict[str, Any]:
    """Task SLIs on labelled feedback, each with a bootstrap 95% interval: accuracy, macro-F1,
    top-k accuracy (where the log kept the ranked labels) and the calibration error."""
    n = len(rows)
    out: dict[str, Any] = {"labelled": n}
    if not n:
        return out
    weights = bootstrap_weights(n, replicates=500, seed=seed)
    correct = [r.correct for r in rows]
    out["accuracy"] = estimate(mean_of(correct), weights).as_dict()
    out["macro_f1"] = estimate(
        macro_f1([r.truth for r in rows], [r.predicted for r in rows]), weights
    ).as_dict()
    ranked = [r for r in rows if r.top]
    if ranked:
        hits = [r.truth in r.top[:k] for r in ranked]
        out[f"top{k}_accuracy"] = estimate(
            mean_of(hits), bootstrap_weights(len(ranked), replicates=500, seed=seed)
        ).as_dict()
    scored = [r for r in rows if r.confidence is not None]
    if scored:
        conf = np.array([r.confidence for r in scored], dtype=float)
        ok = np.array([r.correct for r in scored])
        out["ece"] = estimate(
            calibration_error(conf, ok), bootstrap_weights(len(scored), replicates=500, seed=seed)
        ).as_dict()
        out["reliability"] = reliability(conf, ok, n_bins=10)
    return out


def events_per_minute(
    slo: Slo, minutes: Sequence[Row], labelled: Sequence[Labelled]
) -> dict[datetime, tuple[int, int]]:
    """minute -> (bad events, all events) for one SLO: the series its burn rate is read from."""
    series: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    if slo.sli == "accuracy":
        for answer in labelled:
            cell = series[answer.at.replace(second=0, microsecond=0)]
            cell[0] += not answer.correct
            cell[1] += 1
    else:
        for row in minutes:
            cell = series[row["minute"]]
            statuses = row.get("status_counts") or {}
            if slo.sli == "success_rate":
                cell[0] += errors_of(statuses)
                cell[1] += int(row["requests"])
            elif slo.sli == "latency":
                assert slo.threshold_ms is not None
                buckets = row.get("latency_buckets") or {}
                total = sum(int(n) for n in buckets.values())
                cell[0] += total - good_latency(buckets, slo.threshold_ms)
                cell[1] += total
            else:  # contract_validity: answered requests whose answer broke the contract
                cell[0] += int(row.get("contract_invalid") or 0)
                cell[1] += int(statuses.get("200", 0))
    return {minute: (bad, total) for minute, (bad, total) in series.items()}


def window_ratio(
    series: Mapping[datetime, tuple[int, int]], now: datetime, seconds: float
) -> tuple[float | None, int]:
    """(bad / all, all) over the minutes that started within `seconds` before `now` (a window
    shorter than a minute is the minute now is in)."""
    start = now - timedelta(seconds=max(seconds, 1.0))
    start = start.replace(second=0, microsecond=0) if seconds < 60 else start
    bad = total = 0
    for minute, (b, t) in series.items():
        if start <= minute <= now:
            bad += b
            total += t
    return (bad / total if total else None), total
