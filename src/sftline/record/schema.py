"""The project record's tables (SQLAlchemy 2 declarative). Alembic migrations own the DDL.

Tables arrive with their stations; DESIGN.md lists the full set.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """A moment read from the record, in UTC: SQLite gives back the wall time without its zone
    (every moment is written in UTC), PostgreSQL an aware one."""
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    """A named line of dataset versions, e.g. `support`."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset",
        foreign_keys="DatasetVersion.dataset_id",
        order_by="DatasetVersion.number",
    )


class DatasetVersion(Base):
    """An immutable snapshot of a dataset, named by the sha256 of its canonical content.

    Versions are numbered 1, 2, ... per dataset; the highest number is the head. Content that
    returns to an earlier state (a revert) gets a new number with the same content hash.
    """

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number", name="uq_dataset_versions_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    object_hash: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    n_examples: Mapped[int] = mapped_column(Integer)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    changelog: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="versions", foreign_keys=[dataset_id])
    parent: Mapped[DatasetVersion | None] = relationship(remote_side=[id])

    @property
    def ref(self) -> str:
        return f"{self.dataset.name}@v{self.number}"


class ImportRun(Base):
    """One `sftline data import`: what was read, what was accepted and what was quarantined."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    source_path: Mapped[str] = mapped_column(Text)
    source_sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(40))
    n_read: Mapped[int] = mapped_column(Integer)
    n_accepted: Mapped[int] = mapped_column(Integer)
    n_quarantined: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    quarantine_object: Mapped[str | None] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BaseModelEntry(Base):
    """A base model materialised or registered in this project."""

    __tablename__ = "base_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    path: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    n_parameters: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GateReport(Base):
    """One `sftline data check`: the gates' counts, findings and quarantined examples."""

    __tablename__ = "gate_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    checked_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    result_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    status: Mapped[str] = mapped_column(String(20))
    n_checked: Mapped[int] = mapped_column(Integer)
    n_accepted: Mapped[int] = mapped_column(Integer)
    n_quarantined: Mapped[int] = mapped_column(Integer)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    against: Mapped[list[Any]] = mapped_column(default=list)
    report_object: Mapped[str] = mapped_column(String(64))
    rejects_object: Mapped[str | None] = mapped_column(String(64))
    """Parquet of every flagged example, blocked or warned, with all its reasons
    (`sftline.gates.rows`); before issue 14, of the quarantined ones with their first reason
    (`rows_from_table` reads both)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    checked_version: Mapped[DatasetVersion] = relationship(foreign_keys=[checked_version_id])
    result_version: Mapped[DatasetVersion | None] = relationship(foreign_keys=[result_version_id])


class Split(Base):
    """One `sftline data split`: which example went where, by id and content hash."""

    __tablename__ = "splits"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)
    parts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """part -> {"dataset", "version", "content_hash", "examples"}."""
    assignments_object: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FrozenGold(Base):
    """A gold set locked at one version: its hash is recorded and it never changes."""

    __tablename__ = "frozen_gold"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), unique=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    content_hash: Mapped[str] = mapped_column(String(64))
    frozen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dataset: Mapped[Dataset] = relationship()
    version: Mapped[DatasetVersion] = relationship()


class Mixture(Base):
    """One `sftline data mix`: components, requested and achieved counts, the resulting version."""

    __tablename__ = "mixtures"

    id: Mapped[int] = mapped_column(primary_key=True)
    sources: Mapped[list[Any]] = mapped_column(default=list)
    components: Mapped[list[Any]] = mapped_column(default=list)
    total: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    result_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Run(Base):
    """A training run: its config, data, base model, code version, status and output."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    """running, completed, failed, interrupted, stopped_early."""
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seed: Mapped[int] = mapped_column(Integer)
    data_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    eval_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    base_model: Mapped[str] = mapped_column(String(200))
    base_model_hash: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(100))
    output_dir: Mapped[str] = mapped_column(Text)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    trained_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    """Why the run failed (one line), for status `failed`."""
    model_hash: Mapped[str | None] = mapped_column(String(64))
    """sha256 over the exported model folder's file manifest, computed once at export."""
    model_files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The exported model folder's files: relative path -> sha256."""
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """The lease of a running run: a stale heartbeat (or a dead pid on this host) means interrupted."""

    data_version: Mapped[DatasetVersion] = relationship(foreign_keys=[data_version_id])


class RunMetric(Base):
    """A metric of a run at an optimizer step (train loss, eval loss, learning rate, tokens/s)."""

    __tablename__ = "run_metrics"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(60))
    value: Mapped[float] = mapped_column(Float)


class Evaluation(Base):
    """A model scored on one dataset version: its settings and every metric, overall and by slice.

    `key` names the inputs (model content hash, data hash, settings); the same inputs reuse the row.
    """

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(300))
    """As the user named it: a run, a base model, or a folder."""
    model_kind: Mapped[str] = mapped_column(String(20))
    """run, base, or folder."""
    model_hash: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    task: Mapped[str] = mapped_column(String(20))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    n_examples: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dataset_version: Mapped[DatasetVersion] = relationship()


