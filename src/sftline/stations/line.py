"""`sftline run`: the stations of sftline.yaml's `line:` in order, each through `run_station`.

Inside one run, a dataset named without a version means the version the line itself produced
last under that name (the import's version, then the check's accepted version, ...), not
whatever is newest in the record: a line re-run reads exactly what it wrote, so its keys match
and every station reports `cached`. Names the line does not produce resolve to their newest
version. A failed station stops the line; the stations after it are `skipped`.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sftline.config import STATION_ORDER, LineConfig
from sftline.data.splits import TargetedHoldout
from sftline.errors import ConfigError, ImportInputError, SftlineError, StationBusy
from sftline.evals.compare import VERDICT_EXIT_CODES, Verdict
from sftline.record import leases, queries
from sftline.record.workspace import Workspace
from sftline.stations.check import check_station
from sftline.stations.ingest import import_station
from sftline.stations.mix import mix_station, mixture_name
from sftline.stations.release import Announce, eval_station
from sftline.stations.runner import StationResult, current_work, error_line
from sftline.stations.split import split_station
from sftline.stations.train import train_station

LOCK_FILE = "line.lock"


@dataclass
class LineHooks:
    """How the caller shows progress: bars for data and evaluation, callbacks for training."""

    announce: Announce | None = None
    train_progress: Callable[[dict[str, Any]], None] | None = None
    station_started: Callable[[str], None] | None = None
    note: Callable[[str], None] | None = None
    """A line a station says before its work (training's micro-batch choice)."""


@dataclass
class LineResult:
    stations: list[StationResult] = field(default_factory=list)
    verdict: Verdict | None = None
    error: str | None = None

    @property
    def exit_code(self) -> int:
        """1 when a station failed, else the release verdict's code (0 without a verdict)."""
        if self.error is not None:
            return 1
        return VERDICT_EXIT_CODES[self.verdict] if self.verdict else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "stations": [s.as_json() for s in self.stations],
            "verdict": self.verdict,
            "error": self.error,
            "exit_code": self.exit_code,
        }


class Pins:
    """Dataset names the line produced in this run, pinned to the version it produced."""

    def __init__(self) -> None:
        self.versions: dict[str, str] = {}

    def __call__(self, ref: str) -> str:
        return ref if "@" in ref else self.versions.get(ref, ref)

    def add(self, result: StationResult) -> None:
        for output in result.outputs:
            if output.kind == "dataset_version":
                self.versions[output.name.split("@")[0]] = output.name


def _check_names(steps: Sequence[tuple[str, str, Any]], force: Sequence[str], until: str | None) -> None:
    if not steps:
        raise ConfigError(
            "the line: section of sftline.yaml names no station; `sftline run` has nothing to do"
        )
    for name in [*force, *([until] if until else [])]:
        if name not in STATION_ORDER:
            known = ", ".join(STATION_ORDER)
            raise ConfigError(f"unknown station {name!r}: the line's stations are {known}")
    if until is not None and not any(step == until for step, _, _ in steps):
        raise ConfigError(f"--until {until}: the line has no {until} station configured")
    if until is not None:
        late = [name for name in force if STATION_ORDER.index(name) > STATION_ORDER.index(until)]
        if late:
            raise ConfigError(f"--force {late[0]} comes after --until {until}: it would not run")


def _made(name: str, settings: Any) -> list[str]:
    """The dataset names a station writes (a check writes its own dataset's next version)."""
    if name == "import":
        return [settings.name]
    if name == "split":
        base = settings.dataset.split("@")[0]
        parts = ["train", "gold", *(["rolling"] if settings.rolling_days else [])]
        parts += [TargetedHoldout.parse(spec).part for spec in settings.targeted]
        return [f"{base}-{part}" for part in parts]
    if name == "mix":
        return [mixture_name(settings.name, settings.sources[0])]
    return []


def _read(name: str, settings: Any) -> list[tuple[str, str]]:
    """(option, dataset reference) a station reads."""
    if name == "check":
        return [("dataset", settings.dataset), *(("against", a) for a in settings.against)]
    if name == "split":
        return [("dataset", settings.dataset)]
    if name == "mix":
        return [("from", source) for source in settings.sources]
    if name == "train":
        return [("data", settings.data), *([("eval_on", settings.eval_on)] if settings.eval_on else [])]
    if name == "eval":
        refs = [("on", d) for d in settings.on]
        return refs + ([("calibrate_on", settings.calibrate_on)] if settings.calibrate_on else [])
    return []


def check_references(workspace: Workspace, steps: Sequence[tuple[str, str, Any]]) -> None:
    """Every dataset a station reads is made by an earlier station or is in the record: a typo is
    reported, all at once, before anything runs."""
    with workspace.record.session() as session:
        known = {dataset.name for dataset in queries.datasets(session)}
    problems = []
    for name, _, settings in steps:
        for option, ref in _read(name, settings):
            if ref.split("@")[0] not in known:
                problems.append(
                    f"  - line.{name}.{option}: no dataset {ref.split('@')[0]!r} in the record "
                    "or made by an earlier station"
                )
        known.update(_made(name, settings))
    if problems:
        raise ConfigError(f"sftline.yaml: {len(problems)} problem(s)\n" + "\n".join(problems))


