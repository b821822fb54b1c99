"""SLOs, error budgets and multi-window burn-rate alerts.

The burn rate over a window is the share of bad events in it divided by the budget (1 -
objective): 1 spends the budget exactly over the SLO period, 14.4 spends 2% of a 30-day budget in
one hour. A rule fires when both its long and its short window burn at least its factor: the long
window makes it significant, the short one makes it stop soon after the problem does (Google SRE
workbook, "Alerting on SLOs", the multiwindow, multi-burn-rate alerts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sftline.monitoring.settings import BurnRule, Slo, parse_duration
from sftline.monitoring.slis import window_ratio


@dataclass(frozen=True)
class BurnCheck:
    slo: str
    severity: str
    factor: float
    long_s: float
    short_s: float
    burn_long: float | None
    burn_short: float | None
    events_long: int
    events_short: int

    @property
    def firing(self) -> bool:
        return (
            self.burn_long is not None
            and self.burn_short is not None
            and self.burn_long >= self.factor
            and self.burn_short >= self.factor
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"firing": self.firing}


def burn_rate(bad_share: float | None, objective: float) -> float | None:
    return None if bad_share is None else bad_share / (1 - objective)


def check_burn(
    slo: Slo,
    series: Mapping[datetime, tuple[int, int]],
    rules: Sequence[BurnRule],
    now: datetime,
    *,
    scale: float = 1.0,
) -> list[BurnCheck]:
    """Every rule for one SLO at `now`, its windows multiplied by `scale`."""
    checks = []
    for rule in rules:
        long_s = parse_duration(rule.long) * scale
        short_s = parse_duration(rule.short) * scale
        long_share, long_n = window_ratio(series, now, long_s)
        short_share, short_n = window_ratio(series, now, short_s)
        checks.append(
            BurnCheck(
                slo=slo.name,
                severity=rule.severity,
                factor=rule.factor,
                long_s=long_s,
                short_s=short_s,
                burn_long=burn_rate(long_share, slo.objective),
                burn_short=burn_rate(short_share, slo.objective),
                events_long=long_n,
                events_short=short_n,
            )
        )
    return checks


def budget(
    slo: Slo, series: Mapping[datetime, tuple[int, int]], now: datetime, period_s: float
) -> dict[str, Any]:
    """The SLO over `period_s`: the good share against the objective, and the share of the error
    budget left (1: untouched, 0: spent, below 0: overspent)."""
    share, events = window_ratio(series, now, period_s)
    allowed = 1 - slo.objective
    return {
        "slo": slo.name,
        "sli": slo.sli,
        "objective": slo.objective,
        "events": events,
        "good_share": None if share is None else 1 - share,
        "met": None if share is None else share <= allowed,
        "budget_left": None if share is None else 1 - share / allowed,
    }
