"""The review queue's reads and its export (its imports are `stations.feedback.import_labels`)."""

from __future__ import annotations

from typing import Any

from sftline.record import queries
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
        "served_at": item.served_at.isoformat(),
        "labelled_at": item.labelled_at.isoformat() if item.labelled_at else None,
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
    workspace: Workspace, *, status: str = "open", model_name: str | None = None
) -> list[dict[str, Any]]:
    """The items in `status`, marked `exported` (a labelled item keeps its state), in one
    transaction: two exports at once never hand out the same open item twice."""
    with workspace.record.session() as session:
        items = queries.review_items(session, status=status, model_name=model_name)
        out = [item_json(i) | {"label": i.label or ""} for i in items]
        for item in items:
            if item.status == "open":
                item.status = "exported"
    return out
