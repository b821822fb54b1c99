"""Version creation as a compare-and-set on the newest version, on SQLite and PostgreSQL.

Each race is played out in one process, in the order two processes could interleave: the other
writer commits between this one's read of the head and its commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sftline.data.example import Example, Provenance
from sftline.data.importer import ImportOptions, import_file
from sftline.data.mixtures import mix, parse_weights
from sftline.data.settings import ImportSettings
from sftline.data.splits import SplitPlan, split_examples
from sftline.errors import VersionConflict
from sftline.record import queries
from sftline.record.schema import DatasetVersion
from sftline.record.workspace import Workspace
from sftline.stations import ingest as ingest_module
from sftline.stations import mix as mix_module
from sftline.stations import split as split_module
from sftline.stations.ingest import import_station, ingest
from sftline.stations.mix import mix_versions
from sftline.stations.split import split_version
from sftline.stations.versions import commit_version, load_examples

T = TypeVar("T")


def examples(*ids: str) -> list[Example]:
    return [
        Example(id=i, provenance=Provenance("f.jsonl", "0" * 64, "classification", n), text=i, label="x")
        for n, i in enumerate(ids, start=1)
    ]


def commit(workspace: Workspace, ids: tuple[str, ...], expected: int | None) -> Any:
    with workspace.record.session() as session:
        return commit_version(
            workspace,
            session,
            "app",
            examples(*ids),
            created_by="test",
            provenance={},
            note="",
            expected=expected,
        )


def write_chats(path: Path, ids: list[str]) -> Path:
    rows = [
        {"id": i, "messages": [{"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": i}]}
        for i in ids
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def version_rows(workspace: Workspace, name: str) -> list[tuple[int, int | None, str | None, int]]:
    """(number, parent number, changelog parent, examples) of each version."""
    with workspace.record.session() as session:
        versions = queries.list_versions(session, name)
        by_id = {v.id: v.number for v in versions}
        return [
            (
                v.number,
                by_id.get(v.parent_id) if v.parent_id else None,
                v.changelog.get("parent"),
                v.n_examples,
            )
            for v in versions
        ]


@pytest.fixture
def workspace(project_dir: Path) -> Workspace:
    with Workspace.find(project_dir) as ws:
        yield ws


def test_a_commit_against_a_head_that_moved_is_refused_unless_the_head_holds_its_content(
    workspace: Workspace,
) -> None:
    commit(workspace, ("a", "b"), expected=0)
    commit(workspace, ("a", "c"), expected=1)  # the other writer, after this one read v1
    with pytest.raises(VersionConflict, match="^app changed meanwhile; run again$"):
        commit(workspace, ("a", "d"), expected=1)
    same = commit(workspace, ("a", "c"), expected=1)  # what the other wrote: nothing to do
    assert not same.created and same.version.number == 2
    assert version_rows(workspace, "app") == [(1, None, None, 2), (2, 1, "v1", 2)]


def test_two_writers_taking_the_same_number_meet_the_unique_constraint(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = commit(workspace, ("a",), expected=0)
    commit(workspace, ("a", "b"), expected=1)
    # This writer's transaction read the head before the other one committed v2 (read committed
    # allows it): it takes number 2 as well, and the constraint on (dataset, number) stops it.
    stale = first.version.id
    monkeypatch.setattr(queries, "head", lambda session, dataset: session.get(DatasetVersion, stale))
    with pytest.raises(VersionConflict, match="^app changed meanwhile; run again$"):
        commit(workspace, ("a", "c"), expected=1)
    monkeypatch.undo()
    assert version_rows(workspace, "app") == [(1, None, None, 1), (2, 1, "v1", 2)]


def test_two_writers_creating_the_same_dataset_meet_the_unique_name(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit(workspace, ("a",), expected=0)
    monkeypatch.setattr(queries, "dataset_named", lambda session, name: None)  # read before it existed
    with pytest.raises(VersionConflict, match="^app changed meanwhile; run again$"):
        commit(workspace, ("b",), expected=0)
    monkeypatch.undo()
    assert version_rows(workspace, "app") == [(1, None, None, 1)]


class OtherWriter:
    """`import_file` that lets another process commit `other` to `app` while the first file is read."""

    def __init__(self, workspace: Workspace, other: Path, *, append: bool) -> None:
        self.workspace, self.other, self.append = workspace, other, append
        self.reads: list[str] = []

    def __call__(self, path: Path, options: ImportOptions, **kwargs: Any) -> Any:
        self.reads.append(path.name)
        if len(self.reads) == 1:
            ingest(self.workspace, "app", self.other, ImportOptions(), append=self.append)
        return import_file(path, options, **kwargs)


def test_an_append_that_loses_the_race_is_applied_again_on_the_new_head(
    workspace: Workspace, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(workspace, "app", write_chats(project_dir / "base.jsonl", ["b1", "b2"]), ImportOptions())
    other = write_chats(project_dir / "other.jsonl", ["o1", "o2", "o3"])
    writer = OtherWriter(workspace, other, append=True)
    monkeypatch.setattr(ingest_module, "import_file", writer)
    write_chats(project_dir / "mine.jsonl", ["m1", "m2"])
    result = import_station(
        workspace, ImportSettings(path=Path("mine.jsonl"), name="app", append=True), root=project_dir
    )
    # read once against v1, lost to the other append, read again against its v2
    assert writer.reads == ["mine.jsonl", "other.jsonl", "mine.jsonl"]
    assert result.result["version"]["ref"] == "app@v3" and result.result["diff"] == {
        "added": 2,
        "removed": 0,
        "changed": 0,
    }
    assert version_rows(workspace, "app") == [(1, None, None, 2), (2, 1, "v1", 5), (3, 2, "v2", 7)]
    with workspace.record.session() as session:
        newest = queries.resolve(session, "app")
        assert [e.id for e in load_examples(workspace, newest)] == ["b1", "b2", "o1", "o2", "o3", "m1", "m2"]
        assert [s["path"].rsplit("/", 1)[1] for s in newest.provenance["sources"]] == [
            "base.jsonl",
            "other.jsonl",
            "mine.jsonl",
        ]
        # lineage: from the version it was applied to, not the one read first
        [target] = queries.find_artifacts(session, "app@v3")
        sources = queries.artifacts_by_id(
            session, [e.source_id for e in queries.edges_into(session, [target.id])]
        )
        assert sorted(a.name for a in sources.values() if a.kind == "dataset_version") == ["app@v2"]


def test_a_plain_import_that_loses_the_race_says_so_unless_it_imported_the_same(
    workspace: Workspace, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(workspace, "app", write_chats(project_dir / "base.jsonl", ["b1"]), ImportOptions())
    theirs = write_chats(project_dir / "theirs.jsonl", ["t1", "t2"])
    monkeypatch.setattr(ingest_module, "import_file", OtherWriter(workspace, theirs, append=False))
    mine = write_chats(project_dir / "mine.jsonl", ["m1"])
    with pytest.raises(VersionConflict, match=r"^app changed meanwhile \(now v2\); run again$"):
        ingest(workspace, "app", mine, ImportOptions())
    assert version_rows(workspace, "app") == [(1, None, None, 1), (2, 1, "v1", 2)]

    same = write_chats(project_dir / "same.jsonl", ["s1"])
    monkeypatch.setattr(ingest_module, "import_file", OtherWriter(workspace, same, append=False))
    outcome = ingest(workspace, "app", same, ImportOptions())
    assert outcome.commit is not None and not outcome.commit.created
    assert outcome.version is not None and outcome.version["ref"] == "app@v3"
    assert version_rows(workspace, "app") == [(1, None, None, 1), (2, 1, "v1", 2), (3, 2, "v2", 1)]


def test_two_appends_into_a_new_name_one_creates_it_the_other_goes_on_top(
    workspace: Workspace, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = write_chats(project_dir / "other.jsonl", ["o1"])
    monkeypatch.setattr(ingest_module, "import_file", OtherWriter(workspace, other, append=True))
    outcome = ingest(
        workspace, "app", write_chats(project_dir / "mine.jsonl", ["m1"]), ImportOptions(), append=True
    )
    assert outcome.version is not None and outcome.version["ref"] == "app@v2"
    assert version_rows(workspace, "app") == [(1, None, None, 1), (2, 1, "v1", 2)]


def meanwhile(workspace: Workspace, name: str, work: Callable[..., T]) -> Callable[..., T]:
    """`work`, but another writer commits a version of `name` while it runs."""

    def run(*args: Any, **kwargs: Any) -> T:
        with workspace.record.session() as session:
            commit_version(workspace, session, name, examples("x"), created_by="test", provenance={}, note="")
        return work(*args, **kwargs)

    return run


def test_a_split_or_a_mix_that_loses_the_race_writes_nothing_and_says_so(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit(workspace, tuple(f"e{i}" for i in range(10)), expected=0)
    with monkeypatch.context() as patch:
        patch.setattr(split_module, "split_examples", meanwhile(workspace, "app-train", split_examples))
        with pytest.raises(VersionConflict, match=r"^app-train changed meanwhile \(now v1\); run again$"):
            split_version(workspace, "app", SplitPlan(gold=0.2, group_by="none"))
    with workspace.record.session() as session:  # neither part, nor the split's row
        assert [d.name for d in queries.datasets(session)] == ["app", "app-train"]
        assert queries.split_by_id(session, 1) is None

    with monkeypatch.context() as patch:
        patch.setattr(mix_module, "mix", meanwhile(workspace, "app-mix", mix))
        with pytest.raises(VersionConflict, match=r"^app-mix changed meanwhile \(now v1\); run again$"):
            mix_versions(workspace, ["app"], parse_weights("*:1"), total=None, seed=7, name=None)
    assert version_rows(workspace, "app-mix") == [(1, None, None, 1)]


class NothingFound:
    """What a lookup that ran before the other writer's commit returns."""

    def first(self) -> None:
        return None


def test_two_station_runs_recording_the_same_artifact_at_once_share_its_row(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = ("dataset_version", "app@v1", "a" * 64)
    with workspace.record.session() as session:
        lookup = session.scalars

        def other_records_it_after_the_lookup(statement: Any) -> NothingFound:
            assert lookup(statement).all() == []
            monkeypatch.setattr(session, "scalars", lookup)
            with workspace.record.session() as other:  # another station run, committed meanwhile
                queries.artifact_row(other, *artifact)
            return NothingFound()

        monkeypatch.setattr(session, "scalars", other_records_it_after_the_lookup)
        row = queries.artifact_row(session, *artifact)
        assert (row.kind, row.name, row.hash) == artifact
    with workspace.record.session() as session:
        assert len(queries.find_artifacts(session, "app@v1")) == 1
