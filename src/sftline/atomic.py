"""Writing files and folders so that a reader sees the old one or the new one, never half of one.

The new content is written beside its target (same folder, so the same filesystem), fsynced, and
renamed over it with `os.replace`; the folder holding it is fsynced so the rename survives a
crash. A folder that already exists is renamed aside first, then deleted once the new one is in
place. Nothing here knows about runs, models or the record: every layer may use it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FOLDER_MODE = 0o755  # mkdtemp makes folders owner-only; written folders are for every reader
FILE_MODE = 0o644


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file under `folder`, then every folder (deepest first), then `folder` itself."""
    paths = sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    for path in paths:
        if path.is_file() and not path.is_symlink():
            fsync_path(path)
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            fsync_path(path)
    fsync_path(folder)


def replace_folder(staging: Path, target: Path) -> None:
    """Move the finished folder `staging` to `target` (a sibling), replacing any folder there.

    The old folder is renamed aside, the new one renamed in, and the old one deleted: at every
    moment `target` is either absent, the old folder or the new one. If the second rename fails,
    the old folder goes back.
    """
    if not target.exists():
        os.replace(staging, target)
    else:
        retired = Path(tempfile.mkdtemp(prefix=f".old-{target.name}-", dir=target.parent))
        os.replace(target, retired)  # onto an empty folder: POSIX rename replaces it
        try:
            os.replace(staging, target)
        except OSError:
            os.replace(retired, target)
            raise
        shutil.rmtree(retired, ignore_errors=True)
    fsync_path(target.parent)


@contextmanager
def writing_folder(target: Path) -> Iterator[Path]:
    """A new, empty temporary sibling of `target` to write into. When the block ends normally its
    files are fsynced and it replaces `target`; when it raises, it is deleted and `target` is
    left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        staging.chmod(FOLDER_MODE)
        yield staging
        fsync_tree(staging)
        replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a fsynced temporary file renamed over it."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a fsynced temporary file renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temp.chmod(FILE_MODE)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_path(path.parent)
