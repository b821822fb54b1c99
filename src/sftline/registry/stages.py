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


def production_line(history: Sequence[Change]) -> list[int]:
    """The versions a rollback may return to, oldest first, the newest holder of production last.

    A version entering production (promoted, or put back by a rollback) moves to the end; one a
    rollback moved out of production (back to candidate) leaves the line: it was rolled back as
    bad, and no later rollback brings it back. A version archived because another one was
    promoted stays in the line, below the one that replaced it.
    """
    line: list[int] = []
    for change in history:
        if change.to_stage == "production":
            line = [v for v in line if v != change.version] + [change.version]
        elif change.action == "rollback":
            line = [v for v in line if v != change.version]
    return line


def rollback_target(history: Sequence[Change], current: int | None) -> int | None:
    """The version a rollback puts back into production, or None when there is none: the one
    below the current holder in `production_line` (nothing in production: the last holder).

    Promoted v1, v2, v3: a rollback gives v2 and a second one v1. Promoted v1, v2, v3, rolled
    back (v2 returns), promoted v4: a rollback gives v2 again, never the rolled-back v3.
    """
    line = [v for v in production_line(history) if v != current]
    return line[-1] if line else None


class UnknownStage(ValueError):
    """A stage name that is not one of STAGES."""


def check_target_stage(stage: str) -> Stage:
    if stage not in STAGES:
        raise UnknownStage(f"unknown stage {stage!r}: use one of {', '.join(STAGES)}")
    return stage  # type: ignore[return-value]
