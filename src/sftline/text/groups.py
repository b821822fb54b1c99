"""Near-duplicate groups without chains: every member is within the threshold of its group's
representative, by exact Jaccard.

The input is the verified pairs (`SimilarPairs`), from whichever search found them: in process
(`NearDuplicateIndex.similar_pairs()`) or on workers (`sftline.gates.engine`). Their union-find
clusters join verified pairs, so A and C land in one
cluster when A~B and B~C, however little A and C share: on CLINC150, 19 flags at exact Jaccard
below 0.7 with their representative. That suits a split (a chain must not straddle train and
test), not a gate that drops all but one member. Here each connected component is cut into
groups greedily: the first member not yet placed (one not in `avoid` first) represents a group
of the unplaced members whose exact Jaccard with it is at least the threshold; the next unplaced
member starts the next group. So two representatives are never near duplicates of each other
(as far as LSH found the pair), and no member is flagged for a third text's sake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from sftline.text.minhash import SimilarPairs, shingles

SCREEN_MARGIN = 0.1
"""Members whose MinHash estimate with the representative is below threshold - 0.1 are not
compared exactly: at 128 permutations the estimate's standard deviation at Jaccard 0.8 is
sqrt(0.8 x 0.2 / 128) = 0.035, so 0.1 is 2.8 of them (a pair at the threshold is skipped ~0.3%
of the time)."""


@dataclass(frozen=True, slots=True)
class NearDuplicateGroup:
    representative: int
    members: tuple[tuple[int, float], ...]
    """(index, exact Jaccard with the representative) of the other members, in index order."""


class TextAt(Protocol):
    """The texts by position; only the members of clusters are read (a list, or texts made on
    demand from examples when the search ran elsewhere)."""

    def __getitem__(self, i: int, /) -> str: ...


def near_duplicate_groups(
    found: SimilarPairs, texts: TextAt, *, avoid: Sequence[bool] | None = None
) -> list[NearDuplicateGroup]:
    """Groups of the texts `found` was searched in, sorted by representative; `avoid[i]` marks a
    text to represent a group only when no other member can."""
    options, signatures, threshold = asdict(found.shingle), found.signatures, found.threshold
    avoided = np.zeros(found.n, bool) if avoid is None else np.asarray(avoid, bool)
    groups: list[NearDuplicateGroup] = []
    sets: dict[int, set[str | tuple[str, ...]]] = {}

    def shingle_set(i: int) -> set[str | tuple[str, ...]]:
        if i not in sets:
            sets[i] = shingles(texts[i], **options)
        return sets[i]

    for component in found.clusters():
        sets.clear()  # shingle sets of one component at a time: memory stays small
        members = np.array(sorted(component, key=lambda i: (bool(avoided[i]), i)))
        while members.size > 1:
            rep, rest = int(members[0]), members[1:]
            estimate = (signatures[rest] == signatures[rep]).mean(axis=1)
            close: list[tuple[int, float]] = []
            for other in rest[estimate >= threshold - SCREEN_MARGIN].tolist():
                a, b = shingle_set(rep), shingle_set(other)
                shared, union = len(a & b), len(a | b)
                if shared >= threshold * union - 1e-9:  # the threshold itself counts
                    close.append((other, shared / union))
            if close:
                groups.append(NearDuplicateGroup(rep, tuple(sorted(close))))
            placed = {rep, *(other for other, _ in close)}
            members = np.array([m for m in members.tolist() if m not in placed], dtype=np.int64)
    return sorted(groups, key=lambda group: group.representative)
