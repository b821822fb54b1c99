"""What changed between two lists of examples.

Examples are matched by id. Content-derived ids change with content, so an edited record shows
up as one removal and one addition; those are paired back into a change when they sit at the
same place in their source (same line, or same position in a JSON document).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sftline.data.example import Example

CONTENT_FIELDS = ("messages", "tools", "text", "label", "tags")


@dataclass(frozen=True)
class ChangedExample:
    before: Example
    after: Example
    fields: list[str]


@dataclass(frozen=True)
class VersionDiff:
    added: list[Example]
    removed: list[Example]
    changed: list[ChangedExample]

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed)}

    def summary(self) -> str:
        c = self.counts()
        return f"+{c['added']} added, -{c['removed']} removed, ~{c['changed']} changed"


def changed_fields(before: Example, after: Example) -> list[str]:
    old, new = before.content(), after.content()
    return [name for name in CONTENT_FIELDS if old[name] != new[name]]


def _place(example: Example, with_source: bool) -> tuple[object, ...]:
    p = example.provenance
    return (p.source, p.line, p.pointer) if with_source else (p.line, p.pointer)


def diff_examples(before: Sequence[Example], after: Sequence[Example]) -> VersionDiff:
    old = {e.id: e for e in before}
    new = {e.id: e for e in after}
    changed = [
        ChangedExample(old[i], new[i], changed_fields(old[i], new[i]))
        for i in new
        if i in old and old[i].content_hash != new[i].content_hash
    ]
    removed = [e for i, e in old.items() if i not in new]
    added = [e for i, e in new.items() if i not in old]

    one_source = len({e.provenance.source for e in (*removed, *added)}) <= 1 or (
        len({e.provenance.source for e in before}) == 1 and len({e.provenance.source for e in after}) == 1
    )
    removed_places = Counter(_place(e, not one_source) for e in removed)
    added_places = Counter(_place(e, not one_source) for e in added)
    unique = {
        place
        for place, count in removed_places.items()
        if count == 1 and added_places.get(place) == 1 and place[-2:] != (None, None)
    }
    if unique:
        by_place = {_place(e, not one_source): e for e in removed if _place(e, not one_source) in unique}
        paired_removed = set()
        still_added = []
        for example in added:
            place = _place(example, not one_source)
            if place in unique:
                previous = by_place[place]
                changed.append(ChangedExample(previous, example, changed_fields(previous, example)))
                paired_removed.add(previous.id)
            else:
                still_added.append(example)
        added = still_added
        removed = [e for e in removed if e.id not in paired_removed]
    return VersionDiff(added=added, removed=removed, changed=changed)
