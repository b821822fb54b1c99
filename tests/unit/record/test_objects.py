from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sftline.errors import ObjectStoreError
from sftline.record.objects import InMemoryObjectStore, LocalObjectStore


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LocalObjectStore | InMemoryObjectStore:
    return LocalObjectStore(tmp_path / "objects") if request.param == "local" else InMemoryObjectStore()


def test_objects_are_named_by_sha256(store: LocalObjectStore | InMemoryObjectStore) -> None:
    digest = store.put_bytes(b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert store.exists(digest)
    assert store.get_bytes(digest) == b"hello"
    assert store.put_bytes(b"hello") == digest


def test_put_with_stores_what_the_writer_wrote(store: LocalObjectStore | InMemoryObjectStore) -> None:
    digest = store.put_with(lambda path: path.write_text("written by a path writer"))
    assert store.get_bytes(digest) == b"written by a path writer"


def test_missing_object_is_a_clear_error(store: LocalObjectStore | InMemoryObjectStore) -> None:
    with pytest.raises(ObjectStoreError, match="missing"):
        store.get_bytes("0" * 64)


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")

    def crash(path: Path) -> None:
        path.write_bytes(b"half an object")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        store.put_with(crash)
    assert list((tmp_path / "objects").iterdir()) == []


def test_local_objects_are_read_only_and_verifiable(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    digest = store.put_bytes(b"immutable")
    path = store.open_path(digest)
    assert path.name == digest
    assert path.stat().st_mode & 0o222 == 0
    assert store.verify(digest)


@pytest.mark.parametrize(
    "digest", ["../../../etc/passwd", "/etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "\n"]
)
def test_a_digest_that_is_not_a_sha256_never_becomes_a_path(tmp_path: Path, digest: str) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    with pytest.raises(ObjectStoreError, match="which is not a sha256: the record was damaged or tampered"):
        store.get_bytes(digest)
    with pytest.raises(ObjectStoreError, match="not a sha256"):
        store.exists(digest)


def test_a_corrupt_object_is_an_error_naming_it(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    digest = store.put_bytes(b"the bytes as stored")
    path = store.path(digest)
    path.chmod(0o644)
    path.write_bytes(b"the bytes as stored, then changed")
    with pytest.raises(ObjectStoreError) as raised:
        store.get_bytes(digest)
    assert str(raised.value) == (
        f"object {digest[:12]} ({path}) is corrupt: its content no longer matches its sha256; "
        "restore it from a backup"
    )
