"""Every question the stations, the CLI and (later) the server ask the record, in one place.

Functions take an open `Session` and return ORM rows; they never commit (the caller's
`Record.session()` does). Nothing outside `sftline.record` writes SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from sftline.data.versions import MIN_HASH_PREFIX, VERSION_NUMBER, check_dataset_name, parse_ref
from sftline.errors import DatasetNotFound, ModelError, TrainingError
from sftline.record import leases
from sftline.record.schema import (
    Alert,
    ApiKey,
    Artifact,
    Base,
    BaseModelEntry,
    Dataset,
    DatasetVersion,
    Erasure,
    EvalOutput,
    Evaluation,
    Feedback,
    FrozenGold,
    GateReport,
    ImportRun,
    LineageEdge,
    Mixture,
    ModelVersion,
    MonitorReport,
    Prediction,
    RegisteredModel,
    ReviewItem,
    Run,
    RunMetric,
    ServingMinute,
    Split,
    StageChange,
    StationRun,
    as_utc,
)

MAX_VERSION_NUMBER = 2**31 - 1
"""The largest version number the record's INTEGER column holds on every database."""

# --- datasets and versions ---------------------------------------------------------------------


def dataset_named(session: Session, name: str) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.name == name)).first()


def datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.name)))


def get_or_create_dataset(session: Session, name: str) -> Dataset:
    dataset = dataset_named(session, check_dataset_name(name))
    if dataset is None:
        dataset = Dataset(name=name)
        session.add(dataset)
        session.flush()
    return dataset


def get_dataset(session: Session, name: str) -> Dataset:
    dataset = dataset_named(session, name)
    if dataset is None:
        known = session.scalars(select(Dataset.name).order_by(Dataset.name)).all()
        hint = f" (datasets: {', '.join(known)})" if known else "; import one with `sftline data import`"
        raise DatasetNotFound(f"no dataset named {name!r}{hint}")
    return dataset


def head(session: Session, dataset: Dataset) -> DatasetVersion | None:
    """The dataset's newest version (the highest number)."""
    return session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset.id)
        .order_by(DatasetVersion.number.desc())
        .limit(1)
    ).first()


def head_numbers(session: Session, names: Iterable[str]) -> dict[str, int]:
    """The newest version number of each named dataset: 0 when it has none (or does not exist)."""
    wanted = sorted(set(names))
    rows = session.execute(
        select(Dataset.name, func.max(DatasetVersion.number))
        .join(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
        .where(Dataset.name.in_(wanted))
        .group_by(Dataset.name)
    )
    found = {name: number for name, number in rows}
    return {name: found.get(name, 0) for name in wanted}


def resolve(session: Session, ref: str) -> DatasetVersion:
    """`support`, `support@v2`, `support@2`, `support@<hash prefix>`, `support@latest`."""
    name, selector = parse_ref(ref)
    dataset = get_dataset(session, name)
    if selector in (None, "latest", "head"):
        version = head(session, dataset)
    elif match := VERSION_NUMBER.fullmatch(selector):
        number = int(match.group(1))
        # A number past the column's 32-bit range names no version (the database would refuse it).
        version = (
            session.scalars(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == dataset.id, DatasetVersion.number == number
                )
            ).first()
            if number <= MAX_VERSION_NUMBER
            else None
        )
    elif len(selector) >= MIN_HASH_PREFIX and re.fullmatch(r"[0-9a-f]+", selector):
        matches = session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id, DatasetVersion.content_hash.startswith(selector))
            .order_by(DatasetVersion.number.desc())
        ).all()
        if len({v.content_hash for v in matches}) > 1:
            raise DatasetNotFound(f"{ref}: the hash prefix {selector!r} is ambiguous; give more characters")
        version = matches[0] if matches else None
    else:
        raise DatasetNotFound(
            f"{ref}: a version is v<number>, a content-hash prefix of "
            f"{MIN_HASH_PREFIX}+ hex digits, or latest"
        )
    if version is None:
        raise DatasetNotFound(f"{ref}: no such version; see `sftline data versions {name}`")
    return version


def list_versions(session: Session, name: str) -> list[DatasetVersion]:
    dataset = get_dataset(session, name)
    return list(
        session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id)
            .order_by(DatasetVersion.number)
        )
    )


# --- frozen gold sets --------------------------------------------------------------------------


def frozen_gold_rows(session: Session) -> list[FrozenGold]:
    return list(session.scalars(select(FrozenGold).order_by(FrozenGold.id)))


def frozen_gold_of(session: Session, dataset: Dataset) -> FrozenGold | None:
    return session.scalars(select(FrozenGold).where(FrozenGold.dataset_id == dataset.id)).first()


def frozen_gold_named(session: Session, name: str) -> FrozenGold | None:
    dataset = dataset_named(session, name)
    return frozen_gold_of(session, dataset) if dataset is not None else None


# --- gate reports ------------------------------------------------------------------------------


def latest_gate_report(session: Session, version: DatasetVersion) -> GateReport | None:
    """The newest check of `version`, or the one that produced it."""
    return session.scalars(
        select(GateReport)
        .where(or_(GateReport.checked_version_id == version.id, GateReport.result_version_id == version.id))
        .order_by(GateReport.id.desc())
    ).first()


# --- base models -------------------------------------------------------------------------------


def base_model_named(session: Session, name: str) -> BaseModelEntry | None:
    return session.scalars(select(BaseModelEntry).where(BaseModelEntry.name == name)).first()


def base_models(session: Session) -> list[BaseModelEntry]:
    return list(session.scalars(select(BaseModelEntry).order_by(BaseModelEntry.name)))