@contextmanager
def line_lock(workspace: Workspace, *, wait: bool) -> Iterator[None]:
    """One `sftline run` per project at a time: an exclusive lock on .sftline/line.lock. Without
    `wait`, a held lock is a clear error naming its holder."""
    path = workspace.project.state_dir / LOCK_FILE
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            try:
                lease = json.loads(handle.read())
                holder = f"pid {lease['pid']} on {lease['host']}"
            except (ValueError, KeyError, TypeError):
                holder = "another process"
            raise StationBusy(
                f"the line is busy: `sftline run` is running ({holder}); wait for it, or pass --wait"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": leases.hostname()}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class _Context:
    workspace: Workspace
    hooks: LineHooks
    pins: Pins = field(default_factory=Pins)
    trained: str | None = None
    """The run the train station made (or found cached): the eval station's default model."""

    def bar(self, label: str) -> Callable[[int, int], None] | None:
        return self.hooks.announce(label) if self.hooks.announce else None


def _import(ctx: _Context, label: str, settings: Any, force: bool) -> StationResult:
    root = ctx.workspace.project.root
    result = import_station(ctx.workspace, settings, root=root, force=force, progress=ctx.bar(label))
    if result.result["version"] is None:
        raise ImportInputError(f"{settings.path}: no record was accepted; nothing versioned")
    return result


def _check(ctx: _Context, label: str, settings: Any, force: bool) -> StationResult:
    pins = ctx.pins
    settings = settings.model_copy(
        update={"dataset": pins(settings.dataset), "against": [pins(a) for a in settings.against]}
    )
    update = ctx.bar(label)
    progress = (lambda done, total, _gate: update(done, total)) if update else None
    result = check_station(ctx.workspace, settings, force=force, progress=progress)
    if result.result.get("status") == "failed":
        failures = "; ".join(result.result.get("failures", []))
        raise SftlineError(f"check of {result.result['version_checked']} failed: {failures}")
    return result


def _split(ctx: _Context, label: str, settings: Any, force: bool) -> StationResult:
    settings = settings.model_copy(update={"dataset": ctx.pins(settings.dataset)})
    return split_station(ctx.workspace, settings, force=force)


def _mix(ctx: _Context, label: str, settings: Any, force: bool) -> StationResult:
    settings = settings.model_copy(update={"sources": [ctx.pins(s) for s in settings.sources]})
    return mix_station(ctx.workspace, settings, force=force)


def _train(ctx: _Context, label: str, settings: Any, force: bool) -> StationResult:
    update = {"data": ctx.pins(settings.data)}
    if settings.eval_on:
        update["eval_on"] = ctx.pins(settings.eval_on)
    config = settings.model_copy(update=update)
    hooks = ctx.hooks
    result = train_station(
        ctx.workspace, config, force=force, progress=hooks.train_progress, announce=hooks.note
    )
    ctx.trained = result.result["run"]
    return result


def _eval(ctx: _Context, label: str, settings: Any, force: bool) -> StationResult:
    model = settings.model or ctx.trained
    if model is None:
        raise ConfigError("line.eval: name the `model:` to evaluate, or configure a train station")
    pins = ctx.pins
    suite = settings.model_copy(
        update={
            "on": [pins(d) for d in settings.on],
            "calibrate_on": pins(settings.calibrate_on) if settings.calibrate_on else None,
        }
    )
    return eval_station(
        ctx.workspace,
        suite,
        model,
        baseline_ref=settings.baseline,
        with_base=not settings.no_base,
        announce=ctx.hooks.announce,
        force=force,
    )


STATIONS: dict[str, Callable[[_Context, str, Any, bool], StationResult]] = {
    "import": _import,
    "check": _check,
    "split": _split,
    "mix": _mix,
    "train": _train,
    "eval": _eval,
}


def run_line(
    workspace: Workspace,
    line: LineConfig,
    *,
    until: str | None = None,
    force: Sequence[str] = (),
    hooks: LineHooks | None = None,
) -> LineResult:
    """Run the configured stations in order (see the module docstring)."""
    steps = _steps(line)
    _check_names(steps, force, until)
    check_references(workspace, steps)
    ctx = _Context(workspace, hooks or LineHooks())
    outcome = LineResult()
    last = max((i for i, (name, _, _) in enumerate(steps) if name == until), default=len(steps) - 1)
    for index, (name, label, settings) in enumerate(steps):
        if outcome.error is not None or index > last:
            outcome.stations.append(StationResult(name, label, "skipped", ""))
            continue
        if ctx.hooks.station_started:
            ctx.hooks.station_started(label)
        current_work.set(None)
        try:
            result = STATIONS[name](ctx, label, settings, name in force)
        except Exception as exc:  # sftline's own, an OSError, out of memory: one line says why
            work = current_work.get()
            outcome.error = f"{label}: {error_line(exc)}"
            failed = StationResult(name, label, "failed", work.key if work else "", error=error_line(exc))
            outcome.stations.append(failed)
            continue
        ctx.pins.add(result)
        if name == "eval":
            outcome.verdict = result.result.get("verdict")
        outcome.stations.append(result)
    return outcome


def _steps(line: LineConfig) -> list[tuple[str, str, Any]]:
    """(station, label, settings) for every configured station, in line order."""
    steps: list[tuple[str, str, Any]] = [("import", f"import {s.name}", s) for s in line.import_]
    for name in STATION_ORDER[1:]:
        settings = getattr(line, name)
        if settings is not None:
            steps.append((name, name, settings))
    return steps
