"""The Data pages: datasets and their versions with changelogs, holdouts (frozen gold sets),
splits, mixtures, and a gate report with its charts (the pieces of `sftline data check --html`)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from sftline.errors import DatasetNotFound
from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.reports.gates import gate_report_charts

RECENT = 20
"""Splits and mixtures listed on the Data page, newest first."""
EXAMPLES_PER_REASON = 5


def data_page(session: Session) -> dict[str, Any]:
    summaries = queries.dataset_summaries(session)
    splits = queries.splits_page(session, limit=RECENT)
    mixtures = queries.mixtures_page(session, limit=RECENT)
    gold = queries.frozen_gold_rows(session)
    refs = queries.version_refs(
        session,
        [s.source_version_id for s in splits]
        + [m.result_version_id for m in mixtures]
        + [g.version_id for g in gold],
    )
    return {
        "datasets": [
            {"name": d.name, "versions": n, "head": head, "examples": size, "created_at": d.created_at}
            for d, n, head, size in summaries
        ],
        "holdouts": [
            {"ref": refs.get(g.version_id, "?"), "hash": g.content_hash, "at": g.frozen_at} for g in gold
        ],
        "splits": [
            {
                "id": s.id,
                "source": refs.get(s.source_version_id, "?"),
                "seed": s.seed,
                "parts": s.parts,
                "at": s.created_at,
            }
            for s in splits
        ],
        "mixtures": [
            {
                "id": m.id,
                "result": refs.get(m.result_version_id, "?"),
                "components": m.components,
                "total": m.total,
                "seed": m.seed,
                "at": m.created_at,
            }
            for m in mixtures
        ],
    }


def dataset_page(session: Session, name: str) -> dict[str, Any]:
    """Every version of `name`, newest first, with its changelog and the checks that read or made it."""
    versions = queries.list_versions(session, name)
    reports = queries.gate_reports_of(session, [v.id for v in versions])
    refs = queries.version_refs(session, [r.checked_version_id for r in reports])
    by_version: dict[int, list[dict[str, Any]]] = {}
    for report in reports:
        entry = {
            "id": report.id,
            "status": report.status,
            "checked": refs.get(report.checked_version_id, "?"),
            "n_checked": report.n_checked,
            "n_quarantined": report.n_quarantined,
        }
        for version_id in {report.checked_version_id, report.result_version_id} - {None}:
            by_version.setdefault(int(version_id), []).append(entry)  # type: ignore[arg-type]
    return {
        "name": name,
        "versions": [
            {
                "ref": f"{name}@v{v.number}",
                "number": v.number,
                "hash": v.content_hash,
                "examples": v.n_examples,
                "created_by": v.created_by,
                "created_at": v.created_at,
                "changelog": json.dumps(v.changelog, indent=1, sort_keys=True, default=str)
                if v.changelog
                else "",
                "reports": by_version.get(v.id, []),
            }
            for v in reversed(versions)
        ],
    }


def examples_by_reason(flagged: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Up to `EXAMPLES_PER_REASON` flagged examples of each (gate, reason), in the report's order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in flagged:
        for reason in row.get("reasons", []):
            shown = grouped.setdefault(f"{reason.get('gate')}/{reason.get('reason')}", [])
            if len(shown) < EXAMPLES_PER_REASON:
                shown.append({**row, "detail": reason.get("detail")})
    return sorted(grouped.items())


def gate_report_page(workspace: Workspace, session: Session, report_id: int) -> dict[str, Any]:
    row = queries.gate_report_by_id(session, report_id)
    if row is None:
        raise DatasetNotFound(f"no gate report {report_id}")
    report = json.loads(workspace.objects.get_bytes(row.report_object))
    return {
        "id": row.id,
        "r": report,
        "by_reason": examples_by_reason(report.get("flagged", [])),
        **gate_report_charts(report),
    }
