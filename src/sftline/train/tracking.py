"""Experiment tracking where people already look (`--report-to tensorboard|mlflow`).

A tracker receives a copy of what the record keeps: the run's config as parameters, the per-step
metrics as each checkpoint makes them final (the same rows `RunMetric` gets), and at the end the
run's outcome. The record stays the source of truth, so a tracker that fails mid-run (a tracking
server down) is dropped with one warning and training goes on. Only rank 0 reports.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from sftline.errors import OptionalDependencyMissing
from sftline.provenance import code_version
from sftline.train.config import TrainConfig

ParamValue = str | int | float | bool | None
Ending = Literal["finished", "failed", "killed"]
"""How a run's tracking ends: its last step reached, an error, or stopped before its last step."""

PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny")}
"""Tracker -> (the module it imports, the package that installs it)."""

MLFLOW_BATCH = {"params": 100, "metrics": 1000}
"""Most params and metrics one MLflow `log_batch` call accepts."""


class TrackerWarning(UserWarning):
    """A tracker stopped receiving a run; the record still has everything."""


@dataclass(frozen=True)
class TrackedRun:
    """What names a run where it is tracked."""

    project: str
    """The project's name: MLflow's experiment."""
    name: str
    """The run's name in the record (`run-0001`)."""
    data: str
    """The training data's version (`intents@1`)."""
    base: str
    """The base model's name."""
    folder: Path
    """The run's folder (.sftline/runs/RUN): TensorBoard's events go under it by default."""
    resumed: bool = False
    """A resume continues the MLflow run its first start opened."""

    @property
    def tags(self) -> dict[str, str]:
        """Tags that tie a tracker's run back to the record."""
        return {
            "sftline.run": self.name,
            "sftline.data": self.data,
            "sftline.base": self.base,
            "sftline.code": code_version(),
        }


class Tracker(Protocol):
    """Where a run's parameters and metrics are sent."""

    name: str

    def log_params(self, params: Mapping[str, ParamValue]) -> None: ...

    def log_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        """`history`: dicts with a "step" and metric values, as the record gets them."""

    def close(self, ending: Ending) -> None: ...


def require_trackers(names: Sequence[str]) -> None:
    """Refuse, before anything trains, a tracker whose package is not installed."""
    for name in names:
        module, package = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise OptionalDependencyMissing(package, f"--report-to {name}")


class TensorBoardTracker:
    """Scalars per step and the config in the HParams tab, in the run's folder
    (`tensorboard --logdir .sftline/runs`) or under $SFTLINE_TENSORBOARD_DIR."""

    name = "tensorboard"

    def __init__(self, run: TrackedRun) -> None:
        from torch.utils.tensorboard import SummaryWriter

        root = os.environ.get("SFTLINE_TENSORBOARD_DIR")
        self.logdir = Path(root) / run.name if root else run.folder / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.logdir))

    def log_params(self, params: Mapping[str, ParamValue]) -> None:
        from torch.utils.tensorboard.summary import hparams

        writer = self.writer.file_writer
        assert writer is not None  # SummaryWriter opens it on construction
        for summary in hparams(dict(params), {}):
            writer.add_summary(summary)
        writer.flush()

    def log_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        for entry in history:
            for key, value in _values(entry).items():
                self.writer.add_scalar(key, value, entry["step"])
        self.writer.flush()

    def close(self, ending: Ending) -> None:
        self.writer.close()


class MlflowTracker:
    """An MLflow run named after the sftline run, in the experiment named after the project, on
    MLFLOW_TRACKING_URI (else MLflow's own default). How long an unanswered request waits is
    MLflow's: MLFLOW_HTTP_REQUEST_TIMEOUT and MLFLOW_HTTP_REQUEST_MAX_RETRIES."""

    name = "mlflow"

    def __init__(self, run: TrackedRun) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        experiment = self.client.get_experiment_by_name(run.project)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(run.project)
        resumed = self._resumed(experiment_id, run) if run.resumed else None
        self.run_id = (
            resumed or self.client.create_run(experiment_id, tags=run.tags, run_name=run.name).info.run_id
        )

    def _resumed(self, experiment_id: str, run: TrackedRun) -> str | None:
        """The MLflow run a resumed run's first start opened, marked running again; None if none."""
        found = self.client.search_runs(
            [experiment_id],
            " and ".join(
                f"tags.`{key}` = '{value}'" for key, value in run.tags.items() if key != "sftline.code"
            ),
            max_results=1,
        )
        if not found:
            return None
        run_id: str = found[0].info.run_id
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def log_params(self, params: Mapping[str, ParamValue]) -> None:
        from mlflow.entities import Param

        shown = [
            Param(key, value if isinstance(value, str) else json.dumps(value))
            for key, value in params.items()
        ]
        for chunk in _chunks(shown, MLFLOW_BATCH["params"]):
            self.client.log_batch(self.run_id, params=chunk)

    def log_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, value, now, entry["step"])
            for entry in history
            for key, value in _values(entry).items()
        ]
        for chunk in _chunks(metrics, MLFLOW_BATCH["metrics"]):
            self.client.log_batch(self.run_id, metrics=chunk)

    def close(self, ending: Ending) -> None:
        # With a tracking server MLflow prints the run's address to stdout, which --json owns.
        with contextlib.redirect_stdout(sys.stderr):
            self.client.set_terminated(self.run_id, status=ending.upper())


