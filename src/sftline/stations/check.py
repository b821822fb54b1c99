"""The check station: run the gates on a version, store the report, version what passed."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import yaml
from pydantic import ValidationError

from sftline.config import GatesConfig, format_validation_error
from sftline.data.common_text import find_common_text
from sftline.data.versions import version_content_hash, version_summary
from sftline.errors import ConfigError
from sftline.evals.predict import EmbeddingPredictor
from sftline.gates.engine import Engine, make_engine
from sftline.gates.lengths import HfTokenCounter, TokenCounter, WhitespaceCounter
from sftline.gates.rows import flagged_row, rows_table
from sftline.gates.runner import CheckResult, build_gates, run_gates
from sftline.gates.settings import CheckSettings
from sftline.record import queries
from sftline.record.queries import resolve
from sftline.record.schema import GateReport
from sftline.record.workspace import Workspace
from sftline.safe_yaml import load_yaml
from sftline.stations.models import find_base_model
from sftline.stations.runner import ArtifactRef, Produced, StationResult, Work, run_station
from sftline.stations.split import frozen_gold_sets
from sftline.stations.versions import CommitResult, commit_version, load_examples

FLAGGED_IN_REPORT = 1000  # rows listed in the report; all are in the stored rows (`data rejects`)
GATES_REVISION = 3
"""Part of the check's key, raised when what the gates flag changes for the same settings (2:
shared text left out of compared texts, every gate sees every example, no near-duplicate chains;
3: label noise on by default, semantic duplicates), so a check made before is not reused."""


def own_gold_sets(dataset: str) -> tuple[str, str]:
    """The gold sets a check of `dataset` does not hold out: itself, and `NAME-gold`, the gold set
    split from it (by construction its examples come from the dataset; `data split` keeps them
    apart and holds out their matches when it splits the dataset again)."""
    return dataset, f"{dataset}-gold"


def token_counter_for(workspace: Workspace) -> TokenCounter:
    """The base model's tokenizer, or whitespace words when sftline.yaml names no base model."""
    config = workspace.project.config
    if config.base_model is None:
        return WhitespaceCounter()
    base = find_base_model(workspace, config.base_model)
    return HfTokenCounter.from_folder(base.path, base.name, config.contract.system_prompt)


ENCODER = "minilm-l6"
"""The sentence encoder of the label-noise and semantic-duplicate gates (embedded: pulled on use)."""


class LazyEncoder:
    """The embedded MiniLM's mean-pooled embeddings, loaded on the first call (a check whose
    embedding gates do not apply never loads it); the last call's vectors are kept, so the two
    gates that embed the same inputs embed them once."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._predictor: EmbeddingPredictor | None = None
        self._last: tuple[tuple[str, ...], np.ndarray] | None = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        key = tuple(texts)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        if self._predictor is None:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # the check draws its own progress
            base = find_base_model(self.workspace, ENCODER)
            self._predictor = EmbeddingPredictor(base.path, labels=())
        vectors = self._predictor.embed(key)[0]
        self._last = (key, vectors)
        return vectors


@dataclass(frozen=True)
class CheckOutcome:
    report_id: int
    checked: str
    result: CheckResult
    version: dict[str, Any] | None
    created_version: bool
    report: dict[str, Any]
    report_object: str
    """The stored report's object hash (the HTML report renders it)."""