class EvalOutput(Base):
    """What the model answered for one example of an evaluation (see `sftline.evals.scoring.Output`)."""

    __tablename__ = "eval_outputs"

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    example_id: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ranked: Mapped[list[Any]] = mapped_column(default=list)
    confidence: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    finished: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[float] = mapped_column(Float)


class StationRun(Base):
    """One execution of a station, named by its key: the inputs' content hashes plus the settings
    that shape its outputs. A `succeeded` row with the same key is reused instead of running again.
    """

    __tablename__ = "station_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    station: Mapped[str] = mapped_column(String(40), index=True)
    """import, check, split, mix, train, eval."""
    label: Mapped[str] = mapped_column(String(300))
    """What a person calls it, e.g. `import support`."""
    key: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20))
    """running, succeeded, failed, interrupted."""
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    inputs: Mapped[list[Any]] = mapped_column(default=list)
    """[{"kind", "name", "hash"}] the key was built from."""
    outputs: Mapped[list[Any]] = mapped_column(default=list)
    """[{"kind", "name", "hash"}] it wrote."""
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The station's summary, returned as is when the key is found again."""
    error: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float | None] = mapped_column(Float)


class Artifact(Base):
    """Anything a station reads or writes, by kind and content hash: a source file, a dataset
    version, a gate report, a split, a mixture, a training run, a model, an evaluation."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("kind", "name", "hash", name="uq_artifacts_kind_name_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(500))
    hash: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LineageEdge(Base):
    """Input artifact -> output artifact, through one station run."""

    __tablename__ = "lineage_edges"
    __table_args__ = (UniqueConstraint("source_id", "target_id", "station_run_id", name="uq_lineage_edges"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    station_run_id: Mapped[int] = mapped_column(ForeignKey("station_runs.id"), index=True)


class Erasure(Base):
    """One `sftline data purge`: a data subject's erasure request, as carried out.

    It records what was matched (each value as its sha256, never the value), the versions written
    without the matching examples and the counts, never the erased content.
    """

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(primary_key=True)
    matches: Mapped[list[Any]] = mapped_column(default=list)
    """[{"field", "op", "value_sha256"}]: an example matching any of them was erased."""
    reason: Mapped[str | None] = mapped_column(Text)
    datasets: Mapped[list[Any]] = mapped_column(default=list)
    """[{"dataset", "status", "from", "to", "before", "removed", "after"}], one per dataset searched."""
    n_removed: Mapped[int] = mapped_column(Integer)
    still_holding: Mapped[list[Any]] = mapped_column(default=list)
    """Refs of the versions that still hold matching examples (older, immutable versions)."""
    runs: Mapped[list[Any]] = mapped_column(default=list)
    """Names of the training runs made from matching data: retrain them."""
    evaluations: Mapped[list[Any]] = mapped_column(default=list)
    """Names of the evaluations whose stored outputs hold a matching example's text."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RegisteredModel(Base):
    """A name under which trained runs are registered as numbered versions (`support-intents`).

    Every stage change of its versions first updates this row (`changed_at`), in the same
    transaction: on PostgreSQL that row lock puts concurrent promotions of one name in a line.
    """

    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    """A trained run registered under a name: `NAME@N`, with the immutable record of what made it.

    One run is one version per name; at most one version of a name is in `production` and one in
    `canary` (partial unique indexes, so no interleaving of writers can leave two).
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "number", name="uq_model_versions_number"),
        UniqueConstraint("model_id", "run_id", name="uq_model_versions_run"),
        Index(
            "uq_model_versions_one_production",
            "model_id",
            unique=True,
            sqlite_where=text("stage = 'production'"),
            postgresql_where=text("stage = 'production'"),
        ),
        Index(
            "uq_model_versions_one_canary",
            "model_id",
            unique=True,
            sqlite_where=text("stage = 'canary'"),
            postgresql_where=text("stage = 'canary'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    model_hash: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(20))
    """candidate, canary, production, archived."""
    record: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """What made it, as registered and never changed: run, base model, data, config, code, files."""
    record_hash: Mapped[str] = mapped_column(String(64))
    """sha256 of the canonical JSON of `record`."""
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model: Mapped[RegisteredModel] = relationship()
    run: Mapped[Run] = relationship()

    @property
    def ref(self) -> str:
        return f"{self.model.name}@{self.number}"


class StageChange(Base):
    """One entry of a registered model's history: a registration, promotion or rollback."""

    __tablename__ = "stage_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    action: Mapped[str] = mapped_column(String(20))
    """register, promote, rollback, or demote (a version that gave up its stage to another)."""
    from_stage: Mapped[str | None] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    """The OS user, or the API key's name."""
    reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The verdict and evaluations a promotion rests on (what `--force` overrode, when forced)."""
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    version: Mapped[ModelVersion] = relationship()


class ApiKey(Base):
    """A key that may call `sftline serve`: only the sha256 of the key is stored, never the key.

    A revoked key keeps its row, and its name (the actor of what it did) is never given to another.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """sha256 hex of the key."""
    scope: Mapped[str] = mapped_column(String(20))
    """serve (inference) or admin (inference and the registry's writes)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Prediction(Base):
    """One served request of the prediction log (a sample of the traffic, not all of it)."""

    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(300))
    """`support@3`, or the run or base model served directly."""
    route: Mapped[str] = mapped_column(String(20))
    """production, canary, shadow, or direct."""
    endpoint: Mapped[str] = mapped_column(String(20))
    """chat or classify."""
    prompt: Mapped[str] = mapped_column(Text)
    """As redacted by the server before it is logged."""
    output: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(200))
    confidence: Mapped[float | None] = mapped_column(Float)
    abstained: Mapped[bool] = mapped_column(Boolean)
    contract_valid: Mapped[bool | None] = mapped_column(Boolean)
    """Whether the output met the contract; None where the contract has nothing to check."""
    latency_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int] = mapped_column(Integer)
    user_hash: Mapped[str | None] = mapped_column(String(64))
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


LATENCY_BUCKETS_MS: tuple[float, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, float("inf"))
"""Upper edges (inclusive, milliseconds) of the latency histogram of `ServingMinute`."""


def latency_bucket(latency_ms: float) -> str:
    """The `latency_buckets` key that counts a request of this latency: its first edge at or above
    `latency_ms`, written "5", "10", ..., "10000", "+Inf"."""
    edge = next(edge for edge in LATENCY_BUCKETS_MS if latency_ms <= edge)
    return "+Inf" if edge == float("inf") else f"{edge:g}"


class ServingMinute(Base):
    """What one model version served on one route in one minute: every request counted, whether
    the prediction log sampled it or not. Server processes add their counts into the same row
    (`queries.add_serving_minutes`)."""

    __tablename__ = "serving_minutes"
    __table_args__ = (UniqueConstraint("minute", "model_version", "route", name="uq_serving_minutes_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """The minute's start, in UTC."""
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(300))
    route: Mapped[str] = mapped_column(String(20))
    requests: Mapped[int] = mapped_column(Integer)
    status_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """HTTP status code (a string) -> requests: {"200": 57, "429": 3}."""
    latency_buckets: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """`latency_bucket` key -> requests in that bucket alone (not cumulative: the counts add up to
    `requests`); a bucket with no request may be absent."""
    latency_sum_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    contract_invalid: Mapped[int] = mapped_column(Integer)
    abstentions: Mapped[int] = mapped_column(Integer)
    busy_seconds: Mapped[float] = mapped_column(Float)
    """Seconds the model spent generating for these requests (for utilisation)."""


