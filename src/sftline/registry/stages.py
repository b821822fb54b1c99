"""The stages of a registered version and the rules between them, with no database in sight.

    candidate ──► canary ──► production ──► archived
        ▲                        │
        └──────── rollback ──────┘

At most one version of a name is in `canary` and one in `production`. A promotion into one of
those moves the version that held it aside (production → archived, canary → candidate), and
promotions into them need evidence (a `pass` release verdict) unless forced. A rollback puts back
the version that was in production before the current one and returns the current one to
`candidate`; a second rollback steps further back through the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Stage = Literal["candidate", "canary", "production", "archived"]
STAGES: tuple[Stage, ...] = ("candidate", "canary", "production", "archived")
EXCLUSIVE: dict[str, Stage] = {"production": "archived", "canary": "candidate"}
"""Stages one version holds at a time -> where the version that held it goes."""
NEEDS_EVIDENCE = frozenset({"canary", "production"})


@dataclass(frozen=True)
class Change:
    """One history entry, as far as the rules need it."""

    version: int
    action: str
    """register, promote, rollback, demote."""
    to_stage: str


def rollback_target(history: Sequence[Change], current: int | None) -> int | None:
    """The version a rollback puts back into production, or None when there is none.

    The current version's latest promotion into production is found; the version promoted into
    production last before it (and not the current one) is the target. Rollbacks themselves are
    not promotions, so rolling back twice walks back through the promotions: after v1, v2, v3
    were promoted, a rollback gives v2, and a second one v1.
    """
    promotions = [
        (position, change.version)
        for position, change in enumerate(history)
        if change.action == "promote" and change.to_stage == "production"
    ]
    if current is None:
        return promotions[-1][1] if promotions else None
    mine = [position for position, version in promotions if version == current]
    before = mine[-1] if mine else len(history)
    earlier = [version for position, version in promotions if position < before and version != current]
    return earlier[-1] if earlier else None


def check_target_stage(stage: str) -> Stage:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: use one of {', '.join(STAGES)}")
    return stage  # type: ignore[return-value]
