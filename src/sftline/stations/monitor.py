"""`sftline monitor`: one pass of the monitoring station over a window of recent serving.

It reads what the serving station wrote (the per-minute aggregates and the prediction log's
sample), the labels that came back (feedback and reviews) and the serving model's own record
(its training data and its evaluations), and:

1. computes the SLIs, overall and per served version and route;
2. checks every SLO's error budget and its multi-window burn-rate rules;
3. tests for drift between the serving model's training data and the window's traffic, the
   family's false-alarm rate held at `monitoring.drift.false_alarm_rate` (Bonferroni), and
   clusters the new inputs that look like nothing it was trained on;
4. queues low-confidence answers, abstentions, contract-invalid answers and an audit sample for
   human review;
5. records alerts (one firing alert per condition, resolved when it clears; retraining triggers
   stay until a retrain handles them), posts new and resolved ones to the webhook, and stores the
   report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.orm import Session

from sftline.errors import SftlineError
from sftline.monitoring.settings import MonitoringConfig, parse_duration
from sftline.monitoring.slis import (
    Labelled,
    events_per_minute,
    feedback_indicators,
    serving_indicators,
    serving_slices,
)
from sftline.monitoring.slo import budget, check_burn
from sftline.record import queries
from sftline.record.schema import Prediction, as_utc
from sftline.record.workspace import Workspace
from sftline.stations.alerts import (
    burn_conditions,
    drift_conditions,
    reconcile_alerts,
    trigger_conditions,
)
from sftline.stations.monitor_drift import drift_checks, find_serving
from sftline.text.share import stable_share

Progress = Callable[[str], None]
MAX_LOGGED = 50_000
"""Logged predictions a pass reads at most, newest first (the review queue and drift); the SLIs
come from the per-minute aggregates and count every request."""
REVIEW_SEED = "review-audit"
"""Salt of the audit sample's hash, so it is not the prediction log's own sample choice."""


class MonitorError(SftlineError):
    pass


@dataclass
class Pass:
    """What one pass computed; `report` is what is stored and printed."""

    report: dict[str, Any]
    report_id: int
    fired: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)


# --- the review queue ------------------------------------------------------------------------------


def review_reason(p: Prediction, cfg: MonitoringConfig) -> str | None:
    """Why a logged answer goes to people, or None."""
    rules = cfg.review
    if rules.contract_invalid and p.contract_valid is False:
        return "contract_invalid"
    if rules.abstentions and p.abstained:
        return "abstained"
    if (
        rules.confidence_below is not None
        and p.confidence is not None
        and p.confidence < rules.confidence_below
    ):
        return "low_confidence"
    if stable_share(f"{REVIEW_SEED}:{p.request_id}") < rules.audit_share:
        return "audit"
    return None


def queue_for_review(session: Session, predictions: Sequence[Prediction], cfg: MonitoringConfig) -> int:
    rows = []
    for p in predictions:
        reason = review_reason(p, cfg)
        if reason is not None:
            rows.append(
                {
                    "request_id": p.request_id,
                    "model_name": p.model_name,
                    "model_version": p.model_version,
                    "reason": reason,
                    "status": "open",
                    "prompt": p.prompt,
                    "output": p.output,
                    "confidence": p.confidence,
                    "served_at": as_utc(p.at),
                    "created_at": datetime.now(timezone.utc),
                }
            )
    return queries.add_review_items(session, rows)


# --- labels ----------------------------------------------------------------------------------------


def labelled_predictions(session: Session, model_name: str, since: datetime | None = None) -> list[Labelled]:
    """Feedback joined with the logged predictions it labels (newest label per request)."""
    rows = queries.feedback(session, model_name=model_name, since=since)
    served = queries.served_predictions(session, [r.request_id for r in rows])
    out = []
    for row in rows:
        p = served.get(row.request_id)
        if p is None:
            continue
        top = tuple((p.extra or {}).get("top") or ())
        out.append(
            Labelled(
                request_id=row.request_id,
                at=as_utc(row.at),
                model_version=p.model_version,
                route=p.route,
                truth=row.label,
                predicted=(p.label or p.output),
                confidence=p.confidence,
                top=top,
            )
        )
    return out


# --- the pass --------------------------------------------------------------------------------------


def _duration(text: str, option: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise MonitorError(f"{option}: {exc}") from exc


def new_labels_since_retrain(session: Session, model_name: str) -> int:
    handled = [
        a
        for a in queries.alerts(session, model_name=model_name, kind="retrain_trigger")
        if a.status == "handled"
    ]
    since = max((as_utc(a.resolved_at) for a in handled if a.resolved_at), default=None)
    return len(queries.feedback(session, model_name=model_name, since=since))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def run_monitor(
    workspace: Workspace,
    *,
    model_name: str | None = None,
    window: str | None = None,
    now: datetime | None = None,
    since: datetime | None = None,
    drift: bool = True,
    progress: Progress | None = None,
) -> Pass:
    """One monitoring pass (see the module docstring) over `window` (or from `since`) up to
    `now` (drills and tests pass one; default the moment the pass starts)."""
    cfg = workspace.project.config.monitoring
    name = model_name or workspace.project.config.effective_model_name
    now = as_utc(now or datetime.now(timezone.utc))
    if since is not None:
        since = as_utc(since)
        if since >= now:
            raise MonitorError(f"--since {since.isoformat()} is not before now ({now.isoformat()})")
        window_s = (now - since).total_seconds()
    else:
        window_s = _duration(window or cfg.window, "--window")
        since = now - timedelta(seconds=window_s)
    longest = max((parse_duration(r.long) * cfg.window_scale for r in cfg.burn_rules), default=0.0)
    say = progress or (lambda _: None)
    say(f"reading {name}'s serving record since {since:%Y-%m-%d %H:%M} UTC")
    with workspace.record.session() as session:
        minutes_all = [
            _minute_row(m)
            for m in queries.serving_minutes(
                session, since=now - timedelta(seconds=max(window_s, longest)), model_name=name
            )
        ]
        minutes_all = [m for m in minutes_all if m["minute"] <= now]
        predictions = [
            p for p in queries.predictions(session, since=since, model_name=name, limit=MAX_LOGGED)
            if p.route != "shadow" and p.status_code == 200 and as_utc(p.at) <= now
        ]  # fmt: skip
        earliest = now - timedelta(seconds=max(window_s, longest))
        labelled_all = labelled_predictions(session, name, since=earliest)
        serving = find_serving(session, name, predictions)
        added = queue_for_review(session, predictions, cfg)
        review_counts = queries.review_counts(session, model_name=name)
        queued = queries.queued_since(session, since, model_name=name)
        logged = queries.logged_since(session, since, model_name=name)
        new_labels = new_labels_since_retrain(session, name)
    minutes = [m for m in minutes_all if m["minute"] >= since.replace(second=0, microsecond=0)]
    labelled = [row for row in labelled_all if since <= row.at <= now]
    price = cfg.cost.price_per_hour
    overall = serving_indicators(minutes, price_per_hour=price)
    overall["feedback"] = feedback_indicators(labelled, seed=cfg.drift.seed)
    overall["review_rate"] = queued / logged if logged else None
    overall["freshness_days"] = (
        (now - serving.trained_at).total_seconds() / 86400 if serving.trained_at else None
    )
    slices = serving_slices(minutes, price_per_hour=price)
    for slice_name, values in slices.items():
        version, route = slice_name.rsplit(" ", 1)
        values["feedback"] = feedback_indicators(
            [r for r in labelled if r.model_version == version and r.route == route], seed=cfg.drift.seed
        )
    slos = []
    for slo in cfg.slos:
        series = events_per_minute(slo, minutes_all, labelled_all)
        slos.append(
            budget(slo, series, now, window_s)
            | {
                "burn": [
                    c.as_json() for c in check_burn(slo, series, cfg.burn_rules, now, scale=cfg.window_scale)
                ]
            }
        )
    drift_report: dict[str, Any] = {"skipped": "drift is off"}
    if drift and cfg.drift.enabled:
        drift_report = drift_checks(workspace, serving, predictions, labelled, cfg, progress=say)
    overall["drift"] = {
        "tests_run": sum(1 for t in drift_report.get("tests", []) if not t.get("skipped")),
        "drifted": drift_report.get("drifted", []),
    }
    burns = burn_conditions(slos)
    drifts = drift_conditions(drift_report)
    conditions = burns + drifts + trigger_conditions(cfg, burns, drifts, new_labels)
    checked_drift = {f"drift:{t['name']}" for t in drift_report.get("tests", []) if not t.get("skipped")}

    def checked(alert: Any) -> bool:  # SLOs are read every pass; a drift test only when it ran
        return alert.kind == "slo_burn" or alert.name in checked_drift

    fired, resolved, firing = reconcile_alerts(workspace, name, conditions, checked, now, cfg)
    report = {
        "model": name,
        "at": now.isoformat(),
        "window_s": window_s,
        "since": since.isoformat(),
        "serving": {
            "version": serving.version,
            "run": serving.run_name,
            "trained_on": serving.trained_on,
        },
        "slis": {"overall": overall, "slices": slices},
        "slos": slos,
        "drift": drift_report,
        "review": {
            "added": added,
            "counts": review_counts,
            "queued_in_window": queued,
            "logged_in_window": logged,
        },
        "alerts": {"fired": fired, "resolved": resolved, "firing": firing},
        "cost_model": {"price_per_hour": price, "currency": cfg.cost.currency},
    }
    data = json.dumps(report, default=_json_default, sort_keys=True).encode()
    report = json.loads(data)
    digest = workspace.objects.put_bytes(data)
    with workspace.record.session() as session:
        row = queries.add_monitor_report(
            session,
            model_name=name,
            at=now,
            window_s=window_s,
            report_object=digest,
            summary=summary_of(report),
        )
        report_id = row.id
    return Pass(report, report_id, fired, resolved)


def _minute_row(m: Any) -> dict[str, Any]:
    return {
        "minute": as_utc(m.minute),
        "model_version": m.model_version,
        "route": m.route,
        "requests": m.requests,
        "status_counts": m.status_counts,
        "latency_buckets": m.latency_buckets,
        "latency_sum_ms": m.latency_sum_ms,
        "prompt_tokens": m.prompt_tokens,
        "output_tokens": m.output_tokens,
        "contract_invalid": m.contract_invalid,
        "abstentions": m.abstentions,
        "busy_seconds": m.busy_seconds,
    }


def summary_of(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers kept inline on the report's row (the dashboard's list reads these)."""
    overall = report["slis"]["overall"]
    return {
        "requests": overall["requests"],
        "success_rate": overall["success_rate"],
        "p95_ms": overall["latency_ms"]["p95"],
        "drifted": report["drift"].get("drifted", []),
        "firing": [a["name"] for a in report["alerts"]["firing"]],
        "review_added": report["review"]["added"],
    }


def stored_report(
    workspace: Workspace, report_id: int | None = None, model_name: str | None = None
) -> dict[str, Any]:
    with workspace.record.session() as session:
        rows = (
            queries.monitor_reports(session, model_name=model_name, limit=1)
            if report_id is None
            else [r for r in queries.monitor_reports(session, model_name=model_name) if r.id == report_id]
        )
        if not rows:
            raise MonitorError("no monitoring report yet: run `sftline monitor`")
        digest = rows[0].report_object
    return dict(json.loads(workspace.objects.get_bytes(digest)))