OPENERS: dict[str, Callable[[TrackedRun], Tracker]] = {
    "tensorboard": TensorBoardTracker,
    "mlflow": MlflowTracker,
}


class Trackers:
    """A run's trackers behind one door. Each call reaches every tracker still working; a tracker's
    first error warns once and drops it, so a tracker never stops training (and a server that does
    not answer costs its client's timeouts and retries once, not at every checkpoint)."""

    def __init__(self, run: TrackedRun, trackers: Sequence[Tracker] = ()) -> None:
        self.run = run
        self.trackers = list(trackers)
        self.finished = False

    @classmethod
    def opened(cls, names: Sequence[str], run: TrackedRun) -> Trackers:
        """A tracker for each name given (once each); one that cannot open warns and is left out."""
        trackers = cls(run)
        for name in dict.fromkeys(names):
            try:
                trackers.trackers.append(OPENERS[name](run))
            except Exception as exc:
                trackers.warn(name, exc)
        return trackers

    def log_params(self, params: Mapping[str, ParamValue]) -> None:
        self._each(lambda tracker: tracker.log_params(params))

    def log_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        self._each(lambda tracker: tracker.log_metrics(history))

    def finish(self, final: Mapping[str, Any]) -> None:
        """The run's outcome (see `final_metrics`); the run reached its end."""
        self.log_metrics([final])
        self.finished = True

    def close(self, ending: Ending) -> None:
        self._each(lambda tracker: tracker.close(ending))
        self.trackers = []

    def warn(self, name: str, exc: Exception) -> None:
        first = (str(exc).strip().splitlines() or [""])[0]
        warnings.warn(
            f"--report-to {name}: {self.run.name} is no longer sent there ({type(exc).__name__}: {first}); "
            "training goes on and the record keeps every metric",
            TrackerWarning,
            stacklevel=2,
        )

    def _each(self, call: Callable[[Tracker], None]) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as exc:
                self.trackers.remove(tracker)
                self.warn(tracker.name, exc)


@contextmanager
def tracking(names: Sequence[str], run: TrackedRun, *, enabled: bool = True) -> Iterator[Trackers]:
    """The run's trackers while it trains (none where `enabled` is false: ranks other than 0). On
    exit each is closed: finished when `Trackers.finish` was called, failed on an error, killed
    otherwise (an interrupt, or a run stopped before its last step)."""
    trackers = Trackers.opened(names if enabled else [], run)
    try:
        yield trackers
    except Exception:
        trackers.close("failed")
        raise
    except BaseException:
        trackers.close("killed")
        raise
    trackers.close("finished" if trackers.finished else "killed")


def run_params(config: TrainConfig, batching: Mapping[str, Any]) -> dict[str, ParamValue]:
    """The config as trackers show it: nested settings flattened (`lora.rank`), lists as JSON, the
    micro-batching chosen (`batching.*`); report_to left out, since it says where a run is shown,
    not how it trains (a resume may change it)."""
    values = config.model_dump(mode="json", exclude={"report_to"})
    return _flat({**values, "batching": dict(batching)})


def final_metrics(
    summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]], calibration: Mapping[str, Any]
) -> dict[str, Any]:
    """The run's outcome at its last step, as `final/...` metrics: the summary's last loss, speed
    and best holdout value; the holdout's metrics at the best step, whose weights are exported; a
    classifier's holdout accuracy from calibration (`calibration`: classifier.json's extras)."""
    best = next((entry for entry in history if entry["step"] == summary["best_step"]), {})
    holdout = {
        f"final/holdout_{key.removeprefix('eval_')}": value
        for key, value in best.items()
        if key.startswith("eval_")
    }
    values = {
        "final/loss": summary["final_loss"],
        "final/tokens_per_second": summary["tokens_per_second"],
        "final/computed_tokens_per_second": summary["computed_tokens_per_second"],
        f"final/best_eval_{summary['eval_metric']}": summary["best_eval"],
        "final/best_step": summary["best_step"],
        "final/holdout_accuracy": calibration.get("holdout_accuracy"),
        **holdout,
    }
    return {"step": summary["steps"], **{key: value for key, value in values.items() if value is not None}}


def _values(entry: Mapping[str, Any]) -> dict[str, float]:
    """A history entry's metrics as floats (without its step; a value not measured left out)."""
    return {key: float(value) for key, value in entry.items() if key != "step" and value is not None}


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, ParamValue]:
    flat: dict[str, ParamValue] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            flat[f"{prefix}{key}"] = json.dumps(value)
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
