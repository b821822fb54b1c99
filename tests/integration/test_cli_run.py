"""`sftline run`: the line of sftline.yaml end to end on a tiny chat model, cached and re-run
exactly downstream of each change; `sftline lineage`; verdict exit codes; a killed line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sftline.cli.main import main
from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.stations.evaluate import load_outputs
from tests.integration.conftest import classify_rows
from tests.support.cli import run_json

pytestmark = pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)

LINE = {
    "import": [{"path": "intents.jsonl", "name": "intents"}],
    "check": {"dataset": "intents"},
    "split": {"dataset": "intents", "gold": 0.2, "group_by": "none", "seed": 7, "freeze_gold": True},
    "train": {"base": "tiny", "data": "intents-train", "max_steps": 3, "batch_tokens": 256, "seed": 3},
    "eval": {"on": ["intents-gold"], "sample": 8, "max_new_tokens": 3, "no_base": True},
}


def _configure(project: Path, line: dict[str, Any], **sections: Any) -> None:
    path = project / "sftline.yaml"
    config = yaml.safe_load(path.read_text())
    config["line"] = line
    config.update(sections)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _run(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["run", *args, "--json"]) == code, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def _statuses(result: dict[str, Any]) -> dict[str, str]:
    return {s["label"].split(" ")[0]: s["status"] for s in result["stations"]}


def test_the_line_runs_once_then_is_cached_and_reruns_exactly_downstream_of_a_change(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(chat_project, LINE)
    first = _run(capsys)
    # The fixture imported intents.jsonl with `sftline data import`: the same station and key.
    assert _statuses(first) == {
        "import": "cached",
        **dict.fromkeys(["check", "split", "train", "eval"], "ran"),
    }
    assert all(len(s["key"]) == 64 for s in first["stations"]) and first["verdict"] is None
    assert first["exit_code"] == 0

    again = _run(capsys)
    assert _statuses(again) == dict.fromkeys(["import", "check", "split", "train", "eval"], "cached")
    assert [s["key"] for s in again["stations"]] == [s["key"] for s in first["stations"]]
    assert [s["outputs"] for s in again["stations"]] == [s["outputs"] for s in first["stations"]]

    # A gate threshold: the check runs again; it accepts the same examples, so nothing after it does.
    _configure(chat_project, LINE, gates={"near_duplicates": {"threshold": 0.95}})
    assert _statuses(_run(capsys)) == {
        "import": "cached", "check": "ran", "split": "cached", "train": "cached", "eval": "cached",
    }  # fmt: skip

    # The training seed: a new model, so its evaluation too.
    line = json.loads(json.dumps(LINE))
    line["train"]["seed"] = 4
    _configure(chat_project, line, gates={"near_duplicates": {"threshold": 0.95}})
    assert _statuses(_run(capsys)) == {
        "import": "cached", "check": "cached", "split": "cached", "train": "ran", "eval": "ran",
    }  # fmt: skip

    # The evaluation's data: the evaluation alone.
    line["eval"]["sample"] = 6
    _configure(chat_project, line, gates={"near_duplicates": {"threshold": 0.95}})
    assert _statuses(_run(capsys)) == {
        "import": "cached", "check": "cached", "split": "cached", "train": "cached", "eval": "ran",
    }  # fmt: skip

    # One more line in the data file: everything downstream of the import.
    with (chat_project / "intents.jsonl").open("a") as handle:
        chat = {"messages": [{"role": "user", "content": "wire money to my brother"}]}
        chat["messages"].append({"role": "assistant", "content": "transfer"})
        handle.write(json.dumps(chat) + "\n")
    assert _statuses(_run(capsys)) == dict.fromkeys(["import", "check", "split", "train", "eval"], "ran")

    # --until stops the line after a station; --force runs a cached one again.
    partial = _run(capsys, "--until", "split", "--force", "check")
    assert _statuses(partial) == {
        "import": "cached", "check": "ran", "split": "cached", "train": "skipped", "eval": "skipped",
    }  # fmt: skip


def test_lineage_leads_from_an_evaluation_back_to_the_source_file(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(chat_project, LINE)
    result = _run(capsys)
    evaluation = next(s for s in result["stations"] if s["station"] == "eval")["outputs"][0]["name"]
    # The same evaluation asked for by hand is the line's: dataset names are not in the key.
    run = next(s for s in result["stations"] if s["station"] == "train")["outputs"][0]["name"]
    by_hand = run_json(
        capsys, "eval", run, "--on", "intents-gold", "--sample", "8", "--max-new-tokens", "3", "--no-base"
    )
    assert by_hand["station"] == "cached" and by_hand["sections"][0]["evaluation"] == evaluation
    graph = run_json(capsys, "lineage", evaluation)
    kinds = {node["kind"] for node in graph["nodes"]}
    assert kinds == {"source_file", "dataset_version", "gate_report", "base_model", "model", "evaluation"}
    names = {node["id"]: node["name"] for node in graph["nodes"]}
    assert names[graph["root"]] == evaluation
    stations = {(names[e["from"]], e["station"]) for e in graph["edges"]}
    assert (str(chat_project / "intents.jsonl"), "import") in stations
    # Every example passed the gates: the check's version is the import's, read by the split.
    assert ("intents@v1", "check") in stations and ("intents@v1", "split") in stations
    assert ("intents-train@v1", "train") in stations and ("tiny", "train") in stations
    # A dataset's name means its newest version; a name nothing made is one line.
    assert names[run_json(capsys, "lineage", "intents-train")["root"]] == "intents-train@v1"
    assert "no artifact named 'nothing'" in run_json(capsys, "lineage", "nothing", code=1)["err"]
    capsys.readouterr()
    assert main(["lineage", evaluation]) == 0
    tree = capsys.readouterr().out
    assert "intents.jsonl" in tree and "--import-->" in tree and "--train-->" in tree
    assert "gate-report-1" in tree and "(checked)" in tree


def test_the_verdict_is_the_exit_code_cached_or_not(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = json.loads(json.dumps(LINE))
    line["eval"]["baseline"] = "tiny"
    # A tiny random model never answers right: a minimum accuracy of 1.0 must fail.
    release = {"criteria": [{"metric": "accuracy", "min": 1.0}]}
    _configure(chat_project, line, release=release)
    failed = _run(capsys, code=3)
    assert failed["verdict"] == "fail"
    # Each evaluation comes from its own model and dataset, not from every input of the station.
    models = []
    for evaluation in next(s for s in failed["stations"] if s["station"] == "eval")["outputs"]:
        graph = run_json(capsys, "lineage", evaluation["name"])
        names = {node["id"]: (node["kind"], node["name"]) for node in graph["nodes"]}
        parents = sorted(names[e["from"]] for e in graph["edges"] if e["to"] == graph["root"])
        assert len(parents) == 2 and ("dataset_version", "intents-gold@v1") in parents
        models += [p for p in parents if p[0] != "dataset_version"]
    run = next(s for s in failed["stations"] if s["station"] == "train")["outputs"][0]["name"]
    # `tiny` is also a folder in the project: the baseline is that folder.
    assert sorted(models) == [("model", run), ("model_folder", "tiny")]
    cached = _run(capsys, code=3)
    assert cached["verdict"] == "fail" and _statuses(cached)["eval"] == "cached"
    # A criterion that applies to nothing here (a label task's schema) is inconclusive, never pass.
    _configure(chat_project, line, release={"criteria": [{"metric": "schema_compliance", "min": 1.0}]})
    assert _run(capsys, code=4)["verdict"] == "inconclusive"


def test_a_failed_station_stops_the_line_with_one_line_and_skips_the_rest(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = json.loads(json.dumps(LINE))
    line["train"]["max_length"] = 8  # no chat fits in 8 tokens: training fails after it started
    _configure(chat_project, line)
    result = _run(capsys, code=1)
    assert _statuses(result) == {
        "import": "cached", "check": "ran", "split": "ran", "train": "failed", "eval": "skipped",
    }  # fmt: skip
    failed = next(s for s in result["stations"] if s["station"] == "train")
    assert result["error"] == f"train: {failed['error']}" and "max_length 8" in failed["error"]
    with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
        (row,) = [r for r in queries.station_runs(session) if r.station == "train"]
        assert (row.status, row.key, row.error) == ("failed", failed["key"], failed["error"])
    capsys.readouterr()
    assert main(["run"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert [line for line in captured.err.splitlines() if line.startswith("error:")] == [
        f"error: {result['error']}"
    ]
    # The stations before it stay cached.
    assert _statuses(_run(capsys, code=1))["split"] == "cached"


def test_a_misspelled_dataset_is_refused_before_anything_runs(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = json.loads(json.dumps(LINE))
    line["train"]["data"] = "intents-trian"
    line["eval"]["on"] = ["intents-gold", "intents-glod"]
    _configure(chat_project, line)
    failed = run_json(capsys, "run", code=1)
    assert failed["err"].splitlines() == [
        "error: sftline.yaml: 2 problem(s)",
        "  - line.train.data: no dataset 'intents-trian' in the record or made by an earlier station",
        "  - line.eval.on: no dataset 'intents-glod' in the record or made by an earlier station",
    ]
    assert failed["out"]["exit_code"] == 1 and failed["out"]["error"].startswith("sftline.yaml: 2 problem(s)")
    with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
        assert [r.station for r in queries.station_runs(session)] == ["import"]  # the fixture's import


def test_a_killed_line_is_interrupted_and_the_next_run_resumes_its_training(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = json.loads(json.dumps(LINE))
    line["train"].update(max_steps=150, save_every=3)
    _configure(chat_project, line)
    env = {**os.environ, "SFTLINE_HEARTBEAT_SECONDS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-m", "sftline", "run", "--json"],
        cwd=chat_project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    checkpoints = chat_project / ".sftline" / "runs" / "run-0001" / "checkpoints"
    try:
        deadline = time.monotonic() + 120
        while not list(checkpoints.glob("step-*")) and time.monotonic() < deadline:
            assert child.poll() is None, "the line ended before its first checkpoint"
            time.sleep(0.02)
        child.send_signal(signal.SIGSTOP)  # held still: a live holder of the line's lock
        # Another `sftline run` meanwhile is told the line is busy, in one line.
        capsys.readouterr()
        assert main(["run"]) == 1
        assert "the line is busy: `sftline run` is running (pid" in capsys.readouterr().err
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # The killed run's lease is stale: `runs list` shows it interrupted without writing it.
    assert [r["status"] for r in run_json(capsys, "runs", "list")] == ["interrupted"]
    with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
        assert queries.get_run(session, "run-0001").status == "running"
    # The next run marks it interrupted and continues it from its checkpoint: the same run.
    result = _run(capsys)
    train = next(s for s in result["stations"] if s["station"] == "train")
    assert train["status"] == "ran" and train["outputs"][0]["name"] == "run-0001"
    shown = run_json(capsys, "runs", "show", "run-0001")
    assert shown["status"] == "completed" and shown["steps"] == 150
    with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
        trains = [r for r in queries.station_runs(session) if r.station == "train"]
        assert sorted(r.status for r in trains) == ["interrupted", "succeeded"]


def test_a_changed_label_set_evaluates_again_instead_of_reusing_stale_outputs(
    classify_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Zero-shot MiniLM answers with the contract's labels: a new label set must re-run it.
    args = ["eval", "minilm-l6", "--on", "intents", "--sample", "20"]
    first = run_json(capsys, *args)
    assert first["station"] == "ran" and not first["sections"][0]["reused"]
    again = run_json(capsys, *args)
    assert again["station"] == "cached" and again["key"] == first["key"]
    config = yaml.safe_load((classify_project / "sftline.yaml").read_text())
    labels = sorted({label for _, label in classify_rows()} - {"oos"})[:40] + ["oos"]
    config["contract"]["output"]["labels"] = labels
    (classify_project / "sftline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    changed = run_json(capsys, *args)
    assert changed["station"] == "ran" and changed["key"] != first["key"]
    section = changed["sections"][0]
    assert not section["reused"] and section["evaluation"] != first["sections"][0]["evaluation"]
    with Workspace.find(classify_project) as workspace:
        answers = {o.output for o in load_outputs(workspace, section["evaluation"])}
    assert answers <= set(labels)


def test_the_same_content_under_another_name_is_split_and_checked_under_that_name(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(capsys, "data", "import", str(chat_project / "intents.jsonl"), "--name", "copy")
    split = ["--gold", "0.2", "--group-by", "none"]
    original = run_json(capsys, "data", "split", "intents", *split)
    copy = run_json(capsys, "data", "split", "copy", *split)
    assert copy["station"] == "ran" and copy["key"] != original["key"]
    assert {p["dataset"] for p in copy["parts"].values()} == {"copy-train", "copy-gold"}
    assert [p["content_hash"] for p in copy["parts"].values()] == [
        p["content_hash"] for p in original["parts"].values()
    ]
    checked = run_json(capsys, "data", "check", "intents")
    again = run_json(capsys, "data", "check", "copy")
    assert (
        again["station"] == "ran" and again["version_checked"] == "copy@v1" and checked["key"] != again["key"]
    )


def test_a_check_that_quarantines_nothing_names_the_checked_version_and_makes_none(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = chat_project / "intents.jsonl"
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[:60]))
    run_json(capsys, "data", "import", str(data), "--name", "intents")  # intents@v2, the head
    checked = run_json(capsys, "data", "check", "intents@v1")
    assert checked["quarantined"] == 0 and not checked["created_version"]
    assert checked["version"]["ref"] == "intents@v1"
    versions = run_json(capsys, "data", "versions", "intents")
    assert [v["ref"] for v in versions] == ["intents@v1", "intents@v2"]


def test_an_empty_line_and_a_force_past_until_are_refused(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(chat_project, {})
    assert "names no station" in run_json(capsys, "run", code=1)["err"]
    _configure(chat_project, LINE)
    refused = run_json(capsys, "run", "--until", "split", "--force", "eval", code=1)
    assert refused["err"].strip() == "error: --force eval comes after --until split: it would not run"
