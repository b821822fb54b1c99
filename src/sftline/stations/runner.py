"""One way to run a station: look its key up, reuse what it wrote, or run it and record lineage.

A station declares its `Work` before it runs: the artifacts it reads (each with a content hash)
and the settings that shape what it writes. The key is the sha256 of those and nothing else, so
a progress option or a batch size never re-runs a station, while a changed data file, gate
threshold, seed or contract does. `run_station` then

1. returns the recorded outputs of a `succeeded` station run with the same key (status `cached`),
   when those outputs still exist;
2. otherwise records a `running` station run holding a lease (pid, host, heartbeat), runs the
   station, and records its outputs, the lineage edges input -> output, the time and the result
   (status `ran`); a failure is recorded as `failed` with its one-line error and re-raised.

The station's own writes are atomic (objects are renamed into place, rows committed after them),
so a crash leaves the old state or the new one, and a stale lease is marked `interrupted`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Literal

from sqlalchemy.orm import Session

from sftline.errors import SftlineError, StationBusy
from sftline.record import leases, queries
from sftline.record.schema import StationRun
from sftline.record.workspace import Workspace

StationStatus = Literal["ran", "cached", "failed", "skipped"]
KEY_VERSION = 1
"""Part of every key: raised when what a key means changes, so old cache entries stop matching."""


@dataclass(frozen=True)
class ArtifactRef:
    """An artifact by kind, the name a person uses for it, and its content hash."""

    kind: str
    """source_file, source_folder, base_model, dataset_version, gate_report, split, mixture, run, model,
    evaluation."""
    name: str
    hash: str

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "hash": self.hash}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArtifactRef:
        return cls(str(data["kind"]), str(data["name"]), str(data["hash"]))


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def station_key(station: str, inputs: Sequence[ArtifactRef], settings: dict[str, Any]) -> str:
    """sha256 over the station's name, its inputs' kinds and content hashes (not their names: a
    renumbered version with the same content is the same input) and its output-shaping settings."""
    payload = {
        "key_version": KEY_VERSION,
        "station": station,
        "inputs": sorted([ref.kind, ref.hash] for ref in inputs),
        "settings": settings,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


@dataclass(frozen=True)
class Work:
    """What a station will do, declared before it runs."""

    station: str
    label: str
    inputs: tuple[ArtifactRef, ...]
    settings: dict[str, Any]

    @cached_property
    def key(self) -> str:
        return station_key(self.station, self.inputs, self.settings)


@dataclass(frozen=True)
class Produced:
    """What a station wrote (artifacts) and its summary (JSON, returned again when cached)."""

    outputs: list[ArtifactRef]
    result: dict[str, Any]
    parents: dict[ArtifactRef, list[ArtifactRef]] | None = None
    """The inputs each output came from, where not every input went into every output (an
    evaluation comes from its own model and dataset); None: all of them."""

    def edges(self, inputs: Sequence[ArtifactRef]) -> list[tuple[ArtifactRef, ArtifactRef]]:
        parents = self.parents or {}
        return [(source, output) for output in self.outputs for source in parents.get(output, inputs)]


@dataclass
class StationResult:
    station: str
    label: str
    status: StationStatus
    key: str
    outputs: list[ArtifactRef] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "station": self.station,
            "name": self.label.split(" ", 1)[1] if self.station == "import" else None,
            "label": self.label,
            "status": self.status,
            "key": self.key,
            "outputs": [o.as_json() for o in self.outputs],
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


def error_line(exc: BaseException) -> str:
    """The one line a failed station or run records: sftline's own message, else `Type: message`,
    its lines joined."""
    message = " ".join(str(exc).split())
    if isinstance(exc, SftlineError):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _cached(workspace: Workspace, work: Work) -> StationRun | None:
    with workspace.record.session() as session:
        row = queries.succeeded_station_run(session, work.station, work.key)
        if row is None:
            return None
        outputs = [ArtifactRef.from_json(o) for o in row.outputs]
        if not all(queries.artifact_exists(session, o.kind, o.name, o.hash) for o in outputs):
            return None
        return row


current_work: ContextVar[Work | None] = ContextVar("current_work", default=None)
"""The work `run_station` was last given in this context (its key names a failed station)."""


def run_station(
    workspace: Workspace,
    work: Work,
    execute: Callable[[], Produced],
    *,
    force: bool = False,
    on_start: Callable[[Work], None] | None = None,
) -> StationResult:
    """Reuse the recorded outputs of `work`'s key, or run `execute()` and record it (see module)."""
    started = time.perf_counter()
    current_work.set(work)
    if not force:
        found = _cached(workspace, work)
        if found is not None:
            return StationResult(
                work.station,
                work.label,
                "cached",
                work.key,
                [ArtifactRef.from_json(o) for o in found.outputs],
                dict(found.result),
                time.perf_counter() - started,
            )
    run_id = _begin(workspace, work)
    if on_start is not None:
        on_start(work)

    def renew() -> None:
        with workspace.record.session() as session:
            queries.renew_station_run(session, run_id)

    try:
        with leases.heartbeat(renew):
            produced = execute()
    except BaseException as exc:
        status = "failed" if isinstance(exc, Exception) else "interrupted"
        with workspace.record.session() as session:
            queries.finish_station_run(
                session, run_id, status=status, error=error_line(exc), seconds=time.perf_counter() - started
            )
        raise
    seconds = time.perf_counter() - started
    with workspace.record.session() as session:
        queries.record_lineage(session, run_id, produced.edges(work.inputs))
        queries.finish_station_run(
            session,
            run_id,
            status="succeeded",
            outputs=[o.as_json() for o in produced.outputs],
            result=produced.result,
            seconds=seconds,
        )
    return StationResult(
        work.station, work.label, "ran", work.key, produced.outputs, produced.result, seconds
    )


def mark_interrupted(session: Session) -> None:
    """Mark every `running` station run and training run whose lease is stale as `interrupted`.
    Only writers call this; readers show `leases.shown_status` instead."""
    now = datetime.now(timezone.utc)
    stale = "its process stopped without finishing (stale lease)"
    for station_run in queries.running_station_runs(session):
        if leases.is_stale(station_run, now):
            station_run.status, station_run.error, station_run.finished_at = "interrupted", stale, now
    for run in queries.running_runs(session):
        if leases.is_stale(run, now):
            run.status, run.error = "interrupted", stale


def _begin(workspace: Workspace, work: Work) -> int:
    """Record a `running` station run holding a lease; refuse while a live one has the same key."""
    with workspace.record.session() as session:
        mark_interrupted(session)
        for other in queries.running_station_runs(session):
            if other.station == work.station and other.key == work.key:
                raise StationBusy(
                    f"{work.label} is already running (pid {other.pid} on {other.host}, "
                    f"started {other.started_at:%Y-%m-%d %H:%M:%S}); wait for it to finish"
                )
        row = StationRun(
            station=work.station,
            label=work.label,
            key=work.key,
            status="running",
            settings=json.loads(canonical_json(work.settings)),
            inputs=[i.as_json() for i in work.inputs],
            outputs=[],
            result={},
        )
        leases.take(row)
        session.add(row)
        session.flush()
        return row.id
