"""The shape every gate shares.

A gate looks at the examples and returns `Flag`s: (example id, reason, detail, field). What
happens to a flagged example is the gate's configured action, applied by the runner: `block`
quarantines it with the reason, `warn` keeps it and reports the flag, `off` skips the gate.
Every gate sees every example, so an example carries the reasons of every gate that flagged it.
A gate may also return replacement examples (PII redaction) and report data of its own
(clusters, histograms) for the gate report.

A gate's `stage` says when the runner runs it: `examples` gates first; then `duplicates` gates,
which keep one example of each group and whose `check` (or `decide`) takes `blocked`, the ids
the other gates block, so that the one they keep is one that stays when the group has one; then
`set` gates, which judge the accepted examples as a whole (balance) and flag none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sftline.data.example import Example

Stage = Literal["examples", "duplicates", "set"]


@dataclass(frozen=True, slots=True)
class Flag:
    example_id: str
    reason: str
    """A stable reason code, e.g. `near_duplicate`, `pii_email`, `label_not_in_set`."""
    detail: str = ""
    related: tuple[str, ...] = ()
    """Ids of other examples involved (the kept duplicate, the conflicting examples, ...)."""
    field: str | None = None
    """Where in the example the problem is (`text`, `label`, `messages[1]`,
    `messages[2].content`), or None when it is the whole example."""
    suggested_label: str | None = None
    """Label noise: the label the rest of the data suggests."""
    label_confidence: float | None = None
    """Label noise: how sure that suggestion is (0-1)."""


@dataclass
class GateOutcome:
    gate: str
    flags: list[Flag] = field(default_factory=list)
    replacements: dict[str, Example] = field(default_factory=dict)
    """example id -> the example to keep instead (e.g. with PII redacted)."""
    report: dict[str, Any] = field(default_factory=dict)
    """Gate-specific findings for the report (JSON-serialisable)."""


class Gate(Protocol):
    name: str

    def check(self, examples: Sequence[Example]) -> GateOutcome: ...


def answer_fields(example: Example) -> list[tuple[str, str]]:
    """(field, answer) pairs of an example: the label, or each assistant turn's content."""
    if example.messages is None:
        return [("label", example.label or "")]
    return [
        (f"messages[{i}].content", m.get("content") or "")
        for i, m in enumerate(example.messages)
        if m["role"] == "assistant" and not m.get("tool_calls")
    ]