def save_base_model(session: Session, name: str, **fields: Any) -> BaseModelEntry:
    """Insert or update the base model `name`."""
    entry = base_model_named(session, name)
    if entry is None:
        entry = BaseModelEntry(name=name)
        session.add(entry)
    for key, value in fields.items():
        setattr(entry, key, value)
    return entry


# --- runs --------------------------------------------------------------------------------------


def run_named(session: Session, name: str) -> Run | None:
    return session.scalars(select(Run).where(Run.name == name)).first()


def get_run(session: Session, name: str) -> Run:
    run = run_named(session, name)
    if run is None:
        raise TrainingError(f"no run named {name!r}; see `sftline runs list`")
    return run


def run_by_id(session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)


def split_by_id(session: Session, split_id: int) -> Split | None:
    return session.get(Split, split_id)


def resumable_run(session: Session, station_key: str) -> Run | None:
    """The newest run the train station with this key started that did not finish: interrupted,
    or still `running` under a stale lease."""
    from_station = [
        run
        for run in session.scalars(
            select(Run).where(Run.status.in_(("interrupted", "running"))).order_by(Run.id.desc())
        )
        if run.summary.get("station_key") == station_key
    ]
    return next((run for run in from_station if run.status == "interrupted" or leases.is_stale(run)), None)


def runs(session: Session) -> list[Run]:
    return list(session.scalars(select(Run).order_by(Run.id)))


def run_metrics(session: Session, run: Run) -> list[RunMetric]:
    return list(
        session.scalars(
            select(RunMetric).where(RunMetric.run_id == run.id).order_by(RunMetric.step, RunMetric.id)
        )
    )


def add_run_metrics(session: Session, run_id: int, history: Sequence[dict[str, Any]]) -> None:
    """One row per (step, metric) of `history` (dicts with a "step" and metric values)."""
    session.add_all(
        RunMetric(run_id=run_id, step=h["step"], name=k, value=v)
        for h in history
        for k, v in h.items()
        if k != "step"
    )


# --- evaluations -------------------------------------------------------------------------------


def evaluation_named(session: Session, name: str) -> Evaluation:
    row = session.scalars(select(Evaluation).where(Evaluation.name == name)).first()
    if row is None:
        raise ModelError(f"no evaluation named {name!r}")
    return row


def evaluation_by_key(session: Session, key: str) -> Evaluation | None:
    return session.scalars(
        select(Evaluation).where(Evaluation.key == key).order_by(Evaluation.id.desc())
    ).first()


def evaluations(session: Session, *, newest_first: bool = True) -> list[Evaluation]:
    order = Evaluation.id.desc() if newest_first else Evaluation.id
    return list(session.scalars(select(Evaluation).order_by(order)))


def eval_outputs(session: Session, evaluation: Evaluation) -> list[EvalOutput]:
    return list(
        session.scalars(
            select(EvalOutput).where(EvalOutput.evaluation_id == evaluation.id).order_by(EvalOutput.position)
        )
    )


