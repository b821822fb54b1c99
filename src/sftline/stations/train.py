"""`sftline train`: a run from the record's data and base model to an exported HF folder.

A recipe of named steps: `setup_run` (resolve the inputs, record the row), `prepare_run_data`,
`build_model`, `run_loop`, `export_run`, `finish_run`, all but the first inside `recording`,
which holds the row's lease and marks it `failed` or `interrupted` when a step does not return.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from sftline.atomic import write_text
from sftline.contract.labels import label_set
from sftline.data.example import Example
from sftline.data.splits import carve_holdout
from sftline.errors import RecordError, TrainingError
from sftline.evals.holdout import holdout_behaviour
from sftline.models.classifier import SentenceClassifier
from sftline.models.materialise import hash_folder
from sftline.provenance import code_version, environment
from sftline.record import leases, queries
from sftline.record.queries import resolve
from sftline.record.schema import DatasetVersion, Run
from sftline.record.workspace import Workspace
from sftline.stations.models import BaseModelRef, find_base_model
from sftline.stations.runner import (
    ArtifactRef,
    Produced,
    StationResult,
    Work,
    canonical_json,
    error_line,
    run_station,
)
from sftline.stations.versions import load_examples
from sftline.train.checkpoint import full_trainable_state, latest_checkpoint, load_trainable
from sftline.train.config import REPORTING_ONLY, TrainConfig
from sftline.train.diagnose import learning_warnings
from sftline.train.distill import DistillChatData, load_teacher
from sftline.train.distributed import (
    DistInfo,
    Strategy,
    barrier,
    broadcast,
    device_for,
    init_distributed,
    strategy_for,
)
from sftline.train.export import export_model, load_best
from sftline.train.memory import resolve_batching, resolved, startup_line
from sftline.train.recipes import TARGET_STEPS, for_task
from sftline.train.tasks import ChatData, ClassifierData, TaskData, prepare_classifier
from sftline.train.tracking import TrackedRun, Trackers, final_metrics, require_trackers, run_params, tracking
from sftline.train.trainer import TrainResult, build_model, prepare, train_loop


@dataclass(frozen=True)
class RunSetup:
    """What setup settled before any work: the run's inputs, its processes and its recorded row."""

    config: TrainConfig
    """The run's settings with the task's defaults filled in (sftline.train.recipes)."""
    recipe: dict[str, Any]
    """What the task's defaults chose (setting -> value): the settings the user did not give."""
    info: DistInfo
    strategy: Strategy
    device: torch.device
    task: str
    base: BaseModelRef
    teacher: BaseModelRef | None
    tokenizer: Any
    """The base model's tokenizer, loaded once (the fingerprint reads its chat template)."""
    model_configs: list[Any]
    """The base model's config, then the teacher's: their shapes size the micro-batches and their
    attention decides whether a shared prefix's mask fits."""
    examples: list[Example]
    eval_examples: list[Example]
    data_ref: str
    data_hash: str
    eval_ref: str | None
    """The holdout version; for one carved from the training data, `DATA (carved 10%)`."""
    max_length: int
    run_id: int
    run_name: str
    output: Path


@dataclass(frozen=True)
class RunData:
    """The run's examples as the task trains on them."""

    tokenizer: Any
    labels: list[str] | None
    """The classifier's label set; None for chat."""
    data: TaskData
    eval_data: TaskData | None


