"""`--report-to`: what TensorBoard and MLflow receive, read back with their own readers, and that a
tracker which fails never stops the run."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from sftline.errors import ConfigError, OptionalDependencyMissing
from sftline.stations.sweep import parse_grid
from sftline.train.config import TrainConfig
from sftline.train.tracking import (
    OPENERS,
    MlflowTracker,
    TensorBoardTracker,
    TrackedRun,
    Trackers,
    TrackerWarning,
    final_metrics,
    require_trackers,
    run_params,
    tracking,
)

HISTORY = [
    {"step": 1, "loss": 2.5, "lr": 1e-4, "tokens_per_second": 100.0},
    {"step": 2, "loss": 2.0, "lr": 2e-4, "tokens_per_second": 110.0, "eval_loss": 2.25},
]


def tracked(folder: Path, *, resumed: bool = False) -> TrackedRun:
    return TrackedRun("intent-bot", "run-0007", "intents@v2", "tiny", folder, resumed=resumed)


class MemoryTracker:
    """A tracker that keeps what it receives; `fail_on` names the call that raises instead."""

    def __init__(self, name: str = "memory", fail_on: str | None = None) -> None:
        self.name = name
        self.fail_on = fail_on
        self.params: dict[str, Any] = {}
        self.history: list[Mapping[str, Any]] = []
        self.ending: str | None = None
        self.calls = 0

    def _called(self, what: str) -> None:
        self.calls += 1
        if what == self.fail_on:
            raise ConnectionError(f"{what}: connection refused\nretries exhausted")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._called("params")
        self.params.update(params)

    def log_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        self._called("metrics")
        self.history.extend(history)

    def close(self, ending: str) -> None:
        self._called("close")
        self.ending = ending


def test_a_missing_package_is_refused_with_the_pip_install_that_fixes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` finds when not installed
    require_trackers(["tensorboard"])
    with pytest.raises(OptionalDependencyMissing) as refused:
        require_trackers(["tensorboard", "mlflow"])
    assert (
        str(refused.value)
        == "--report-to mlflow needs the package 'mlflow-skinny': pip install 'mlflow-skinny'"
    )


def test_params_are_the_config_flattened_with_the_batching_and_without_report_to() -> None:
    config = TrainConfig(
        base="tiny",
        data="intents",
        lr=1e-3,
        lora={"target_modules": ["q_proj", "v_proj"]},
        report_to=["mlflow"],
    )
    params = run_params(config, {"micro_tokens": 256, "accumulation": 4})
    assert params["lr"] == 1e-3 and params["max_steps"] is None and params["prefix_sharing"] is True
    assert params["lora.rank"] == 16 and params["lora.target_modules"] == '["q_proj", "v_proj"]'
    assert (params["batching.micro_tokens"], params["batching.accumulation"]) == (256, 4)
    assert "report_to" not in params and "lora" not in params
    assert len(params) == len(TrainConfig.model_fields) - 2 + len(config.lora.model_dump()) + 2


def test_final_metrics_are_the_summary_and_the_holdout_at_the_best_step() -> None:
    summary = {
        "steps": 2,
        "final_loss": 2.0,
        "tokens_per_second": 105.0,
        "computed_tokens_per_second": 80.0,
        "eval_metric": "loss",
        "best_eval": 2.25,
        "best_step": 2,
    }
    assert final_metrics(summary, HISTORY, {"holdout_accuracy": 0.75, "temperature": 1.3}) == {
        "step": 2,
        "final/loss": 2.0,
        "final/tokens_per_second": 105.0,
        "final/computed_tokens_per_second": 80.0,
        "final/best_eval_loss": 2.25,
        "final/best_step": 2,
        "final/holdout_accuracy": 0.75,
        "final/holdout_loss": 2.25,
    }
    no_holdout = {**summary, "best_eval": None, "best_step": None}
    assert final_metrics(no_holdout, HISTORY, {}) == {
        "step": 2,
        "final/loss": 2.0,
        "final/tokens_per_second": 105.0,
        "final/computed_tokens_per_second": 80.0,
    }


def test_tensorboard_events_hold_the_step_metrics_and_the_config(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    tracker = TensorBoardTracker(tracked(tmp_path))
    tracker.log_params({"lr": 1e-3, "method": "lora", "max_steps": None, "prefix_sharing": True})
    tracker.log_metrics(HISTORY)
    tracker.close("finished")

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["eval_loss", "loss", "lr", "tokens_per_second"]
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 2.5), (2, 2.0)]
    assert [(e.step, e.value) for e in events.Scalars("eval_loss")] == [(2, 2.25)]
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert sorted(hparams) == ["lr", "method", "prefix_sharing"]  # an unset value is left out
    assert (hparams["lr"].number_value, hparams["method"].string_value) == (1e-3, "lora")


def test_tensorboard_dir_from_the_environment_holds_a_folder_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFTLINE_TENSORBOARD_DIR", str(tmp_path / "tb"))
    tracker = TensorBoardTracker(tracked(tmp_path / "runs" / "run-0007"))
    tracker.close("finished")
    assert tracker.logdir == tmp_path / "tb" / "run-0007"
    assert [p.name.startswith("events.out.tfevents") for p in tracker.logdir.iterdir()] == [True]
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_mlflow_run_holds_the_params_step_metrics_and_tags(tmp_path: Path, mlflow_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    tracker = MlflowTracker(tracked(tmp_path))
    tracker.log_params({"lr": 1e-3, "method": "lora", "max_steps": None, "lora.rank": 16})
    tracker.log_metrics(HISTORY)
    tracker.close("finished")

    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name("intent-bot")
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id])
    assert (run.info.run_name, run.info.status) == ("run-0007", "FINISHED")
    assert run.data.params == {"lr": "0.001", "method": "lora", "max_steps": "null", "lora.rank": "16"}
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("sftline.")}
    assert tags.pop("sftline.code")
    assert tags == {"sftline.run": "run-0007", "sftline.data": "intents@v2", "sftline.base": "tiny"}
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.5), (2, 2.0)]
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval_loss")] == [(2, 2.25)]


def test_a_resumed_run_continues_its_mlflow_run(tmp_path: Path, mlflow_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    first = MlflowTracker(tracked(tmp_path))
    first.log_metrics(HISTORY[:1])
    first.close("killed")
    other = MlflowTracker(TrackedRun("intent-bot", "run-0007", "other@v1", "tiny", tmp_path))
    other.close("finished")  # same run name, other data: another project's run-0007
    resumed = MlflowTracker(tracked(tmp_path, resumed=True))
    assert resumed.run_id == first.run_id
    resumed.log_metrics(HISTORY[1:])
    resumed.close("finished")

    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "loss")] == [
        (1, 2.5),
        (2, 2.0),
    ]


def test_a_failing_tracker_warns_once_and_the_others_go_on(tmp_path: Path) -> None:
    broken, working = MemoryTracker("mlflow", fail_on="metrics"), MemoryTracker("tensorboard")
    with pytest.warns(TrackerWarning) as caught, tracking([], tracked(tmp_path)) as trackers:
        trackers.trackers = [broken, working]
        trackers.log_params({"lr": 1e-3})
        trackers.log_metrics(HISTORY[:1])
        trackers.log_metrics(HISTORY[1:])
        trackers.finish({"step": 2, "final/loss": 2.0})
    assert [str(w.message) for w in caught] == [
        "--report-to mlflow: run-0007 is no longer sent there (ConnectionError: metrics: connection "
        "refused); training goes on and the record keeps every metric"
    ]
    assert (broken.calls, broken.ending) == (2, None)  # params, then the failing metrics; never again
    assert working.history == [*HISTORY, {"step": 2, "final/loss": 2.0}]
    assert (working.params, working.ending) == ({"lr": 1e-3}, "finished")


@pytest.mark.parametrize(
    ("stop", "ending"),
    [(None, "killed"), (RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "killed")],
)
def test_trackers_end_failed_on_an_error_and_killed_without_a_finish(
    tmp_path: Path, stop: BaseException | None, ending: str
) -> None:
    tracker = MemoryTracker()
    with (
        pytest.raises(type(stop)) if stop else contextlib.nullcontext(),
        tracking([], tracked(tmp_path)) as trackers,
    ):
        trackers.trackers = [tracker]
        if stop:
            raise stop
    assert tracker.ending == ending


def test_a_tracker_that_cannot_open_is_left_out_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(run: TrackedRun) -> MemoryTracker:
        raise ConnectionError("no server at http://localhost:5000")

    opened: list[MemoryTracker] = []

    def memory(run: TrackedRun) -> MemoryTracker:
        opened.append(MemoryTracker("tensorboard"))
        return opened[-1]

    monkeypatch.setitem(OPENERS, "mlflow", unreachable)
    monkeypatch.setitem(OPENERS, "tensorboard", memory)
    with pytest.warns(TrackerWarning, match="--report-to mlflow: .*no server at"):
        trackers = Trackers.opened(["mlflow", "tensorboard", "tensorboard"], tracked(tmp_path))
    assert trackers.trackers == opened and len(opened) == 1


def test_ranks_other_than_0_open_no_tracker(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with tracking(["tensorboard", "mlflow"], tracked(tmp_path), enabled=False) as trackers:
            assert trackers.trackers == []
    assert not (tmp_path / "tensorboard").exists()


def test_a_sweep_may_not_vary_where_runs_are_reported() -> None:
    with pytest.raises(ConfigError, match="'report_to' is not a training setting a sweep can vary"):
        parse_grid(["report_to=tensorboard,mlflow"])