def add_eval_outputs(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of per-example outputs (one executemany, not one ORM object per row)."""
    if rows:
        session.execute(insert(EvalOutput), list(rows))


# --- station runs and lineage ------------------------------------------------------------------


def succeeded_station_run(session: Session, station: str, key: str) -> StationRun | None:
    """The newest successful run of `station` with this key."""
    return session.scalars(
        select(StationRun)
        .where(StationRun.station == station, StationRun.key == key, StationRun.status == "succeeded")
        .order_by(StationRun.id.desc())
    ).first()


def running_station_runs(session: Session) -> list[StationRun]:
    return list(session.scalars(select(StationRun).where(StationRun.status == "running")))


def running_runs(session: Session) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.status == "running")))


def station_runs(session: Session, *, limit: int | None = None) -> list[StationRun]:
    query = select(StationRun).order_by(StationRun.id.desc())
    return list(session.scalars(query.limit(limit) if limit else query))


def renew_station_run(session: Session, run_id: int) -> None:
    row = session.get(StationRun, run_id)
    if row is not None and row.status == "running":
        row.heartbeat_at = datetime.now(timezone.utc)


def finish_station_run(
    session: Session,
    run_id: int,
    *,
    status: str,
    seconds: float,
    error: str | None = None,
    outputs: list[dict[str, Any]] | None = None,
    result: dict[str, Any] | None = None,
) -> None:
    row = session.get(StationRun, run_id)
    if row is None:
        return
    row.status, row.error, row.seconds = status, error, seconds
    row.finished_at = datetime.now(timezone.utc)
    if outputs is not None:
        row.outputs = outputs
    if result is not None:
        row.result = result


def artifact_row(session: Session, kind: str, name: str, digest: str) -> Artifact:
    """The artifact (kind, name, hash), created when new. Two station runs may record the same
    artifact at once (an append's output, a concurrent split's input): the insert yields to a row
    the other one made, instead of failing on the unique (kind, name, hash)."""
    query = select(Artifact).where(Artifact.kind == kind, Artifact.name == name, Artifact.hash == digest)
    row = session.scalars(query).first()
    if row is None:
        values = {"kind": kind, "name": name, "hash": digest}
        session.execute(_insert_unless_present(session, Artifact).values(**values))
        row = session.scalars(query).one()
    return row


def _insert_unless_present(session: Session, table: type[Base]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING, in the record's dialect (SQLite or PostgreSQL)."""
    return _dialect_insert(session, table).on_conflict_do_nothing()


def _dialect_insert(session: Session, table: type[Base]) -> Any:
    """INSERT in the record's dialect (SQLite or PostgreSQL), which can say ON CONFLICT."""
    dialect = session.get_bind().dialect.name
    return (postgresql_insert if dialect == "postgresql" else sqlite_insert)(table)


def record_lineage(session: Session, run_id: int, edges: Iterable[tuple[Any, Any]]) -> None:
    """The edges (input, output) through station run `run_id`; each side has `kind`, `name` and
    `hash`. An edge given twice (one holdout evaluated on and calibrated on) is recorded once."""
    ids: dict[tuple[str, str, str], int] = {}  # each artifact looked up once, not once per edge

    def row_id(a: Any) -> int:
        key = (a.kind, a.name, a.hash)
        if key not in ids:
            ids[key] = artifact_row(session, *key).id
        return ids[key]

    pairs = dict.fromkeys((row_id(a), row_id(b)) for a, b in edges)
    for source, target in pairs:
        if source != target:
            session.add(LineageEdge(source_id=source, target_id=target, station_run_id=run_id))
    session.flush()


def artifact_exists(session: Session, kind: str, name: str, digest: str) -> bool:
    """Whether a recorded output is still there: its own row for versions, runs and evaluations,
    its artifact row for everything else."""
    if kind == "dataset_version":
        dataset, _, number = name.partition("@v")
        found = dataset_named(session, dataset)
        return found is not None and any(
            v.content_hash == digest and str(v.number) == number for v in found.versions
        )
    if kind in ("run", "model"):
        run = run_named(session, name)
        return run is not None and run.status in ("completed", "stopped_early")
    if kind == "evaluation":
        return session.scalars(select(Evaluation.id).where(Evaluation.name == name)).first() is not None
    return (
        session.scalars(
            select(Artifact.id).where(Artifact.kind == kind, Artifact.name == name, Artifact.hash == digest)
        ).first()
        is not None
    )


def find_artifacts(session: Session, text: str) -> list[Artifact]:
    """Artifacts whose name is `text`, or whose hash starts with it (6+ hex digits)."""
    rows = list(session.scalars(select(Artifact).where(Artifact.name == text).order_by(Artifact.id)))
    if not rows and len(text) >= MIN_HASH_PREFIX and re.fullmatch(r"[0-9a-f]+", text):
        rows = list(
            session.scalars(select(Artifact).where(Artifact.hash.startswith(text)).order_by(Artifact.id))
        )
    return rows


def edges_into(session: Session, artifact_ids: Sequence[int]) -> list[LineageEdge]:
    if not artifact_ids:
        return []
    return list(
        session.scalars(
            select(LineageEdge).where(LineageEdge.target_id.in_(artifact_ids)).order_by(LineageEdge.id)
        )
    )


def reports_of(session: Session, artifact_ids: Sequence[int]) -> list[LineageEdge]:
    """Edges from these artifacts into gate reports: the checks that looked at them."""
    if not artifact_ids:
        return []
    return list(
        session.scalars(
            select(LineageEdge)
            .join(Artifact, Artifact.id == LineageEdge.target_id)
            .where(LineageEdge.source_id.in_(artifact_ids), Artifact.kind == "gate_report")
            .order_by(LineageEdge.id)
        )
    )


def artifacts_by_id(session: Session, ids: Iterable[int]) -> dict[int, Artifact]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {a.id: a for a in session.scalars(select(Artifact).where(Artifact.id.in_(wanted)))}


def station_runs_by_id(session: Session, ids: Iterable[int]) -> dict[int, StationRun]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {r.id: r for r in session.scalars(select(StationRun).where(StationRun.id.in_(wanted)))}


# --- a resumed run's inputs --------------------------------------------------------------------


def recorded_versions(session: Session, run: Run) -> tuple[DatasetVersion, DatasetVersion | None]:
    """The data and holdout versions `run` recorded when it started, by id: what its names
    resolved to then, whatever they resolve to now."""
    data = session.get(DatasetVersion, run.data_version_id)
    holdout = session.get(DatasetVersion, run.eval_version_id) if run.eval_version_id is not None else None
    if data is None or (run.eval_version_id is not None and holdout is None):
        raise DatasetNotFound(f"{run.name}: a dataset version it trained on is no longer in the record")
    return data, holdout


# --- maintenance: what the record names, erasures ------------------------------------------------


def object_references(session: Session) -> list[tuple[str, str]]:
    """(object hash as recorded, what names it) for every object the record names: each version's
    examples, import quarantines, gate reports and their rejects, split assignments, and every
    `*_object` value in a version's provenance or a station run's result (an evaluation's report).
    The hashes are returned as stored, unchecked: a caller validates them before using one as a
    file name."""
    refs: list[tuple[str, str]] = []
    versions = session.execute(
        select(Dataset.name, DatasetVersion.number, DatasetVersion.object_hash, DatasetVersion.provenance)
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .order_by(DatasetVersion.id)
    )
    for name, number, digest, provenance in versions:
        refs.append((digest, f"{name}@v{number} examples"))
        named = _named_objects(provenance)
        refs.extend((value, f"{name}@v{number} provenance {key}") for key, value in named)
    imports = session.execute(
        select(ImportRun.id, ImportRun.quarantine_object).where(ImportRun.quarantine_object.is_not(None))
    )
    refs.extend((digest, f"import {row_id} quarantine") for row_id, digest in imports if digest is not None)
    for row_id, report, rejects in session.execute(
        select(GateReport.id, GateReport.report_object, GateReport.rejects_object)
    ):
        refs.append((report, f"gate-report-{row_id} report"))
        if rejects is not None:
            refs.append((rejects, f"gate-report-{row_id} rejects"))
    splits = session.execute(select(Split.id, Split.assignments_object))
    refs.extend((digest, f"split-{row_id} assignments") for row_id, digest in splits)
    for row_id, label, result in session.execute(select(StationRun.id, StationRun.label, StationRun.result)):
        refs.extend((value, f"station run {row_id} ({label}) {key}") for key, value in _named_objects(result))
    return refs


def _named_objects(value: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    """(key path, value) of every string under a key ending in `_object`, in nested JSON."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if str(key).endswith("_object") and isinstance(item, str):
                yield path, item
            else:
                yield from _named_objects(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _named_objects(item, f"{prefix}[{index}]")


def artifact_hashes(session: Session) -> set[str]:
    """Every content hash the lineage names (objects among them: reports, split assignments)."""
    return set(session.scalars(select(Artifact.hash).distinct()))


def runs_on_versions(session: Session, version_ids: Iterable[int]) -> list[Run]:
    """The runs that trained on, or held out, any of these dataset versions."""
    wanted = sorted(set(version_ids))
    if not wanted:
        return []
    return list(
        session.scalars(
            select(Run)
            .where(or_(Run.data_version_id.in_(wanted), Run.eval_version_id.in_(wanted)))
            .order_by(Run.id)
        )
    )


def evaluations_on_versions(session: Session, version_ids: Iterable[int]) -> list[Evaluation]:
    """The evaluations of these dataset versions (their stored outputs hold the examples' text)."""
    wanted = sorted(set(version_ids))
    if not wanted:
        return []
    return list(
        session.scalars(
            select(Evaluation).where(Evaluation.dataset_version_id.in_(wanted)).order_by(Evaluation.id)
        )
    )


def edges_from(session: Session, artifact_ids: Sequence[int]) -> list[LineageEdge]:
    if not artifact_ids:
        return []
    return list(
        session.scalars(
            select(LineageEdge).where(LineageEdge.source_id.in_(artifact_ids)).order_by(LineageEdge.id)
        )
    )


def version_artifacts(session: Session, refs: Iterable[str]) -> list[Artifact]:
    """The lineage's artifacts of these dataset versions (`NAME@vN`)."""
    wanted = sorted(set(refs))
    if not wanted:
        return []
    return list(
        session.scalars(select(Artifact).where(Artifact.kind == "dataset_version", Artifact.name.in_(wanted)))
    )


def release_frozen_gold(session: Session, frozen: FrozenGold) -> None:
    """Drop a gold set's freeze (only to freeze a purged version in the same transaction)."""
    session.delete(frozen)
    session.flush()


def add_erasure(session: Session, **fields: Any) -> Erasure:
    row = Erasure(**fields)
    session.add(row)
    session.flush()
    return row


def erasures(session: Session) -> list[Erasure]:
    return list(session.scalars(select(Erasure).order_by(Erasure.id)))


# --- the model registry ------------------------------------------------------------------------


def registered_model(session: Session, name: str, *, lock: bool = False) -> RegisteredModel | None:
    """The registered model `name`; `lock` takes its row lock (PostgreSQL: SELECT ... FOR UPDATE)
    and marks it changed, so a second writer of the same name waits for this transaction."""
    query = select(RegisteredModel).where(RegisteredModel.name == name)
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is not None and lock:
        # SQLite has no row locks; this write takes its database write lock now, before the reads.
        row.changed_at = datetime.now(timezone.utc)
        session.flush()
    return row


def get_or_create_registered_model(session: Session, name: str) -> RegisteredModel:
    """The registered model `name`, created when new (a concurrent creator's row is used)."""
    session.execute(
        _insert_unless_present(session, RegisteredModel).values(
            name=name, created_at=datetime.now(timezone.utc), changed_at=datetime.now(timezone.utc)
        )
    )
    row = registered_model(session, name, lock=True)
    assert row is not None
    return row


def registered_models(session: Session) -> list[RegisteredModel]:
    return list(session.scalars(select(RegisteredModel).order_by(RegisteredModel.name)))


def model_versions(session: Session, model: RegisteredModel) -> list[ModelVersion]:
    return list(
        session.scalars(
            select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.number)
        )
    )


def model_version(session: Session, model: RegisteredModel, number: int) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.number == number)
    ).first()


