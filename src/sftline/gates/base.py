"""The shape every gate shares.

A gate looks at the examples that reached it and returns `Flag`s: (example id, reason, detail).
What happens to a flagged example is the gate's configured action, applied by the runner:
`block` quarantines it with the reason, `warn` keeps it and reports the flag, `off` skips the
gate. A gate may also return replacement examples (PII redaction) and report data of its own
(clusters, histograms) for the gate report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sftline.data.example import Example


@dataclass(frozen=True, slots=True)
class Flag:
    example_id: str
    reason: str
    """A stable reason code, e.g. `near_duplicate`, `pii_email`, `label_not_in_set`."""
    detail: str = ""
    related: tuple[str, ...] = ()
    """Ids of other examples involved (the kept duplicate, the conflicting examples, ...)."""


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
