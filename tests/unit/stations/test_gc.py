"""`sftline gc`: the dry run lists exactly what --apply removes; kept checkpoints stay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from sftline.record import queries
from sftline.record.workspace import Workspace
from tests.support.cli import run_json
from tests.support.records import add_run, age, chat, commit, make_checkpoints


@pytest.fixture
def workspace(project_dir: Path) -> Iterator[Workspace]:
    with Workspace.find(project_dir) as ws:
        yield ws


def _tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("step-*")}


def test_dry_run_lists_and_apply_removes_old_checkpoints_orphans_and_unused_caches(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = workspace.project.runs_dir
    version = commit(workspace, "support", [chat("a", "alice", "hi")])
    add_run(workspace, "run-0001", version, status="completed")
    make_checkpoints(runs / "run-0001", steps=[2, 4, 6], best=[2, 4])
    add_run(workspace, "run-0002", version, status="failed")
    make_checkpoints(runs / "run-0002", steps=[2, 4])
    add_run(workspace, "run-0003", version, status="interrupted")
    make_checkpoints(runs / "run-0003", steps=[2, 4], best=[2])
    add_run(workspace, "run-0004", version, status="running", heartbeat_age=timedelta(hours=1))
    make_checkpoints(runs / "run-0004", steps=[2, 4])  # its process died: resumable, kept
    (runs / "run-0001" / "model").mkdir()
    (runs / "run-0001" / "model" / "model.safetensors").write_bytes(b"m" * 50)
    orphan = workspace.objects.path(workspace.objects.put_bytes(b"o" * 30))
    age(orphan, hours=2)
    cache = workspace.project.models_cache_dir
    unused = cache / "old-model"
    unused.mkdir(parents=True)
    (unused / "model.safetensors").write_bytes(b"c" * 70)
    in_use = cache / "tiny"
    in_use.mkdir()
    (in_use / "model.safetensors").write_bytes(b"t" * 70)
    with workspace.record.session() as session:
        queries.save_base_model(
            session, "tiny", kind="chat", path=str(in_use), source="test", content_hash="0" * 64, files={}
        )
    before = {name: _tree(runs / name) for name in ("run-0003", "run-0004")}

    plan = run_json(capsys, "gc")
    expected = {
        ("checkpoint", ".sftline/runs/run-0001/checkpoints/step-0000002", 100),
        ("checkpoint", ".sftline/runs/run-0001/checkpoints/step-0000004", 100),
        ("checkpoint", ".sftline/runs/run-0001/checkpoints/best/step-0000002", 100),
        ("checkpoint", ".sftline/runs/run-0002/checkpoints/step-0000002", 100),
        ("object", f".sftline/objects/{orphan.name}", 30),
        ("cache", ".sftline/cache/models/old-model", 70),
    }
    assert {(r["kind"], r["path"], r["bytes"]) for r in plan["removals"]} == expected
    assert plan["bytes"] == 4 * 100 + 30 + 70 and plan["applied"] is False and plan["removed"] == 0
    kept = {r["path"]: r["detail"] for r in plan["kept"]}
    assert set(kept) == {f".sftline/runs/run-000{i}/checkpoints" for i in (3, 4)}
    assert "run-0003 is interrupted" in kept[".sftline/runs/run-0003/checkpoints"]
    assert "run-0004 is interrupted" in kept[".sftline/runs/run-0004/checkpoints"]
    assert orphan.exists() and unused.exists()  # a dry run removes nothing
    assert _tree(runs / "run-0001") == {
        "checkpoints/step-0000002",
        "checkpoints/step-0000004",
        "checkpoints/step-0000006",
        "checkpoints/best/step-0000002",
        "checkpoints/best/step-0000004",
    }

    applied = run_json(capsys, "gc", "--apply")
    assert applied["applied"] is True and applied["removed"] == len(expected) and applied["failed"] == []
    assert _tree(runs / "run-0001") == {"checkpoints/step-0000006", "checkpoints/best/step-0000004"}
    assert _tree(runs / "run-0002") == {"checkpoints/step-0000004"}
    assert {name: _tree(runs / name) for name in before} == before
    assert not orphan.exists() and not unused.exists()
    assert (in_use / "model.safetensors").exists() and (runs / "run-0001" / "model").is_dir()
    assert (workspace.objects.root / version.object_hash).is_file()

    assert run_json(capsys, "gc")["removals"] == []


def test_checkpoints_outside_the_projects_runs_folder_are_left_alone(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = commit(workspace, "support", [chat("a", "alice", "hi")])
    elsewhere = tmp_path / "not-a-run"
    make_checkpoints(elsewhere, steps=[2, 4])
    run = add_run(workspace, "run-0001", version)
    with workspace.record.session() as session:
        queries.get_run(session, run.name).output_dir = str(elsewhere)
    plan = run_json(capsys, "gc", "--apply")
    assert plan["removals"] == [] and len(plan["kept"]) == 1
    assert _tree(elsewhere) == {"checkpoints/step-0000002", "checkpoints/step-0000004"}


def test_a_live_run_keeps_its_checkpoints_and_holds_back_orphan_objects(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = workspace.project.runs_dir
    version = commit(workspace, "support", [chat("a", "alice", "hi")])
    add_run(workspace, "run-0001", version, status="running", live=True)
    make_checkpoints(runs / "run-0001", steps=[2, 4])
    orphan = workspace.objects.path(workspace.objects.put_bytes(b"o" * 30))
    age(orphan, hours=2)
    plan = run_json(capsys, "gc", "--apply")
    assert plan["removals"] == []
    kept = {r["path"]: r["detail"] for r in plan["kept"]}
    assert "run-0001 is running" in kept[".sftline/runs/run-0001/checkpoints"]
    assert "run-0001 (pid" in kept[f".sftline/objects/{orphan.name}"]
    assert orphan.exists() and _tree(runs / "run-0001") == {
        "checkpoints/step-0000002",
        "checkpoints/step-0000004",
    }
