"""The shape of free-text answers, read from the data: JSON objects, or a closed set of labels.

A contract that says `kind: text` checks nothing. When nearly every answer is a JSON object (an
intent router's `{"intent": ...}`), or one of a few labels, the few that are not are almost
always mistakes (a stray sentence, a typo'd label); the format gate infers the shape and flags
them, saying so in the report.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

INFERRED_SHARE = 0.95
"""The share of answers that must have one shape for the rest to be flagged against it."""
MIN_ANSWERS = 20
"""Fewer answers than this say nothing about a shape."""
LABEL_MIN_COUNT = 3
"""An answer given at least this often is a label; rarer ones (a typo, a one-off sentence) are not."""


def _json_object(answer: str) -> dict[str, Any] | None:
    try:
        value = json.loads(answer)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class InferredOutput:
    """The answers' common shape and how many of them have it."""

    kind: Literal["json_object", "labels"]
    share: float
    """Share of the answers that have the shape."""
    answers: int
    keys: tuple[str, ...] = ()
    """For JSON objects: the keys at least INFERRED_SHARE of the objects have."""
    labels: frozenset[str] = frozenset()

    def problem(self, answer: str) -> str | None:
        """Why `answer` breaks the shape, or None."""
        if self.kind == "labels":
            if answer.strip() in self.labels:
                return None
            labels = f"{len(self.labels)} labels {self.share:.1%} of the answers are"
            return f"{answer.strip()[:60]!r} is not one of the {labels}"
        value = _json_object(answer)
        if value is None:
            return f"not a JSON object, as {self.share:.1%} of the answers are"
        missing = [key for key in self.keys if key not in value]
        if missing:
            return f"no key {missing[0]!r}, which {INFERRED_SHARE:.0%}+ of the JSON answers have"
        return None

    @property
    def why(self) -> str:
        if self.kind == "labels":
            what = f"are one of {len(self.labels)} labels"
        else:
            keys = f" (keys: {', '.join(self.keys)})" if self.keys else ""
            what = f"are JSON objects{keys}"
        return (
            f"the contract's output is free text, but {self.share:.1%} of the {self.answers:,} answers "
            f"{what}: the answers that break that shape are flagged"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "share": round(self.share, 4),
            "answers": self.answers,
            "keys": list(self.keys),
            "labels": len(self.labels),
        }


def infer_output(answers: Sequence[str]) -> InferredOutput | None:
    """JSON objects when at least INFERRED_SHARE of the answers are; else a label set when that
    share of the answers are labels (given at least LABEL_MIN_COUNT times); else None."""
    n = len(answers)
    if n < MIN_ANSWERS:
        return None
    objects = [value for value in map(_json_object, answers) if value is not None]
    if len(objects) >= INFERRED_SHARE * n:
        key_counts = Counter(key for value in objects for key in value)
        keys = tuple(sorted(k for k, c in key_counts.items() if c >= INFERRED_SHARE * len(objects)))
        return InferredOutput("json_object", len(objects) / n, n, keys=keys)
    counts = Counter(answer.strip() for answer in answers)
    labels = frozenset(label for label, count in counts.items() if count >= LABEL_MIN_COUNT)
    covered = sum(counts[label] for label in labels)
    if len(labels) >= 2 and covered >= INFERRED_SHARE * n:
        return InferredOutput("labels", covered / n, n, labels=labels)
    return None
