"""Per-invocation CLI state (global options) and opening the project."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sftline.record.workspace import Workspace


@dataclass
class CliState:
    project_dir: Path | None = None
    debug: bool = False
    json_errors: bool = False
    """`--json` was given: an error is also a JSON document on stdout."""

    def reset(self) -> None:
        self.project_dir = None
        self.debug = False
        self.json_errors = False


state = CliState()


@contextmanager
def open_workspace() -> Iterator[Workspace]:
    workspace = Workspace.find(state.project_dir)
    try:
        yield workspace
    finally:
        workspace.close()
