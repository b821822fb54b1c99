"""Console helpers shared by the command groups."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from sftline.cli.progress import Pace, format_rate, progress_lines
from sftline.errors import SftlineError

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False)


def require_folder(path: Path | None, option: str) -> None:
    """Fail before any work when an output file's folder does not exist (not after it is done)."""
    if path is not None and not path.parent.is_dir():
        raise SftlineError(f"{option} {path}: the folder {path.parent} does not exist")


json_printed = False
"""Whether this command wrote its JSON document to stdout (an error after it adds no second)."""


def print_json(data: Any) -> None:
    global json_printed
    json_printed = True
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


class RateColumn(ProgressColumn):
    """Items per second, once there is a rate to show."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")


@contextmanager
def progress_bars(*, quiet: bool) -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """One rich display; `add(description)` starts a bar (rate and ETA) and returns its
    `update(done, total)`. Silent when `quiet`; plain lines (`description: done/total (rate/s,
    eta 3m12s)`, see `ProgressLines`) when stderr is not a terminal."""
    if not quiet and not err_console.is_terminal:
        with progress_lines(err_console) as start:
            yield lambda description: start(partial(_plain_line, description)).update
        return
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err_console, transient=True, disable=quiet) as progress:

        def add(description: str) -> Callable[[int, int], None]:
            task = progress.add_task(description, total=None)
            return lambda done, total: progress.update(task, completed=done, total=total)

        yield add


def _plain_line(description: str, pace: Pace) -> str:
    parts = [format_rate(pace.rate)] if pace.rate else []
    parts += [pace.timing] if pace.timing else []
    return f"{description}: {pace.counts}" + (f" ({', '.join(parts)})" if parts else "")


@contextmanager
def progress_bar(description: str, *, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A single progress bar; yields `update(done, total)`."""
    with progress_bars(quiet=quiet) as add:
        yield add(description)
