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
from typing import TYPE_CHECKING, Any

from sftline.data.example import Example
from sftline.errors import DatasetNotFound

if TYPE_CHECKING:
    from sftline.record.schema import DatasetVersion

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
"""A dataset (or model) name, matched with `fullmatch` (`$` with `match` lets "name\\n" through)."""
VERSION_NUMBER = re.compile(r"v?(\d+)")
MIN_HASH_PREFIX = 6


def check_dataset_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
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
