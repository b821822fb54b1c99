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

import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.orm import Session

from sftline.data.example import Example
from sftline.errors import SftlineError
from sftline.monitoring import drift as tests
from sftline.monitoring.novel import novel_clusters
from sftline.monitoring.settings import MonitoringConfig, parse_duration
from sftline.monitoring.slis import (
    Labelled,
    events_per_minute,
    feedback_indicators,
    serving_indicators,
    serving_slices,
)
from sftline.monitoring.slo import budget, check_burn
from sftline.monitoring.webhook import deliver_all
from sftline.record import queries
from sftline.record.schema import Prediction, Run
from sftline.record.workspace import Workspace
from sftline.stations.check import ENCODER, LazyEncoder
from sftline.stations.models import find_base_model
from sftline.stations.versions import load_examples

Progress = Callable[[str], None]
MAX_CURRENT = 5000
"""Logged inputs the drift tests read at most (a seeded sample of a longer window)."""
MAX_LOGGED = 50_000
"""Logged predictions a pass reads at most, newest first (the review queue and drift); the SLIs
come from the per-minute aggregates and count every request."""
REVIEW_SEED = "review-audit"
"""Salt of the audit sample's hash, so it is not the prediction log's own sample choice."""
RETRAIN_KINDS = ("retrain_trigger",)
MODEL_SLIS = ("accuracy", "contract_validity")
"""SLIs a retrained model can move; a burning availability or latency SLO triggers no retrain."""


class MonitorError(SftlineError):
    pass


@dataclass
class Serving:
    """The version monitoring compares traffic with: production, else whatever answered most."""

    model_name: str
    version: str | None
    run_name: str | None
    model_hash: str | None
    trained_on: str | None
    trained_at: datetime | None


@dataclass
class Pass:
    """What one pass computed; `report` is what is stored and printed."""

    report: dict[str, Any]
    report_id: int
    fired: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)


def utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def served_input(example: Example) -> str:
    """What the server logs as a request's prompt: the text, or the last user turn."""
    if example.messages is None:
        return example.text or ""
    users = [m.get("content") or "" for m in example.messages if m.get("role") == "user"]
    return users[-1] if users else example.prompt


def find_serving(session: Session, model_name: str, predictions: Sequence[Prediction]) -> Serving:
    model = queries.registered_model(session, model_name)
    production = queries.versions_in_stage(session, model, "production") if model is not None else []
    if production:
        version = production[0]
        run: Run | None = version.run
        ref: str | None = version.ref
    else:  # not registered or nothing promoted: the run that answered most of the window
        counts: dict[str, int] = {}
        for p in predictions:
            counts[p.model_version] = counts.get(p.model_version, 0) + 1
        ref = max(counts, key=lambda k: counts[k]) if counts else None
        run = queries.run_named(session, ref) if ref is not None else None
    if run is None:
        return Serving(model_name, ref, None, None, None, None)
    data, _ = queries.recorded_versions(session, run)
    return Serving(model_name, ref, run.name, run.model_hash, data.ref, utc(data.created_at))


# --- drift ---------------------------------------------------------------------------------------


def _tokenizer(workspace: Workspace) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(find_base_model(workspace, ENCODER).path))


def _reference_inputs(workspace: Workspace, serving: Serving, cfg: MonitoringConfig) -> list[str]:
    ref = cfg.drift.reference or serving.trained_on
    if ref is None:
        return []
    with workspace.record.session() as session:
        version = queries.resolve(session, ref)
    texts = [served_input(e) for e in load_examples(workspace, version)]
    texts = [t for t in texts if t.strip()]
    if len(texts) > cfg.drift.reference_max:
        texts = random.Random(cfg.drift.seed).sample(texts, cfg.drift.reference_max)
    return texts


def _reference_answers(
    session: Session, model_hash: str | None, datasets: Sequence[str] = ()
) -> list[tuple[str, str, float | None]]:
    """(output, target, confidence) of the serving model on the data it was evaluated on (the
    newest evaluation per dataset version; only `datasets` when given): how it answers data like
    its training data, the reference for labels, confidence and calibration."""
    if model_hash is None:
        return []
    wanted = {queries.resolve(session, ref).dataset_id for ref in datasets}
    newest: dict[int, Any] = {}
    for evaluation in reversed(queries.evaluations_of_model(session, model_hash)):  # newest first
        if wanted and evaluation.dataset_version.dataset_id not in wanted:
            continue
        newest.setdefault(evaluation.dataset_version_id, evaluation)
    rows = []
    for evaluation in newest.values():
        rows += [
            (o.output.strip(), o.target.strip(), o.confidence)
            for o in queries.eval_outputs(session, evaluation)
        ]
    return rows