def model_version_of_run(session: Session, model: RegisteredModel, run: Run) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.run_id == run.id)
    ).first()


def versions_in_stage(session: Session, model: RegisteredModel, stage: str) -> list[ModelVersion]:
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.model_id == model.id, ModelVersion.stage == stage)
            .order_by(ModelVersion.number)
        )
    )


def next_model_version_number(session: Session, model: RegisteredModel) -> int:
    newest = session.scalar(select(func.max(ModelVersion.number)).where(ModelVersion.model_id == model.id))
    return int(newest or 0) + 1


def stage_changes(session: Session, model: RegisteredModel) -> list[StageChange]:
    """The model's history, oldest first."""
    return list(
        session.scalars(select(StageChange).where(StageChange.model_id == model.id).order_by(StageChange.id))
    )


def evaluations_of_model(session: Session, model_hash: str) -> list[Evaluation]:
    """Every evaluation of the model with this content hash, oldest first."""
    return list(
        session.scalars(select(Evaluation).where(Evaluation.model_hash == model_hash).order_by(Evaluation.id))
    )


def mixtures_making(session: Session, version_ids: Iterable[int]) -> list[Mixture]:
    ids = list(version_ids)
    query = select(Mixture).where(Mixture.result_version_id.in_(ids)).order_by(Mixture.id)
    return list(session.scalars(query))


