"""Mixtures: a training set sampled with fixed proportions per slice.

A component is a tag filter (`domain=banking`, `dataset=general` for a rehearsal source) with a
weight; `*` takes every example no other component matched. Requested counts are the weights'
shares of `total`, rounded by largest remainder so they add up to `total` exactly. A component
with fewer examples than requested is up-sampled (every example once, then a seeded sample
with replacement; repeats get ids `<id>#2`, `#3`, ...), one with more is down-sampled without
replacement; both are recorded.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sftline.data.example import Example
from sftline.errors import MixtureError

REST = "*"
MAX_TOTAL = 10_000_000
"""The most examples a mixture may hold: ten million examples of a few hundred tokens are already
billions of tokens, and every one is held in memory while mixing."""
MAX_UPSAMPLING = 100
"""A mixture holds at most this many times its sources' examples: each example 100 times on
average is far past where repeats stop teaching anything and start overfitting."""


@dataclass(frozen=True)
class Component:
    name: str
    match: dict[str, str]
    weight: float

    def matches(self, example: Example) -> bool:
        return all(example.tags.get(k) == v for k, v in self.match.items())


def parse_weights(spec: str) -> list[Component]:
    """`domain=banking:0.3,domain=travel:0.2,*:0.5`; a filter may join tags with `&`."""
    components = []
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        name, sep, weight_text = item.rpartition(":")
        if not sep:
            raise MixtureError(f"--weights item {item!r}: expected FILTER:WEIGHT, e.g. domain=banking:0.3")
        try:
            weight = float(weight_text)
        except ValueError:
            raise MixtureError(f"--weights item {item!r}: {weight_text!r} is not a number") from None
        if not math.isfinite(weight) or weight <= 0:
            raise MixtureError(f"--weights item {item!r}: a weight is a positive number")
        match: dict[str, str] = {}
        if name != REST:
            for condition in name.split("&"):
                key, eq, value = condition.partition("=")
                if not eq or not key or not value:
                    raise MixtureError(f"--weights item {item!r}: a filter is TAG=VALUE or *")
                match[key] = value
        components.append(Component(name, match, weight))
    if not components:
        raise MixtureError("--weights is empty")
    if len({c.name for c in components}) != len(components):
        raise MixtureError("--weights names a filter twice")
    return components


def requested_counts(components: Sequence[Component], total: int) -> dict[str, int]:
    """Largest-remainder apportionment: counts proportional to weights that sum to `total`."""
    weight_sum = sum(c.weight for c in components)
    exact = {c.name: total * c.weight / weight_sum for c in components}
    counts = {name: math.floor(value) for name, value in exact.items()}
    short = total - sum(counts.values())
    for name in sorted(exact, key=lambda n: (-(exact[n] - counts[n]), n))[:short]:
        counts[name] += 1
    return counts


@dataclass
class MixtureResult:
    examples: list[Example]
    report: list[dict[str, Any]]


def mix(
    examples: Sequence[Example], components: Sequence[Component], *, total: int, seed: int
) -> MixtureResult:
    check_total(total, len(examples))
    pools: dict[str, list[Example]] = {c.name: [] for c in components}
    filtered = [c for c in components if c.name != REST]
    rest = next((c for c in components if c.name == REST), None)
    for example in examples:
        owner = next((c for c in filtered if c.matches(example)), rest)
        if owner is not None:
            pools[owner.name].append(example)
    counts = requested_counts(components, total)
    rng = random.Random(seed)
    chosen: list[Example] = []
    report: list[dict[str, Any]] = []
    for component in components:
        pool, wanted = pools[component.name], counts[component.name]
        if wanted and not pool:
            raise MixtureError(f"mixture component {component.name!r} matches no example")
        if wanted <= len(pool):
            picked = rng.sample(pool, wanted)
            mode = "down-sampled" if wanted < len(pool) else "all"
        else:
            extra = [rng.choice(pool) for _ in range(wanted - len(pool))]
            picked = list(pool) + _repeat_ids(pool, extra)
            mode = "up-sampled"
        chosen += picked
        report.append(
            {
                "component": component.name,
                "weight": component.weight,
                "available": len(pool),
                "requested": wanted,
                "achieved": len(picked),
                "mode": mode,
                "factor": round(len(picked) / len(pool), 4) if pool else 0.0,
            }
        )
    final = len(chosen)
    for row in report:
        row["requested_share"] = round(row["requested"] / total, 6) if total else 0.0
        row["achieved_share"] = round(row["achieved"] / final, 6) if final else 0.0
    rng.shuffle(chosen)
    return MixtureResult(chosen, report)


def check_total(total: int, available: int) -> None:
    """Refuse a total below 1, above MAX_TOTAL or above MAX_UPSAMPLING times the sources' size."""
    if total < 1:
        raise MixtureError(f"a mixture holds at least one example, not {total}")
    ceiling = min(MAX_TOTAL, MAX_UPSAMPLING * available)
    if total > ceiling:
        raise MixtureError(
            f"--total {total:,} is above the ceiling of {ceiling:,} for {available:,} source examples "
            f"(at most {MAX_UPSAMPLING}x the sources and {MAX_TOTAL:,} in all)"
        )


def _repeat_ids(pool: Sequence[Example], extra: Sequence[Example]) -> list[Example]:
    seen = Counter(e.id for e in pool)
    repeated = []
    for example in extra:
        seen[example.id] += 1
        repeated.append(replace(example, id=f"{example.id}#{seen[example.id]}"))
    return repeated