def drift_checks(
    workspace: Workspace,
    serving: Serving,
    predictions: Sequence[Prediction],
    labelled: Sequence[Labelled],
    cfg: MonitoringConfig,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Every drift test that has enough data, at a per-test level that keeps the family's
    false-alarm rate at the configured one, and the clusters of new inputs."""
    settings = cfg.drift
    rng = random.Random(settings.seed)
    current = [p.prompt for p in predictions if p.prompt.strip()]
    if len(current) > MAX_CURRENT:  # a long window: a seeded sample keeps time and memory bounded
        current = rng.sample(current, MAX_CURRENT)
    # Answers are compared with the serving version's own evaluated answers: its traffic only
    # (not a canary's), and only where answers are labels (free text differs with max_tokens).
    own = [p for p in predictions if serving.version is None or p.model_version == serving.version]
    labels_task = workspace.project.config.contract.output.kind == "labels" or any(
        p.endpoint == "classify" for p in own
    )
    say = progress or (lambda _: None)
    say(f"drift: reading the reference ({settings.reference or serving.trained_on or 'no training data'})")
    reference = _reference_inputs(workspace, serving, cfg)
    with workspace.record.session() as session:
        answers = _reference_answers(session, serving.model_hash, settings.reference_on)
    minimum = settings.min_samples
    answered = [p for p in own if (p.label or p.output).strip()]
    now_scored = [row for row in labelled if row.confidence is not None]
    # The family's level is split over the tests that will run (a test short of samples is not
    # planned, so it costs the others no power).
    planned = []
    if reference and len(current) >= minimum:
        planned += ["input_length", "input_tokens", "embedding"]
    if answers and labels_task and len(answered) >= minimum:
        planned += ["predicted_label", "confidence"]
    if answers and labels_task and len(now_scored) >= minimum:
        planned += ["calibration"]
    alpha = tests.bonferroni(settings.false_alarm_rate, max(len(planned), 1))
    # A permutation p-value is never below 1 / (permutations + 1): enough of them to reach alpha.
    permutations = max(settings.permutations, math.ceil(10 / alpha))
    results: list[Any] = []
    novel: list[dict[str, Any]] = []
    if "input_length" in planned:
        say(f"drift: tokenizing {len(reference) + len(current)} inputs")
        tokenizer = _tokenizer(workspace)
        ref_tokens = [tokenizer.tokenize(t) for t in reference]
        cur_tokens = [tokenizer.tokenize(t) for t in current]
        results.append(
            tests.length_drift(
                [len(t) for t in ref_tokens],
                [len(t) for t in cur_tokens],
                alpha=alpha,
                min_psi=settings.min_psi,
                min_samples=minimum,
            )  # fmt: skip
        )
        results.append(
            tests.token_drift(
                ref_tokens,
                cur_tokens,
                alpha=alpha,
                min_samples=minimum,
                seed=settings.seed,
                permutations=permutations,
            )  # fmt: skip
        )
        say(f"drift: embedding {len(reference) + len(current)} inputs with {ENCODER}")
        encode = LazyEncoder(workspace)
        vectors = encode([*reference, *current])
        ref_vec, cur_vec = vectors[: len(reference)], vectors[len(reference) :]
        results.append(
            tests.embedding_drift(
                ref_vec,
                cur_vec,
                alpha=alpha,
                permutations=permutations,
                seed=settings.seed,
                min_samples=minimum,
            )
        )
        novel = novel_clusters(ref_vec, cur_vec, current, seed=settings.seed, reference_texts=reference)
    if "predicted_label" in planned:
        results.append(
            tests.label_drift(
                [output for output, _, _ in answers],
                [(p.label or p.output).strip() for p in answered],
                alpha=alpha,
                min_samples=minimum,
                seed=settings.seed,
                permutations=permutations,
            )
        )
        results.append(
            tests.confidence_drift(
                [float(c) for _, _, c in answers if c is not None],
                [float(p.confidence) for p in answered if p.confidence is not None],
                alpha=alpha,
                min_samples=minimum,
            )
        )
    if "calibration" in planned:
        scored = [(o, t, c) for o, t, c in answers if c is not None]
        results.append(
            tests.calibration_drift(
                [float(c) for _, _, c in scored if c is not None],
                [o == t for o, t, _ in scored],
                [float(row.confidence) for row in now_scored if row.confidence is not None],
                [row.correct for row in now_scored],
                alpha=alpha,
                min_samples=minimum,
                seed=settings.seed,
                permutations=permutations,
            )  # fmt: skip
        )
    ran = [r for r in results if r.skipped is None]
    return {
        "false_alarm_rate": settings.false_alarm_rate,
        "alpha_per_test": alpha,
        "tests_planned": planned,
        "reference": {
            "inputs": len(reference),
            "inputs_from": settings.reference or serving.trained_on,
            "answers": len(answers),
            "answers_from": settings.reference_on or "every evaluation of the serving model",
        },
        "current": {"inputs": len(current), "answers": len(answered), "labelled": len(labelled)},
        "permutations": permutations,
        "not_run": _not_run(
            reference, answers, labels_task, len(current), len(answered), len(now_scored), minimum
        ),
        "tests": [r.to_dict() for r in results],
        "drifted": [r.name for r in ran if r.drifted],
        "novel": novel,
    }


def _not_run(
    reference: Sequence[str], answers: Sequence[Any], labels_task: bool, n_current: int, n_answered: int,
    n_labelled: int, minimum: int,
) -> list[str]:  # fmt: skip
    """Why tests were left out, in words a person can act on."""
    out = []
    if not reference:
        out.append("input tests: no reference inputs (the serving model's training data is unknown)")
    elif n_current < minimum:
        out.append(f"input tests: {n_current} logged inputs in the window; {minimum} needed")
    if not answers:
        out.append("answer tests: the serving model has no stored evaluation to compare with")
    elif not labels_task:
        out.append("answer tests: the answers are free text, not labels")
    else:
        if n_answered < minimum:
            out.append(f"label and confidence tests: {n_answered} answers in the window; {minimum} needed")
        if n_labelled < minimum:
            out.append(f"calibration: {n_labelled} labelled answers in the window; {minimum} needed")
    return out


# --- the review queue ------------------------------------------------------------------------------


def _share(key: str) -> float:
    """A stable point of [0, 1) for `key`: a request is in the audit sample or out, every pass."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


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
    if _share(f"{REVIEW_SEED}:{p.request_id}") < rules.audit_share:
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
                    "served_at": utc(p.at),
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
                at=utc(row.at),
                model_version=p.model_version,
                route=p.route,
                truth=row.label,
                predicted=(p.label or p.output),
                confidence=p.confidence,
                top=top,
            )
        )
    return out