def splits_of(session: Session, version_ids: Iterable[int]) -> list[Split]:
    """The splits whose source is one of these versions."""
    ids = list(version_ids)
    return list(session.scalars(select(Split).where(Split.source_version_id.in_(ids)).order_by(Split.id)))


def gate_reports_of(session: Session, version_ids: Iterable[int]) -> list[GateReport]:
    """The checks of these versions, and the checks whose accepted version is one of them."""
    ids = list(version_ids)
    return list(
        session.scalars(
            select(GateReport)
            .where(or_(GateReport.checked_version_id.in_(ids), GateReport.result_version_id.in_(ids)))
            .order_by(GateReport.id)
        )
    )


def version_by_id(session: Session, version_id: int) -> DatasetVersion | None:
    return session.get(DatasetVersion, version_id)


# --- serving: API keys, the prediction log, per-minute aggregates ------------------------------


def add_api_key(session: Session, name: str, key_hash: str, scope: str) -> ApiKey | None:
    """The new key `name`; None when a key of that name exists (revoked or not), also when another
    process added it a moment ago (the insert yields to the unique name instead of failing)."""
    values = {"name": name, "key_hash": key_hash, "scope": scope, "created_at": datetime.now(timezone.utc)}
    session.execute(_insert_unless_present(session, ApiKey).values(**values))
    return session.scalars(select(ApiKey).where(ApiKey.name == name, ApiKey.key_hash == key_hash)).first()


def api_key_by_hash(session: Session, key_hash: str) -> ApiKey | None:
    """The key with this sha256, unless it is revoked."""
    return session.scalars(
        select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    ).first()


def api_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, by name."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.name)))


def revoke_api_key(session: Session, name: str) -> ApiKey | None:
    """Revoke the key `name` (a key revoked before keeps its first `revoked_at`); None when no key
    has that name."""
    row = session.scalars(select(ApiKey).where(ApiKey.name == name)).first()
    if row is not None and row.revoked_at is None:
        row.revoked_at = datetime.now(timezone.utc)
        session.flush()
    return row


PREDICTION_OPTIONAL = {"label": None, "confidence": None, "contract_valid": None, "user_hash": None}
"""Prediction columns a row may leave out (one executemany needs every row to name the same ones)."""


