"""The record on SQLite and on PostgreSQL: migrations, versions, references."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from sftline.config import Project, ProjectConfig
from sftline.data.example import Example, Provenance
from sftline.errors import DatasetNotFound, ObjectStoreError
from sftline.record.db import Record, current_revision, head_revision
from sftline.record.objects import LocalObjectStore
from sftline.record.queries import list_versions, resolve
from sftline.record.workspace import Workspace
from sftline.stations.versions import commit_version, load_examples


def make_examples(*texts: str) -> list[Example]:
    return [
        Example(
            id=f"id-{t}",
            provenance=Provenance("f.jsonl", "0" * 64, "classification", line),
            text=t,
            label="x",
        )
        for line, t in enumerate(texts, start=1)
    ]


@pytest.fixture
def workspace(tmp_path: Path, record_url: str) -> Workspace:
    project = Project(tmp_path, ProjectConfig(project="t", database_url=record_url))
    ws = Workspace(project, Record(record_url), LocalObjectStore(tmp_path / "objects"))
    yield ws
    ws.close()


def test_migrations_reach_head_and_create_the_tables(workspace: Workspace) -> None:
    engine = workspace.record.engine
    assert current_revision(engine) == head_revision() is not None
    tables = set(inspect(engine).get_table_names())
    assert {"datasets", "dataset_versions", "imports", "base_models", "alembic_version"} <= tables
    assert {"runs", "run_metrics", "evaluations", "eval_outputs"} <= tables
    Record(workspace.record.url).close()  # opening again is a no-op upgrade


def test_versions_are_numbered_and_identical_content_is_not_a_new_version(workspace: Workspace) -> None:
    with workspace.record.session() as session:
        first = commit_version(
            workspace,
            session,
            "support",
            make_examples("a", "b"),
            created_by="test",
            provenance={},
            note="one",
        )
        same = commit_version(
            workspace,
            session,
            "support",
            make_examples("a", "b"),
            created_by="test",
            provenance={},
            note="again",
        )
        second = commit_version(
            workspace,
            session,
            "support",
            make_examples("a", "c"),
            created_by="test",
            provenance={},
            note="two",
        )
        assert first.created and not same.created and second.created
        assert same.version.id == first.version.id
        assert second.version.parent_id == first.version.id
        assert second.version.changelog["summary"] == "+0 added, -0 removed, ~1 changed"
        third = commit_version(
            workspace,
            session,
            "support",
            make_examples("c", "a", "d"),
            created_by="test",
            provenance={},
            note="three",
        )
        assert third.version.changelog["summary"] == "+1 added, -0 removed, ~0 changed"
        revert = commit_version(
            workspace,
            session,
            "support",
            make_examples("a", "b"),
            created_by="test",
            provenance={},
            note="revert",
        )
        assert revert.created and revert.version.number == 4
        assert revert.version.content_hash == first.version.content_hash
    with workspace.record.session() as session:
        assert [v.number for v in list_versions(session, "support")] == [1, 2, 3, 4]
        assert resolve(session, "support").number == 4
        assert resolve(session, "support@v2").number == 2
        assert resolve(session, "support@1").number == 1
        assert resolve(session, f"support@{second.version.content_hash[:8]}").number == 2
        assert [e.text for e in load_examples(workspace, resolve(session, "support@v2"))] == ["a", "c"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope", "no dataset named 'nope'"),
        ("support@v9", "no such version"),
        ("support@zz", "a version is"),
        ("bad name!", "invalid dataset name"),
        ("support\n", "invalid dataset name"),
        ("support@v1\n", "a version is"),
    ],
)
def test_bad_references_are_clear_errors(workspace: Workspace, ref: str, message: str) -> None:
    with workspace.record.session() as session:
        commit_version(
            workspace, session, "support", make_examples("a"), created_by="test", provenance={}, note=""
        )
    with workspace.record.session() as session, pytest.raises(DatasetNotFound, match=message):
        resolve(session, ref)


def test_a_failed_transaction_leaves_no_row(workspace: Workspace) -> None:
    with pytest.raises(RuntimeError), workspace.record.session() as session:
        commit_version(
            workspace, session, "support", make_examples("a"), created_by="test", provenance={}, note=""
        )
        raise RuntimeError("crash before commit")
    with workspace.record.session() as session, pytest.raises(DatasetNotFound):
        resolve(session, "support")


def test_migrations_match_the_table_models(workspace: Workspace) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from sftline.record.schema import Base

    with workspace.record.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_a_version_number_past_the_column_is_no_such_version(workspace: Workspace) -> None:
    with workspace.record.session() as session:
        commit_version(
            workspace, session, "support", make_examples("a"), created_by="test", provenance={}, note="one"
        )
    with workspace.record.session() as session, pytest.raises(DatasetNotFound, match="no such version"):
        resolve(session, "support@v99999999999999999999999")


def test_a_corrupt_version_object_is_an_error_naming_it(workspace: Workspace) -> None:
    with workspace.record.session() as session:
        version = commit_version(
            workspace, session, "support", make_examples("a"), created_by="test", provenance={}, note="one"
        ).version
    path = workspace.objects.path(version.object_hash)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-40] + b"\0" * 40)
    with pytest.raises(ObjectStoreError, match=f"object {version.object_hash[:12]} .* is corrupt"):
        load_examples(workspace, version)
