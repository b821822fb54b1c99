"""Alerts of a monitoring pass: the conditions it found (SLO burn, drift, retraining triggers),
reconciled with the firing alerts in the record and posted to the webhook."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sftline.monitoring.settings import MonitoringConfig, format_duration
from sftline.monitoring.webhook import deliver_all
from sftline.record import queries
from sftline.record.schema import as_utc
from sftline.record.workspace import Workspace

RETRAIN_KINDS = ("retrain_trigger",)
MODEL_SLIS = ("accuracy", "contract_validity")
"""SLIs a retrained model can move; a burning availability or latency SLO triggers no retrain."""


@dataclass(frozen=True)
class Condition:
    kind: str
    name: str
    severity: str
    message: str
    details: dict[str, Any]


def burn_conditions(slos: list[dict[str, Any]]) -> list[Condition]:
    out = []
    for slo in slos:
        for check in slo["burn"]:
            if check["firing"]:
                window = f"{format_duration(check['long_s'])}/{format_duration(check['short_s'])}"
                out.append(
                    Condition(
                        "slo_burn",
                        f"{slo['slo']}:{check['severity']}:{window}",
                        check["severity"],
                        f"SLO {slo['slo']} burns its error budget {check['burn_long']:.1f}x over "
                        f"{format_duration(check['long_s'])} and {check['burn_short']:.1f}x over "
                        f"{format_duration(check['short_s'])} (limit {check['factor']:g}x)",
                        check | {"sli": slo["sli"]},
                    )
                )
    return out


def drift_conditions(drift: dict[str, Any]) -> list[Condition]:
    out = []
    for result in drift.get("tests", []):
        if result.get("drifted"):
            p = result.get("p_value")
            out.append(
                Condition(
                    "drift",
                    f"drift:{result['name']}",
                    "ticket",
                    f"{result['name']} drifted: {result['test']} statistic {result['statistic']:.3g}"
                    + (f", p={p:.2g}" if p is not None else "")
                    + f" at level {result['alpha']:.2g} "
                    f"({result['n_current']} recent vs {result['n_reference']} reference)",
                    {k: v for k, v in result.items() if k != "details"},
                )
            )
    return out


def trigger_conditions(
    cfg: MonitoringConfig, burns: list[Condition], drifts: list[Condition], new_labels: int
) -> list[Condition]:
    triggers = cfg.triggers
    out = []
    if triggers.drift and drifts:
        names = ", ".join(c.name.removeprefix("drift:") for c in drifts)
        out.append(
            Condition(
                "retrain_trigger", "retrain:drift", "info", f"retrain: drift in {names}", {"drift": names}
            )
        )
    wanted = {"page": ("page",), "ticket": ("page", "ticket"), "off": ()}[triggers.slo_burn]
    # Retraining cannot fix an outage or a slow machine: only SLOs on the model's answers count.
    burning = [c for c in burns if c.severity in wanted and c.details.get("sli") in MODEL_SLIS]
    if burning:
        out.append(
            Condition(
                "retrain_trigger",
                "retrain:slo_burn",
                "info",
                f"retrain: {', '.join(c.name for c in burning)} burning",
                {"alerts": [c.name for c in burning]},
            )  # fmt: skip
        )
    if triggers.feedback_examples is not None and new_labels >= triggers.feedback_examples:
        out.append(
            Condition(
                "retrain_trigger",
                "retrain:feedback",
                "info",
                f"retrain: {new_labels} new labels since the last retrain "
                f"(trigger at {triggers.feedback_examples})",
                {"new_labels": new_labels},
            )  # fmt: skip
        )
    return out


def alert_json(alert: Any) -> dict[str, Any]:
    return {
        "id": alert.id,
        "model": alert.model_name,
        "kind": alert.kind,
        "name": alert.name,
        "severity": alert.severity,
        "status": alert.status,
        "message": alert.message,
        "fired_at": as_utc(alert.fired_at).isoformat(),
        "last_seen_at": as_utc(alert.last_seen_at).isoformat(),
        "resolved_at": as_utc(alert.resolved_at).isoformat() if alert.resolved_at else None,
        "details": alert.details,
        "delivery": alert.delivery,
    }


def reconcile_alerts(
    workspace: Workspace,
    model_name: str,
    conditions: Sequence[Condition],
    checked: Callable[[Any], bool],
    now: datetime,
    cfg: MonitoringConfig,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Record new conditions as firing alerts, refresh the ones still firing, and resolve a firing
    alert only when this pass `checked` its condition and found it clear (a drift test skipped for
    want of samples, or `--no-drift`, leaves its alert as it was; a retraining trigger waits for a
    retrain). The changes are committed first, then posted to the webhook outside any
    transaction, so a slow receiver never holds the record's write lock. Returns (fired,
    resolved, firing now)."""
    with workspace.record.session() as session:
        firing = {a.name: a for a in queries.alerts(session, model_name=model_name, status="firing")}
        wanted = {c.name: c for c in conditions}
        fired, resolved = [], []
        for name, condition in wanted.items():
            alert = firing.get(name)
            if alert is not None:
                alert.last_seen_at = now
                alert.details = condition.details
                alert.message = condition.message
                continue
            fired.append(
                queries.add_alert(
                    session,
                    model_name=model_name,
                    kind=condition.kind,
                    name=name,
                    severity=condition.severity,
                    status="firing",
                    message=condition.message,
                    details=condition.details,
                    fired_at=now,
                    last_seen_at=now,
                    delivery={},
                )  # fmt: skip
            )
        for name, alert in firing.items():
            if name not in wanted and alert.kind not in RETRAIN_KINDS and checked(alert):
                alert.status = "resolved"
                alert.resolved_at = now
                resolved.append(alert)
        session.flush()
        changed = [(a.id, alert_json(a) | {"event": "firing"}) for a in fired]
        changed += [(a.id, alert_json(a) | {"event": "resolved"}) for a in resolved]
    deliveries = deliver_all(cfg.webhook_url, cfg.webhook_token_env, [payload for _, payload in changed])
    if deliveries:
        with workspace.record.session() as session:
            queries.set_alert_deliveries(
                session, {alert_id: d for (alert_id, _), d in zip(changed, deliveries, strict=True)}
            )
    by_id = {
        alert_id: payload | {"delivery": d}
        for (alert_id, payload), d in zip(changed, deliveries or [{}] * len(changed), strict=True)
    }
    with workspace.record.session() as session:
        now_firing = [alert_json(a) for a in queries.alerts(session, model_name=model_name, status="firing")]
    fired_json = [by_id[i] for i, p in changed if p["event"] == "firing"]
    resolved_json = [by_id[i] for i, p in changed if p["event"] == "resolved"]
    return fired_json, resolved_json, now_firing
