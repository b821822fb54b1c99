"""`sftline data purge`: new versions without the matches, the erasure recorded (without the
content), the runs made from the old versions listed, and the counts adding up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sftline.data.erasure import ExampleMatch
from sftline.record import queries
from sftline.record.lineage import lineage
from sftline.record.workspace import Workspace
from sftline.stations import purge as purge_module
from sftline.stations.purge import purge
from sftline.stations.runner import ArtifactRef, Produced, Work, run_station
from sftline.stations.split import freeze_gold
from sftline.stations.versions import load_examples
from tests.support.cli import run_json
from tests.support.records import add_run, chat, commit, labelled

ALICE = ["--match", "user_id=alice", "--match", "text~=ALICE@example.com"]


@pytest.fixture
def workspace(project_dir: Path) -> Iterator[Workspace]:
    with Workspace.find(project_dir) as ws:
        yield ws


def _ids(workspace: Workspace, ref: str) -> list[str]:
    with workspace.record.session() as session:
        return [e.id for e in load_examples(workspace, queries.resolve(session, ref))]


def _plant(workspace: Workspace) -> None:
    """support@v1 [a1 b1 c1], support@v2 [a1 b1 c1 a2 d1], labels@v1 [x y]: alice is a1 and a2
    (by tag), c1 and x (her address in the text); run-0001 trained on support@v1, run-0002 held
    out support@v2, run-0003 trained on labels@v1; run-0004 never saw her."""
    v1 = [
        chat("a1", "alice", "where is my order?"),
        chat("b1", "bob", "hello"),
        chat("c1", "carol", "forward this to alice@example.com"),
    ]
    support1 = commit(workspace, "support", v1)
    support2 = commit(workspace, "support", [*v1, chat("a2", "alice", "thanks"), chat("d1", "dave", "hi")])
    labels = commit(workspace, "labels", [labelled("x", "mail Alice@Example.com now"), labelled("y", "hi")])
    clean = commit(workspace, "clean", [chat("e1", "eve", "hey")])
    add_run(workspace, "run-0001", support1)
    add_run(workspace, "run-0002", clean, holdout=support2, status="failed")
    add_run(workspace, "run-0003", labels, status="interrupted")
    add_run(workspace, "run-0004", clean)


def test_purge_writes_versions_without_the_matches_records_the_erasure_and_lists_the_runs(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    _plant(workspace)
    report = run_json(capsys, "data", "purge", *ALICE, "--reason", "request 42")
    by_name = {d["dataset"]: d for d in report["datasets"]}
    assert by_name == {
        "clean": {
            "dataset": "clean",
            "status": "no match",
            "source": "clean@v1",
            "before": 1,
            "removed": 0,
            "after": 1,
            "written": None,
        },
        "labels": {
            "dataset": "labels",
            "status": "purged",
            "source": "labels@v1",
            "before": 2,
            "removed": 1,
            "after": 1,
            "written": "labels@v2",
        },
        "support": {
            "dataset": "support",
            "status": "purged",
            "source": "support@v2",
            "before": 5,
            "removed": 3,
            "after": 2,
            "written": "support@v3",
        },
    }
    assert report["removed"] == 4 == sum(d["before"] - d["after"] for d in report["datasets"])
    assert _ids(workspace, "support@v3") == ["b1", "d1"] and _ids(workspace, "labels@v2") == ["y"]
    assert _ids(workspace, "support@v2") == ["a1", "b1", "c1", "a2", "d1"]  # versions are immutable
    assert report["still_holding"] == ["labels@v1", "support@v1", "support@v2"]
    assert report["runs"] == [
        {"run": "run-0001", "status": "completed", "via": "trained on support@v1"},
        {"run": "run-0002", "status": "failed", "via": "held out support@v2"},
        {"run": "run-0003", "status": "interrupted", "via": "trained on labels@v1"},
    ]
    assert report["residue"]  # what a purge leaves is always said

    with workspace.record.session() as session:
        written = queries.resolve(session, "support@v3")
        assert (written.created_by, written.parent.ref, written.n_examples) == ("purge", "support@v2", 2)
        assert (written.changelog["removed"], written.changelog["added"]) == (3, 0)
        assert written.provenance["erasure"] == report["erasure"]
        (erasure,) = queries.erasures(session)
        assert erasure.id == report["erasure"] and erasure.reason == "request 42"
        assert erasure.n_removed == 4 and erasure.runs == ["run-0001", "run-0002", "run-0003"]
        assert [m["value_sha256"][:8] for m in erasure.matches] == [
            m.as_record()["value_sha256"][:8]
            for m in map(ExampleMatch.parse, ["user_id=alice", "text~=ALICE@example.com"])
        ]
        # The record keeps hashes of what was matched, never the values or the content.
        recorded = json.dumps(
            [erasure.matches, erasure.datasets, erasure.still_holding]
            + [(r.settings, r.result, r.inputs, r.outputs) for r in queries.station_runs(session)]
        )
        assert "alice" not in recorded.lower()
        graph = lineage(session, "support@v3")
    purge_edges = [e for e in graph.edges if e["station"] == "purge"]
    assert [(graph.nodes[e["from"]]["name"], graph.nodes[e["to"]]["name"]) for e in purge_edges] == [
        ("support@v2", "support@v3")
    ]

    listed = run_json(capsys, "data", "erasures")
    assert [(e["erasure"], e["removed"], e["reason"]) for e in listed] == [(erasure.id, 4, "request 42")]
    again = run_json(capsys, "data", "purge", *ALICE)  # the new versions hold none of it
    assert again["removed"] == 0 and {d["status"] for d in again["datasets"]} == {"no match"}
    assert again["erasure"] == erasure.id + 1  # recorded, though nothing was left to erase


def test_a_dry_run_reports_the_same_counts_and_writes_nothing(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    _plant(workspace)
    report = run_json(capsys, "data", "purge", *ALICE, "--dataset", "support", "--dry-run")
    ((name, status, removed, after),) = [
        (d["dataset"], d["status"], d["removed"], d["after"]) for d in report["datasets"]
    ]
    assert (name, status, removed, after) == ("support", "would purge", 3, 2)
    assert report["erasure"] is None and report["removed"] == 0
    assert report["still_holding"] == ["support@v1", "support@v2"]
    with workspace.record.session() as session:
        assert len(queries.list_versions(session, "support")) == 2
        assert queries.erasures(session) == [] and queries.station_runs(session) == []


def test_a_frozen_gold_set_is_rewritten_only_when_asked_and_stays_frozen(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    commit(workspace, "support-gold", [chat("a1", "alice", "hi"), chat("b1", "bob", "hello")])
    freeze_gold(workspace, "support-gold@v1")
    blocked = run_json(capsys, "data", "purge", "--match", "user_id=alice", code=1)
    assert "--refreeze-gold" in blocked["err"]
    ((status, written),) = [(d["status"], d["written"]) for d in blocked["out"]["datasets"]]
    assert (status, written) == ("blocked", None)
    assert _ids(workspace, "support-gold") == ["a1", "b1"]

    done = run_json(capsys, "data", "purge", "--match", "user_id=alice", "--refreeze-gold")
    assert [d["written"] for d in done["datasets"]] == ["support-gold@v2"]
    with workspace.record.session() as session:
        frozen = queries.frozen_gold_named(session, "support-gold")
        assert frozen is not None and frozen.version.ref == "support-gold@v2"
    assert _ids(workspace, "support-gold") == ["b1"]


def test_runs_made_through_the_lineage_are_listed_but_not_through_a_version_without_the_matches(
    workspace: Workspace,
) -> None:
    source = commit(workspace, "support", [chat("a1", "alice", "hi"), chat("b1", "bob", "hello")])
    derived = commit(workspace, "support-train", [chat("a1", "alice", "hi")])
    checked = commit(workspace, "support-checked", [chat("b1", "bob", "hello")])
    add_run(workspace, "run-0001", derived)
    add_run(workspace, "run-0002", checked)

    def step(station: str, made: object) -> None:
        inputs = (ArtifactRef("dataset_version", source.ref, source.content_hash),)
        output = ArtifactRef("dataset_version", made.ref, made.content_hash)  # type: ignore[attr-defined]
        run_station(workspace, Work(station, station, inputs, {}), lambda: Produced([output], {}))

    step("split", derived)  # support-train came from support, with her example
    step("check", checked)  # support-checked came from support, without it
    for made in (derived, checked):
        trained = (ArtifactRef("dataset_version", made.ref, made.content_hash),)
        run = "run-0001" if made is derived else "run-0002"
        produced = Produced([ArtifactRef("run", run, "f" * 64)], {})
        run_station(workspace, Work("train", f"train {run}", trained, {}), lambda p=produced: p)
    # Only support is searched: support-train is not, so its run is found through the lineage;
    # support-checked (searched, no match) stops the walk.
    report = purge(
        workspace,
        [ExampleMatch.parse("user_id=alice")],
        datasets=["support", "support-checked"],
        dry_run=True,
    )
    assert report.runs == [{"run": "run-0001", "status": "completed", "via": "made from them (lineage)"}]


def test_an_import_landing_during_a_purge_is_kept_and_purged_too(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = [chat("a1", "alice", "hi"), chat("b1", "bob", "hello")]
    commit(workspace, "support", first)
    surveyed = purge_module._survey
    landed: list[object] = []

    def survey_then_an_import_lands(*args: object, **kwargs: object) -> object:
        found = surveyed(*args, **kwargs)  # type: ignore[arg-type]
        if not landed:  # another process appends between the survey and the purge's commit
            landed.append(
                commit(workspace, "support", [*first, chat("a3", "alice", "again"), chat("f1", "fay", "x")])
            )
        return found

    monkeypatch.setattr(purge_module, "_survey", survey_then_an_import_lands)
    report = purge(workspace, [ExampleMatch.parse("user_id=alice")])
    ((source, removed, written),) = [(d.source, d.removed, d.written) for d in report.datasets]
    assert (source, removed, written) == ("support@v2", 2, "support@v3")
    assert _ids(workspace, "support@v3") == ["b1", "f1"]
    with workspace.record.session() as session:
        assert [e.n_removed for e in queries.erasures(session)] == [2]  # the lost try left no row
