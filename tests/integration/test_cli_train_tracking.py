"""`sftline train --report-to tensorboard --report-to mlflow` on the tiny model: what each tracker
received, read back with its own reader, against the record."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from sftline.record.workspace import Workspace
from sftline.stations.train import start_run, train_work
from sftline.train import tracking
from sftline.train.config import TrainConfig
from sftline.train.tracking import TrackedRun, TrackerWarning
from tests.support.cli import run_json

pytestmark = pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)

TRAIN = ["train", "--base", "tiny", "--data", "intents", "--max-steps", "3", "--batch-tokens", "256"]
TRAIN += ["--save-every", "2", "--seed", "3", "--lr", "1e-3"]


def recorded_metrics(capsys: pytest.CaptureFixture[str], run: str) -> list[dict[str, Any]]:
    return run_json(capsys, "runs", "show", run)["metrics"]  # type: ignore[no-any-return]


def test_report_to_sends_the_record_s_metrics_config_and_outcome_to_both_trackers(
    chat_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    summary = run_json(capsys, *TRAIN, "--report-to", "tensorboard", "--report-to", "mlflow")
    assert (summary["run"], summary["status"], summary["steps"]) == ("run-0001", "completed", 3)
    record = recorded_metrics(capsys, "run-0001")
    losses = [(m["step"], m["loss"]) for m in record]
    assert [step for step, _ in losses] == [1, 2, 3]

    # TensorBoard: the record's losses (as float32), then the outcome at the last step.
    events = EventAccumulator(str(chat_project / ".sftline" / "runs" / "run-0001" / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [
        (step, pytest.approx(loss, rel=1e-6)) for step, loss in losses
    ]
    [final] = events.Scalars("final/loss")
    assert (final.step, final.value) == (3, pytest.approx(summary["final_loss"], rel=1e-6))
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")

    # MLflow: the project's experiment, a run named after the record's, the very same values.
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("proj")
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id])
    assert (run.info.run_name, run.info.status) == ("run-0001", "FINISHED")
    assert run.data.tags["sftline.data"] == "intents@v1" and run.data.tags["sftline.base"] == "tiny"
    params = run.data.params
    assert (params["lr"], params["max_steps"], params["seed"], params["batching.micro_tokens"]) == (
        "0.001",
        "3",
        "3",
        "256",
    )
    assert "report_to" not in params
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == losses
    tokens = client.get_metric_history(run.info.run_id, "final/tokens_per_second")
    assert [(m.step, m.value) for m in tokens] == [(3, summary["tokens_per_second"])]

    # Where a run is shown is not what it trains: the same work without --report-to is reused.
    again = run_json(capsys, *TRAIN)
    assert (again["station"], again["run"]) == ("cached", "run-0001")


def test_report_to_is_not_part_of_the_train_station_s_key(chat_project: Path) -> None:
    config = TrainConfig(base="tiny", data="intents", max_steps=3)
    with Workspace.find(chat_project) as workspace:
        keys = {
            train_work(workspace, config.model_copy(update={"report_to": shown})).key
            for shown in ([], ["tensorboard"], ["tensorboard", "mlflow"])
        }
        assert len(keys) == 1
        assert train_work(workspace, config.model_copy(update={"seed": 1})).key not in keys


class UnreachableServer:
    """An MLflow tracker whose server went down after the run opened."""

    name = "mlflow"

    def __init__(self, run: TrackedRun) -> None:
        self.steps: list[int] = []

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        raise ConnectionError("HTTPConnectionPool(host='mlflow', port=5000): max retries exceeded")

    def close(self, ending: str) -> None:
        pass


def test_a_tracker_failing_mid_run_warns_and_the_run_completes_into_the_record(
    chat_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(tracking.OPENERS, "mlflow", UnreachableServer)
    with pytest.warns(TrackerWarning, match="--report-to mlflow: run-0001 is no longer sent there") as caught:
        summary = run_json(capsys, *TRAIN, "--report-to", "mlflow", "--report-to", "tensorboard")
    assert len([w for w in caught if issubclass(w.category, TrackerWarning)]) == 1
    assert summary["status"] == "completed"
    assert [m["step"] for m in recorded_metrics(capsys, "run-0001")] == [1, 2, 3]
    assert (chat_project / ".sftline" / "runs" / "run-0001" / "tensorboard").is_dir()


def test_a_missing_tracker_package_is_refused_before_the_run_is_recorded(
    chat_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` finds when not installed
    refused = run_json(capsys, *TRAIN, "--report-to", "mlflow", code=1)
    assert (
        "--report-to mlflow needs the package 'mlflow-skinny': pip install 'mlflow-skinny'" in refused["err"]
    )
    assert run_json(capsys, "runs", "list") == []


def test_a_resume_may_change_where_the_run_is_reported(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings = {"base": "tiny", "data": "intents", "max_steps": 4, "batch_tokens": 256, "save_every": 2}
    with Workspace.find(chat_project) as workspace:
        stopped = start_run(workspace, TrainConfig.model_validate(settings), stop_after_steps=2)
    assert stopped["status"] == "interrupted"
    resumed = run_json(capsys, "train", "--resume", stopped["run"], "--report-to", "tensorboard")
    assert (resumed["run"], resumed["status"]) == (stopped["run"], "completed")
    events = EventAccumulator(str(chat_project / ".sftline" / "runs" / stopped["run"] / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [3, 4]  # the steps this start trained
