"""Dataset versions in the Workspace: examples read from and committed to the object store.

The naming rules and hashes are in `sftline.data.versions`; the lookups in `sftline.record.queries`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from sftline.data.diff import VersionDiff, diff_examples
from sftline.data.example import Example
from sftline.data.parquet_io import read_examples, write_examples
from sftline.data.versions import version_content_hash, version_stats
from sftline.errors import FrozenDatasetError
from sftline.record import queries
from sftline.record.schema import DatasetVersion
from sftline.record.workspace import Workspace


def load_examples(workspace: Workspace, version: DatasetVersion) -> list[Example]:
    return read_examples(workspace.objects.open_path(version.object_hash))


@dataclass(frozen=True)
class CommitResult:
    version: DatasetVersion
    created: bool
    diff: VersionDiff | None
    """The diff from the parent when a version was created (None for a first version)."""


def commit_version(
    workspace: Workspace,
    session: Session,
    name: str,
    examples: Sequence[Example],
    *,
    created_by: str,
    provenance: dict[str, Any],
    note: str,
    parent: DatasetVersion | None = None,
) -> CommitResult:
    """Make `examples` the head of dataset `name`, creating a version unless the head has them.

    The new version's parent is the head, or `parent` when the examples derive from another
    version (a check of an older version, for example).
    """
    dataset = queries.get_or_create_dataset(session, name)
    current = queries.head(session, dataset)
    parent = parent or current
    content = version_content_hash(examples)
    if current is not None and current.content_hash == content:
        return CommitResult(current, created=False, diff=None)
    frozen = queries.frozen_gold_of(session, dataset)
    if frozen is not None:
        raise FrozenDatasetError(
            f"{name} is a frozen gold set ({frozen.content_hash[:12]}); it never changes"
        )

    diff = diff_examples(load_examples(workspace, parent), examples) if parent else None
    # The object is written (and fsynced) before the row that names it is flushed.
    object_hash = workspace.objects.put_with(lambda path: write_examples(examples, path))
    number = queries.next_version_number(session, dataset)
    changelog: dict[str, Any] = {"note": note}
    if diff is not None and parent is not None:
        changelog.update(parent=f"v{parent.number}", summary=diff.summary(), **diff.counts())
    else:
        changelog.update(
            summary=f"first version: {len(examples)} examples", added=len(examples), removed=0, changed=0
        )
    version = DatasetVersion(
        dataset=dataset,
        number=number,
        content_hash=content,
        object_hash=object_hash,
        parent=parent,
        n_examples=len(examples),
        stats=version_stats(examples),
        provenance=provenance,
        changelog=changelog,
        created_by=created_by,
    )
    session.add(version)
    session.flush()
    return CommitResult(version, created=True, diff=diff)
