"""Finding a project's base model: a registered or pulled name, or an embedded alias."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from sftline.errors import ModelError
from sftline.models.catalog import resolve_name
from sftline.record import queries
from sftline.record.workspace import Workspace


@dataclass(frozen=True)
class BaseModelRef:
    name: str
    kind: str
    path: Path
    content_hash: str


def find_base_model(workspace: Workspace, name: str) -> BaseModelRef:
    """The base model `name` as pulled or registered in this project, or a clear next step."""
    with workspace.record.session() as session:
        entry = queries.base_model_named(session, name)
        if entry is None:
            with contextlib.suppress(ModelError):  # not an embedded alias: reported below
                name = resolve_name(name)
            entry = queries.base_model_named(session, name)
        if entry is None or not Path(entry.path).is_dir():
            raise ModelError(
                f"base model {name!r} is not in this project; run `sftline models pull {name}` "
                "(or `sftline models register NAME PATH` for a local folder)"
            )
        return BaseModelRef(entry.name, entry.kind, Path(entry.path), entry.content_hash)
