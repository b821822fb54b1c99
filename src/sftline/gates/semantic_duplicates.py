"""Semantic duplicates: paraphrases that share few characters ("how do i cancel my card" /
"my card, how can i cancel it"), which word shingles miss (a word swap scores ~0.75 Jaccard).

Inputs (less the shared text) are embedded with the same sentence encoder as the label-noise
gate; an example is flagged when the cosine similarity of its input to a kept representative is
at least the threshold. Representatives are taken in order, the examples no other gate blocks
first, and each example is compared with the representatives only, so a group never chains
through a third text.

Off by default: a paraphrase of a training example is often what a team wants (more ways of
asking the same thing); turn it on to thin out a set grown by paraphrasing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

import numpy as np

from sftline.data.common_text import CommonText
from sftline.data.example import Example
from sftline.gates.base import Flag, GateOutcome
from sftline.gates.label_noise import Encode

BLOCK_ROWS = 2048
"""Rows of the similarity matrix computed at once: 2,048 x 15,000 float32 is 123 MB."""


def semantic_duplicates(
    vectors: np.ndarray, order: Sequence[int], threshold: float
) -> dict[int, tuple[int, float]]:
    """member -> (representative, cosine) for unit-length `vectors`, taken in `order`: each is
    a member of the most similar earlier representative at or above `threshold`, else one."""
    candidates: dict[int, list[int]] = {}
    for start in range(0, len(vectors), BLOCK_ROWS):
        sims = vectors[start : start + BLOCK_ROWS] @ vectors.T
        for row, col in zip(*np.nonzero(sims >= threshold), strict=True):
            if start + row != col:
                candidates.setdefault(int(start + row), []).append(int(col))
    rank = {index: position for position, index in enumerate(order)}
    members: dict[int, tuple[int, float]] = {}
    for index in order:
        earlier = [j for j in candidates.get(index, ()) if rank[j] < rank[index] and j not in members]
        if earlier:
            cosines = vectors[earlier] @ vectors[index]
            best = int(cosines.argmax())
            members[index] = (earlier[best], float(cosines[best]))
    return members


class SemanticDuplicateGate:
    name = "semantic_duplicates"
    stage: Literal["duplicates"] = "duplicates"

    def __init__(self, encode: Encode, *, threshold: float = 0.95, common: CommonText | None = None) -> None:
        self.encode, self.threshold = encode, threshold
        self.common = common or CommonText()

    def check(self, examples: Sequence[Example], *, blocked: Collection[str] = ()) -> GateOutcome:
        outcome = GateOutcome(self.name)
        if len(examples) < 2:
            outcome.report = {"n_flagged": 0, "threshold": self.threshold}
            return outcome
        vectors = self.encode([self.common.compared_input(e) for e in examples])
        order = sorted(range(len(examples)), key=lambda i: (examples[i].id in blocked, i))
        members = semantic_duplicates(vectors, order, self.threshold)
        for index in sorted(members):
            representative, cosine = members[index]
            example, rep_id = examples[index], examples[representative].id
            detail = f"cosine {cosine:.3f} with {rep_id}"
            field = self.common.input_field(example)
            outcome.flags.append(Flag(example.id, "semantic_duplicate", detail, (rep_id,), field))
        outcome.report = {
            "n_flagged": len(outcome.flags),
            "threshold": self.threshold,
            "compared": "cosine of mean-pooled sentence embeddings with the kept representative",
        }
        return outcome