def add_predictions(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert into the prediction log: dicts of `Prediction`'s columns, `at` an aware datetime
    (stored in UTC); the columns of `PREDICTION_OPTIONAL` and `extra` may be left out."""
    if rows:
        filled = [{**PREDICTION_OPTIONAL, "extra": {}, **row, "at": as_utc(row["at"])} for row in rows]
        session.execute(insert(Prediction), filled)


def predictions(
    session: Session,
    *,
    since: datetime | None = None,
    model_name: str | None = None,
    limit: int | None = None,
) -> list[Prediction]:
    """Logged predictions, newest first: at or after `since`, of `model_name`, at most `limit`."""
    query = select(Prediction).order_by(Prediction.at.desc(), Prediction.id.desc())
    if since is not None:
        query = query.where(Prediction.at >= as_utc(since))
    if model_name is not None:
        query = query.where(Prediction.model_name == model_name)
    return list(session.scalars(query.limit(limit) if limit is not None else query))


SERVING_SUMS = (
    "requests",
    "latency_sum_ms",
    "prompt_tokens",
    "output_tokens",
    "contract_invalid",
    "abstentions",
    "busy_seconds",
)
"""`ServingMinute` columns that add up across server processes (a row may leave any out: 0)."""


def add_serving_minutes(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Add each row's counts into the record's row of its (minute, model_version, route), which is
    created when new: server processes flushing the same minute at once each add theirs.

    A row has `minute` (any moment of it, aware; stored as the minute's start in UTC),
    `model_name`, `model_version`, `route`, the counts of `SERVING_SUMS` (one left out adds 0),
    and `status_counts` and `latency_buckets` ({key: count}, added key by key; left out: {}).

    One upsert per row adds the plain counts in SQL and returns the JSON counts as they stand;
    those are added here and written back while the upsert's row lock (PostgreSQL; on SQLite the
    database write lock) keeps every other writer of the row waiting until this transaction ends.
    Rows are written in key order, so two flushes never wait for each other in a cycle.
    """
    for row in sorted(rows, key=_serving_key):
        minute, model_version, route = _serving_key(row)
        values = {
            "minute": minute,
            "model_version": model_version,
            "route": route,
            "model_name": row["model_name"],
            **{column: row.get(column, 0) for column in SERVING_SUMS},
            "status_counts": {},
            "latency_buckets": {},
        }
        upsert = _upsert_adding(session, values)
        stored = session.execute(
            upsert.returning(ServingMinute.id, ServingMinute.status_counts, ServingMinute.latency_buckets)
        ).one()
        merged = {
            "status_counts": _add_counts(stored.status_counts, row.get("status_counts", {})),
            "latency_buckets": _add_counts(stored.latency_buckets, row.get("latency_buckets", {})),
        }
        session.execute(update(ServingMinute).where(ServingMinute.id == stored.id).values(**merged))


def serving_minutes(
    session: Session, *, since: datetime, model_name: str | None = None
) -> list[ServingMinute]:
    """The per-minute aggregates from the minute holding `since` on, oldest first."""
    query = select(ServingMinute).where(ServingMinute.minute >= _minute_start(since))
    if model_name is not None:
        query = query.where(ServingMinute.model_name == model_name)
    order = (ServingMinute.minute, ServingMinute.model_version, ServingMinute.route)
    return list(session.scalars(query.order_by(*order)))


# --- monitoring: feedback, the review queue, alerts, reports ------------------------------------


def served_predictions(session: Session, request_ids: Iterable[str]) -> dict[str, Prediction]:
    """The logged answer each request id got (its shadow copies left out), by request id."""
    ids = sorted(set(request_ids))
    found: dict[str, Prediction] = {}
    for start in range(0, len(ids), 500):
        query = (
            select(Prediction)
            .where(Prediction.request_id.in_(ids[start : start + 500]), Prediction.route != "shadow")
            .order_by(Prediction.id)
        )
        for row in session.scalars(query):
            found.setdefault(row.request_id, row)
    return found


def add_feedback(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(Feedback), [{**row, "at": as_utc(row["at"])} for row in rows])


def feedback(
    session: Session, *, model_name: str | None = None, since: datetime | None = None
) -> list[Feedback]:
    """The newest label of each request (a request labelled again counts once), oldest first."""
    newest = select(func.max(Feedback.id)).group_by(Feedback.request_id)
    query = select(Feedback).where(Feedback.id.in_(newest)).order_by(Feedback.at, Feedback.id)
    if model_name is not None:
        query = query.where(Feedback.model_name == model_name)
    if since is not None:
        query = query.where(Feedback.at >= as_utc(since))
    return list(session.scalars(query))


def add_review_items(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Queue the requests not queued yet (one item per request id); how many were new."""
    if not rows:
        return 0
    ids = [r["request_id"] for r in rows]
    queued: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        queued.update(session.scalars(select(ReviewItem.request_id).where(ReviewItem.request_id.in_(chunk))))
    new = [row for row in rows if row["request_id"] not in queued]
    for row in new:
        session.execute(_insert_unless_present(session, ReviewItem).values(**row))
    return len(new)


def review_items(
    session: Session,
    *,
    status: str | None = None,
    model_name: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[ReviewItem]:
    """Items of the review queue, oldest first."""
    query = select(ReviewItem).order_by(ReviewItem.id)
    if status is not None:
        query = query.where(ReviewItem.status == status)
    if model_name is not None:
        query = query.where(ReviewItem.model_name == model_name)
    query = query.offset(offset)
    return list(session.scalars(query.limit(limit) if limit is not None else query))


def claim_review_items(session: Session, ids: Sequence[int]) -> set[int]:
    """Mark these open items exported; the ids this statement moved (an item another export
    claimed meanwhile is not among them: the row lock makes the second UPDATE see it exported)."""
    claimed: set[int] = set()
    for start in range(0, len(ids), 500):
        statement = (
            update(ReviewItem)
            .where(ReviewItem.id.in_(ids[start : start + 500]), ReviewItem.status == "open")
            .values(status="exported")
            .returning(ReviewItem.id)
        )
        claimed.update(session.scalars(statement))
    return claimed


def review_counts(session: Session, *, model_name: str | None = None) -> dict[str, int]:
    """status -> items."""
    query = select(ReviewItem.status, func.count()).group_by(ReviewItem.status)
    if model_name is not None:
        query = query.where(ReviewItem.model_name == model_name)
    return {status: int(n) for status, n in session.execute(query)}


def review_items_by_request(session: Session, request_ids: Iterable[str]) -> dict[str, ReviewItem]:
    ids = sorted(set(request_ids))
    found: dict[str, ReviewItem] = {}
    for start in range(0, len(ids), 500):
        for row in session.scalars(
            select(ReviewItem).where(ReviewItem.request_id.in_(ids[start : start + 500]))
        ):
            found[row.request_id] = row
    return found


def queued_since(session: Session, since: datetime, *, model_name: str | None = None) -> int:
    """Review items made from requests served at or after `since`."""
    query = select(func.count()).select_from(ReviewItem).where(ReviewItem.served_at >= as_utc(since))
    if model_name is not None:
        query = query.where(ReviewItem.model_name == model_name)
    return int(session.scalar(query) or 0)


def logged_since(session: Session, since: datetime, *, model_name: str | None = None) -> int:
    """Logged (sampled) answered predictions at or after `since`, shadows left out."""
    query = (
        select(func.count())
        .select_from(Prediction)
        .where(Prediction.at >= as_utc(since), Prediction.route != "shadow", Prediction.status_code == 200)
    )
    if model_name is not None:
        query = query.where(Prediction.model_name == model_name)
    return int(session.scalar(query) or 0)


def alerts(
    session: Session,
    *,
    model_name: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
) -> list[Alert]:
    """Alerts, newest first."""
    query = select(Alert).order_by(Alert.fired_at.desc(), Alert.id.desc())
    if model_name is not None:
        query = query.where(Alert.model_name == model_name)
    if status is not None:
        query = query.where(Alert.status == status)
    if kind is not None:
        query = query.where(Alert.kind == kind)
    return list(session.scalars(query.limit(limit) if limit is not None else query))


def add_alert(session: Session, **fields: Any) -> Alert:
    alert = Alert(**fields)
    session.add(alert)
    session.flush()
    return alert


def set_alert_deliveries(session: Session, deliveries: dict[int, dict[str, Any]]) -> None:
    """Record the webhook's answer on each alert (by id)."""
    for alert_id, delivery in deliveries.items():
        session.execute(update(Alert).where(Alert.id == alert_id).values(delivery=delivery))


def newest_labels(session: Session, request_ids: Iterable[str]) -> dict[str, str]:
    """request id -> its newest label, for the ids that have one."""
    ids = sorted(set(request_ids))
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        query = select(Feedback.request_id, Feedback.label).where(
            Feedback.request_id.in_(ids[start : start + 500])
        )
        for request_id, label in session.execute(query.order_by(Feedback.id)):
            found[request_id] = label
    return found


def add_monitor_report(session: Session, **fields: Any) -> MonitorReport:
    report = MonitorReport(**fields)
    session.add(report)
    session.flush()
    return report


def monitor_reports(
    session: Session, *, model_name: str | None = None, limit: int | None = None
) -> list[MonitorReport]:
    """Monitoring reports, newest first."""
    query = select(MonitorReport).order_by(MonitorReport.at.desc(), MonitorReport.id.desc())
    if model_name is not None:
        query = query.where(MonitorReport.model_name == model_name)
    return list(session.scalars(query.limit(limit) if limit is not None else query))


def _upsert_adding(session: Session, values: dict[str, Any]) -> Any:
    """INSERT `values` into serving_minutes; on the same key, add the `SERVING_SUMS` to the row's."""
    statement = _dialect_insert(session, ServingMinute).values(**values)
    table = ServingMinute.__table__.c
    added = {column: table[column] + statement.excluded[column] for column in SERVING_SUMS}
    return statement.on_conflict_do_update(index_elements=["minute", "model_version", "route"], set_=added)


def _add_counts(stored: dict[str, Any] | None, added: dict[Any, Any]) -> dict[str, int]:
    """Two {key: count} maps added key by key; keys as strings (JSON's), so 200 and "200" meet."""
    total = {str(key): int(count) for key, count in (stored or {}).items()}
    for key, count in added.items():
        total[str(key)] = total.get(str(key), 0) + int(count)
    return total


def _serving_key(row: dict[str, Any]) -> tuple[datetime, str, str]:
    return _minute_start(row["minute"]), row["model_version"], row["route"]


def _minute_start(moment: datetime) -> datetime:
    return as_utc(moment).replace(second=0, microsecond=0)


# --- the dashboard ---
# `sftline ui` reads the record page by page: every list is a page of a fixed size with its total
# counted in SQL, and serving aggregates are summed in SQL, so a page costs the same on a record of
# 1,000 runs and 100,000 predictions as on a small one.


def latest_station_runs(session: Session) -> list[StationRun]:
    """The newest run of each station (the line's last status per station), by station name."""
    newest = select(func.max(StationRun.id)).group_by(StationRun.station).scalar_subquery()
    query = select(StationRun).where(StationRun.id.in_(newest)).order_by(StationRun.station)
    return list(session.scalars(query))


def station_runs_page(session: Session, *, offset: int, limit: int) -> tuple[list[StationRun], int]:
    """Station runs newest first, one page of them, and how many there are."""
    total = session.scalar(select(func.count(StationRun.id))) or 0
    rows = session.scalars(select(StationRun).order_by(StationRun.id.desc()).offset(offset).limit(limit))
    return list(rows), int(total)


def dataset_summaries(session: Session) -> list[tuple[Dataset, int, int, int]]:
    """(dataset, versions, head number, head's examples) of every dataset, by name, in two queries."""
    counts = session.execute(
        select(
            DatasetVersion.dataset_id, func.count(DatasetVersion.id), func.max(DatasetVersion.number)
        ).group_by(DatasetVersion.dataset_id)
    ).all()
    heads = {dataset_id: (n, number) for dataset_id, n, number in counts}
    sizes = dict(
        session.execute(
            select(DatasetVersion.dataset_id, DatasetVersion.n_examples).where(
                DatasetVersion.id.in_(
                    select(func.max(DatasetVersion.id)).group_by(DatasetVersion.dataset_id).scalar_subquery()
                )
            )
        ).all()
    )
    return [
        (d, heads.get(d.id, (0, 0))[0], heads.get(d.id, (0, 0))[1], sizes.get(d.id, 0))
        for d in datasets(session)
    ]


def gate_report_by_id(session: Session, report_id: int) -> GateReport | None:
    return session.get(GateReport, report_id)


def splits_page(session: Session, *, limit: int) -> list[Split]:
    return list(session.scalars(select(Split).order_by(Split.id.desc()).limit(limit)))


def mixtures_page(session: Session, *, limit: int) -> list[Mixture]:
    return list(session.scalars(select(Mixture).order_by(Mixture.id.desc()).limit(limit)))


def version_refs(session: Session, version_ids: Iterable[int]) -> dict[int, str]:
    """`NAME@vN` of each dataset version id, in one query."""
    wanted = sorted(set(version_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(DatasetVersion.id, Dataset.name, DatasetVersion.number)
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .where(DatasetVersion.id.in_(wanted))
    )
    return {version_id: f"{name}@v{number}" for version_id, name, number in rows}


def runs_page(session: Session, *, offset: int, limit: int) -> tuple[list[Run], int]:
    """Training runs newest first, one page, and how many there are."""
    total = session.scalar(select(func.count(Run.id))) or 0
    return list(session.scalars(select(Run).order_by(Run.id.desc()).offset(offset).limit(limit))), int(total)


def evaluations_page(session: Session, *, offset: int, limit: int) -> tuple[list[Evaluation], int]:
    """Evaluations newest first, one page, and how many there are."""
    total = session.scalar(select(func.count(Evaluation.id))) or 0
    query = select(Evaluation).order_by(Evaluation.id.desc()).offset(offset).limit(limit)
    return list(session.scalars(query)), int(total)


def evaluations_of_version(session: Session, version_id: int, *, limit: int) -> list[Evaluation]:
    """The newest evaluations on one dataset version (the ones another can be compared with)."""
    query = select(Evaluation).where(Evaluation.dataset_version_id == version_id)
    return list(session.scalars(query.order_by(Evaluation.id.desc()).limit(limit)))


def all_model_versions(session: Session) -> list[ModelVersion]:
    """Every registered version of every name, by name and number, in one query."""
    query = select(ModelVersion).join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
    return list(session.scalars(query.order_by(RegisteredModel.name, ModelVersion.number)))


def serving_totals_by_minute(session: Session, *, since: datetime) -> list[Any]:
    """Rows (minute, route, requests, latency_sum_ms, contract_invalid, abstentions, errors) per
    minute and route from the minute holding `since` on, summed over versions in SQL."""
    query = (
        select(
            ServingMinute.minute,
            ServingMinute.route,
            func.sum(ServingMinute.requests).label("requests"),
            func.sum(ServingMinute.latency_sum_ms).label("latency_sum_ms"),
            func.sum(ServingMinute.contract_invalid).label("contract_invalid"),
            func.sum(ServingMinute.abstentions).label("abstentions"),
        )
        .where(ServingMinute.minute >= _minute_start(since))
        .group_by(ServingMinute.minute, ServingMinute.route)
        .order_by(ServingMinute.minute, ServingMinute.route)
    )
    return list(session.execute(query))


def serving_totals_by_version(session: Session, *, since: datetime) -> list[Any]:
    """Rows (model_name, model_version, route, requests, latency_sum_ms, contract_invalid,
    abstentions, output_tokens) over the window, summed in SQL."""
    query = (
        select(
            ServingMinute.model_name,
            ServingMinute.model_version,
            ServingMinute.route,
            func.sum(ServingMinute.requests).label("requests"),
            func.sum(ServingMinute.latency_sum_ms).label("latency_sum_ms"),
            func.sum(ServingMinute.contract_invalid).label("contract_invalid"),
            func.sum(ServingMinute.abstentions).label("abstentions"),
            func.sum(ServingMinute.output_tokens).label("output_tokens"),
        )
        .where(ServingMinute.minute >= _minute_start(since))
        .group_by(ServingMinute.model_name, ServingMinute.model_version, ServingMinute.route)
        .order_by(ServingMinute.model_name, ServingMinute.route, ServingMinute.model_version)
    )
    return list(session.execute(query))


def serving_histograms(session: Session, *, since: datetime) -> list[Any]:
    """(minute, model_version, route, status_counts, latency_buckets) of the window's rows: JSON
    columns, added up by the caller (at most one row per minute, version and route)."""
    query = select(
        ServingMinute.minute,
        ServingMinute.model_version,
        ServingMinute.route,
        ServingMinute.status_counts,
        ServingMinute.latency_buckets,
    ).where(ServingMinute.minute >= _minute_start(since))
    return list(session.execute(query.order_by(ServingMinute.minute)))


def latest_serving_minute(session: Session) -> datetime | None:
    """The newest minute anything was served (the serving page's window ends there)."""
    return session.scalar(select(func.max(ServingMinute.minute)))


def predictions_page(session: Session, *, offset: int, limit: int) -> tuple[list[Prediction], int]:
    """Logged predictions newest first, one page, and how many there are."""
    total = session.scalar(select(func.count(Prediction.id))) or 0
    query = select(Prediction).order_by(Prediction.at.desc(), Prediction.id.desc())
    return list(session.scalars(query.offset(offset).limit(limit))), int(total)


def monitor_reports_page(
    session: Session, *, model_name: str | None, offset: int, limit: int
) -> tuple[list[MonitorReport], int]:
    """Monitoring reports newest first, one page (their summaries inline), and how many there are."""
    query = select(MonitorReport)
    if model_name is not None:
        query = query.where(MonitorReport.model_name == model_name)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    query = query.order_by(MonitorReport.at.desc(), MonitorReport.id.desc()).offset(offset).limit(limit)
    return list(session.scalars(query)), int(total)


def monitor_report_by_id(session: Session, report_id: int) -> MonitorReport | None:
    return session.get(MonitorReport, report_id)


def alerts_page(
    session: Session, *, model_name: str | None, statuses: Sequence[str], offset: int, limit: int
) -> tuple[list[Alert], int]:
    """Alerts in `statuses`, the most recently changed first, one page, and how many there are."""
    query = select(Alert).where(Alert.status.in_(list(statuses)))
    if model_name is not None:
        query = query.where(Alert.model_name == model_name)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    changed = func.coalesce(Alert.resolved_at, Alert.last_seen_at)
    query = query.order_by(changed.desc(), Alert.id.desc()).offset(offset).limit(limit)
    return list(session.scalars(query)), int(total)


def review_items_page(
    session: Session,
    *,
    model_name: str | None,
    statuses: Sequence[str] | None,
    newest_first: bool,
    offset: int,
    limit: int,
) -> tuple[list[ReviewItem], int]:
    """Review items in `statuses` (None: all), one page, and how many there are."""
    query = select(ReviewItem)
    if statuses is not None:
        query = query.where(ReviewItem.status.in_(list(statuses)))
    if model_name is not None:
        query = query.where(ReviewItem.model_name == model_name)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    order = ReviewItem.id.desc() if newest_first else ReviewItem.id
    return list(session.scalars(query.order_by(order).offset(offset).limit(limit))), int(total)


def review_item_by_id(session: Session, item_id: int) -> ReviewItem | None:
    return session.get(ReviewItem, item_id)
