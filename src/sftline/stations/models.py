"""Finding a project's base model: a registered or pulled name, or an embedded alias."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sftline.errors import ModelError
from sftline.models.catalog import EMBEDDED, resolve_name
from sftline.models.materialise import MaterialisedModel, materialise_embedded
from sftline.record import queries
from sftline.record.workspace import Workspace


@dataclass(frozen=True)
class BaseModelRef:
    name: str
    kind: str
    path: Path
    content_hash: str


def save_base_model(workspace: Workspace, model: MaterialisedModel) -> None:
    """Record a pulled or registered base model (its folder, kind, file hashes)."""
    with workspace.record.session() as session:
        queries.save_base_model(
            session,
            model.name,
            kind=model.kind,
            path=str(model.path),
            source=model.source,
            content_hash=model.content_hash,
            files=model.files,
            n_parameters=model.n_parameters,
        )


def pull_base_model(
    workspace: Workspace,
    name: str,
    *,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> MaterialisedModel:
    """Materialise an embedded base model into .sftline/cache/models/ and record it."""
    model = materialise_embedded(name, workspace.project.models_cache_dir, force=force, progress=progress)
    save_base_model(workspace, model)
    return model


def find_base_model(workspace: Workspace, name: str) -> BaseModelRef:
    """The base model `name` as pulled or registered in this project. An embedded model (it ships
    inside an installed package) is pulled on first use; anything else gets a clear next step."""
    with workspace.record.session() as session:
        entry = queries.base_model_named(session, name)
        if entry is None:
            with contextlib.suppress(ModelError):  # not an embedded alias: reported below
                name = resolve_name(name)
            entry = queries.base_model_named(session, name)
        found = entry is not None and Path(entry.path).is_dir()
        if found and entry is not None:
            return BaseModelRef(entry.name, entry.kind, Path(entry.path), entry.content_hash)
    if name in EMBEDDED:
        model = pull_base_model(workspace, name)
        return BaseModelRef(model.name, model.kind, model.path, model.content_hash)
    raise ModelError(
        f"base model {name!r} is not in this project: register a local Hugging Face folder with "
        f"`sftline models base add {name} PATH` (embedded: {', '.join(sorted(EMBEDDED))})"
    )
