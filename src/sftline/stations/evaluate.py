"""The suite runner: which model, which data, which settings; predictions stored in the record.

An evaluation is named by its inputs (the model's content hash, the data version's hash and the
settings that change outputs). Running the same inputs again reuses the stored outputs, and every
metric is recomputed from those outputs, so a new metric or a changed contract needs no re-run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sftline.contract.constrain import answer_constraint
from sftline.contract.spec import Contract
from sftline.data.example import Example
from sftline.errors import ModelError
from sftline.evals import predict as p
from sftline.evals.scoring import Output, score
from sftline.evals.settings import EvalSettings
from sftline.record import queries
from sftline.record.queries import resolve
from sftline.record.schema import EvalOutput, Evaluation
from sftline.record.workspace import Workspace
from sftline.stations.runner import ArtifactRef, station_key
from sftline.stations.versions import load_examples

ModelKind = Literal["run", "base", "folder"]


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate, however the user named it."""

    name: str
    kind: ModelKind
    path: Path
    content_hash: str
    method: p.Method
    run_id: int | None = None
    base: str | None = None
    """For a run: its base model's name (evaluated the same way, to show what SFT changed)."""

    @property
    def task(self) -> Literal["classify", "chat"]:
        return "chat" if self.method == "generate" else "classify"


@dataclass
class EvalResult:
    evaluation: str
    model: EvalModel
    dataset: str
    data_hash: str
    settings: dict[str, Any]
    outputs: list[Output]
    seconds: float
    created_at: str
    reused: bool
    labels: list[str] | None
    metrics: dict[str, Any]
    """Every metric, scored from `outputs` under the current contract (see `scoring.score`)."""


def resolve_model(workspace: Workspace, ref: str) -> EvalModel:
    """A run name (`run-0003`), a base model name (`smollm2-135m-instruct`), or a model folder."""
    from sftline.models.materialise import hash_folder
    from sftline.stations.models import find_base_model

    with workspace.record.session() as session:
        run = queries.run_named(session, ref)
        if run is not None:
            folder = Path(run.output_dir) / "model"
            if run.status not in ("completed", "stopped_early") or not folder.is_dir():
                raise ModelError(f"run {ref} is {run.status} and has no exported model to evaluate")
            # Hashed once at export; runs exported before the record kept the hash are hashed here.
            content_hash = run.model_hash or hash_folder(folder)[1]
            return EvalModel(ref, "run", folder, content_hash, p.method_of(folder), run.id, run.base_model)
    folder = Path(ref).expanduser()
    if folder.is_dir():
        return EvalModel(ref, "folder", folder.resolve(), hash_folder(folder)[1], p.method_of(folder))
    try:
        base = find_base_model(workspace, ref)
    except ModelError:
        raise ModelError(
            f"no model {ref!r}: name a run (`sftline runs list`), a base model (`sftline models list`) "
            "or a Hugging Face model folder"
        ) from None
    return EvalModel(base.name, "base", base.path, base.content_hash, p.method_of(base.path))


def _sample(examples: list[Example], settings: EvalSettings) -> list[Example]:
    if settings.sample is None or settings.sample >= len(examples):
        return examples
    rng = np.random.default_rng(settings.seed)
    keep = np.sort(rng.choice(len(examples), size=settings.sample, replace=False))
    return [examples[int(i)] for i in keep]


def output_shaping(method: str, settings: EvalSettings, contract: Contract) -> dict[str, Any]:
    """What shapes one evaluation's stored outputs, by method: batch sizes and bootstrap settings
    do not; the contract's labels and abstention answer do for label predictors."""
    shaping: dict[str, Any] = {
        "method": method,
        "sample": settings.sample,
        "seed": settings.seed if settings.sample else None,
    }
    if method == "generate":
        shaping.update(
            max_new_tokens=settings.max_new_tokens or contract.limits.max_target_tokens,
            system_prompt=contract.system_prompt,
        )
        if settings.constrain and contract.output.kind == "labels":
            # Only when on: the keys of unconstrained evaluations stored before stay valid.
            shaping.update(constraint="labels", labels=contract.output.labels, abstention=contract.abstention)
        elif settings.constrain and contract.output.kind == "json_schema":
            shaping.update(constraint="json_schema", json_schema=contract.output.json_schema)
    else:
        shaping.update(
            abstain_below=settings.abstain_below if method == "classifier" else None,
            stored_abstention=settings.stored_abstention if method == "classifier" else None,
            max_length=contract.limits.max_length,
            labels=contract.output.labels,
            abstention=contract.abstention,
        )
    return shaping


