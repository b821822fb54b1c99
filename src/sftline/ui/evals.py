"""The Evaluations pages: every evaluation, and one evaluation as `sftline eval --html` shows it
(per-slice metrics with intervals, confusion matrix, reliability diagram, worst examples), against
any other evaluation on the same dataset version picked on the page.

Metrics come from the evaluation's row, as its station scored them; a comparison is computed now
from both evaluations' stored outputs with `sftline.evals.compare`, the verdict from the release
criteria in sftline.yaml."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from sftline.evals.compare import compare, failing_slices, verdict, worst_examples
from sftline.evals.scoring import confusion, outcomes
from sftline.record import queries
from sftline.record.schema import Evaluation
from sftline.record.workspace import Workspace
from sftline.reports.eval import is_rate, number, section_view
from sftline.reports.svg import IntervalBar, interval_chart
from sftline.stations.evaluate import load_outputs
from sftline.ui.format import Page

COMPARABLE = 50
"""Evaluations offered to compare with (the newest on the same dataset version)."""


def evals_page(session: Session, page: Page) -> dict[str, Any]:
    rows, total = queries.evaluations_page(session, offset=page.offset, limit=page.size)
    refs = queries.version_refs(session, [e.dataset_version_id for e in rows])
    return {
        "evaluations": [
            {
                "name": e.name,
                "model": e.model,
                "dataset": refs.get(e.dataset_version_id, "?"),
                "task": e.task,
                "n": e.n_examples,
                "accuracy": number(
                    "accuracy", (e.metrics.get("overall", {}).get("accuracy") or {}).get("value")
                ),
                "created_at": e.created_at,
            }
            for e in rows
        ],
        "page": page.counted(total),
    }


def _summary(row: Evaluation) -> dict[str, Any]:
    return {"model": row.model, "evaluation": row.name, "metrics": row.metrics}


def evaluation_page(workspace: Workspace, session: Session, name: str, against: str | None) -> dict[str, Any]:
    """One evaluation as a report section; with `against`, that evaluation is the baseline and the
    release verdict is given (what `sftline eval compare` reports)."""
    row = queries.evaluation_named(session, name)
    contract = workspace.project.config.contract
    outputs = load_outputs(workspace, row.name)
    labels = row.settings.get("labels")
    section: dict[str, Any] = {
        "evaluation": row.name,
        "model": row.model,
        "dataset": row.dataset_version.ref,
        "task": row.task,
        "n": row.n_examples,
        "created_at": row.created_at.isoformat(timespec="seconds"),
        "seconds": row.seconds,
        "settings": {k: v for k, v in row.settings.items() if k != "labels"},
        "metrics": row.metrics,
    }
    if contract.output.kind == "labels":
        section["confusion"] = confusion(outcomes(outputs, contract, labels))
    checks = None
    if against:
        baseline = queries.evaluation_named(session, against)
        baseline_outputs = load_outputs(workspace, baseline.name)
        comparison = compare(
            baseline_outputs,
            outputs,
            contract,
            baseline_labels=baseline.settings.get("labels"),
            candidate_labels=labels,
        )
        comparison.update(baseline=baseline.model, candidate=row.model)
        comparison["verdict"] = verdict(comparison, row.metrics, workspace.project.config.release)
        checks = comparison["verdict"]["checks"]
        section["baseline"], section["comparison"] = _summary(baseline), comparison
    section["worst"] = worst_examples(outputs, contract, failing_slices(row.metrics, checks))
    others = [
        {"name": e.name, "model": e.model}
        for e in queries.evaluations_of_version(session, row.dataset_version_id, limit=COMPARABLE)
        if e.name != row.name
    ]
    return {
        "name": row.name,
        "against": against,
        "others": others,
        "v": section_view(section),
        "overall_chart": overall_chart(section),
    }


def overall_chart(section: dict[str, Any]) -> str:
    """Every rate metric overall with its 95% interval, the baseline's value as a diamond."""
    baseline = (section.get("baseline") or {}).get("metrics", {}).get("overall", {})
    rows = [
        IntervalBar(
            metric,
            est.get("value"),
            est.get("low"),
            est.get("high"),
            (baseline.get(metric) or {}).get("value"),
        )
        for metric, est in section["metrics"].get("overall", {}).items()
        if is_rate(metric)
    ]
    return interval_chart(rows, marker_label=section["baseline"]["model"] if baseline else "")
