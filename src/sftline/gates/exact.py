"""Exact duplicates and conflicting labels, both on normalised text less the shared text
(`sftline.data.common_text`): the same query behind the same system message is a duplicate, and
so is the same query with and without it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

from sftline.data.common_text import CommonText
from sftline.data.example import Example
from sftline.gates.base import Flag, GateOutcome, answer_fields
from sftline.text.normalize import normalize_text


def _groups(keys: Sequence[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return groups


class ExactDuplicateGate:
    """Examples whose compared input and normalised answer both equal another's: all but one
    of each group, which is the earliest that no other gate blocks (else the earliest)."""

    name = "exact_duplicates"
    stage: Literal["duplicates"] = "duplicates"

    def __init__(self, common: CommonText | None = None) -> None:
        self.common = common or CommonText()

    def features(self, batch: Sequence[Example]) -> list[str]:
        return [f"{self.common.compared_input(e)}\x1f{normalize_text(e.target)}" for e in batch]

    def check(self, examples: Sequence[Example], *, blocked: Collection[str] = ()) -> GateOutcome:
        return self.decide(examples, self.features(examples), blocked=blocked)

    def decide(
        self, examples: Sequence[Example], keys: Sequence[str], *, blocked: Collection[str] = ()
    ) -> GateOutcome:
        outcome = GateOutcome(self.name)
        groups = [members for members in _groups(keys).values() if len(members) > 1]
        for members in groups:
            keeper = next((i for i in members if examples[i].id not in blocked), members[0])
            kept = examples[keeper]
            for index in members:
                if index != keeper:
                    detail = f"same as {kept.id} ({kept.provenance.location})"
                    outcome.flags.append(Flag(examples[index].id, "exact_duplicate", detail, (kept.id,)))
        outcome.report = {
            "groups": len(groups),
            "largest_group": max((len(g) for g in groups), default=0),
            "examples": [[examples[i].id for i in g] for g in groups[:20]],
        }
        return outcome


class ConflictGate:
    """The same compared input with different answers: every member is flagged."""

    name = "conflicts"

    def __init__(self, common: CommonText | None = None) -> None:
        self.common = common or CommonText()

    def features(self, batch: Sequence[Example]) -> list[tuple[str, str]]:
        return [(self.common.compared_input(e), normalize_text(e.target)) for e in batch]

    def check(self, examples: Sequence[Example]) -> GateOutcome:
        return self.decide(examples, self.features(examples))

    def decide(self, examples: Sequence[Example], keys: Sequence[tuple[str, str]]) -> GateOutcome:
        prompts = _groups([prompt for prompt, _ in keys])
        outcome = GateOutcome(self.name)
        conflicts = []
        for members in prompts.values():
            targets = {keys[i][1] for i in members}
            if len(targets) < 2:
                continue
            ids = tuple(examples[i].id for i in members)
            conflicts.append(
                {
                    "prompt": examples[members[0]].prompt[:200],
                    "members": list(ids),
                    "targets": sorted(targets)[:10],
                }
            )
            for index in members:
                others = tuple(i for i in ids if i != examples[index].id)
                detail = f"{len(targets)} different answers for this prompt (with {', '.join(others[:3])})"
                answers = answer_fields(examples[index])
                field = answers[0][0] if answers else None
                outcome.flags.append(Flag(examples[index].id, "conflicting_labels", detail, others, field))
        outcome.report = {"groups": len(conflicts), "conflicts": conflicts[:50]}
        return outcome
