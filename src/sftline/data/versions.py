"""Dataset versions: immutable, named by the sha256 of their canonical content.

A version's content hash covers each example's id and content, in order; the examples
themselves live in the object store as Parquet. Committing content equal to the head creates
nothing; anything else creates the next numbered version whose changelog is its diff from the
parent.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sftline.data.diff import VersionDiff, diff_examples
from sftline.data.example import Example
from sftline.data.parquet_io import read_examples, write_examples
from sftline.errors import DatasetNotFound, FrozenDatasetError
from sftline.record.schema import Dataset, DatasetVersion, FrozenGold
from sftline.record.workspace import Workspace

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_VERSION_NUMBER = re.compile(r"^v?(\d+)$")
MIN_HASH_PREFIX = 6


def check_dataset_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise DatasetNotFound(
            f"invalid dataset name {name!r}: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit"
        )
    return name


def version_content_hash(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(f"{example.id}\t{example.content_hash}\n".encode())
    return digest.hexdigest()


def version_stats(examples: Sequence[Example]) -> dict[str, Any]:
    kinds = Counter(e.kind for e in examples)
    labels = Counter(e.label for e in examples if e.label is not None)
    tags: dict[str, Counter[str]] = {}
    for example in examples:
        for key, value in example.tags.items():
            tags.setdefault(key, Counter())[value] += 1
    return {
        "kinds": dict(kinds),
        "labels": dict(labels.most_common()),
        "tags": {key: dict(counter.most_common()) for key, counter in sorted(tags.items())},
    }


def parse_ref(ref: str) -> tuple[str, str | None]:
    """`support`, `support@v2`, `support@2`, `support@<hash prefix>`, `support@latest`."""
    name, _, selector = ref.partition("@")
    check_dataset_name(name)
    return name, (selector or None)


def head(session: Session, dataset: Dataset) -> DatasetVersion | None:
    return session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset.id)
        .order_by(DatasetVersion.number.desc())
        .limit(1)
    ).first()


def get_dataset(session: Session, name: str) -> Dataset:
    dataset = session.scalars(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        known = session.scalars(select(Dataset.name).order_by(Dataset.name)).all()
        hint = f" (datasets: {', '.join(known)})" if known else "; import one with `sftline data import`"
        raise DatasetNotFound(f"no dataset named {name!r}{hint}")
    return dataset


def resolve(session: Session, ref: str) -> DatasetVersion:
    name, selector = parse_ref(ref)
    dataset = get_dataset(session, name)
    if selector in (None, "latest", "head"):
        version = head(session, dataset)
    elif match := _VERSION_NUMBER.match(selector):
        version = session.scalars(
            select(DatasetVersion).where(
                DatasetVersion.dataset_id == dataset.id, DatasetVersion.number == int(match.group(1))
            )
        ).first()
    elif len(selector) >= MIN_HASH_PREFIX and re.fullmatch(r"[0-9a-f]+", selector):
        matches = session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id, DatasetVersion.content_hash.startswith(selector))
            .order_by(DatasetVersion.number.desc())
        ).all()
        if len({v.content_hash for v in matches}) > 1:
            raise DatasetNotFound(f"{ref}: the hash prefix {selector!r} is ambiguous; give more characters")
        version = matches[0] if matches else None
    else:
        raise DatasetNotFound(
            f"{ref}: a version is v<number>, a content-hash prefix of "
            f"{MIN_HASH_PREFIX}+ hex digits, or latest"
        )
    if version is None:
        raise DatasetNotFound(f"{ref}: no such version; see `sftline data versions {name}`")
    return version


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
    check_dataset_name(name)
    dataset = session.scalars(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        dataset = Dataset(name=name)
        session.add(dataset)
        session.flush()
    current = head(session, dataset)
    parent = parent or current
    content = version_content_hash(examples)
    if current is not None and current.content_hash == content:
        return CommitResult(current, created=False, diff=None)
    frozen = session.scalars(select(FrozenGold).where(FrozenGold.dataset_id == dataset.id)).first()
    if frozen is not None:
        raise FrozenDatasetError(
            f"{name} is a frozen gold set ({frozen.content_hash[:12]}); it never changes"
        )

    diff = diff_examples(load_examples(workspace, parent), examples) if parent else None
    # The object is written (and fsynced) before the row that names it is flushed.
    object_hash = workspace.objects.put_with(lambda path: write_examples(examples, path))
    number = (
        session.scalar(select(func.max(DatasetVersion.number)).where(DatasetVersion.dataset_id == dataset.id))
        or 0
    ) + 1
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


def list_versions(session: Session, name: str) -> list[DatasetVersion]:
    dataset = get_dataset(session, name)
    return list(
        session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id)
            .order_by(DatasetVersion.number)
        )
    )


def version_summary(version: DatasetVersion) -> dict[str, Any]:
    return {
        "ref": version.ref,
        "dataset": version.dataset.name,
        "version": version.number,
        "content_hash": version.content_hash,
        "object": version.object_hash,
        "parent": f"v{version.parent.number}" if version.parent else None,
        "examples": version.n_examples,
        "created_by": version.created_by,
        "created_at": version.created_at.isoformat(),
        "changelog": version.changelog,
        "stats": version.stats,
        "provenance": version.provenance,
    }