class Feedback(Base):
    """A correct answer for a logged prediction, joined by its request id: from `sftline feedback
    import` (source `feedback`) or a reviewer's label (`review`). A request labelled again keeps
    every row; the newest counts."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(300))
    """The version that answered the request (from the prediction log)."""
    label: Mapped[str] = mapped_column(Text)
    """The correct answer: a label, or the text the model should have said."""
    source: Mapped[str] = mapped_column(String(20))
    """feedback or review."""
    actor: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(1000))
    """Where the label came from: `FILE:LINE`."""
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ReviewItem(Base):
    """A logged prediction a person should look at: low confidence, an abstention, an answer that
    breaks the contract, or the random audit sample. One item per request."""

    __tablename__ = "review_items"
    __table_args__ = (UniqueConstraint("request_id", name="uq_review_items_request"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(String(40))
    """low_confidence, abstained, contract_invalid or audit."""
    status: Mapped[str] = mapped_column(String(20), index=True)
    """open, exported (sent to reviewers) or labelled."""
    prompt: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    served_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    labelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Alert(Base):
    """Something monitoring found: an SLO burning its budget, drift, a retraining trigger. An alert
    stays `firing` (its `last_seen_at` moving) while the condition holds, and is `resolved` once it
    does not; a retraining trigger is `handled` by the retrain that acted on it."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    """slo_burn, drift or retrain_trigger."""
    name: Mapped[str] = mapped_column(String(200))
    """What fired, e.g. `availability:page` or `drift:embedding`; one firing alert per name."""
    severity: Mapped[str] = mapped_column(String(20))
    """page, ticket or info."""
    status: Mapped[str] = mapped_column(String(20), index=True)
    """firing, resolved or handled."""
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivery: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The webhook's answer: {"url", "status" or "error", "at"}; {} when no webhook is set."""


class MonitorReport(Base):
    """One `sftline monitor` pass: its whole report as an object, its headline numbers inline."""

    __tablename__ = "monitor_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    window_s: Mapped[float] = mapped_column(Float)
    report_object: Mapped[str] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