def _row_to_output(row: EvalOutput) -> Output:
    return Output(
        example_id=row.example_id,
        target=row.target,
        output=row.output,
        tags=dict(row.tags),
        prompt=row.prompt,
        ranked=[(str(label), float(prob)) for label, prob in row.ranked],
        confidence=row.confidence,
        prompt_tokens=row.prompt_tokens,
        output_tokens=row.output_tokens,
        finished=row.finished,
        latency_ms=row.latency_ms,
    )


def load_outputs(workspace: Workspace, evaluation: str) -> list[Output]:
    with workspace.record.session() as session:
        row = queries.evaluation_named(session, evaluation)
        return [_row_to_output(r) for r in queries.eval_outputs(session, row)]


def _predictor(
    workspace: Workspace, model: EvalModel, examples: Sequence[Example], settings: EvalSettings
) -> tuple[Any, dict[str, Any]]:
    """The predictor for the model and the settings that shape its outputs (part of the key)."""
    contract = workspace.project.config.contract
    predictor: p.Predictor
    if model.method == "classifier":
        classifier = p.ClassifierPredictor.load(
            model.path,
            stored_abstention=settings.stored_abstention,
            max_length=contract.limits.max_length,
            abstain_below=settings.abstain_below,
            abstention=contract.abstention,
        )
        if settings.calibrate_on:
            classifier.temperature = _fit_temperature(workspace, classifier, settings.calibrate_on)
        rule = classifier.rule.as_json() if classifier.rule else None
        shaping = {"temperature": classifier.temperature, "abstain_below": settings.abstain_below}
        return classifier, {**shaping, "abstention_rule": rule}
    if model.method == "embedding":
        from sftline.contract.labels import label_set

        labels = label_set(examples, contract.output.labels, contract.abstention)
        predictor = p.EmbeddingPredictor(model.path, labels)
        return predictor, {"zero_shot": "embedding", "labels": labels, "scale": p.ZERO_SHOT_SCALE}
    max_new = settings.max_new_tokens or contract.limits.max_target_tokens
    generator = p.GenerationPredictor.load(
        model.path,
        contract.system_prompt,
        max_new_tokens=max_new,
        batch_size=settings.batch_size,
        batch_tokens=settings.batch_tokens,
    )
    if settings.constrain:
        generator.constraint = answer_constraint(contract, generator.tokenizer, generator.stops, examples)
    return generator, {
        "system_prompt": contract.system_prompt,
        "max_new_tokens": max_new,
        "decoding": "greedy",
        "constraint": generator.constraint.kind if generator.constraint is not None else None,
    }


def _fit_temperature(workspace: Workspace, classifier: p.ClassifierPredictor, holdout: str) -> float:
    from sftline.evals.metrics import fit_temperature

    with workspace.record.session() as session:
        examples = load_examples(workspace, resolve(session, holdout))
    index = {label: i for i, label in enumerate(classifier.labels)}
    known = [e for e in examples if e.label in index]
    if not known:
        raise ModelError(f"--calibrate-on {holdout}: none of its labels are the model's labels")
    logits, _, _ = classifier.logits([e.prompt for e in known])
    return fit_temperature(logits, [index[str(e.label)] for e in known])


