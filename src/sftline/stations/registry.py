"""The registry station: trained runs registered as `NAME@N`, their stages, and the evidence.

`register` writes an immutable record of what made the run (base model and its file hashes, the
data versions with their gate reports, splits and mixtures, config and seed, code and library
versions, the model's file hashes) and links `NAME@N` into the lineage. `promote` moves a version
through the stages of `sftline.registry.stages`; into `canary` or `production` only on a `pass`
release verdict against the version in production (or, for the first promotion, the run's base
model), over the release suite (`release.on`, by default the frozen gold sets), computed by the
eval station when the record does not hold it yet. `rollback` puts the previous production
version back. Every change is one transaction that first takes the name's row lock, and is
appended to the name's history with its actor, reason and evidence.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from sftline.data.versions import NAME_PATTERN
from sftline.errors import ConfigError, DatasetNotFound, LineageError, ModelError, RecordError
from sftline.evals.settings import EvalSettings
from sftline.provenance import environment
from sftline.record import queries
from sftline.record.lineage import lineage
from sftline.record.schema import ModelVersion, RegisteredModel, Run, StageChange
from sftline.record.workspace import Workspace
from sftline.registry.stages import (
    EXCLUSIVE,
    NEEDS_EVIDENCE,
    Change,
    UnknownStage,
    check_target_stage,
    rollback_target,
)
from sftline.stations.release import Announce, eval_station
from sftline.stations.runner import ArtifactRef, Produced, Work, canonical_json, run_station

T = TypeVar("T")
ExportMode = Literal["merged", "adapter"]

RECORD_SCHEMA = 1
WRITE_ATTEMPTS = 8
"""Tries of a registry transaction that lost a race (SQLite's write lock, a unique index): each
loss means another writer committed, and the next try reads what it wrote."""


class RegistryError(ModelError):
    """A registry request that cannot be carried out (no such version, nothing to roll back to)."""


@dataclass(frozen=True)
class VersionName:
    name: str
    number: int | None

    def __str__(self) -> str:
        return self.name if self.number is None else f"{self.name}@{self.number}"


def parse_version(text: str) -> VersionName:
    """`support-intents@3` or `support-intents` (no number)."""
    name, at, number = text.partition("@")
    if not NAME_PATTERN.fullmatch(name) or (at and not number.isdigit()):
        raise RegistryError(f"not a registered model version: {text!r} (expected NAME or NAME@N)")
    return VersionName(name, int(number) if at else None)


def current_actor() -> str:
    """Who is acting: $SFTLINE_ACTOR (set by the server to an API key's name), else the OS user."""
    if os.environ.get("SFTLINE_ACTOR"):
        return os.environ["SFTLINE_ACTOR"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


# --- the record of a version ------------------------------------------------------------------


def _version_json(version: Any) -> dict[str, Any]:
    return {"ref": version.ref, "content_hash": version.content_hash, "n_examples": version.n_examples}


def _upstream(session: Session, run: Run) -> dict[str, Any]:
    """The dataset versions upstream of the run's model in the lineage, and the checks, splits and
    mixtures that made or read them."""
    try:
        graph = lineage(session, run.name)
    except LineageError:  # a run trained outside any station: only its own data versions
        graph = None
    refs = {n["name"] for n in graph.nodes.values() if n["kind"] == "dataset_version"} if graph else set()
    versions = []
    for ref in sorted(refs):
        try:
            versions.append(queries.resolve(session, ref))
        except DatasetNotFound:  # a version purged since: the lineage still names it
            continue
    data, holdout = queries.recorded_versions(session, run)
    versions += [v for v in (data, holdout) if v is not None and v.ref not in refs]
    ids = [v.id for v in versions]
    reports = queries.gate_reports_of(session, ids)
    return {
        "versions": [_version_json(v) for v in sorted(versions, key=lambda v: v.ref)],
        "gate_reports": [
            {
                "id": r.id,
                "checked": r.checked_version.ref,
                "accepted": r.result_version.ref if r.result_version else None,
                "status": r.status,
                "n_checked": r.n_checked,
                "n_accepted": r.n_accepted,
                "n_quarantined": r.n_quarantined,
                "counts": r.counts,
                "against": r.against,
            }
            for r in reports
        ],
        "splits": [
            {
                "id": s.id,
                "source": _ref_of(session, s.source_version_id),
                "seed": s.seed,
                "plan": s.plan,
                "parts": s.parts,
            }
            for s in queries.splits_of(session, ids)
        ],  # fmt: skip
        "mixtures": [
            {
                "id": m.id,
                "result": _ref_of(session, m.result_version_id),
                "sources": m.sources,
                "components": m.components,
                "total": m.total,
                "seed": m.seed,
            }
            for m in queries.mixtures_making(session, ids)
        ],  # fmt: skip
    }


def _ref_of(session: Session, version_id: int) -> str | None:
    version = queries.version_by_id(session, version_id)
    return version.ref if version is not None else None


def build_record(workspace: Workspace, session: Session, run: Run, name: str, number: int) -> dict[str, Any]:
    """The immutable record of `run` registered as `name@number` (see the module docstring)."""
    base = queries.base_model_named(session, run.base_model)
    data, holdout = queries.recorded_versions(session, run)
    summary = run.summary or {}
    recorded_env = summary.get("environment")
    env = {
        **(recorded_env or environment()),
        "recorded": "at training" if recorded_env else "at registration",
    }
    manifest_path = Path(run.output_dir) / "model" / "manifest.json"
    manifest = _read_json(manifest_path)
    contract = workspace.project.config.contract
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return {
        "schema": RECORD_SCHEMA,
        "name": name,
        "version": number,
        "run": {
            "name": run.name,
            "status": run.status,
            "task": summary.get("task") or manifest.get("task"),
            "method": run.config.get("method"),
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "seconds": seconds,
            "steps": run.steps,
            "trained_tokens": run.trained_tokens,
            "device": summary.get("device"),
            "best_step": summary.get("best_step"),
            "best_eval": summary.get("best_eval"),
            "eval_metric": summary.get("eval_metric"),
            "station_key": summary.get("station_key"),
        },
        "base_model": {
            "name": run.base_model,
            "content_hash": run.base_model_hash,
            "kind": base.kind if base else None,
            "source": base.source if base else None,
            "files": dict(base.files) if base else {},
        },
        "data": {"train": _version_json(data), "holdout": _version_json(holdout) if holdout else None},
        "upstream": _upstream(session, run),
        "config": run.config,
        "seed": run.seed,
        "code": env.get("code") or {"version": run.code_version, "commit": None, "dirty": None},
        "code_version": run.code_version,
        "environment": {k: v for k, v in env.items() if k != "code"},
        "artifact": {
            "content_hash": run.model_hash,
            "files": dict(run.model_files),
            "path": str(Path(run.output_dir) / "model"),
        },
        "labels": manifest.get("labels"),
        "contract": contract.model_dump(
            mode="json", include={"task", "system_prompt", "output", "abstention", "limits"}
        ),
        "license": None,
    }


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(record).encode()).hexdigest()


# --- writes: one transaction each, retried when another writer won a race --------------------


def _lost_race(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, RecordError) else exc
    if isinstance(cause, IntegrityError):
        return True
    return isinstance(cause, OperationalError) and "locked" in str(cause).lower()


def _retrying(attempt: Callable[[], T]) -> T:
    for tries in range(WRITE_ATTEMPTS):
        try:
            return attempt()
        except (RecordError, IntegrityError, OperationalError) as exc:
            if not _lost_race(exc) or tries == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (tries + 1))
    raise AssertionError("unreachable")


def _change(
    session: Session,
    version: ModelVersion,
    action: str,
    to: str,
    *,
    actor: str,
    reason: str | None = None,
    forced: bool = False,
    evidence: dict[str, Any] | None = None,
) -> StageChange:
    """Move `version` to stage `to` and append the change to the history."""
    entry = StageChange(
        model_id=version.model_id,
        version_id=version.id,
        action=action,
        from_stage=version.stage if action != "register" else None,
        to_stage=to,
        actor=actor,
        reason=reason,
        forced=forced,
        evidence=evidence or {},
    )
    version.stage = to
    session.add(entry)
    session.flush()  # the partial unique indexes see each move before the next
    return entry


@dataclass
class Registered:
    ref: str
    created: bool
    stage: str
    run: str
    model_hash: str


def register_run(
    workspace: Workspace, run_name: str, *, name: str | None = None, actor: str | None = None
) -> Registered:
    """Register a finished run as the next version of `name` (default: the project's model name).
    The same run registered again returns its existing version."""
    name = name or workspace.project.config.effective_model_name
    parse_version(name)  # a valid name
    actor = actor or current_actor()
    with workspace.record.session() as session:
        run = queries.get_run(session, run_name)
        if run.status not in ("completed", "stopped_early") or run.model_hash is None:
            raise RegistryError(f"run {run_name} is {run.status} and has no exported model to register")
        model_ref = ArtifactRef("model", run.name, run.model_hash)

    def attempt() -> Registered:
        with workspace.record.session() as session:
            model = queries.get_or_create_registered_model(session, name)
            run = queries.get_run(session, run_name)
            existing = queries.model_version_of_run(session, model, run)
            if existing is not None:
                return Registered(existing.ref, False, existing.stage, run.name, existing.model_hash)
            number = queries.next_model_version_number(session, model)
            record = build_record(workspace, session, run, name, number)
            version = ModelVersion(
                model_id=model.id,
                number=number,
                run_id=run.id,
                model_hash=run.model_hash,
                stage="candidate",
                record=record,
                record_hash=record_hash(record),
                created_by=actor,
            )
            session.add(version)
            session.flush()
            _change(session, version, "register", "candidate", actor=actor)
            return Registered(f"{name}@{number}", True, "candidate", run.name, version.model_hash)

    registered = _retrying(attempt)
    # The lineage: NAME@N made from the run's model (a station run, so `sftline lineage NAME@N`
    # walks from it back to the source files).
    out = ArtifactRef("registered_model", registered.ref, registered.model_hash)
    work = Work("register", f"register {run_name} as {name}", (model_ref,), {"name": name})
    run_station(workspace, work, lambda: Produced([out], {"version": registered.ref}))
    return registered


# --- reads -------------------------------------------------------------------------------------


def find_version(session: Session, text: str, *, default_stage: str | None = "production") -> ModelVersion:
    """`NAME@N`, or `NAME` meaning its version in `default_stage`."""
    wanted = parse_version(text)
    model = queries.registered_model(session, wanted.name)
    if model is None:
        raise RegistryError(f"no registered model {wanted.name!r}; see `sftline models list`")
    if wanted.number is not None:
        version = queries.model_version(session, model, wanted.number)
        if version is None:
            raise RegistryError(f"{wanted.name} has no version {wanted.number}; see `sftline models list`")
        return version
    holders = queries.versions_in_stage(session, model, default_stage) if default_stage else []
    if not holders:
        raise RegistryError(f"{wanted.name} has no {default_stage} version; name one as {wanted.name}@N")
    return holders[0]


def evaluation_json(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "dataset": row.dataset_version.ref,
        "n_examples": row.n_examples,
        "task": row.task,
        "created_at": row.created_at.isoformat(),
        "metrics": row.metrics,
    }


def history_json(changes: list[StageChange]) -> list[dict[str, Any]]:
    return [
        {
            "version": change.version.number,
            "action": change.action,
            "from": change.from_stage,
            "to": change.to_stage,
            "actor": change.actor,
            "at": change.at.isoformat(),
            "reason": change.reason,
            "forced": change.forced,
            "evidence": change.evidence,
        }
        for change in changes
    ]


def version_json(session: Session, version: ModelVersion, *, with_record: bool = True) -> dict[str, Any]:
    record = version.record
    data = {
        "ref": version.ref,
        "name": version.model.name,
        "version": version.number,
        "stage": version.stage,
        "run": version.run.name,
        "model_hash": version.model_hash,
        "base_model": record.get("base_model", {}).get("name"),
        "data": record.get("data", {}).get("train", {}).get("ref"),
        "registered_by": version.created_by,
        "registered_at": version.created_at.isoformat(),
        "record_hash": version.record_hash,
    }
    if with_record:
        data["record"] = record
        data["evaluations"] = [
            evaluation_json(e) for e in queries.evaluations_of_model(session, version.model_hash)
        ]
        history = [c for c in queries.stage_changes(session, version.model) if c.version_id == version.id]
        data["history"] = history_json(history)
    return data


def show_version(workspace: Workspace, text: str) -> dict[str, Any]:
    with workspace.record.session() as session:
        return version_json(session, find_version(session, text))


def list_versions(workspace: Workspace) -> list[dict[str, Any]]:
    with workspace.record.session() as session:
        return [
            version_json(session, version, with_record=False)
            for model in queries.registered_models(session)
            for version in queries.model_versions(session, model)
        ]


def history(workspace: Workspace, name: str) -> list[dict[str, Any]]:
    with workspace.record.session() as session:
        model = queries.registered_model(session, parse_version(name).name)
        if model is None:
            raise RegistryError(f"no registered model {name!r}; see `sftline models list`")
        return history_json(queries.stage_changes(session, model))


# --- promotion ---------------------------------------------------------------------------------


def release_suite(workspace: Workspace) -> list[str]:
    """The datasets a promotion's verdict is computed on: `release.on`, else the frozen gold sets."""
    configured = list(workspace.project.config.release.on)
    if configured:
        return configured
    with workspace.record.session() as session:
        gold = [row.version.ref for row in queries.frozen_gold_rows(session)]
    if not gold:
        raise ConfigError(
            "no release suite: set `release: on: [DATASET, ...]` in sftline.yaml, or freeze a gold set "
            "(`sftline data split --gold 0.1 --freeze-gold`)"
        )
    return gold


@dataclass
class Evidence:
    verdict: str
    baseline: str
    baseline_kind: str
    """production (the version in production) or base (the run's base model: a first promotion)."""
    baseline_version: str | None
    on: list[str]
    station_run: str
    evaluations: list[str]
    reasons: list[str]
    cached: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "baseline": self.baseline,
            "baseline_kind": self.baseline_kind,
            "baseline_version": self.baseline_version,
            "on": self.on,
            "verdict_id": self.station_run,
            "evaluations": self.evaluations,
            "reasons": self.reasons,
        }