def check_version(
    workspace: Workspace,
    ref: str,
    *,
    against: Sequence[str] = (),
    gates_config: GatesConfig | None = None,
    engine: Engine | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> CheckOutcome:
    project = workspace.project
    config = gates_config or project.config.gates
    with workspace.record.session() as session:
        version = resolve(session, ref)
        checked_ref, dataset_name = version.ref, version.dataset.name
        examples = load_examples(workspace, version)
        source = workspace.objects.open_path(version.object_hash)  # what load_examples read
        held_out = {}
        for other in against:
            other_version = resolve(session, other)
            held_out[other_version.ref] = load_examples(workspace, other_version)
        # Frozen gold sets always count as held out: a train set must never overlap them.
        for gold_ref, gold_examples in frozen_gold_sets(workspace, session).items():
            if gold_ref.split("@")[0] not in own_gold_sets(dataset_name):
                held_out.setdefault(gold_ref, gold_examples)
    contract = project.config.contract
    # What the records share (system prompt, template wording) is left out of compared texts.
    common = find_common_text({checked_ref: examples, **held_out}, contract.system_prompt)
    gates = build_gates(
        config,
        contract,
        against=held_out,
        common=common,
        token_counter=token_counter_for(workspace),
        encode=LazyEncoder(workspace),
    )
    result = run_gates(examples, gates, engine=engine, source=source, progress=progress)
    report = {
        "version": checked_ref,
        "engine": engine.name if engine else "local",
        "against": list(held_out),
        **result.summary(),
        "left_out": [entry.to_json() for entry in common.left_out],
        "gates": result.reports,
        "n_flagged": len(result.flagged),
        "flagged": [flagged_row(f) for f in result.flagged[:FLAGGED_IN_REPORT]],
    }
    report_object = workspace.objects.put_bytes(json.dumps(report, sort_keys=True, default=str).encode())
    rows_object = (  # every flagged example, blocked or warned (the record's rejects_object)
        workspace.objects.put_with(lambda p: pq.write_table(rows_table(result.flagged), p))
        if result.flagged
        else None
    )
    with workspace.record.session() as session:
        version = resolve(session, checked_ref)
        commit = None
        unchanged = version_content_hash(result.accepted) == version.content_hash
        if unchanged and result.passed:
            # Every example passed as it was: the checked version is the accepted one, even when
            # it is not the head (a new number for the same content would say nothing).
            commit = CommitResult(version, created=False, diff=None)
        elif result.passed and result.accepted:
            commit = commit_version(
                workspace,
                session,
                dataset_name,
                result.accepted,
                created_by="check",
                provenance={
                    "checked": checked_ref,
                    "gate_report_object": report_object,
                    "sources": version.provenance.get("sources", []),
                },
                note=f"check of {checked_ref}: {len(result.rejected)} quarantined",
                parent=version,
            )
        row = GateReport(
            checked_version_id=version.id,
            result_version_id=commit.version.id if commit else None,
            status="passed" if result.passed else "failed",
            n_checked=result.checked,
            n_accepted=len(result.accepted),
            n_quarantined=len(result.rejected),
            counts=result.counts,
            config=config.model_dump(mode="json"),
            against=list(held_out),
            report_object=report_object,
            rejects_object=rows_object,
        )
        session.add(row)
        session.flush()
        summary = version_summary(commit.version) if commit else None
        return CheckOutcome(
            row.id, checked_ref, result, summary, bool(commit and commit.created), report, report_object
        )


def load_gates_config(path: Path | None) -> GatesConfig | None:
    """Gate settings from a YAML file (a `gates:` section or the settings alone), or None."""
    if path is None:
        return None
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read gate config ({exc})") from exc
    data = data.get("gates", data) if isinstance(data, dict) else data
    try:
        return GatesConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc


def check_work(workspace: Workspace, settings: CheckSettings, gates: GatesConfig) -> Work:
    """The checked version, every held-out set (given and frozen), the tokenizer's model, and the
    gate settings and contract that decide what is flagged."""
    config = workspace.project.config
    with workspace.record.session() as session:
        version = resolve(session, settings.dataset)
        inputs = [ArtifactRef("dataset_version", version.ref, version.content_hash)]
        for other in settings.against:
            held = resolve(session, other)
            inputs.append(ArtifactRef("dataset_version", held.ref, held.content_hash))
        for gold in queries.frozen_gold_rows(session):
            if gold.dataset.name not in own_gold_sets(version.dataset.name):
                inputs.append(ArtifactRef("dataset_version", gold.version.ref, gold.content_hash))
    if config.base_model is not None:
        base = find_base_model(workspace, config.base_model)
        inputs.append(ArtifactRef("base_model", base.name, base.content_hash))
    shaping = {
        "dataset": version.dataset.name,  # the accepted examples become its next version
        "gates": gates.model_dump(mode="json"),
        "contract": config.contract.model_dump(mode="json"),
        "against": len(settings.against),
        "gates_revision": GATES_REVISION,
    }
    return Work("check", f"check {version.ref}", tuple(inputs), shaping)


def check_station(
    workspace: Workspace,
    settings: CheckSettings,
    *,
    force: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> StationResult:
    """`data check` as a station. A check whose gates fail still succeeds as a station (its report
    is the output); `result["passed"]` says whether the data may go on."""
    gates = load_gates_config(settings.config) or workspace.project.config.gates
    work = check_work(workspace, settings, gates)

    def execute() -> Produced:
        outcome = check_version(
            workspace,
            work.inputs[0].name,
            against=[ref.name for ref in work.inputs[1 : 1 + len(settings.against)]],
            gates_config=gates,
            engine=make_engine(settings.engine),
            progress=progress,
        )
        outputs = [ArtifactRef("gate_report", f"gate-report-{outcome.report_id}", outcome.report_object)]
        if outcome.version is not None:
            outputs.append(
                ArtifactRef("dataset_version", outcome.version["ref"], outcome.version["content_hash"])
            )
        summary = {
            "report_id": outcome.report_id,
            "report_object": outcome.report_object,
            "version_checked": outcome.checked,
            **outcome.result.summary(),
            "left_out": outcome.report["left_out"],
            "created_version": outcome.created_version,
            "version": outcome.version,
        }
        return Produced(outputs, summary)

    return run_station(workspace, work, execute, force=force)