def evaluate(
    workspace: Workspace,
    model: EvalModel,
    dataset: str,
    settings: EvalSettings,
    *,
    progress: Callable[[int, int], None] | None = None,
    force: bool = False,
) -> EvalResult:
    """Evaluate `model` on `dataset` (or reuse the stored evaluation of the same inputs)."""
    with workspace.record.session() as session:
        version = resolve(session, dataset)
        version_id, data_ref, data_hash = version.id, version.ref, version.content_hash
        examples = load_examples(workspace, version)
    examples = _sample(examples, settings)
    if not examples:
        raise ModelError(f"{data_ref} has no examples to evaluate")
    contract = workspace.project.config.contract
    calibration_hash = None
    if settings.calibrate_on:
        with workspace.record.session() as session:
            calibration_hash = resolve(session, settings.calibrate_on).content_hash
    inputs = [
        ArtifactRef("model", model.name, model.content_hash),
        ArtifactRef("dataset_version", data_ref, data_hash),
    ]
    if calibration_hash is not None:
        inputs.append(ArtifactRef("dataset_version", str(settings.calibrate_on), calibration_hash))
    key = station_key("evaluation", inputs, output_shaping(model.method, settings, contract))
    with workspace.record.session() as session:
        found = None if force else queries.evaluation_by_key(session, key)
        if found is not None:
            return _result(workspace, found, model, settings, reused=True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # sftline draws its own progress
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    predictor, shaping = _predictor(workspace, model, examples, settings)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, len(examples))

    outputs = predictor.predict(examples, advance)
    seconds = time.perf_counter() - started
    labels = getattr(predictor, "labels", None)
    metrics = _score(workspace, outputs, labels, settings)
    with workspace.record.session() as session:
        row = Evaluation(
            name="pending",
            key=key,
            model=model.name,
            model_kind=model.kind,
            model_hash=model.content_hash,
            run_id=model.run_id,
            dataset_version_id=version_id,
            task=model.task,
            settings={
                **settings.model_dump(mode="json"),
                **shaping,
                "method": model.method,
                "labels": labels,
            },
            n_examples=len(outputs),
            metrics=metrics,
            seconds=seconds,
        )
        session.add(row)
        session.flush()
        row.name = f"eval-{row.id:04d}"
        queries.add_eval_outputs(
            session,
            [
                {
                    "evaluation_id": row.id,
                    "position": i,
                    "example_id": o.example_id,
                    "prompt": o.prompt,
                    "target": o.target,
                    "output": o.output,
                    "tags": o.tags,
                    "ranked": [list(pair) for pair in o.ranked],
                    "confidence": o.confidence,
                    "prompt_tokens": o.prompt_tokens,
                    "output_tokens": o.output_tokens,
                    "finished": o.finished,
                    "latency_ms": o.latency_ms,
                }
                for i, o in enumerate(outputs)
            ],
        )
        session.flush()
        return _result(workspace, row, model, settings, reused=False, outputs=outputs, metrics=metrics)


def _score(
    workspace: Workspace, outputs: list[Output], labels: list[str] | None, settings: EvalSettings
) -> dict[str, Any]:
    return score(
        outputs,
        workspace.project.config.contract,
        labels=labels,
        slice_keys=settings.slices,
        replicates=settings.replicates,
        seed=settings.seed,
    )


def _result(
    workspace: Workspace,
    row: Evaluation,
    model: EvalModel,
    settings: EvalSettings,
    *,
    reused: bool,
    outputs: list[Output] | None = None,
    metrics: dict[str, Any] | None = None,
) -> EvalResult:
    """The evaluation in `row`; stored outputs are loaded and re-scored when not given."""
    outputs = outputs if outputs is not None else load_outputs(workspace, row.name)
    labels = row.settings.get("labels")
    return EvalResult(
        evaluation=row.name,
        model=model,
        dataset=row.dataset_version.ref,
        data_hash=row.dataset_version.content_hash,
        settings=dict(row.settings),
        outputs=outputs,
        seconds=row.seconds,
        created_at=row.created_at.isoformat(timespec="seconds"),
        reused=reused,
        labels=labels,
        metrics=metrics if metrics is not None else _score(workspace, outputs, labels, settings),
    )
