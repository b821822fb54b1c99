"""What `sftline doctor` and `sftline gc` share: the objects the record names, the leftovers no
row names, and the rules that make removing a leftover safe.

Every writer in sftline writes under a temporary name and renames into place: objects
(`objects/.tmp-*`), checkpoints (`checkpoints/.tmp-step-*`), model folders and manifests
(`.tmp-<name>-*`), materialised base models (`cache/models/.tmp-*`); a folder being replaced is
renamed aside to `.old-*` first. A writer killed mid-write leaves such an entry behind, and a
writer killed between storing an object and committing the row that names it leaves an object
that no row names (an orphan). The rules:

- A temporary entry is removed only when nothing in it changed for `TEMP_GRACE` (an hour): a live
  writer keeps touching what it writes. One inside the folder of a run that holds a live lease is
  never removed, however old.
- An orphan object is removed only when it is older than `TEMP_GRACE` and no station run or
  training run holds a live lease: a running station stores its objects before the rows that
  name them, so while one runs an orphan may be about to be named.
- An object that any row names is never removed. The lineage's artifact hashes count as names
  too, so an object that only the lineage mentions stays.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from sftline.record import leases, queries
from sftline.record.workspace import Workspace

TEMP_PREFIXES = (".tmp-", ".old-")
TEMP_GRACE = timedelta(hours=1)
"""How long a temporary entry or an orphan object must have been left untouched to be removed."""
DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ObjectIndex:
    """The objects the record names, and the names that cannot be objects."""

    references: dict[str, list[str]]
    """sha256 -> what names it (`support@v2 examples`, `gate-report-3 rejects`, ...)."""
    malformed: list[tuple[str, str]]
    """(value, what names it) for recorded object names that are not a sha256 (a tampered or
    damaged record); never used as a file name."""
    protected: frozenset[str]
    """The references and every artifact hash: objects never removed."""


def object_index(session: Session) -> ObjectIndex:
    references: dict[str, list[str]] = {}
    malformed: list[tuple[str, str]] = []
    for digest, where in queries.object_references(session):
        if isinstance(digest, str) and DIGEST.fullmatch(digest):
            references.setdefault(digest, []).append(where)
        else:
            malformed.append((str(digest), where))
    protected = frozenset(references) | queries.artifact_hashes(session)
    return ObjectIndex(references, malformed, protected)


@dataclass(frozen=True)
class Leftover:
    """An orphan object or a temporary entry, and why it stays if it does."""

    kind: Literal["object", "temp"]
    path: Path
    bytes: int
    idle_seconds: float
    """Seconds since anything in it last changed."""
    kept_because: str | None
    """None when the rules allow removing it."""

    @property
    def removable(self) -> bool:
        return self.kept_because is None


@dataclass(frozen=True)
class LiveWork:
    """Station runs and training runs holding a live lease now."""

    holders: list[str]
    """`import support (pid 4242 on host)`, ..."""
    run_folders: list[Path]
    """The output folders of live training runs."""


def live_work(session: Session) -> LiveWork:
    holders: list[str] = []
    folders: list[Path] = []
    for station_run in queries.running_station_runs(session):
        if not leases.is_stale(station_run):
            holders.append(f"{station_run.label} (pid {station_run.pid} on {station_run.host})")
    for run in queries.running_runs(session):
        if not leases.is_stale(run):
            holders.append(f"{run.name} (pid {run.pid} on {run.host})")
            if run.output_dir:
                folders.append(Path(run.output_dir))
    return LiveWork(holders, folders)


def find_leftovers(workspace: Workspace, index: ObjectIndex, live: LiveWork) -> list[Leftover]:
    """Every temporary entry under .sftline/ and every object no row names, with the rules'
    decision on each (see the module)."""
    grace = TEMP_GRACE.total_seconds()
    found: list[Leftover] = []
    for path in temp_entries(workspace.project.state_dir):
        idle = idle_seconds(path)
        live_folder = next((f for f in live.run_folders if is_under(path, f)), None)
        if live_folder is not None:
            why: str | None = f"inside {live_folder.name}, which is running"
        elif idle < grace:
            why = f"changed {_ago(idle)} ago; a live writer may own it (removed once idle for an hour)"
        else:
            why = None
        found.append(Leftover("temp", path, tree_size(path), idle, why))
    for path in object_files(workspace.objects.root):
        if path.name in index.protected:
            continue
        idle = idle_seconds(path)
        if live.holders:
            why = f"unnamed, but {live.holders[0]} is running and may be about to name it"
        elif idle < grace:
            why = f"stored {_ago(idle)} ago; a station may be about to name it (removed after an hour)"
        else:
            why = None
        found.append(Leftover("object", path, tree_size(path), idle, why))
    return found


def object_files(root: Path) -> list[Path]:
    """The store's objects: regular files named by a sha256 (temporaries and strays are not)."""
    if not root.is_dir():
        return []
    return sorted(
        Path(entry.path)
        for entry in os.scandir(root)
        if DIGEST.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
    )


def stray_entries(root: Path) -> list[Path]:
    """Entries in the object store that are neither objects nor temporaries."""
    if not root.is_dir():
        return []
    return sorted(
        Path(entry.path)
        for entry in os.scandir(root)
        if not (DIGEST.fullmatch(entry.name) and entry.is_file(follow_symlinks=False))
        and not entry.name.startswith(TEMP_PREFIXES)
    )


def temp_entries(root: Path) -> list[Path]:
    """Files and folders under `root` named `.tmp-*` or `.old-*` (not looked inside; links not
    followed)."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            if name.startswith(TEMP_PREFIXES):
                found.append(Path(folder) / name)
        dirs[:] = [d for d in dirs if not d.startswith(TEMP_PREFIXES)]
    return sorted(found)


def _tree(path: Path) -> Iterator[os.stat_result]:
    """lstat of `path` and, for a folder, of everything under it (links not followed)."""
    yield path.lstat()
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                try:
                    yield (Path(folder) / name).lstat()
                except FileNotFoundError:  # removed while we looked
                    continue


def idle_seconds(path: Path) -> float:
    """Seconds since anything in `path` was last modified."""
    return max(0.0, time.time() - max(s.st_mtime for s in _tree(path)))


def tree_size(path: Path) -> int:
    """Bytes of the files in `path` (a file or a folder)."""
    return sum(s.st_size for s in _tree(path) if not stat.S_ISDIR(s.st_mode))


def remove(path: Path) -> None:
    """Delete a file, a link or a folder (links are removed, never followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def is_under(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def shown_path(path: Path, root: Path) -> str:
    """`path` relative to the project folder when inside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
