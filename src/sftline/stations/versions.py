"""Dataset versions in the Workspace: examples read from and committed to the object store.

The naming rules and hashes are in `sftline.data.versions`; the lookups in `sftline.record.queries`.

A new version is a compare-and-set on the dataset's newest version. A writer reads the head
before its work (`read_head`) and commits with `expected` set to that head's number; the commit,
in one transaction, fails with `VersionConflict` when the head is another by then. Two commits
racing for the same number meet the unique constraint on (dataset, number), and two creating the
same dataset the one on its name: the loser's transaction is rolled back and it gets the same
`VersionConflict`. Numbers are never reused or skipped, so "number N+1 is still free" is "the
head is still vN", on SQLite (one writer at a time) and on PostgreSQL (read committed) alike.
`retry_on_conflict` runs a writer's transaction again, or ends with the one line
"NAME changed meanwhile (now vN); run again".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sftline.data.diff import VersionDiff, diff_examples
from sftline.data.example import Example
from sftline.data.parquet_io import read_examples, write_examples
from sftline.data.versions import check_dataset_name, version_content_hash, version_stats
from sftline.errors import FrozenDatasetError, VersionConflict
from sftline.record import queries
from sftline.record.schema import DatasetVersion
from sftline.record.workspace import Workspace

T = TypeVar("T")

REBASE_ATTEMPTS = 10
"""Tries of a writer that re-applies its change onto whatever the head became (an append): each
loss means another writer committed, so some writer always makes progress."""
SETTLE_ATTEMPTS = 2
"""Tries of a writer whose content does not depend on the head (a plain import, a split, a mix):
the second try keeps the head it first read and succeeds only when the new head already holds the
same content (an identical import, say); otherwise the user decides, with the new head in view."""


def load_examples(workspace: Workspace, version: DatasetVersion) -> list[Example]:
    """The version's examples, from its object checked against its hash."""
    return read_examples(workspace.objects.get_bytes(version.object_hash))


def read_head(workspace: Workspace, name: str) -> DatasetVersion | None:
    """The newest version of `name` now (None when there is none), read in a session of its own;
    its relationships are not loaded (`ref` is NAME@v`number`)."""
    with workspace.record.session() as session:
        dataset = queries.dataset_named(session, name)
        return queries.head(session, dataset) if dataset is not None else None


def head_number(version: DatasetVersion | None) -> int:
    """A head's number as `commit_version` expects it: 0 for no version."""
    return version.number if version is not None else 0


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
    expected: int | None = None,
) -> CommitResult:
    """Make `examples` the head of dataset `name`, creating a version unless the head has them.

    `expected` is the number of the head the caller read before its work (0: no version yet):
    when the head is another one by now, this raises `VersionConflict` (see the module), unless
    that head already holds these examples. None takes the head as it is at commit (the check
    station's accepted version, which derives from the version it checked). A `VersionConflict`
    leaves the session's transaction to be rolled back.

    The new version's parent is the head, or `parent` when the examples derive from another
    version (a check of an older version, for example).
    """
    dataset = queries.dataset_named(session, check_dataset_name(name))
    current = queries.head(session, dataset) if dataset is not None else None
    content = version_content_hash(examples)
    if current is not None and current.content_hash == content:
        return CommitResult(current, created=False, diff=None)
    if expected is not None and head_number(current) != expected:
        raise VersionConflict(name)
    frozen = queries.frozen_gold_of(session, dataset) if dataset is not None else None
    if frozen is not None:
        raise FrozenDatasetError(
            f"{name} is a frozen gold set ({frozen.content_hash[:12]}); it never changes"
        )

    parent = parent or current
    diff = diff_examples(load_examples(workspace, parent), examples) if parent else None
    # The object is written (and fsynced) before the row that names it is flushed.
    object_hash = workspace.objects.put_with(lambda path: write_examples(examples, path))
    changelog: dict[str, Any] = {"note": note}
    if diff is not None and parent is not None:
        changelog.update(parent=f"v{parent.number}", summary=diff.summary(), **diff.counts())
    else:
        changelog.update(
            summary=f"first version: {len(examples)} examples", added=len(examples), removed=0, changed=0
        )
    try:
        version = DatasetVersion(
            dataset=dataset or queries.get_or_create_dataset(session, name),
            number=head_number(current) + 1,
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
    except IntegrityError as exc:  # another writer took this number (or created this dataset) first
        raise VersionConflict(name) from exc
    return CommitResult(version, created=True, diff=diff)


def retry_on_conflict(workspace: Workspace, attempt: Callable[[], T], *, attempts: int) -> T:
    """`attempt()` (a transaction that commits versions), run again after each `VersionConflict`
    up to `attempts` times in all; then "NAME changed meanwhile (now vN); run again"."""
    for _ in range(attempts - 1):
        try:
            return attempt()
        except VersionConflict:
            continue
    try:
        return attempt()
    except VersionConflict as conflict:
        head = read_head(workspace, conflict.name)
        now = f"now v{head.number}" if head is not None else "it has no version now"
        message = f"{conflict.name} changed meanwhile ({now}); run again"
        raise VersionConflict(conflict.name, message) from conflict
