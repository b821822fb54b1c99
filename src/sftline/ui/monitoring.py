"""The Monitoring page: a `sftline monitor` report (the newest, or one picked from the list of
past passes) as panels — SLOs with each burn-rate rule, drift tests with reference-against-now
charts and the clusters of novel inputs — beside what the record holds now: alerts (firing, and
the resolved or handled ones page by page) and the review queue page by page, where a signed-in
admin labels an item (`review_label`).

A report is read as `sftline monitor` stored it (its object), never recomputed; the list of past
reports reads only the headline numbers kept inline on each row (`stations.monitor.summary_of`).
The serving page shows the same SLO and firing-alert panel (`monitoring.html`) for the newest
report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from sftline.errors import SftlineError
from sftline.monitoring.labels import LabelRow, Rejected
from sftline.record import queries
from sftline.record.schema import MonitorReport
from sftline.record.workspace import Workspace
from sftline.reports.monitor import drift_charts
from sftline.stations.feedback import LabelImport, known_labels, record_labels
from sftline.ui.format import Page

REPORTS_PAGE = 20
"""Past reports listed per page."""
ALERTS_PAGE = 20
"""Resolved or handled alerts per page (the firing ones are always all shown)."""
REVIEW_PAGE = 25
"""Review items per page, each with its label form."""
QUEUES = {
    "to label": (("open", "exported"), False),
    "labelled": (("labelled",), True),
    "all": (None, True),
}
"""The review queue's views: statuses shown and whether newest first (what still waits is
shown oldest first, as a queue is worked through)."""
LABELLABLE = ("open", "exported")
MAX_LABEL_CHARS = 4_000
"""A free-text label (a chat model's corrected answer) is refused beyond this."""


class ReviewItemNotFound(SftlineError):
    pass


@dataclass(frozen=True)
class MonitoringQuery:
    """What the page shows: the model, a report (None: the newest), a page of each list."""

    model: str | None = None
    report: int | None = None
    reports_page: int = 1
    alerts_page: int = 1
    review_page: int = 1
    queue: str = "to label"

    def url(self, **changed: Any) -> str:
        """This page's address with `changed` settings (a pager's base, the form's return)."""
        values = {**self.__dict__, **changed}
        params = {k: v for k, v in values.items() if v not in (None, "", 1) or k == "queue"}
        return "/monitoring?" + urlencode(params)


def stored(workspace: Workspace, row: MonitorReport) -> dict[str, Any]:
    """A report as its pass stored it."""
    return dict(json.loads(workspace.objects.get_bytes(row.report_object)))


def report_panels(report: dict[str, Any]) -> dict[str, Any]:
    """What `monitoring.html` draws of a report: the SLO rows (one per burn-rate rule), the
    headline SLIs and the alerts firing when the pass ran."""
    overall = report["slis"]["overall"]
    feedback = overall.get("feedback") or {}
    return {
        "model": report["model"],
        "at": report["at"],
        "since": report["since"],
        "serving": report.get("serving") or {},
        "overall": overall,
        "accuracy": (feedback.get("accuracy") or {}) if feedback.get("labelled") else {},
        "labelled": feedback.get("labelled") or 0,
        "slos": report.get("slos") or [],
        "firing": (report.get("alerts") or {}).get("firing") or [],
    }


def newest_panels(workspace: Workspace, session: Session) -> dict[str, Any] | None:
    """The serving page's monitoring panel: the newest report's, or None before any pass."""
    rows = queries.monitor_reports(session, limit=1)
    return report_panels(stored(workspace, rows[0])) | {"id": rows[0].id} if rows else None


def monitoring_page(workspace: Workspace, session: Session, query: MonitoringQuery) -> dict[str, Any]:
    model = query.model
    if query.report is not None:
        row = queries.monitor_report_by_id(session, query.report)
        if row is None:
            raise SftlineError(f"no monitoring report #{query.report}")
        model = model or row.model_name
    else:
        newest = queries.monitor_reports(session, model_name=model, limit=1)
        row = newest[0] if newest else None
        model = model or (row.model_name if row else workspace.project.config.effective_model_name)
    query = MonitoringQuery(**{**query.__dict__, "model": model})
    reports_page = Page.of(query.reports_page, REPORTS_PAGE)
    reports, n_reports = queries.monitor_reports_page(
        session, model_name=model, offset=reports_page.offset, limit=reports_page.size
    )
    alerts_page = Page.of(query.alerts_page, ALERTS_PAGE)
    firing = queries.alerts(session, model_name=model, status="firing")
    settled, n_settled = queries.alerts_page(
        session,
        model_name=model,
        statuses=("resolved", "handled"),
        offset=alerts_page.offset,
        limit=alerts_page.size,
    )
    queue = query.queue if query.queue in QUEUES else "to label"
    statuses, newest_first = QUEUES[queue]
    review_page = Page.of(query.review_page, REVIEW_PAGE)
    items, n_items = queries.review_items_page(
        session,
        model_name=model,
        statuses=statuses,
        newest_first=newest_first,
        offset=review_page.offset,
        limit=review_page.size,
    )
    report = stored(workspace, row) if row is not None else None
    drift = (report or {}).get("drift") or {}
    return {
        "model": model,
        "query": query,
        "report_id": row.id if row is not None else None,
        "mon": report_panels(report) | {"id": row.id} if report is not None and row is not None else None,
        "drift": drift,
        "drift_charts": drift_charts(drift.get("tests") or []),
        "review_summary": (report or {}).get("review"),
        "reports": reports,
        "reports_pager": reports_page.counted(n_reports),
        "firing": firing,
        "settled": settled,
        "alerts_pager": alerts_page.counted(n_settled),
        "queue": queue,
        "queues": list(QUEUES),
        "counts": queries.review_counts(session, model_name=model),
        "items": items,
        "review_pager": review_page.counted(n_items),
        "labellable": LABELLABLE,
    }


def label_review_item(workspace: Workspace, item_id: int, label: str, actor: str) -> LabelImport:
    """Record `label` for review item `item_id` as the dashboard's reviewer `actor`, through the
    same `record_labels` as `sftline review import` (the item becomes `labelled`). A label
    outside the model's label set, an empty one or an item already labelled is rejected, with
    the reason, and nothing is recorded. The feedback dataset is not rebuilt here (its gates take
    minutes): `sftline feedback import` or `sftline retrain` builds it from every label."""
    with workspace.record.session() as session:
        item = queries.review_item_by_id(session, item_id)
        if item is None:
            raise ReviewItemNotFound(f"no review item #{item_id}")
        request_id, model_name, status = item.request_id, item.model_name, item.status
    origin = f"dashboard:review_item/{item_id}"
    label = label.strip()
    allowed = known_labels(workspace, model_name)
    problem: tuple[str, str] | None = None
    if status not in LABELLABLE:
        problem = ("already_labelled", f"review item #{item_id} is {status} already")
    elif not label:
        problem = ("empty_label", "no label given")
    elif allowed and label not in allowed:
        problem = ("unknown_label", f"{label[:80]!r} is not in the contract's label set")
    elif len(label) > MAX_LABEL_CHARS:
        problem = ("label_too_long", f"{len(label):,} characters (at most {MAX_LABEL_CHARS:,})")
    given = [] if problem else [LabelRow(request_id, label, origin)]
    rejected = [Rejected(origin, problem[0], "label", problem[1])] if problem else []
    return record_labels(
        workspace, origin, given, rejected, source="review", model_name=model_name, actor=actor, build=False
    )
