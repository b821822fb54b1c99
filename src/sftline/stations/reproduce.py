"""`sftline models reproduce NAME@N`: train the registered version again from what its record
names, evaluate the new model as the registered one was evaluated, and report every metric's
difference.

The inputs are content-addressed, so "the recorded line" is: the training data and holdout
versions (checked against the hashes in the record), the same base model (checked likewise), and
the recorded, fully resolved training config and seed. On the same machine and library versions
training is deterministic and the weights come out bitwise equal; elsewhere (another GPU, another
torch) they need not, which is what the tolerance is for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sftline.errors import DatasetNotFound, ModelError
from sftline.evals.settings import EvalSettings
from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.stations.evaluate import evaluate, resolve_model
from sftline.stations.models import find_base_model
from sftline.stations.registry import RegistryError, find_version
from sftline.stations.train import train_station
from sftline.train.config import TrainConfig

DEFAULT_TOLERANCE = 0.01
"""Largest absolute difference of a metric (0.01: one point of a rate) that still reproduces."""


@dataclass
class Reproduction:
    version: str
    run: str
    """The new run."""
    same_weights: bool
    tolerance: float
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """{"dataset", "metric", "registered", "reproduced", "difference", "within"} per metric."""
    problems: list[str] = field(default_factory=list)
    """Inputs that are no longer what the record names (the run could not be repeated)."""

    @property
    def reproduced(self) -> bool:
        return not self.problems and all(m["within"] for m in self.metrics)

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run": self.run,
            "reproduced": self.reproduced,
            "same_weights": self.same_weights,
            "tolerance": self.tolerance,
            "metrics": self.metrics,
            "problems": self.problems,
        }


def _check_inputs(workspace: Workspace, record: dict[str, Any]) -> list[str]:
    """What differs from the record among the data versions and the base model."""
    problems = []
    with workspace.record.session() as session:
        for role, entry in record["data"].items():
            if entry is None:
                continue
            try:
                found = queries.resolve(session, entry["ref"]).content_hash
            except DatasetNotFound as exc:  # purged: say so instead of training on something else
                problems.append(f"{role} data {entry['ref']}: {exc}")
                continue
            if found != entry["content_hash"]:
                problems.append(
                    f"{role} data {entry['ref']} has content {found[:12]}, not {entry['content_hash'][:12]}"
                )
    base = record["base_model"]
    try:
        now = find_base_model(workspace, base["name"]).content_hash
    except ModelError as exc:
        problems.append(f"base model {base['name']}: {exc}")
    else:
        if now != base["content_hash"]:
            problems.append(
                f"base model {base['name']} has content {now[:12]}, not {base['content_hash'][:12]}"
            )
    return problems


def _overall(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        name: float(estimate["value"])
        for name, estimate in metrics.get("overall", {}).items()
        if isinstance(estimate, dict) and isinstance(estimate.get("value"), (int, float))
    }


def reproduce(
    workspace: Workspace,
    version_text: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> Reproduction:
    """Train `version_text` again (a new run, whatever the cache holds) and compare (see module)."""
    with workspace.record.session() as session:
        version = find_version(session, version_text)
        ref, record, model_hash = version.ref, version.record, version.model_hash
        evaluations = [
            (e.dataset_version.ref, dict(e.settings))
            for e in queries.evaluations_of_model(session, model_hash)
        ]
        registered_run = version.run.name
    problems = _check_inputs(workspace, record)
    if problems:
        return Reproduction(ref, "", False, tolerance, problems=problems)
    if not evaluations:
        raise RegistryError(
            f"{ref} has no evaluation to compare with: evaluate it first (`sftline eval ...`)"
        )
    holdout = record["data"].get("holdout")
    config = TrainConfig.model_validate(
        {
            **record["config"],
            "data": record["data"]["train"]["ref"],
            "eval_on": holdout["ref"] if holdout else None,
            "base": record["base_model"]["name"],
            "report_to": [],  # a check, not an experiment to publish
        }
    )
    result = train_station(workspace, config, force=True, progress=progress)
    run = result.result["run"]
    model, original = resolve_model(workspace, run), resolve_model(workspace, registered_run)
    rows = []
    seen: set[tuple[str, str]] = set()
    for dataset, settings in evaluations:
        suite = EvalSettings.model_validate(
            {k: settings[k] for k in EvalSettings.model_fields if k in settings}
        )
        key = (dataset, repr(sorted(suite.model_dump().items())))
        if key in seen:
            continue
        seen.add(key)
        suite = suite.model_copy(update={"on": [dataset]})
        # Both scored now, under the same contract: the registered model's outputs are reused.
        registered = _overall(evaluate(workspace, original, dataset, suite).metrics)
        now = _overall(evaluate(workspace, model, dataset, suite).metrics)
        for metric, before in sorted(registered.items()):
            if metric not in now:
                continue
            difference = now[metric] - before
            rows.append(
                {
                    "dataset": dataset,
                    "metric": metric,
                    "registered": before,
                    "reproduced": now[metric],
                    "difference": difference,
                    "within": abs(difference) <= tolerance + 1e-12,
                }
            )
    return Reproduction(ref, run, model.content_hash == model_hash, tolerance, rows)
