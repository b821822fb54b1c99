"""`sftline train ... --sweep lr=1e-5,5e-5,1e-4`: trials over a grid, compared on the holdout.

Every trial is an ordinary training run through the train station (recorded, with lineage; a
trial trained before is reused), with the grid's values on top of the given settings. Trials are
compared on the metric the runs already watch on their holdout (`eval_metric`: the holdout's
loss by default, or a behaviour metric), at each run's best checkpoint, so a sweep needs a
holdout: `eval_on`, or a classifier's carved share (`holdout_share`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from sftline.config import format_validation_error
from sftline.contract.metrics import higher_is_better
from sftline.errors import ConfigError
from sftline.record.workspace import Workspace
from sftline.stations.train import train_station
from sftline.train.config import REPORTING_ONLY, TrainConfig

NOT_SWEPT = {"base", "data", "eval_on", "teacher", "eval_metric", *REPORTING_ONLY}
"""Settings a sweep may not vary: the inputs, the metric trials are compared on, and where runs
are reported (every trial reports where the command says)."""


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    """`["lr=1e-5,5e-5", "epochs=3,5"]` -> {"lr": ["1e-5", "5e-5"], "epochs": ["3", "5"]}."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name or not choices:
            raise ConfigError(f"--sweep {spec!r}: write NAME=VALUE,VALUE,... (for example lr=1e-5,5e-5,1e-4)")
        if name not in TrainConfig.model_fields or name in NOT_SWEPT:
            raise ConfigError(f"--sweep {spec!r}: {name!r} is not a training setting a sweep can vary")
        if name in grid:
            raise ConfigError(f"--sweep names {name!r} twice")
        grid[name] = choices
    return grid


def trials(config: TrainConfig, grid: dict[str, list[str]]) -> list[tuple[dict[str, str], TrainConfig]]:
    """Every combination of the grid's values, each as the settings it changes and its config
    (validated, so a bad value is refused before anything trains)."""
    given = config.model_dump(exclude_unset=True)
    out = []
    for values in itertools.product(*grid.values()):
        changed = dict(zip(grid, values, strict=True))
        try:
            out.append((changed, TrainConfig.model_validate({**given, **changed})))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"--sweep {changed}")) from exc
    return out


def run_sweep(
    workspace: Workspace,
    config: TrainConfig,
    grid: dict[str, list[str]],
    *,
    force: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train every trial, then rank them by the holdout metric at each run's best checkpoint."""
    task = config.task or workspace.project.config.contract.task
    if config.eval_on is None and (task != "classify" or config.holdout_share == 0):
        raise ConfigError("a sweep compares trials on a holdout: give --eval-on DATASET")
    planned = trials(config, grid)
    results = []
    for index, (changed, trial) in enumerate(planned, 1):
        if announce is not None:
            shown = ", ".join(f"{k}={v}" for k, v in changed.items())
            announce(f"sweep trial {index}/{len(planned)}: {shown}")
        station = train_station(workspace, trial, force=force, progress=progress, announce=announce)
        summary = station.result
        results.append(
            {
                "settings": changed,
                "run": summary["run"],
                "station": station.status,
                "best_eval": summary.get("best_eval"),
                "best_step": summary.get("best_step"),
                "final_loss": summary.get("final_loss"),
                "warnings": summary.get("warnings", []),
            }
        )
    metric = config.eval_metric
    measured = [r for r in results if r["best_eval"] is not None]
    if not measured:
        raise ConfigError(f"no trial measured {metric} on its holdout; set --eval-every below the step count")
    sign = -1.0 if higher_is_better(metric) else 1.0
    ranked = sorted(measured, key=lambda r: sign * float(r["best_eval"]))
    for rank, result in enumerate(ranked, 1):
        result["rank"] = rank
    return {
        "metric": metric,
        "higher_is_better": higher_is_better(metric),
        "trials": results,
        "best": ranked[0],
    }
