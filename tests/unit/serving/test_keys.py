"""API keys: made once, stored as their sha256 only, verified, listed without secrets, revoked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from sftline.config import Project, ProjectConfig
from sftline.record.db import Record
from sftline.record.objects import LocalObjectStore
from sftline.record.schema import ApiKey
from sftline.record.workspace import Workspace
from sftline.serving.keys import ApiKeyError, KeyInfo, create_key, list_keys, revoke, verify


@pytest.fixture
def workspace(tmp_path: Path, record_url: str) -> Iterator[Workspace]:
    project = Project(tmp_path, ProjectConfig(project="t", database_url=record_url))
    ws = Workspace(project, Record(record_url), LocalObjectStore(tmp_path / "objects"))
    yield ws
    ws.close()


def stored_rows(workspace: Workspace) -> list[dict[str, object]]:
    """The api_keys table as it is stored, every column but the id and the creation time."""
    with workspace.record.session() as session:
        rows = session.execute(select(ApiKey.__table__).order_by(ApiKey.name)).mappings()
        return [{k: v for k, v in row.items() if k not in ("id", "created_at")} for row in rows]


def test_a_new_key_verifies_and_only_its_sha256_is_recorded(workspace: Workspace) -> None:
    key = create_key(workspace, "alice", "serve")
    other = create_key(workspace, "ops", "admin")
    assert key.startswith("sk-sftline-") and len(key) == len("sk-sftline-") + 43  # 32 bytes, base64
    assert key != other

    assert verify(workspace, key) == KeyInfo("alice", "serve")
    with workspace.record.session() as session:
        assert verify(session, other) == KeyInfo("ops", "admin")

    sha256 = {k: hashlib.sha256(k.encode()).hexdigest() for k in (key, other)}
    assert stored_rows(workspace) == [
        {"name": "alice", "key_hash": sha256[key], "scope": "serve", "revoked_at": None},
        {"name": "ops", "key_hash": sha256[other], "scope": "admin", "revoked_at": None},
    ]


@pytest.mark.parametrize("presented", ["", "sk-sftline-", "Bearer x", "not-a-key"])
def test_anything_but_a_recorded_key_does_not_verify(workspace: Workspace, presented: str) -> None:
    key = create_key(workspace, "alice", "serve")
    assert verify(workspace, presented) is None
    assert verify(workspace, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert verify(workspace, key + "x") is None


def test_a_revoked_key_verifies_no_more_and_a_second_revoke_changes_nothing(workspace: Workspace) -> None:
    key = create_key(workspace, "alice", "serve")
    kept = create_key(workspace, "bob", "serve")
    first = revoke(workspace, "alice")
    assert first.name == "alice" and first.revoked_at is not None
    assert verify(workspace, key) is None
    assert verify(workspace, kept) == KeyInfo("bob", "serve")
    assert revoke(workspace, "alice").revoked_at == first.revoked_at
    with pytest.raises(ApiKeyError, match="no API key named 'carol'; see `sftline keys list`"):
        revoke(workspace, "carol")


def test_a_taken_name_is_refused_even_once_revoked(workspace: Workspace) -> None:
    key = create_key(workspace, "alice", "serve")
    with pytest.raises(ApiKeyError, match="an API key named 'alice' exists"):
        create_key(workspace, "alice", "admin")
    assert verify(workspace, key) == KeyInfo("alice", "serve")  # the first key is untouched
    revoke(workspace, "alice")
    with pytest.raises(ApiKeyError, match="an API key named 'alice' exists"):
        create_key(workspace, "alice", "serve")
    assert len(list_keys(workspace)) == 1


@pytest.mark.parametrize(
    ("name", "scope", "message"),
    [
        ("", "serve", "invalid key name ''"),
        ("alice\n", "serve", "invalid key name"),
        ("a b", "serve", "invalid key name"),
        ("alice", "root", "unknown scope 'root': use serve or admin"),
        ("-x", "root", "invalid key name '-x'.*; unknown scope 'root'"),
    ],
)
def test_invalid_names_and_scopes_are_refused(
    workspace: Workspace, name: str, scope: str, message: str
) -> None:
    with pytest.raises(ApiKeyError, match=message):
        create_key(workspace, name, scope)
    assert list_keys(workspace) == []


def test_the_list_shows_names_scopes_and_dates_never_a_key_or_its_hash(workspace: Workspace) -> None:
    key = create_key(workspace, "ops", "admin")
    create_key(workspace, "alice", "serve")
    revoke(workspace, "alice")
    entries = list_keys(workspace)
    assert [(e.name, e.scope, e.revoked_at is not None) for e in entries] == [
        ("alice", "serve", True),
        ("ops", "admin", False),
    ]
    shown = entries[1].as_json()
    assert set(shown) == {"name", "scope", "created_at", "revoked_at"}
    assert shown["created_at"].endswith("+00:00")
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert all(digest not in str(e.as_json()) and key not in str(e.as_json()) for e in entries)


def test_admin_may_do_what_serve_may_and_not_the_other_way() -> None:
    assert KeyInfo("a", "serve").allows("serve") and not KeyInfo("a", "serve").allows("admin")
    assert KeyInfo("o", "admin").allows("serve") and KeyInfo("o", "admin").allows("admin")
