"""The Registry pages: registered models, their versions and stages, the history of every stage
change with its actor and evidence, and each version's model card rendered from Markdown."""

from __future__ import annotations

import json
from typing import Any

from markdown_it import MarkdownIt
from sqlalchemy.orm import Session

from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.registry.stages import STAGES
from sftline.stations.registry import RegistryError, card_for, history_json

_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
"""Raw HTML in a card (from a dataset name or a system prompt) is shown as text, never run."""


def registry_page(session: Session) -> dict[str, Any]:
    models: dict[str, list[dict[str, Any]]] = {}
    for version in queries.all_model_versions(session):
        models.setdefault(version.model.name, []).append(
            {"ref": version.ref, "number": version.number, "stage": version.stage, "run": version.run.name}
        )
    return {"models": [{"name": name, "versions": versions} for name, versions in models.items()]}


def model_page(session: Session, name: str) -> dict[str, Any]:
    model = queries.registered_model(session, name)
    if model is None:
        raise RegistryError(f"no registered model {name!r}")
    versions = queries.model_versions(session, model)
    history = history_json(queries.stage_changes(session, model))
    for entry in history:
        entry["evidence_json"] = (
            json.dumps(entry["evidence"], indent=1, sort_keys=True) if entry["evidence"] else ""
        )
    return {
        "name": model.name,
        "versions": [
            {
                "ref": v.ref,
                "number": v.number,
                "stage": v.stage,
                "run": v.run.name,
                "hash": v.model_hash,
                "by": v.created_by,
                "at": v.created_at,
            }
            for v in versions
        ],
        "history": list(reversed(history)),
        "stages": list(STAGES),
        "production": next((v.ref for v in versions if v.stage == "production"), None),
    }


def card_page(workspace: Workspace, ref: str) -> dict[str, Any]:
    card, data = card_for(workspace, ref)
    return {"ref": data["ref"], "name": data["name"], "card": _markdown.render(card)}
