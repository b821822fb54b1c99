"""The review queue's reads and its export (its imports are `stations.feedback.import_labels`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sftline.record import queries
from sftline.record.schema import as_utc
from sftline.record.workspace import Workspace


def item_json(item: Any) -> dict[str, Any]:
    return {
        "request_id": item.request_id,
        "model": item.model_name,
        "model_version": item.model_version,
        "reason": item.reason,
        "status": item.status,
        "prompt": item.prompt,
        "output": item.output,
        "confidence": item.confidence,
        "label": item.label,
        "reviewer": item.reviewer,
        "served_at": as_utc(item.served_at).isoformat(),
        "labelled_at": as_utc(item.labelled_at).isoformat() if item.labelled_at else None,
    }


def list_items(
    workspace: Workspace,
    *,
    status: str | None = None,
    model_name: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    with workspace.record.session() as session:
        return [
            item_json(i)
            for i in queries.review_items(session, status=status, model_name=model_name, limit=limit)
        ]


def export_items(
    workspace: Workspace,
    write: Callable[[list[dict[str, Any]]], None],
    *,
    status: str = "open",
    model_name: str | None = None,
) -> list[dict[str, Any]]:
    """Hand the items in `status` to `write` (the reviewers' file) and mark the open ones
    exported, in one transaction: the file is written before anything is marked, so a file that
    cannot be written leaves the queue as it was, and two exports at once never hand out the
    same open item twice (each keeps only the items its own UPDATE claimed)."""
    with workspace.record.session() as session:
        items = queries.review_items(session, status=status, model_name=model_name)
        if status == "open":
            claimed = queries.claim_review_items(session, [i.id for i in items])
            items = [i for i in items if i.id in claimed]
        out = [item_json(i) | {"label": i.label or ""} for i in items]
        write(out)
    return out
