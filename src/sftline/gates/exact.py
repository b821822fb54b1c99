"""Exact duplicates and conflicting labels, both on normalised text."""

from __future__ import annotations

from collections.abc import Sequence

from sftline.data.example import Example
from sftline.gates.base import Flag, GateOutcome
from sftline.text.normalize import normalize_text


def _groups(keys: Sequence[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return groups


class ExactDuplicateGate:
    """Examples whose normalised prompt and answer both equal an earlier example's."""

    name = "exact_duplicates"

    def features(self, batch: Sequence[Example]) -> list[str]:
        return [f"{normalize_text(e.prompt)}\x1f{normalize_text(e.target)}" for e in batch]

    def check(self, examples: Sequence[Example]) -> GateOutcome:
        return self.decide(examples, self.features(examples))

    def decide(self, examples: Sequence[Example], keys: Sequence[str]) -> GateOutcome:
        outcome = GateOutcome(self.name)
        groups = [members for members in _groups(keys).values() if len(members) > 1]
        for members in groups:
            keeper = examples[members[0]]
            for index in members[1:]:
                detail = f"same as {keeper.id} ({keeper.provenance.location})"
                outcome.flags.append(Flag(examples[index].id, "exact_duplicate", detail, (keeper.id,)))
        outcome.report = {
            "groups": len(groups),
            "largest_group": max((len(g) for g in groups), default=0),
            "examples": [[examples[i].id for i in g] for g in groups[:20]],
        }
        return outcome


class ConflictGate:
    """The same normalised prompt with different answers: every member is flagged."""

    name = "conflicts"

    def features(self, batch: Sequence[Example]) -> list[tuple[str, str]]:
        return [(normalize_text(e.prompt), normalize_text(e.target)) for e in batch]

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
                outcome.flags.append(Flag(examples[index].id, "conflicting_labels", detail, others))
        outcome.report = {"groups": len(conflicts), "conflicts": conflicts[:50]}
        return outcome
