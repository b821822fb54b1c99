"""The canary analysis: the canary against production over a sliding window of requests.

Each side needs `min_requests` in the window before anything is decided. A breach of any limit
(error rate, p95 latency, contract-invalid rate, abstention rate) ends the canary at once: the
registry moves it back to `candidate` with the numbers as the history entry's evidence, and the
next request (the router reads the stages every second) goes to production. A window that passes
can promote the canary when configured to.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from sftline.serving.config import AnalysisSettings


@dataclass(frozen=True)
class Event:
    at: float
    error: bool
    latency_s: float
    invalid: bool
    abstained: bool
    answered: bool = True
    """A 200: only answered requests count in the latency (a fast refusal would pull it down)."""


class Window:
    """Recent requests of one version, newest last, at most `window_s` old."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.events: deque[Event] = deque()

    def add(self, event: Event) -> None:
        self.events.append(event)
        self.trim(event.at)

    def trim(self, now: float) -> None:
        while self.events and self.events[0].at < now - self.window_s:
            self.events.popleft()

    def summary(self) -> dict[str, float]:
        events = list(self.events)
        n = len(events)
        if n == 0:
            return {"requests": 0}
        latencies = [e.latency_s for e in events if e.answered]
        return {
            "requests": n,
            "error_rate": sum(e.error for e in events) / n,
            "p95_latency_s": float(np.percentile(latencies, 95)) if latencies else 0.0,
            "invalid_rate": sum(e.invalid for e in events) / n,
            "abstention_rate": sum(e.abstained for e in events) / n,
        }


def judge(canary: dict[str, float], production: dict[str, float], settings: AnalysisSettings) -> list[str]:
    """The limits the canary breaks against production (empty: it passes)."""
    breaches = []
    if canary["error_rate"] - production["error_rate"] > settings.max_error_rate_increase:
        breaches.append(
            f"error rate {canary['error_rate']:.1%} against production's {production['error_rate']:.1%}"
        )
    if (
        production["p95_latency_s"] > 0
        and canary["p95_latency_s"] > settings.max_p95_ratio * production["p95_latency_s"]
    ):
        breaches.append(
            f"p95 latency {canary['p95_latency_s'] * 1000:.0f} ms against production's "
            f"{production['p95_latency_s'] * 1000:.0f} ms (more than {settings.max_p95_ratio:g}x)"
        )
    if canary["invalid_rate"] - production["invalid_rate"] > settings.max_invalid_rate_increase:
        breaches.append(
            f"contract-invalid rate {canary['invalid_rate']:.1%} against production's "
            f"{production['invalid_rate']:.1%}"
        )
    if abs(canary["abstention_rate"] - production["abstention_rate"]) > settings.max_abstention_rate_change:
        breaches.append(
            f"abstention rate {canary['abstention_rate']:.1%} against production's "
            f"{production['abstention_rate']:.1%}"
        )
    return breaches


class CanaryAnalysis:
    """Windows per version; `decide(production, canary)` says rollback, promote or wait."""

    def __init__(self, settings: AnalysisSettings) -> None:
        self.settings = settings
        self.windows: dict[str, Window] = {}
        self.started: dict[str, float] = {}
        self._lock = threading.Lock()

    def observe(
        self,
        version: str,
        *,
        error: bool,
        latency_s: float,
        invalid: bool,
        abstained: bool,
        answered: bool = True,
    ) -> None:
        now = time.monotonic()
        with self._lock:
            self.started.setdefault(version, now)
            window = self.windows.setdefault(version, Window(self.settings.window_s))
            window.add(Event(now, error, latency_s, invalid, abstained, answered))

    def decide(self, production: str, canary: str) -> tuple[str, dict[str, Any]]:
        """("rollback" | "promote" | "wait", evidence)."""
        now = time.monotonic()
        with self._lock:
            for window in self.windows.values():
                window.trim(now)
            mine = self.windows.get(canary, Window(self.settings.window_s)).summary()
            theirs = self.windows.get(production, Window(self.settings.window_s)).summary()
            running = now - self.started.get(canary, now)
        evidence: dict[str, Any] = {
            "canary": {"version": canary, **mine},
            "production": {"version": production, **theirs},
            "window_s": self.settings.window_s,
            "min_requests": self.settings.min_requests,
        }
        if min(mine["requests"], theirs["requests"]) < self.settings.min_requests:
            return "wait", evidence
        breaches = judge(mine, theirs, self.settings)
        if breaches:
            return "rollback", {**evidence, "breaches": breaches}
        if self.settings.promote_on_pass and running >= self.settings.window_s:
            return "promote", evidence
        return "wait", evidence

    def forget(self, version: str) -> None:
        with self._lock:
            self.windows.pop(version, None)
            self.started.pop(version, None)
