"""Leakage-safe splits: a gold set, a rolling holdout and targeted holdouts.

Examples are first joined into groups that must stay on one side: near-duplicate clusters, or
examples sharing a `--group-by field:F` tag (a user, a conversation, a source document). Every
assignment is made per group, so a group never straddles train and a holdout. Choices are
deterministic for a seed: groups are ordered by sha256(seed, group key), never by Python's
salted hash or the input order.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sftline.data.common_text import find_common_text
from sftline.data.example import Example
from sftline.errors import SplitError
from sftline.text.minhash import NearDuplicateIndex, near_duplicate_clusters
from sftline.text.ngrams import NGRAM_WORDS, common_ngrams, word_ngrams

TRAIN, GOLD, ROLLING = "train", "gold", "rolling"


@dataclass(frozen=True)
class TargetedHoldout:
    """Examples whose tags match every key=value in `match`; `share` of the matching groups."""

    match: dict[str, str]
    share: float = 0.2

    @property
    def part(self) -> str:
        return "-".join(f"{k}-{v}" for k, v in self.match.items()).replace("_", "-").lower()

    @classmethod
    def parse(cls, spec: str) -> TargetedHoldout:
        """`domain=banking` or `domain=banking,lang=en:0.5` (share after the colon)."""
        filters, _, share_text = spec.partition(":")
        try:
            share = float(share_text) if share_text else 0.2
        except ValueError:
            raise SplitError(f"--targeted {spec!r}: the share after ':' must be a number") from None
        if not 0 < share <= 1:
            raise SplitError(f"--targeted {spec!r}: the share must be in (0, 1]")
        match = {}
        for item in filters.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise SplitError(f"--targeted {spec!r}: expected TAG=VALUE[,TAG=VALUE][:SHARE]")
            match[key.strip()] = value.strip()
        return cls(match, share)

    def matches(self, example: Example) -> bool:
        return all(example.tags.get(k) == v for k, v in self.match.items())


@dataclass(frozen=True)
class SplitPlan:
    gold: float = 0.1
    """Share of examples (by group) in the gold set; 0 when a frozen gold set is reused."""
    rolling_days: float | None = None
    time_field: str | None = None
    targeted: tuple[TargetedHoldout, ...] = ()
    group_by: str = "near_duplicate"
    """`near_duplicate`, `field:F` (a tag), or `none`."""
    near_threshold: float = 0.8
    seed: int = 7


@dataclass
class SplitResult:
    parts: dict[str, list[Example]]
    groups: int
    largest_group: int
    notes: list[str] = field(default_factory=list)

    def assignments(self) -> dict[str, str]:
        return {e.id: part for part, examples in self.parts.items() for e in examples}


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{key}".encode()).hexdigest()


def group_examples(
    examples: Sequence[Example], group_by: str, near_threshold: float = 0.8
) -> list[list[int]]:
    """Indices of examples that must stay together, each group in input order."""
    parent = list(range(len(examples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    if group_by == "near_duplicate":
        # The same tests the contamination gate applies, so a split's train set passes a check
        # against its own holdouts: MinHash near duplicates, and any shared 13-word run that is
        # not common phrasing, both on the input less the text most records share.
        common = find_common_text({"data": examples}, None)
        texts = [common.compared_input(e) for e in examples]
        for cluster in near_duplicate_clusters(texts, threshold=near_threshold):
            for member in cluster[1:]:
                union(cluster[0], member)
        grams = [
            word_ngrams(t.split(), NGRAM_WORDS) if len(t.split()) >= NGRAM_WORDS else set() for t in texts
        ]
        frequent = common_ngrams(Counter(gram for text_grams in grams for gram in text_grams), len(texts))
        owner: dict[bytes, int] = {}
        for index, text_grams in enumerate(grams):
            for gram in text_grams - frequent:
                union(owner.setdefault(gram, index), index)
    elif group_by.startswith("field:"):
        name = group_by.removeprefix("field:")
        first: dict[str, int] = {}
        missing = [e.id for e in examples if name not in e.tags]
        if missing:
            raise SplitError(
                f"--group-by {group_by}: {len(missing)} examples have no tag {name!r} (first: {missing[0]}); "
                f"import with --tag-field {name}"
            )
        for index, example in enumerate(examples):
            first.setdefault(example.tags[name], index)
            union(first[example.tags[name]], index)
    elif group_by != "none":
        raise SplitError(f"--group-by {group_by!r}: use near_duplicate, field:NAME or none")
    groups: dict[int, list[int]] = defaultdict(list)
    for index in range(len(examples)):
        groups[find(index)].append(index)
    return list(groups.values())


def _parse_time(value: str, example: Example, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SplitError(
            f"{example.provenance.location}: tag {name}={value!r} is not an ISO date or time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def split_examples(
    examples: Sequence[Example], plan: SplitPlan, *, frozen_gold: set[int] | None = None
) -> SplitResult:
    """Assign every example to train or one holdout. `frozen_gold`: indices that must be gold."""
    if not 0 <= plan.gold < 1:
        raise SplitError(f"--gold {plan.gold}: the gold share must be in [0, 1)")
    groups = group_examples(examples, plan.group_by, plan.near_threshold)
    key = [min(examples[i].id for i in g) for g in groups]
    part_of: dict[int, str] = {}
    notes: list[str] = []

    if frozen_gold:
        for g, members in enumerate(groups):
            if any(i in frozen_gold for i in members):
                part_of[g] = GOLD
        notes.append(
            f"gold is frozen: {len(frozen_gold)} examples match it and are held out with their groups"
        )

    if plan.rolling_days is not None:
        if not plan.time_field:
            raise SplitError("--rolling-days needs --time-field (the tag holding each example's time)")
        times: dict[int, datetime] = {}
        for g, members in enumerate(groups):
            stamps = [
                _parse_time(examples[i].tags[plan.time_field], examples[i], plan.time_field)
                for i in members
                if plan.time_field in examples[i].tags
            ]
            if stamps:
                times[g] = max(stamps)
        if not times:
            raise SplitError(f"--time-field {plan.time_field}: no example has that tag")
        cutoff = max(times.values()) - timedelta(days=plan.rolling_days)
        for g, moment in times.items():
            if g not in part_of and moment > cutoff:
                part_of[g] = ROLLING
        untimed = sum(len(groups[g]) for g in range(len(groups)) if g not in times)
        notes.append(
            f"rolling holdout: after {cutoff.isoformat()} ({plan.rolling_days:g} days)"
            + (f"; {untimed} examples without {plan.time_field} stay in the pool" if untimed else "")
        )

    for targeted in plan.targeted:
        matching = [
            g
            for g in range(len(groups))
            if g not in part_of and any(targeted.matches(examples[i]) for i in groups[g])
        ]
        if not matching:
            notes.append(f"targeted {targeted.part}: no example matches {targeted.match}")
            continue
        wanted = math.ceil(targeted.share * sum(len(groups[g]) for g in matching))
        _take(matching, groups, key, plan.seed, wanted, targeted.part, part_of)

    if plan.gold and not frozen_gold:
        by_label: dict[str, list[int]] = defaultdict(list)
        for g in range(len(groups)):
            if g not in part_of:
                by_label[examples[groups[g][0]].label or ""].append(g)
        sizes = {label: sum(len(groups[g]) for g in gs) for label, gs in by_label.items()}
        for label, wanted in _stratified_quotas(sizes, plan.gold, plan.seed).items():
            _take(by_label[label], groups, key, plan.seed, wanted, GOLD, part_of)

    parts: dict[str, list[Example]] = defaultdict(list)
    for g, members in enumerate(groups):
        for i in members:
            parts[part_of.get(g, TRAIN)].append(examples[i])
    position = {e.id: i for i, e in enumerate(examples)}
    ordered = {name: sorted(items, key=lambda e: position[e.id]) for name, items in parts.items()}
    return SplitResult(ordered, len(groups), max((len(g) for g in groups), default=0), notes)


def _stratified_quotas(sizes: dict[str, int], share: float, seed: int) -> dict[str, int]:
    """Per-label gold counts adding up to round(share * total), by largest remainder.

    Small labels that cannot each have a gold example get one in seeded order, so a gold set of
    150 labels x 4 examples at 10% still holds 60 examples across 60 labels.
    """
    total = round(share * sum(sizes.values()))
    exact = {label: share * size for label, size in sizes.items()}
    quotas = {label: int(value) for label, value in exact.items()}
    order = sorted(exact, key=lambda label: (-(exact[label] - quotas[label]), _rank(seed, label)))
    for label in order[: max(0, total - sum(quotas.values()))]:
        quotas[label] += 1
    return quotas


def _take(
    candidates: list[int],
    groups: list[list[int]],
    key: list[str],
    seed: int,
    wanted: int,
    part: str,
    part_of: dict[int, str],
) -> None:
    """Assign groups in seeded order until `wanted` examples are in `part` (never splitting a group)."""
    taken = 0
    for g in sorted(candidates, key=lambda g: _rank(seed, key[g])):
        if taken >= wanted:
            break
        part_of[g] = part
        taken += len(groups[g])


def gold_overlap(examples: Sequence[Example], gold: Sequence[Example], threshold: float = 0.8) -> set[int]:
    """Indices of `examples` that match a gold example exactly or nearly (MinHash), on the input
    less the text most records of either set share."""
    common = find_common_text({"examples": examples, "gold": gold}, None)
    texts = [common.compared_input(e) for e in examples]
    gold_texts = [t for t in (common.compared_input(g) for g in gold) if t]
    exact = set(gold_texts)
    hits = {i for i, text in enumerate(texts) if text and text in exact}
    if gold_texts:
        index = NearDuplicateIndex.build(gold_texts, threshold=threshold)
        for i, found in enumerate(index.query(texts)):
            if found and texts[i]:
                hits.add(i)
    return hits


def carve_holdout(
    examples: Sequence[Example], share: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(kept, held out): a seeded `share` of the examples, stratified by label (every label keeps
    its proportion, by largest remainder), each part in input order. A training run carves its
    calibration holdout with this when it is given none."""
    by_label: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_label[example.label or ""].append(example)
    quotas = _stratified_quotas({label: len(items) for label, items in by_label.items()}, share, seed)
    held: set[str] = set()
    for label, items in by_label.items():
        ranked = sorted(items, key=lambda e: _rank(seed, e.id))
        held.update(e.id for e in ranked[: quotas[label]])
    return [e for e in examples if e.id not in held], [e for e in examples if e.id in held]