# --- alerts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    kind: str
    name: str
    severity: str
    message: str
    details: dict[str, Any]


def _burn_conditions(slos: list[dict[str, Any]]) -> list[Condition]:
    out = []
    for slo in slos:
        for check in slo["burn"]:
            if check["firing"]:
                window = f"{_span(check['long_s'])}/{_span(check['short_s'])}"
                out.append(
                    Condition(
                        "slo_burn",
                        f"{slo['slo']}:{check['severity']}:{window}",
                        check["severity"],
                        f"SLO {slo['slo']} burns its error budget {check['burn_long']:.1f}x over "
                        f"{_span(check['long_s'])} and {check['burn_short']:.1f}x over "
                        f"{_span(check['short_s'])} (limit {check['factor']:g}x)",
                        check | {"sli": slo["sli"]},
                    )
                )
    return out


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _drift_conditions(drift: dict[str, Any]) -> list[Condition]:
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


def _trigger_conditions(
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
        "fired_at": utc(alert.fired_at).isoformat(),
        "last_seen_at": utc(alert.last_seen_at).isoformat(),
        "resolved_at": utc(alert.resolved_at).isoformat() if alert.resolved_at else None,
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
    since = max((utc(a.resolved_at) for a in handled if a.resolved_at), default=None)
    return len(queries.feedback(session, model_name=model_name, since=since))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value).isoformat()
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
    now = utc(now or datetime.now(timezone.utc))
    if since is not None:
        since = utc(since)
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
            if p.route != "shadow" and p.status_code == 200 and utc(p.at) <= now
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
    burns = _burn_conditions(slos)
    drifts = _drift_conditions(drift_report)
    conditions = burns + drifts + _trigger_conditions(cfg, burns, drifts, new_labels)
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
        "minute": utc(m.minute),
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