def start_run(
    workspace: Workspace,
    config: TrainConfig,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    resume: str | None = None,
    stop_after_steps: int | None = None,
    station_key: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a recorded run: set up (resolve data and base model, record the row), prepare the
    data, build the model, loop, export, finish. `station_key`, the train station's key, is kept
    on the row, so a killed run of the same work is found and resumed. From setup on the row holds
    rank 0's lease, and a failure marks it `failed` with its error (an interrupt: `interrupted`)
    before it propagates."""
    require_trackers(config.report_to)
    run = setup_run(workspace, config, resume, station_key)
    config = run.config
    tracked = TrackedRun(
        workspace.project.config.project, run.run_name, run.data_ref, run.base.name, run.output, bool(resume)
    )
    with recording(workspace, run), tracking(config.report_to, tracked, enabled=run.info.is_main) as trackers:
        if run.task == "classify":
            batching = {"examples_per_step": config.batch_size, "reason": "classifier: examples per step"}
            line = classifier_line(config, run)
        else:
            # The micro-batch and accumulation follow from the model's shape and the config alone.
            resolved_batching = resolve_batching(config, run.model_configs[0])
            config = resolved(config, resolved_batching)
            batching, line = resolved_batching.as_json(), startup_line(resolved_batching, run.info.world_size)
        if announce is not None and run.info.is_main:
            announce(line)
        trackers.log_params(run_params(config, batching))
        data = prepare_run_data(workspace, config, run)
        torch.manual_seed(config.seed)
        model = build_model(run.base.path, config, run.device, labels=data.labels)
        result = run_loop(
            workspace,
            config,
            run,
            data,
            model,
            progress=progress,
            resume=bool(resume),
            stop_after_steps=stop_after_steps,
            trackers=trackers,
        )
        finished = stop_after_steps is None or result.state.step >= result.total_steps or result.stopped_early
        if finished and isinstance(model, SentenceClassifier) and run.info.is_main and run.strategy != "fsdp":
            load_best_weights(model, result, run)
            model.extra, model.extra_tensors = calibrate_classifier(workspace, config, run, data, model)
        exported = export_run(config, run, data, model, result, batching) if finished else None
        warnings = run_warnings(config, data, model, result) if finished else []
        summary = finish_run(
            workspace, config, run, data, result, finished=finished, exported=exported, warnings=warnings
        )
        if finished:
            calibration = model.extra if isinstance(model, SentenceClassifier) else {}
            trackers.finish(final_metrics(summary, result.state.history, calibration))
        return {**summary, "batching": batching}


def setup_run(
    workspace: Workspace, config: TrainConfig, resume: str | None, station_key: str | None = None
) -> RunSetup:
    """Resolve the task, base model, teacher and data, then record the run's row holding the lease
    (rank 0 alone writes the record; the other processes of a torchrun learn the run from it).
    Everything that can be refused is checked first, so a refused run leaves no row behind."""
    info = init_distributed()
    contract = workspace.project.config.contract
    task = config.task or contract.task
    base = find_base_model(workspace, config.base)
    if task == "chat" and base.kind != "causal-lm":
        raise TrainingError(f"base model {base.name} is a {base.kind}, not a causal LM; chat SFT needs one")
    if task == "classify" and base.kind == "causal-lm":
        raise TrainingError(
            f"base model {base.name} is a causal LM; task classify needs an encoder (minilm-l6)"
        )
    teacher = None
    if config.teacher is not None:
        if task != "chat":
            raise TrainingError("--teacher distils a causal LM; it needs task chat")
        teacher = find_base_model(workspace, config.teacher)
    max_length = config.max_length or contract.limits.max_length
    tokenizer, model_configs = _load_readers(base, teacher)
    with workspace.record.session() as session:
        resumed = queries.get_run(session, resume) if resume else None
        if resumed is not None:
            # The versions the run started on: a name may resolve to a newer one by now, which
            # would change the micro-batch plan under the restored optimizer and scheduler.
            data_version, eval_version = queries.recorded_versions(session, resumed)
        else:
            data_version = resolve(session, config.data)
            eval_version = resolve(session, config.eval_on) if config.eval_on else None
        fingerprint = run_fingerprint(
            base, teacher, tokenizer, data_version, eval_version, contract.system_prompt, max_length, info
        )
        examples = load_examples(workspace, data_version)
        eval_examples = load_examples(workspace, eval_version) if eval_version else []
        eval_ref = eval_version.ref if eval_version else None
        if task == "classify" and eval_version is None and config.holdout_share > 0:
            examples, eval_examples = carve_holdout(examples, config.holdout_share, config.seed)
            eval_ref = f"{data_version.ref} (carved {config.holdout_share:.0%})"
        config, recipe = for_task(config, task, len(examples))
        strategy = strategy_for(config.parallel, config.method, info)
        row: Run | None = None
        if resumed is not None:
            row = _resumed_row(resumed, config, info, fingerprint)
        elif info.is_main:
            row = Run(
                name=f"pending-{os.getpid()}",
                status="running",
                config=config.model_dump(mode="json"),
                seed=config.seed,
                data_version_id=data_version.id,
                eval_version_id=eval_version.id if eval_version else None,
                base_model=base.name,
                base_model_hash=base.content_hash,
                code_version=code_version(),
                output_dir="",
                summary={
                    "fingerprint": fingerprint,
                    "environment": environment(),
                    "recipe": recipe,
                    "holdout": eval_ref,
                    **({"station_key": station_key} if station_key else {}),
                },
            )
            leases.take(row)
            session.add(row)
            session.flush()
            row.name = f"run-{row.id:04d}"
            row.output_dir = str(workspace.project.runs_dir / row.name)
        created = (row.id, row.name, row.output_dir) if row is not None else None
        data_ref, data_hash = data_version.ref, data_version.content_hash
    run_id, run_name, output_dir = broadcast(created, info)
    return RunSetup(
        config=config,
        recipe=recipe,
        info=info,
        strategy=strategy,
        device=device_for(info),
        task=task,
        base=base,
        teacher=teacher,
        tokenizer=tokenizer,
        model_configs=model_configs,
        examples=examples,
        eval_examples=eval_examples,
        data_ref=data_ref,
        data_hash=data_hash,
        eval_ref=eval_ref,
        max_length=max_length,
        run_id=run_id,
        run_name=run_name,
        output=Path(output_dir),
    )


FINGERPRINT_FIELDS = {
    "data": "data hash",
    "holdout": "holdout hash",
    "base_model": "base model hash",
    "teacher": "teacher hash",
    "system_prompt": "contract system_prompt",
    "chat_template": "base tokenizer's chat template hash",
    "max_length": "max_length",
    "world_size": "world size",
}
"""A run's fingerprint, field by field, as a refused resume names each."""


def run_fingerprint(
    base: BaseModelRef,
    teacher: BaseModelRef | None,
    tokenizer: Any,
    data: DatasetVersion,
    holdout: DatasetVersion | None,
    system_prompt: str | None,
    max_length: int,
    info: DistInfo,
) -> dict[str, Any]:
    """What shapes a run's micro-batches, rows and RNG streams beside its config: the inputs by
    content hash, the contract's system prompt, the base tokenizer's chat template (a folder edited
    in place keeps the hash it was registered with), max_length as resolved, and the number of
    processes (one RNG stream each). Recorded on the row when the run starts; a resume refuses
    any difference."""
    template = tokenizer.chat_template
    return {
        "data": data.content_hash,
        "holdout": holdout.content_hash if holdout else None,
        "base_model": base.content_hash,
        "teacher": teacher.content_hash if teacher else None,
        "system_prompt": system_prompt,
        "chat_template": hashlib.sha256(canonical_json(template).encode()).hexdigest() if template else None,
        "max_length": max_length,
        "world_size": info.world_size,
    }


def _resumed_row(row: Run, config: TrainConfig, info: DistInfo, fingerprint: dict[str, Any]) -> Run:
    """The run `row`, taken over by this process (rank 0), unless its config or its fingerprint
    differs from this process's, or a live process still holds it."""
    name = row.name
    recorded_config = {k: v for k, v in row.config.items() if k not in REPORTING_ONLY}
    if recorded_config != config.model_dump(mode="json", exclude=set(REPORTING_ONLY)):
        raise TrainingError(f"--resume {name}: the config differs from the run's; resume takes no changes")
    # A run recorded before fingerprints were has its base model's hash on the row (and its
    # checkpoint's RNG states tell its number of processes).
    recorded = {"base_model": row.base_model_hash, **row.summary.get("fingerprint", {})}
    changed = [
        f"{label} was {_shown(recorded[field])}, now {_shown(fingerprint[field])}"
        for field, label in FINGERPRINT_FIELDS.items()
        if field in recorded and recorded[field] != fingerprint[field]
    ]
    if changed:
        raise TrainingError(
            f"--resume {name}: {'; '.join(changed)}; resume takes no changes: restore what the run "
            "started with, or train a new run without --resume"
        )
    if info.is_main:
        if row.status == "running" and not leases.is_stale(row):
            raise TrainingError(
                f"--resume {name}: the run is still running (pid {row.pid} on {row.host}); "
                "resume it once that process has stopped"
            )
        row.status, row.error = "running", None
        leases.take(row)
    return row


def _shown(value: Any) -> str:
    """A fingerprint value as a short piece of one line: a sha256 by its first 12 digits."""
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return value[:12]
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


@contextmanager
def recording(workspace: Workspace, run: RunSetup) -> Iterator[None]:
    """The run's row while the run works (rank 0 writes it): its lease is renewed every heartbeat;
    an error marks it `failed` with the error's line, an interrupt (Ctrl-C, SystemExit) marks it
    `interrupted`, and the exception goes on."""
    if not run.info.is_main:
        yield
        return

    def renew() -> None:
        with workspace.record.session() as session:
            row = queries.run_by_id(session, run.run_id)
            if row is not None:
                row.heartbeat_at = datetime.now(timezone.utc)

    try:
        with leases.heartbeat(renew):
            yield
    except Exception as exc:
        _mark_ended(workspace, run.run_id, "failed", error_line(exc))
        raise
    except BaseException:
        _mark_ended(workspace, run.run_id, "interrupted", None)
        raise


def _mark_ended(workspace: Workspace, run_id: int, status: str, error: str | None) -> None:
    # A record that cannot be reached now cannot be marked: the stale lease will tell instead,
    # and the error that ended the run is the one to report.
    with contextlib.suppress(RecordError), workspace.record.session() as session:
        row = queries.run_by_id(session, run_id)
        if row is not None:
            row.status, row.error = status, error


def _load_readers(base: BaseModelRef, teacher: BaseModelRef | None) -> tuple[Any, list[Any]]:
    """The base tokenizer and the configs of the models that read the rows (base, then teacher)."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # sftline draws its own progress
    hf_logging.set_verbosity_error()  # a new classifier head is expected, not news
    tokenizer = AutoTokenizer.from_pretrained(base.path, local_files_only=True)
    readers = [base] + ([teacher] if teacher is not None else [])
    return tokenizer, [AutoConfig.from_pretrained(m.path, local_files_only=True) for m in readers]


def prepare_run_data(workspace: Workspace, config: TrainConfig, run: RunSetup) -> RunData:
    """The training (and holdout) examples tokenised for the task; with a teacher, loaded beside."""
    contract = workspace.project.config.contract
    tokenizer = run.tokenizer
    labels: list[str] | None = None
    data: TaskData
    eval_data: TaskData | None = None
    if run.task == "classify":
        labels = label_set(run.examples, contract.output.labels, contract.abstention)
        max_length = min(run.max_length, tokenizer.model_max_length)
        data = prepare_classifier(
            tokenizer,
            run.examples,
            labels,
            max_length=max_length,
            batch_size=config.batch_size,
            seed=config.seed,
            label_smoothing=config.label_smoothing,
        )
        if run.eval_examples:
            eval_data = prepare_classifier(tokenizer, run.eval_examples, labels, max_length=max_length)
    else:
        system_prompt, max_length = contract.system_prompt, run.max_length
        # Whether a shared prefix's 4D mask fits the attention of every model reading the rows.
        models = run.model_configs
        data = prepare(
            tokenizer,
            run.examples,
            config,
            system_prompt=system_prompt,
            max_length=max_length,
            model_configs=models,
        )
        if run.eval_examples:
            eval_data = prepare(
                tokenizer,
                run.eval_examples,
                config,
                system_prompt=system_prompt,
                max_length=max_length,
                model_configs=models,
            )
    if run.teacher is not None:
        teacher = load_teacher(run.teacher.path, tokenizer, run.device)
        settings = {
            "teacher": teacher,
            "alpha": config.distill_alpha,
            "temperature": config.distill_temperature,
        }
        assert isinstance(data, ChatData)  # setup refuses a teacher for any task but chat
        data = DistillChatData.from_chat(data, **settings)
        if isinstance(eval_data, ChatData):
            eval_data = DistillChatData.from_chat(eval_data, **settings)
    return RunData(tokenizer, labels, data, eval_data)


def classifier_line(config: TrainConfig, run: RunSetup) -> str:
    """What a classifier run chose before its first step, and why."""
    steps = math.ceil(len(run.examples) / config.batch_size)
    given = "" if "epochs" in config.model_fields_set else f" (about {TARGET_STEPS:,} steps)"
    epochs = f"{config.max_steps} steps" if config.max_steps else f"{config.epochs:g} epochs{given}"
    holdout = f"; holdout {run.eval_ref}, {len(run.eval_examples):,} examples" if run.eval_ref else ""
    chosen = f"; defaults for the task: {', '.join(sorted(run.recipe))}" if run.recipe else ""
    token_settings = sorted({"batch_tokens", "step_tokens"} & config.model_fields_set)
    ignored = (
        f"; {', '.join(token_settings)} ignored: a classifier's step is batch_size examples"
        if token_settings
        else ""
    )
    return (
        f"classifier ({config.method}, {config.pooling} pooling): {len(run.examples):,} examples, "
        f"{config.batch_size} per step, {steps:,} steps an epoch, {epochs}, lr {config.lr:g} "
        f"({config.schedule}, warmup {config.warmup_ratio:.0%}, weight decay {config.weight_decay:g})"
        f"{holdout}{chosen}{ignored}"
    )


def run_warnings(config: TrainConfig, data: RunData, model: Any, result: TrainResult) -> list[str]:
    """What says the run learned little (sftline.train.diagnose)."""
    classifier = data.data if isinstance(data.data, ClassifierData) else None
    holdout = data.eval_data if isinstance(data.eval_data, ClassifierData) else None
    extra = model.extra if isinstance(model, SentenceClassifier) else {}
    return learning_warnings(
        result.state.history,
        train_labels=classifier.labels if classifier else None,
        label_smoothing=config.label_smoothing,
        holdout_accuracy=extra.get("holdout_accuracy"),
        holdout_labels=holdout.labels if holdout else None,
    )


def load_best_weights(model: Any, result: TrainResult, run: RunSetup) -> None:
    """The best checkpoint's weights into `model`, when the holdout chose one."""
    if result.state.best_step:
        load_best(model, run.output / "checkpoints" / "best")


def calibrate_classifier(
    workspace: Workspace, config: TrainConfig, run: RunSetup, data: RunData, model: Any
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """On the holdout, with the weights the run exports: the temperature, and with an abstention
    label the abstention rule (sftline.evals.abstention); what goes into classifier.json and the
    rule's tensors. Without a holdout, nothing."""
    from sftline.evals.abstention import choose_rule, fit_feature_stats
    from sftline.evals.metrics import fit_temperature
    from sftline.evals.predict import ClassifierPredictor

    if not run.eval_examples or data.labels is None:
        return {}, {}
    labels = data.labels
    predictor = ClassifierPredictor(model, data.tokenizer, max_length=run.max_length)
    index = {label: i for i, label in enumerate(labels)}
    logits, features, _, _ = predictor.outputs([e.prompt for e in run.eval_examples])
    targets = [index[str(e.label)] for e in run.eval_examples]
    temperature = fit_temperature(logits, targets)
    accuracy = float((logits.argmax(axis=1) == targets).mean())
    extra: dict[str, Any] = {
        "temperature": temperature,
        "calibrated_on": run.eval_ref,
        "holdout_accuracy": accuracy,
    }
    abstention = workspace.project.config.contract.abstention
    if not abstention or abstention not in index:
        return extra, {}
    abstain_id = index[abstention]
    train_logits, train_features, _, _ = predictor.outputs([e.prompt for e in run.examples])
    del train_logits
    assert features is not None and train_features is not None
    train_targets = [index[str(e.label)] for e in run.examples]
    stats = fit_feature_stats(
        train_features, train_targets, [i for i in range(len(labels)) if i != abstain_id]
    )
    rule, report = choose_rule(
        logits,
        features,
        targets,
        labels,
        abstention,
        temperature=temperature,
        stats=stats,
        false_abstention=config.false_abstention,
        choice=config.abstention_score,
    )
    extra["abstention"] = {"rule": rule.as_json(), "holdout": report}
    tensors = {}
    if rule.score == "mahalanobis":
        tensors = {"means": torch.from_numpy(stats.means), "precision": torch.from_numpy(stats.precision)}
    return extra, tensors


def run_loop(
    workspace: Workspace,
    config: TrainConfig,
    run: RunSetup,
    data: RunData,
    model: Any,
    *,
    progress: Callable[[dict[str, Any]], None] | None,
    resume: bool,
    stop_after_steps: int | None,
    trackers: Trackers | None = None,
) -> TrainResult:
    """The training loop; its metrics reach the record with each checkpoint (rank 0), then the
    run's trackers (`--report-to`)."""

    def record_metrics(history: list[dict[str, Any]]) -> None:
        with workspace.record.session() as session:
            queries.add_run_metrics(session, run.run_id, history)
        if trackers is not None:
            trackers.log_metrics(history)

    behaviour = None
    if run.eval_examples and config.eval_metric != "loss":
        behaviour = holdout_behaviour(
            model,
            data.tokenizer,
            run.base.path,
            run.eval_examples,
            config,
            workspace.project.config.contract,
            data.labels,
            synced=run.strategy == "fsdp",
        )
    return train_loop(
        model,
        data.data,
        config,
        checkpoints=run.output / "checkpoints",
        device=run.device,
        eval_data=data.eval_data,
        resume=resume,
        progress=progress,
        on_metrics=record_metrics,
        stop_after_steps=stop_after_steps,
        dist_info=run.info,
        behaviour=behaviour,
    )


def export_run(
    config: TrainConfig,
    run: RunSetup,
    data: RunData,
    model: Any,
    result: TrainResult,
    batching: dict[str, Any],
) -> tuple[dict[str, str], str] | None:
    """Rank 0 writes output/model (and adapter), then model/manifest.json, each atomically, and returns
    the model folder's files and content hash, computed once, here. Under FSDP every rank first
    takes part in gathering the shards."""
    state = result.state
    if run.strategy == "fsdp":
        # The shards come together on rank 0 (every rank takes part), in an unsharded copy.
        weights = full_trainable_state(model, run.strategy)
        if run.info.is_main:
            model = build_model(run.base.path, config, torch.device("cpu"), labels=data.labels)
            load_trainable(model, weights)
    if not run.info.is_main:
        return None
    best_dir = run.output / "checkpoints" / "best" if state.best_step else None
    folder = export_model(model, data.tokenizer, config, run.output, best_dir=best_dir)
    files, model_hash = hash_folder(folder)
    manifest = {
        "run": run.run_name,
        "data": {"ref": run.data_ref, "content_hash": run.data_hash},
        "eval": run.eval_ref,
        "base_model": {"name": run.base.name, "content_hash": run.base.content_hash},
        "model": {"content_hash": model_hash, "files": files},
        "config": config.model_dump(mode="json"),
        "code_version": code_version(),
        "environment": environment(),
        "task": run.task,
        "labels": data.labels,
        "seed": config.seed,
        "steps": state.step,
        "trained_tokens": state.trained_tokens,
        "length_policy": data.data.counts,
        "packing": getattr(data.data, "layout", None),
        "parallel": {"strategy": run.strategy, "world_size": run.info.world_size},
        "best_step": state.best_step,
        "eval_metric": config.eval_metric,
        "best_eval": state.best_eval,
        "tokens_per_step": result.note,
        "batching": batching,
        "recipe": run.recipe,
        "stopped_early": result.stopped_early,
    }
    # Inside the model folder, outside its hashed files (`materialise.DESCRIPTIVE_FILES`).
    write_text(folder / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
    return files, model_hash


def finish_run(
    workspace: Workspace,
    config: TrainConfig,
    run: RunSetup,
    data: RunData,
    result: TrainResult,
    *,
    finished: bool,
    exported: tuple[dict[str, str], str] | None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The run's summary; rank 0 records it with the status and the exported model's hash."""
    state = result.state
    seconds = max(state.train_seconds, 1e-9)
    status = "stopped_early" if result.stopped_early else ("completed" if finished else "interrupted")
    summary = {
        "run": run.run_name,
        "task": run.task,
        "status": status,
        "output": str(run.output / "model"),
        "steps": state.step,
        "total_steps": result.total_steps,
        "trained_tokens": state.trained_tokens,
        "tokens_per_second": round(state.tokens / seconds, 1),
        "computed_tokens_per_second": round(state.computed_tokens / seconds, 1),
        "final_loss": state.history[-1]["loss"] if state.history else None,
        "eval_metric": config.eval_metric,
        "best_eval": state.best_eval,
        "best_step": state.best_step,
        "length_policy": data.data.counts,
        "tokens_per_step": result.note,
        "packing": getattr(data.data, "layout", None),
        "parallel": {"strategy": run.strategy, "world_size": run.info.world_size},
        "device": str(run.device),
        "warnings": warnings or [],
    }
    barrier(run.info)
    if not run.info.is_main:
        return summary
    with workspace.record.session() as session:
        row = queries.run_by_id(session, run.run_id)
        assert row is not None
        # The fingerprint recorded at the start stays: a resume of this run is checked against it.
        kept: dict[str, Any] = {k: row.summary[k] for k in ("fingerprint", "environment") if k in row.summary}
        row.status, row.steps, row.trained_tokens, row.summary = (
            status,
            state.step,
            state.trained_tokens,
            {**kept, **summary},
        )
        row.finished_at = datetime.now(timezone.utc) if finished else None
        if exported is not None:
            row.model_files, row.model_hash = exported
    return summary


def train_work(workspace: Workspace, config: TrainConfig) -> Work:
    """The data, holdout, base and teacher models by content hash (their roles in the settings, so
    swapping data and holdout is another key); every setting but their names; and the contract
    fields rendering and labels depend on."""
    contract = workspace.project.config.contract
    roles: dict[str, str | None] = {}
    with workspace.record.session() as session:
        data = resolve(session, config.data)
        inputs = [ArtifactRef("dataset_version", data.ref, data.content_hash)]
        roles["data"] = data.content_hash
        if config.eval_on:
            holdout = resolve(session, config.eval_on)
            inputs.append(ArtifactRef("dataset_version", holdout.ref, holdout.content_hash))
            roles["holdout"] = holdout.content_hash
    for role, name in (("base", config.base), ("teacher", config.teacher)):
        if name:
            model = find_base_model(workspace, name)
            inputs.append(ArtifactRef("base_model", model.name, model.content_hash))
            roles[role] = model.content_hash
    # The inputs' names (their hashes are in roles) and where the run is shown shape nothing.
    unshaping = {"data", "eval_on", "base", "teacher", *REPORTING_ONLY}
    shaping = {
        "roles": roles,
        "config": config.model_dump(mode="json", exclude=unshaping),
        # A setting left to the task's defaults and one given equal to TrainConfig's default differ
        # (sftline.train.recipes fills in only what was not given).
        "given": sorted(config.model_fields_set - unshaping),
        "contract": contract.model_dump(
            mode="json", include={"task", "system_prompt", "output", "abstention", "limits"}
        ),
    }
    return Work("train", f"train {config.base} on {data.ref}", tuple(inputs), shaping)


def train_station(
    workspace: Workspace,
    config: TrainConfig,
    *,
    force: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> StationResult:
    """`sftline train` as a station: a finished run of the same inputs and settings is reused."""
    work = train_work(workspace, config)

    def execute() -> Produced:
        with workspace.record.session() as session:
            resumable = queries.resumable_run(session, work.key)
        # A run of this very work that was killed after a checkpoint continues from it: the same
        # final weights as an uninterrupted run (see sftline.train.trainer).
        resume = (
            resumable.name
            if resumable and latest_checkpoint(Path(resumable.output_dir) / "checkpoints")
            else None
        )
        summary = start_run(
            workspace, config, progress=progress, resume=resume, station_key=work.key, announce=announce
        )
        with workspace.record.session() as session:
            run = queries.get_run(session, summary["run"])
            if run.status not in ("completed", "stopped_early") or run.model_hash is None:
                raise TrainingError(f"{run.name} ended {run.status} without an exported model")
            outputs = [ArtifactRef("run", run.name, work.key), ArtifactRef("model", run.name, run.model_hash)]
        return Produced(outputs, summary)

    return run_station(workspace, work, execute, force=force)
