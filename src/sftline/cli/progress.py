"""Progress as plain lines, for a stderr that is not a terminal (a log under nohup, SLURM or CI).

A rich bar redraws itself in place, which a log file cannot show, so without a terminal a job would
be silent until it ends. These lines are throttled instead: the first update, then one line every
`PROGRESS_EVERY` updates or `progress_seconds()` seconds, whichever comes first, and a final line
with the duration when the work is done.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from time import monotonic

from rich.console import Console

from sftline.errors import ConfigError

PROGRESS_SECONDS = 30.0
"""Longest wait between two progress lines, in seconds; SFTLINE_PROGRESS_SECONDS overrides it."""
PROGRESS_EVERY = 100
"""Most updates between two progress lines (100 training steps, 100 callbacks of a bar)."""


def progress_seconds() -> float:
    """The wait between two progress lines: SFTLINE_PROGRESS_SECONDS, else `PROGRESS_SECONDS`."""
    value = os.environ.get("SFTLINE_PROGRESS_SECONDS")
    if value is None:
        return PROGRESS_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigError(f"SFTLINE_PROGRESS_SECONDS={value!r}: give a number of seconds, e.g. 30")
    return seconds


def format_duration(seconds: float) -> str:
    """`42s`, `3m12s` or `1h05m`, rounded to the second."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def format_rate(per_second: float) -> str:
    """`1,234/s`, or two significant digits below 10 per second (`2.5/s`, `0.031/s`)."""
    return f"{per_second:,.0f}/s" if per_second >= 10 else f"{per_second:.2g}/s"


@dataclass(frozen=True)
class Pace:
    """Where a piece of work stands when a progress line is printed."""

    done: int
    total: int
    detail: str
    """What the caller said about this update (`loss 1.2345 tok/s 1,234`), or ""."""
    rate: float | None
    """Units per second since the first update; None until the count has moved."""
    elapsed: float | None
    """Seconds since the work started, on the final line only."""

    @property
    def counts(self) -> str:
        return f"{self.done:,}/{self.total:,}"

    @property
    def timing(self) -> str:
        """`eta 3m12s`, `done in 3m12s` on the final line, or "" before there is a rate."""
        if self.elapsed is not None:
            return f"done in {format_duration(self.elapsed)}"
        if self.rate:
            return f"eta {format_duration(max(self.total - self.done, 0) / self.rate)}"
        return ""


class ProgressLines:
    """One piece of work's progress as throttled lines on `console`; `render` writes a line."""

    def __init__(self, console: Console, render: Callable[[Pace], str]) -> None:
        self._console = console
        self._render = render
        self._interval = progress_seconds()
        self._started = monotonic()
        self._first: tuple[int, float] | None = None  # (done, time) of the first update: the rate's origin
        self._last: tuple[int, int, str] | None = None
        self._printed_at: float | None = None
        self._since_printed = 0
        self.finished = False

    def update(self, done: int, total: int, *, detail: str = "", force: bool = False) -> None:
        """Note progress; print it when it is the first update, `force`d, or a line is due. Reaching
        `total` prints the final line."""
        if self.finished:
            return
        now = monotonic()
        if self._first is None:
            self._first = (done, now)
        self._last = (done, total, detail)
        self._since_printed += 1
        if done >= total:
            self.finish()
        elif (
            force
            or self._printed_at is None
            or self._since_printed >= PROGRESS_EVERY
            or now - self._printed_at >= self._interval
        ):
            self._print(now, final=False)

    def finish(self) -> None:
        """Print the final line (the last update and the duration), once; nothing without updates."""
        if self.finished or self._last is None:
            return
        self.finished = True
        self._print(monotonic(), final=True)

    def _print(self, now: float, *, final: bool) -> None:
        assert self._first is not None and self._last is not None
        done, total, detail = self._last
        first_done, first_time = self._first
        moved = done > first_done and now > first_time
        rate = (done - first_done) / (now - first_time) if moved else None
        elapsed = now - self._started if final else None
        line = self._render(Pace(done, total, detail, rate, elapsed))
        self._console.print(line, markup=False, emoji=False, highlight=False, soft_wrap=True)
        self._printed_at = now
        self._since_printed = 0


@contextmanager
def progress_lines(console: Console) -> Iterator[Callable[[Callable[[Pace], str]], ProgressLines]]:
    """Yields `start(render)`, which begins one `ProgressLines`; when the block ends without an
    error, each one not yet finished prints its final line (a run that stopped early, say)."""
    started: list[ProgressLines] = []

    def start(render: Callable[[Pace], str]) -> ProgressLines:
        lines = ProgressLines(console, render)
        started.append(lines)
        return lines

    yield start
    for lines in started:
        lines.finish()
