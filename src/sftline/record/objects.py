"""The content-addressed object store: `.sftline/objects/<sha256>`.

Writes are atomic: bytes go to a temporary file in the same folder, are fsynced and renamed
into place, and the folder is fsynced. Callers commit a record row only after `put_*` returns,
so a crash leaves either no object or a whole one, and never a row without its object.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from sftline.atomic import fsync_path
from sftline.errors import ObjectStoreError

CHUNK = 1 << 20  # 1 MiB reads when hashing
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def checked_digest(digest: str) -> str:
    """`digest` when it is a sha256 in lowercase hex; an `ObjectStoreError` otherwise."""
    if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
        raise ObjectStoreError(
            f"the record names object {str(digest)[:80]!r}, which is not a sha256: the record was "
            "damaged or tampered with; restore it from a backup"
        )
    return digest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ObjectStore(Protocol):
    def put_bytes(self, data: bytes) -> str: ...
    def put_with(self, write: Callable[[Path], None]) -> str: ...
    def get_bytes(self, digest: str) -> bytes: ...
    def exists(self, digest: str) -> bool: ...


class LocalObjectStore:
    """Objects as files named by their sha256 under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        """Where object `digest` lives. A digest is checked to be a sha256 before it becomes a
        path, so a damaged or tampered record cannot name a file outside the store."""
        return self.root / checked_digest(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    @contextmanager
    def _temporary(self) -> Iterator[Path]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        except OSError as exc:
            raise ObjectStoreError(
                f"cannot write to the object store {self.root}: {exc.strerror or exc}"
            ) from exc
        os.close(fd)
        temp = Path(name)
        try:
            yield temp
        finally:
            temp.unlink(missing_ok=True)

    def _commit(self, temp: Path) -> str:
        with temp.open("rb+") as handle:
            os.fsync(handle.fileno())
        digest = sha256_file(temp)
        final = self.path(digest)
        if final.exists():
            return digest
        os.chmod(temp, 0o444)
        os.replace(temp, final)
        fsync_path(self.root)
        return digest

    def put_bytes(self, data: bytes) -> str:
        with self._temporary() as temp:
            temp.write_bytes(data)
            return self._commit(temp)

    def put_with(self, write: Callable[[Path], None]) -> str:
        """Store what `write(path)` writes to a temporary path (for writers that want a path)."""
        with self._temporary() as temp:
            write(temp)
            return self._commit(temp)

    def get_bytes(self, digest: str) -> bytes:
        """The object's bytes, checked against its name: a corrupt object is an error naming it."""
        path = self.open_path(digest)
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ObjectStoreError(
                f"object {digest[:12]} ({path}) is corrupt: its content no longer matches its sha256; "
                "restore it from a backup"
            )
        return data

    def open_path(self, digest: str) -> Path:
        """The object's file, checked to exist but not against its hash (`get_bytes` is). Objects
        are read-only; never write to it."""
        path = self.path(digest)
        if not path.is_file():
            raise ObjectStoreError(f"object {digest[:12]} is missing from {self.root}")
        return path

    def verify(self, digest: str) -> bool:
        return sha256_file(self.open_path(digest)) == digest


class InMemoryObjectStore:
    """A fake store for tests: same contract, no disk."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.objects.setdefault(digest, data)
        return digest

    def put_with(self, write: Callable[[Path], None]) -> str:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "object"
            write(path)
            return self.put_bytes(path.read_bytes())

    def get_bytes(self, digest: str) -> bytes:
        try:
            return self.objects[digest]
        except KeyError:
            raise ObjectStoreError(f"object {digest[:12]} is missing") from None

    def exists(self, digest: str) -> bool:
        return digest in self.objects