def gather_evidence(workspace: Workspace, version_text: str, *, announce: Announce | None = None) -> Evidence:
    """The release verdict of the version against the one in production (or its base model),
    over the release suite: the eval station's, reused when the record holds it."""
    with workspace.record.session() as session:
        version = find_version(session, version_text)
        run_name, base_name = version.run.name, version.run.base_model
        production = queries.versions_in_stage(session, version.model, "production")
        current = production[0] if production and production[0].id != version.id else None
        baseline, kind = (current.run.name, "production") if current else (base_name, "base")
        baseline_version = current.ref if current else None
    on = release_suite(workspace)
    result = eval_station(workspace, EvalSettings(on=on), run_name, baseline_ref=baseline, announce=announce)
    report = result.result
    evaluations = [a.name for a in result.outputs if a.kind == "evaluation"]
    return Evidence(
        verdict=report.get("verdict") or "inconclusive",
        baseline=baseline,
        baseline_kind=kind,
        baseline_version=baseline_version,
        on=on,
        station_run=result.key,
        evaluations=evaluations,
        reasons=list(report.get("reasons") or []),
        cached=result.status == "cached",
    )


@dataclass
class Promotion:
    ref: str
    from_stage: str
    to_stage: str
    status: str
    """promoted, blocked, or unchanged (already there)."""
    verdict: str | None = None
    forced: bool = False
    overridden: list[str] = field(default_factory=list)
    """What --force overrode: the verdict's reasons, or why there was no verdict."""
    moved_aside: str | None = None
    """The version that held the stage before (now archived or candidate)."""
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.ref,
            "from": self.from_stage,
            "to": self.to_stage,
            "status": self.status,
            "verdict": self.verdict,
            "forced": self.forced,
            "overridden": self.overridden,
            "moved_aside": self.moved_aside,
            "evidence": self.evidence,
        }


