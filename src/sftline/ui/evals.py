"""The Evaluations pages: every evaluation, and one evaluation as `sftline eval --html` shows it
(per-slice metrics with intervals, confusion matrix, reliability diagram, worst examples), against
any other evaluation on the same dataset version picked on the page.

Metrics come from the evaluation's row, as its station scored them; a comparison is computed from
both evaluations' stored outputs with `sftline.evals.compare` (the paired bootstrap of
`sftline eval compare`, all its replicates) and kept in a small LRU cache keyed by the two
evaluations (`Comparisons`), so only the first view of a pair pays for the bootstrap. The
verdict is judged on every view, from the release criteria in sftline.yaml."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable
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
CACHED_COMPARISONS = 64
"""Pairs of evaluations whose comparison is kept (a few kB each)."""


class Comparisons:
    """The comparisons of the pairs viewed last, by (baseline, candidate) evaluation id and station
    key: an evaluation's outputs never change once recorded (a purged one is gone from the record,
    and its page with it), so a kept comparison is the one a recomputation would give."""

    def __init__(self, size: int = CACHED_COMPARISONS) -> None:
        self.size = size
        self._kept: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A copy of the comparison kept under `key`, computed (outside the lock) when missing."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
        if kept is None:
            kept = compute()
            with self._lock:
                self._kept[key] = kept
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
        return copy.deepcopy(kept)


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


def evaluation_page(
    workspace: Workspace,
    session: Session,
    name: str,
    against: str | None,
    comparisons: Comparisons | None = None,
) -> dict[str, Any]:
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

        def computed() -> dict[str, Any]:
            return compare(
                load_outputs(workspace, baseline.name),
                outputs,
                contract,
                baseline_labels=baseline.settings.get("labels"),
                candidate_labels=labels,
            )

        pair = (baseline.id, baseline.key, row.id, row.key)
        comparison = (comparisons or Comparisons(0)).get(pair, computed)
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
