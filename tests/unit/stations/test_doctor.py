"""`sftline doctor`: planted faults are found, and --repair fixes the safe ones and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from sftline.config import Project
from sftline.models.materialise import hash_folder
from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.stations.doctor import doctor
from tests.support.cli import run_json
from tests.support.records import add_run, age, chat, commit


@pytest.fixture
def workspace(project_dir: Path) -> Iterator[Workspace]:
    with Workspace.find(project_dir) as ws:
        yield ws


def _kinds(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(f["kind"], f["path"]): f for f in report["findings"]}


def test_a_sound_project_has_no_findings_and_exits_0(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    version = commit(workspace, "support", [chat("a", "alice", "hi")])
    (workspace.project.runs_dir / "run-0001" / "model").mkdir(parents=True)
    add_run(workspace, "run-0001", version)
    report = run_json(capsys, "doctor")
    assert report["findings"] == [] and report["problems"] == 0
    assert report["checked"] == {"objects": 1, "references": 1, "runs": 1, "base_models": 0}


def test_planted_faults_are_found_and_repair_fixes_only_the_safe_ones(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workspace.project.root
    objects = workspace.objects.root
    kept = commit(workspace, "support", [chat("a", "alice", "hi")])
    damaged = commit(workspace, "other", [chat("b", "bob", "hello")])
    corrupt = objects / damaged.object_hash
    corrupt.chmod(0o644)
    corrupt.write_bytes(b"not what was stored")
    old_orphan = workspace.objects.path(workspace.objects.put_bytes(b"an orphan"))
    age(old_orphan, hours=2)
    young_orphan = workspace.objects.path(workspace.objects.put_bytes(b"a young orphan"))
    old_temp = objects / ".tmp-killed"
    old_temp.write_bytes(b"x" * 10)
    age(old_temp, hours=2)
    young_temp = objects / ".tmp-writing"
    young_temp.write_bytes(b"y")
    old_checkpoint_temp = workspace.project.runs_dir / "run-0001" / "checkpoints" / ".tmp-step-0000004-77"
    old_checkpoint_temp.mkdir(parents=True)
    (old_checkpoint_temp / "state.pt").write_bytes(b"z" * 5)
    age(old_checkpoint_temp, hours=2)
    add_run(workspace, "run-0001", kept, status="running", heartbeat_age=timedelta(hours=1))
    add_run(workspace, "run-0002", kept)  # completed, but its folder was never there

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    found = run_json(capsys, "doctor", code=1)["out"]
    kinds = _kinds(found)
    assert set(kinds) == {
        ("corrupt_object", rel(corrupt)),
        ("orphan_object", rel(old_orphan)),
        ("orphan_object", rel(young_orphan)),
        ("orphan_temp", rel(old_temp)),
        ("orphan_temp", rel(young_temp)),
        ("orphan_temp", rel(old_checkpoint_temp)),
        ("stale_run", "run-0001"),
        ("missing_run_folder", rel(workspace.project.runs_dir / "run-0002")),
    }
    problems = {key for key, f in kinds.items() if f["problem"]}
    assert problems == set(kinds) - {("orphan_object", rel(young_orphan)), ("orphan_temp", rel(young_temp))}
    assert found["problems"] == 6 and found["repaired"] == 0
    assert "changed on disk" in kinds[("corrupt_object", rel(corrupt))]["detail"]
    assert "kept: stored" in kinds[("orphan_object", rel(young_orphan))]["detail"]

    repaired = run_json(capsys, "doctor", "--repair", code=1)["out"]
    fixed = {key for key, f in _kinds(repaired).items() if f["repaired"]}
    assert fixed == {
        ("orphan_object", rel(old_orphan)),
        ("orphan_temp", rel(old_temp)),
        ("orphan_temp", rel(old_checkpoint_temp)),
        ("stale_run", "run-0001"),
    }
    assert repaired["problems"] == 2 and repaired["repaired"] == 4
    assert not old_orphan.exists() and not old_temp.exists() and not old_checkpoint_temp.exists()
    # Never removed: what the record names (even corrupt), and what a live writer may own.
    assert corrupt.read_bytes() == b"not what was stored"
    assert (objects / kept.object_hash).is_file()
    assert young_orphan.exists() and young_temp.exists()
    with workspace.record.session() as session:
        assert queries.get_run(session, "run-0001").status == "interrupted"

    again = run_json(capsys, "doctor", code=1)["out"]
    assert {k for k, f in _kinds(again).items() if f["problem"]} == {
        ("corrupt_object", rel(corrupt)),
        ("missing_run_folder", rel(workspace.project.runs_dir / "run-0002")),
    }


def test_orphans_stay_while_a_run_holds_a_live_lease(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    version = commit(workspace, "support", [chat("a", "alice", "hi")])
    add_run(workspace, "run-0001", version, status="running", live=True)
    orphan = workspace.objects.path(workspace.objects.put_bytes(b"about to be named"))
    age(orphan, hours=2)
    temp = workspace.project.runs_dir / "run-0001" / "checkpoints" / ".tmp-step-0000002-1"
    temp.mkdir(parents=True)
    age(temp, hours=2)
    report = run_json(capsys, "doctor", "--repair")
    details = {f["kind"]: f for f in report["findings"]}
    assert set(details) == {"orphan_object", "orphan_temp"}
    assert not any(f["problem"] or f["repaired"] for f in report["findings"])
    assert "run-0001 (pid" in details["orphan_object"]["detail"]
    assert "inside run-0001, which is running" in details["orphan_temp"]["detail"]
    assert orphan.exists() and temp.exists()


def test_a_record_naming_a_non_hash_object_is_reported_not_followed(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    version = commit(workspace, "support", [chat("a", "alice", "hi")])
    with workspace.record.session() as session:
        row = queries.resolve(session, "support@v1")
        row.object_hash = "../../../etc/passwd"
    report = run_json(capsys, "doctor", code=1)["out"]
    (finding,) = [f for f in report["findings"] if f["problem"]]
    assert (finding["kind"], finding["path"]) == ("malformed_reference", "support@v1 examples")
    # The real object is no longer named by any row: an orphan, too young to be removed.
    orphans = [f for f in report["findings"] if f["kind"] == "orphan_object"]
    assert [f["path"] for f in orphans] == [f".sftline/objects/{version.object_hash}"]


def test_a_record_from_a_newer_sftline_is_reported_and_nothing_else_is_checked(
    workspace: Workspace,
) -> None:
    with workspace.record.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    report = doctor(Project.find(workspace.project.root))
    assert [(f.kind, f.problem) for f in report.findings] == [("schema_newer", True)]
    assert report.schema["record"] == "9999" and report.exit_code == 1
    assert "upgrade sftline" in report.findings[0].detail


def test_changed_model_files_and_missing_base_models_are_found_and_left_alone(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    version = commit(workspace, "support", [chat("a", "alice", "hi")])
    model = workspace.project.runs_dir / "run-0001" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    files, model_hash = hash_folder(model)
    add_run(workspace, "run-0001", version, model_files=files, model_hash=model_hash)
    base = workspace.project.root / "tiny"
    base.mkdir()
    (base / "config.json").write_text("{}")
    base_files, base_hash = hash_folder(base)
    with workspace.record.session() as session:
        queries.save_base_model(
            session, "tiny", kind="chat", path=str(base), source="t", content_hash=base_hash, files=base_files
        )
    assert run_json(capsys, "doctor")["findings"] == []

    with workspace.record.session() as session:
        queries.save_base_model(
            session,
            "gone",
            kind="chat",
            path=str(base) + "-gone",
            source="t",
            content_hash="0" * 64,
            files={},
        )

    (model / "model.safetensors").write_bytes(b"tampered")
    (model / "config.json").unlink()
    (base / "config.json").write_text('{"changed": true}')
    report = run_json(capsys, "doctor", "--repair", code=1)["out"]
    details = {f["kind"]: f["detail"] for f in report["findings"]}
    assert set(details) == {"changed_model", "changed_base_model", "missing_base_model"}
    assert "1 missing (config.json), 1 changed (model.safetensors)" in details["changed_model"]
    assert "1 changed (config.json)" in details["changed_base_model"]
    assert "`sftline models pull gone`" in details["missing_base_model"]
    assert report["repaired"] == 0 and (model / "model.safetensors").read_bytes() == b"tampered"