def promote(
    workspace: Workspace,
    version_text: str,
    to: str,
    *,
    reason: str | None = None,
    force: bool = False,
    actor: str | None = None,
    announce: Announce | None = None,
) -> Promotion:
    """Move a version to stage `to`; into canary or production only on a `pass` verdict (see the
    module docstring). A blocked promotion changes nothing and says why (`status` blocked)."""
    try:
        stage = check_target_stage(to)
    except UnknownStage as exc:
        raise RegistryError(str(exc)) from None
    actor = actor or current_actor()
    with workspace.record.session() as session:
        version = find_version(session, version_text)
        ref, before = version.ref, version.stage
    if before == stage:
        return Promotion(ref, before, stage, "unchanged")
    _check_move(ref, before, stage)
    evidence: dict[str, Any] = {}
    overridden: list[str] = []
    verdict = None
    expected_production: str | None = None
    if stage in NEEDS_EVIDENCE:
        try:
            found = gather_evidence(workspace, ref, announce=announce)
        except Exception as exc:
            if not force:
                raise
            overridden = [f"no verdict could be computed: {exc}"]
            evidence = {"verdict": None, "error": str(exc)}
        else:
            verdict, evidence = found.verdict, found.as_json()
            expected_production = found.baseline_version
            if verdict != "pass":
                overridden = [f"verdict {verdict}"] + found.reasons
                if not force:
                    return Promotion(
                        ref, before, stage, "blocked", verdict, evidence=evidence, overridden=overridden
                    )

    def attempt() -> Promotion:
        with workspace.record.session() as session:
            # The name's lock first, then every read: a writer that got in before is seen whole.
            model = queries.registered_model(session, parse_version(ref).name, lock=True)
            version = find_version(session, ref)
            assert model is not None
            if version.stage == stage:  # another process moved it there meanwhile
                return Promotion(ref, stage, stage, "unchanged")
            _check_move(ref, version.stage, stage)
            if stage in NEEDS_EVIDENCE and not force:
                production = queries.versions_in_stage(session, model, "production")
                now = production[0].ref if production and production[0].id != version.id else None
                if now != expected_production:
                    raise RegistryError(
                        f"{model.name}'s production version changed meanwhile (now {now or 'none'}; "
                        f"the verdict was against {expected_production or 'the base model'}); run again"
                    )
            moved = None
            aside = EXCLUSIVE.get(stage)
            if aside is not None:
                for holder in queries.versions_in_stage(session, model, stage):
                    if holder.id != version.id:
                        _change(
                            session, holder, "demote", aside, actor=actor, reason=f"{ref} promoted to {stage}"
                        )
                        moved = holder.ref
            from_stage = version.stage
            _change(
                session,
                version,
                "promote",
                stage,
                actor=actor,
                reason=reason,
                forced=force and bool(overridden),
                evidence=evidence,
            )
            return Promotion(ref, from_stage, stage, "promoted", verdict, force and bool(overridden),
                             overridden if force else [], moved, evidence)  # fmt: skip

    return _retrying(attempt)


