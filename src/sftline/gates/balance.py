"""Balance: examples per label and per slice tag, flagging those below a minimum share.

Balance is a property of the set, not of an example, so this gate flags no example: it reports
the table of the accepted examples (the set that trains) and the slices below `min_share` as
findings. With action `block` any finding fails the check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from sftline.data.example import Example
from sftline.gates.base import GateOutcome

UNIFORM_FRACTION = 0.2  # default threshold: a fifth of the share every value would have if balanced


class BalanceGate:
    name = "balance"
    stage: Literal["set"] = "set"
    """It judges the accepted examples: the set that trains."""

    def __init__(self, *, min_share: float | None = None, tags: Sequence[str] | None = None) -> None:
        self.min_share = min_share
        self.tags = tags

    def check(self, examples: Sequence[Example]) -> GateOutcome:
        total = len(examples)
        tables: dict[str, dict[str, int]] = {}
        labels = Counter(e.label for e in examples if e.label is not None)
        if labels:
            tables["label"] = dict(labels.most_common())
        keys = self.tags if self.tags is not None else sorted({k for e in examples for k in e.tags})
        for key in keys:
            counter = Counter(e.tags.get(key, "(untagged)") for e in examples)
            tables[f"tag:{key}"] = dict(counter.most_common())
        findings = []
        thresholds = {}
        for table, counts in tables.items():
            threshold = self.min_share if self.min_share is not None else UNIFORM_FRACTION / len(counts)
            thresholds[table] = round(threshold, 6)
            for value, count in counts.items():
                share = count / total if total else 0.0
                if share < threshold:
                    findings.append(
                        {
                            "slice": table,
                            "value": value,
                            "count": count,
                            "share": round(share, 6),
                            "reason": "below_min_share",
                        }
                    )
        return GateOutcome(
            self.name,
            report={
                "total": total,
                "min_share": self.min_share,
                "thresholds": thresholds,
                "tables": tables,
                "findings": findings,
            },
        )
