"""What every page shares: pages of a long list, and times and numbers as the pages write them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

PAGE_SIZE = 50
"""Rows per page of every long list (runs, evaluations, station runs, predictions)."""


@dataclass(frozen=True)
class Page:
    """Page `number` (from 1) of a list of `total` rows, `size` rows a page."""

    number: int
    total: int
    size: int = PAGE_SIZE

    @classmethod
    def of(cls, requested: int | None, size: int = PAGE_SIZE) -> Page:
        return cls(max(1, requested or 1), 0, size)

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    def counted(self, total: int) -> Page:
        return Page(self.number, total, self.size)


def when(moment: datetime | None) -> str:
    """A recorded moment in UTC to the second (SQLite returns it without its zone)."""
    if moment is None:
        return "–"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def short(digest: str | None, length: int = 12) -> str:
    return (digest or "")[:length]


def figure(value: Any, digits: int = 4) -> str:
    """A number to `digits` significant digits with thousands separators; "–" for None."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}g}"
    return str(value)
