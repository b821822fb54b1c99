"""The station runner: keys, cache hits, failures, leases, lineage edges."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sftline.errors import StationBusy, TrainingError
from sftline.record import queries
from sftline.record.lineage import lineage
from sftline.record.schema import StationRun
from sftline.record.workspace import Workspace
from sftline.stations.runner import ArtifactRef, Produced, Work, run_station, station_key

SOURCE = ArtifactRef("source_file", "/data/a.jsonl", "a" * 64)


def _work(settings: dict[str, object] | None = None, inputs: tuple[ArtifactRef, ...] = (SOURCE,)) -> Work:
    return Work("import", "import a", inputs, settings or {"name": "a"})


@pytest.fixture
def workspace(project_dir: Path) -> Workspace:
    with Workspace.find(project_dir) as ws:
        yield ws


def test_the_key_is_the_inputs_hashes_and_the_settings_and_nothing_else() -> None:
    base = station_key("import", [SOURCE], {"name": "a"})
    renamed = ArtifactRef("source_file", "/elsewhere/a.jsonl", "a" * 64)
    assert station_key("import", [renamed], {"name": "a"}) == base  # same bytes, another path
    other_bytes = ArtifactRef("source_file", "/data/a.jsonl", "b" * 64)
    assert station_key("import", [other_bytes], {"name": "a"}) != base
    assert station_key("import", [SOURCE], {"name": "b"}) != base
    assert station_key("check", [SOURCE], {"name": "a"}) != base
    assert station_key("import", [SOURCE], {"name": "a", "x": [1, 2]}) == station_key(
        "import", [SOURCE], {"x": [1, 2], "name": "a"}
    )


def test_a_second_run_with_the_same_key_is_cached_and_does_not_execute(workspace: Workspace) -> None:
    calls = []

    def execute() -> Produced:
        calls.append(1)
        return Produced([ArtifactRef("gate_report", "report-1", "c" * 64)], {"answer": 42})

    first = run_station(workspace, _work(), execute)
    second = run_station(workspace, _work(), execute)
    assert (first.status, second.status, len(calls)) == ("ran", "cached", 1)
    assert second.result == {"answer": 42} and second.key == first.key
    assert second.outputs == first.outputs
    forced = run_station(workspace, _work(), execute, force=True)
    assert forced.status == "ran" and len(calls) == 2
    changed = run_station(workspace, _work({"name": "a", "format": "chat"}), execute)
    assert changed.status == "ran" and changed.key != first.key and len(calls) == 3


def test_a_failure_is_recorded_with_its_error_and_not_cached(workspace: Workspace) -> None:
    def fail() -> Produced:
        raise TrainingError("the masks are empty\nsecond line")

    with pytest.raises(TrainingError):
        run_station(workspace, _work(), fail)
    with workspace.record.session() as session:
        (row,) = queries.station_runs(session)
        assert (row.status, row.error) == ("failed", "the masks are empty second line")
        assert row.finished_at is not None and row.seconds is not None
    ok = run_station(workspace, _work(), lambda: Produced([], {}))
    assert ok.status == "ran"


def _running_row(workspace: Workspace, work: Work, *, pid: int, beat: datetime) -> int:
    from sftline.record.leases import hostname

    with workspace.record.session() as session:
        row = StationRun(
            station=work.station, label=work.label, key=work.key, status="running", settings={},
            inputs=[], outputs=[], result={}, pid=pid, host=hostname(), heartbeat_at=beat,
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_station_is_marked_interrupted_and_run_again(workspace: Workspace) -> None:
    work = _work()
    stale = _running_row(workspace, work, pid=_dead_pid(), beat=datetime.now(timezone.utc))
    result = run_station(workspace, work, lambda: Produced([], {"ok": True}))
    assert result.status == "ran"
    with workspace.record.session() as session:
        row = session.get(StationRun, stale)
        assert row is not None and row.status == "interrupted" and "stale lease" in (row.error or "")


def test_a_live_lease_makes_the_same_station_busy_and_is_left_alone(workspace: Workspace) -> None:
    work = _work()
    live = _running_row(workspace, work, pid=os.getpid(), beat=datetime.now(timezone.utc))
    with pytest.raises(StationBusy, match="already running"):
        run_station(workspace, work, lambda: Produced([], {}))
    with workspace.record.session() as session:
        assert session.get(StationRun, live).status == "running"  # type: ignore[union-attr]
        # A heartbeat far in the past is stale even though the pid lives.
        session.get(StationRun, live).heartbeat_at = datetime.now(timezone.utc) - timedelta(hours=1)  # type: ignore[union-attr]
    assert run_station(workspace, work, lambda: Produced([], {})).status == "ran"


def test_lineage_edges_lead_from_the_output_back_to_the_sources(workspace: Workspace) -> None:
    version = ArtifactRef("dataset_version", "a@v1", "d" * 64)
    run_station(workspace, _work(), lambda: Produced([version], {}))
    report = ArtifactRef("gate_report", "gate-report-1", "e" * 64)
    checked = ArtifactRef("dataset_version", "a@v2", "f" * 64)
    run_station(
        workspace, Work("check", "check a@v1", (version,), {}), lambda: Produced([report, checked], {})
    )
    with workspace.record.session() as session:
        graph = lineage(session, "a@v2").as_json()
    names = {node["id"]: node["name"] for node in graph["nodes"]}
    assert sorted(names.values()) == ["/data/a.jsonl", "a@v1", "a@v2", "gate-report-1"]
    assert sorted((names[e["from"]], names[e["to"]], e["station"]) for e in graph["edges"]) == [
        ("/data/a.jsonl", "a@v1", "import"),
        ("a@v1", "a@v2", "check"),
        ("a@v1", "gate-report-1", "check"),
    ]
    # The gate report is evidence beside the chain: a version's check, not an input of a@v2.
    report_id = next(i for i, name in names.items() if name == "gate-report-1")
    assert graph["reports"] == {str(next(i for i, n in names.items() if n == "a@v1")): [report_id]}


def test_a_killed_child_not_yet_reaped_is_not_alive() -> None:
    from sftline.record.leases import _pid_alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _pid_alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z"
        ):
            time.sleep(0.05)
        assert not _pid_alive(child.pid)  # a zombie: killed, its parent has not waited for it yet
    finally:
        child.kill()
        child.wait()
    assert not _pid_alive(child.pid)
