"""Splits are deterministic and leakage-safe; mixtures hit their proportions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftline.data.example import Example, Provenance
from sftline.data.mixtures import mix, parse_weights, requested_counts
from sftline.data.splits import SplitPlan, TargetedHoldout, split_examples
from sftline.errors import MixtureError, SplitError
from sftline.text.minhash import near_duplicate_clusters
from sftline.text.normalize import normalize_text

CLINC = Path(__file__).resolve().parents[3] / "examples" / "clinc150"


def clinc_examples(count: int = 600) -> list[Example]:
    data = json.loads((CLINC / "data_full.json").read_text())
    domains = {
        label: d for d, labels in json.loads((CLINC / "domains.json").read_text()).items() for label in labels
    }
    rows = data["train"][:: len(data["train"]) // count][:count]
    return [
        Example(
            id=f"x{i}",
            provenance=Provenance("data_full.json", "0" * 64, "pairs", i + 1),
            text=text,
            label=label,
            tags={"domain": domains.get(label, "none"), "user": f"u{i % 50}"},
        )
        for i, (text, label) in enumerate(rows)
    ]


def with_near_duplicates(examples: list[Example]) -> list[Example]:
    planted = []
    for i, original in enumerate(examples[:40]):
        text = (original.text or "") + ("!" if i % 2 else "?")
        planted.append(
            Example(
                id=f"dup{i}",
                provenance=original.provenance,
                text=text,
                label=original.label,
                tags=original.tags,
            )
        )
    return examples + planted


def test_split_is_deterministic_for_a_seed_and_changes_with_it() -> None:
    examples = clinc_examples()
    plan = SplitPlan(gold=0.1, seed=7)
    first = split_examples(examples, plan).assignments()
    assert first == split_examples(examples, plan).assignments()
    assert first != split_examples(examples, SplitPlan(gold=0.1, seed=8)).assignments()
    assert set(first.values()) == {"train", "gold"}
    gold = sum(1 for part in first.values() if part == "gold")
    assert abs(gold - 60) <= 15


def test_near_duplicates_never_straddle_train_and_gold() -> None:
    examples = with_near_duplicates(clinc_examples())
    result = split_examples(examples, SplitPlan(gold=0.3, seed=3))
    where = result.assignments()
    clusters = near_duplicate_clusters([e.prompt for e in examples])
    planted_pairs = [(f"x{i}", f"dup{i}") for i in range(40)]
    cluster_ids = [{examples[i].id for i in c} for c in clusters]
    assert all(any({a, b} <= c for c in cluster_ids) for a, b in planted_pairs)
    for cluster in cluster_ids:
        assert len({where[i] for i in cluster}) == 1
    train = result.parts["train"]
    gold = result.parts["gold"]
    assert not {normalize_text(e.prompt) for e in train} & {normalize_text(e.prompt) for e in gold}
    assert not near_duplicate_clusters_across(train, gold)


def near_duplicate_clusters_across(left: list[Example], right: list[Example]) -> list[list[int]]:
    texts = [e.prompt for e in left] + [e.prompt for e in right]
    return [c for c in near_duplicate_clusters(texts) if min(c) < len(left) <= max(c)]


def test_group_by_field_keeps_a_user_on_one_side() -> None:
    result = split_examples(clinc_examples(), SplitPlan(gold=0.2, group_by="field:user", seed=1))
    users: dict[str, set[str]] = {}
    for part, examples in result.parts.items():
        for e in examples:
            users.setdefault(e.tags["user"], set()).add(part)
    assert all(len(parts) == 1 for parts in users.values())
    with pytest.raises(SplitError, match="no tag 'ticket'"):
        split_examples(clinc_examples(), SplitPlan(group_by="field:ticket"))


def test_rolling_and_targeted_holdouts() -> None:
    examples = [
        Example(
            id=f"t{i}",
            provenance=Provenance("f", "0" * 64, "classification", i),
            text=f"query number {i} " * 3,
            label="a",
            tags={"created_at": f"2026-10-{i + 1:02d}", "domain": "banking" if i % 3 == 0 else "travel"},
        )
        for i in range(30)
    ]
    plan = SplitPlan(
        gold=0.2,
        rolling_days=7,
        time_field="created_at",
        targeted=(TargetedHoldout.parse("domain=banking:0.5"),),
        group_by="none",
        seed=1,
    )
    result = split_examples(examples, plan)
    rolling = {e.id for e in result.parts["rolling"]}
    assert rolling == {f"t{i}" for i in range(23, 30)}  # after 2026-10-23, the newest 7 days
    targeted = result.parts["domain-banking"]
    assert all(e.tags["domain"] == "banking" for e in targeted)
    assert len(targeted) == 4  # ceil(0.5 * 7 banking examples left after the rolling window)
    assert sum(len(p) for p in result.parts.values()) == 30
    with pytest.raises(SplitError, match="--time-field"):
        split_examples(examples, SplitPlan(rolling_days=7))


def test_mixture_counts_are_within_one_example_of_the_request() -> None:
    examples = clinc_examples()
    components = parse_weights("domain=banking:0.3,domain=travel:0.2,*:0.5")
    for total in (100, 333, 1000):
        result = mix(examples, components, total=total, seed=7)
        assert len(result.examples) == total
        by_domain = {"domain=banking": 0, "domain=travel": 0, "*": 0}
        for e in result.examples:
            key = f"domain={e.tags['domain']}"
            by_domain[key if key in by_domain else "*"] += 1
        for row in result.report:
            assert abs(by_domain[row["component"]] - row["weight"] * total) <= 1
            assert row["achieved"] == by_domain[row["component"]]
    up = {r["component"]: r for r in mix(examples, components, total=1000, seed=7).report}
    assert up["domain=banking"]["mode"] == "up-sampled" and up["domain=banking"]["factor"] > 1
    ids = [e.id for e in mix(examples, components, total=1000, seed=7).examples]
    assert len(ids) == len(set(ids))
    assert (
        mix(examples, components, total=333, seed=7).examples
        == mix(examples, components, total=333, seed=7).examples
    )


def test_weights_parsing_and_apportionment() -> None:
    assert requested_counts(parse_weights("a=1:1,a=2:1,a=3:1"), 10) == {"a=1": 4, "a=2": 3, "a=3": 3}
    for bad in ("banking", "domain=banking:x", "domain=banking:-1", ""):
        with pytest.raises(MixtureError):
            parse_weights(bad)