def _check_move(ref: str, before: str, stage: str) -> None:
    """Production is left only by a rollback, or for the archive: a promotion that took the
    production version to canary or candidate would leave the name with nothing in production."""
    if before == "production" and stage in ("canary", "candidate"):
        raise RegistryError(
            f"{ref} is in production: `sftline models rollback` puts the previous version back, "
            f"or promote another version (or archive {ref}) first"
        )


# --- rollback ----------------------------------------------------------------------------------


@dataclass
class Rollback:
    name: str
    restored: str
    rolled_back: str | None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "restored": self.restored, "rolled_back": self.rolled_back}


def rollback(
    workspace: Workspace,
    name: str,
    *,
    version: int | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> Rollback:
    """Put the previous production version (or `version`) back in production; the current one
    returns to candidate. One transaction, under the name's row lock."""
    actor = actor or current_actor()
    wanted = parse_version(name)
    version = version if version is not None else wanted.number

    def attempt() -> Rollback:
        with workspace.record.session() as session:
            model = queries.registered_model(session, wanted.name, lock=True)
            if model is None:
                raise RegistryError(f"no registered model {wanted.name!r}; see `sftline models list`")
            versions = {v.id: v for v in queries.model_versions(session, model)}
            changes = queries.stage_changes(session, model)
            production = [v for v in versions.values() if v.stage == "production"]
            current = production[0] if production else None
            if version is not None:
                target = next((v for v in versions.values() if v.number == version), None)
                if target is None:
                    raise RegistryError(f"{model.name} has no version {version}")
                was_production = any(
                    c.version_id == target.id and c.to_stage == "production" for c in changes
                )
                if not was_production:
                    raise RegistryError(
                        f"{target.ref} was never in production: promote it instead "
                        f"(`sftline models promote {target.ref} --to production`)"
                    )
            else:
                history = [Change(versions[c.version_id].number, c.action, c.to_stage) for c in changes]
                number = rollback_target(history, current.number if current else None)
                target = next((v for v in versions.values() if v.number == number), None)
                if target is None:
                    raise RegistryError(f"{model.name} has no earlier production version to roll back to")
            if current is not None and target.id == current.id:
                raise RegistryError(f"{target.ref} is already in production")
            evidence = {"rolled_back": current.ref if current else None, "restored": target.ref}
            if current is not None:
                _change(
                    session, current, "rollback", "candidate", actor=actor, reason=reason, evidence=evidence
                )
            _change(session, target, "rollback", "production", actor=actor, reason=reason, evidence=evidence)
            return Rollback(model.name, target.ref, current.ref if current else None)

    return _retrying(attempt)


def registered_model_names(workspace: Workspace) -> list[RegisteredModel]:
    with workspace.record.session() as session:
        return queries.registered_models(session)


def end_canary(
    workspace: Workspace, version_text: str, *, reason: str, evidence: dict[str, Any], actor: str
) -> bool:
    """Move a canary back to candidate (the serving station's automatic rollback). False when it
    is no longer the canary (a person moved it meanwhile): nothing to do."""

    def attempt() -> bool:
        with workspace.record.session() as session:
            model = queries.registered_model(session, parse_version(version_text).name, lock=True)
            version = find_version(session, version_text)
            if model is None or version.stage != "canary":
                return False
            _change(session, version, "rollback", "candidate", actor=actor, reason=reason, evidence=evidence)
            return True

    return _retrying(attempt)


# --- the model card and the export -------------------------------------------------------------


def card_for(
    workspace: Workspace, version_text: str, *, mode: ExportMode = "merged"
) -> tuple[str, dict[str, Any]]:
    """The version's model card (README.md text) from its record and every evaluation of it, with
    the base model's evaluations on the same datasets beside them; and the version's JSON."""
    from sftline.registry.card import render_card

    with workspace.record.session() as session:
        version = find_version(session, version_text)
        data = version_json(session, version)
        datasets = {e["dataset"] for e in data["evaluations"]}
        base_hash = data["record"]["base_model"]["content_hash"]
        base = [evaluation_json(e) for e in queries.evaluations_of_model(session, base_hash)]
    base = [e for e in base if e["dataset"] in datasets]
    card = render_card(data["record"], data["evaluations"], base, stage=data["stage"], mode=mode)
    return card, data


def write_card(workspace: Workspace, version_text: str, out: Path | None = None) -> Path:
    """Write the card to `out`, or as README.md into the model's folder (outside its hashed files:
    a new evaluation changes the card, never the model's identity)."""
    from sftline.atomic import write_text

    card, data = card_for(workspace, version_text)
    target = out or Path(data["record"]["artifact"]["path"]) / "README.md"
    write_text(target, card)
    return target


def export_version(
    workspace: Workspace, version_text: str, out: Path, *, mode: ExportMode = "merged"
) -> dict[str, Any]:
    """The version as a Hugging Face folder at `out` (see `sftline.registry.export`)."""
    from sftline.registry.export import export_folder

    card, data = card_for(workspace, version_text, mode=mode)
    record = data["record"]
    folder = Path(record["artifact"]["path"])
    adapter = folder.parent / "adapter"
    result = export_folder(
        folder, out, record=record, card=card, mode=mode, adapter=adapter if adapter.is_dir() else None
    )
    return {"version": data["ref"], **result}
