"""`sftline train`: a run from the record's data and base model to an exported HF folder."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import select

from sftline import __version__
from sftline.data.versions import load_examples, resolve
from sftline.errors import TrainingError
from sftline.models.lookup import find_base_model
from sftline.record.schema import Run, RunMetric
from sftline.record.workspace import Workspace
from sftline.train.checkpoint import full_trainable_state, load_trainable
from sftline.train.config import TrainConfig
from sftline.train.distributed import barrier, broadcast, device_for, init_distributed, strategy_for
from sftline.train.tasks import ChatData, TaskData, label_set, prepare_classifier
from sftline.train.trainer import build_model, prepare, train_loop

RUNS_DIR = "runs"


def code_version() -> str:
    """sftline's version, plus the git commit when running from a checkout."""
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" if commit else __version__


def holdout_behaviour(
    model: Any,
    tokenizer: Any,
    base_path: Path,
    examples: list[Any],
    config: TrainConfig,
    workspace: Workspace,
    labels: list[str] | None,
    *,
    synced: bool = False,
) -> Callable[[], dict[str, float | None]]:
    """The eval station's metrics of the model in training on the holdout, by classifying or
    generating exactly as `sftline eval` does."""
    from sftline.evals.predict import ClassifierPredictor, GenerationPredictor, Predictor
    from sftline.evals.scoring import point_metrics

    contract = workspace.project.config.contract
    predictor: Predictor
    if labels is not None:
        predictor = ClassifierPredictor(
            model, tokenizer, max_length=config.max_length or contract.limits.max_length
        )
    else:
        predictor = GenerationPredictor.around(
            model,
            tokenizer,
            base_path,
            contract.system_prompt,
            max_new_tokens=config.eval_max_new_tokens or contract.limits.max_target_tokens,
            synced=synced,
        )
    return lambda: point_metrics(predictor.predict(examples), contract, labels)


def start_run(
    workspace: Workspace,
    config: TrainConfig,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    resume: str | None = None,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    from transformers import AutoTokenizer

    info = init_distributed()
    project = workspace.project
    contract = project.config.contract
    task = config.task or contract.task
    base = find_base_model(workspace, config.base)
    if task == "chat" and base.kind != "causal-lm":
        raise TrainingError(f"base model {base.name} is a {base.kind}, not a causal LM; chat SFT needs one")
    if task == "classify" and base.kind == "causal-lm":
        raise TrainingError(
            f"base model {base.name} is a causal LM; task classify needs an encoder (minilm-l6)"
        )
    max_length = config.max_length or contract.limits.max_length
    with workspace.record.session() as session:
        data_version = resolve(session, config.data)
        examples = load_examples(workspace, data_version)
        eval_version = resolve(session, config.eval_on) if config.eval_on else None
        eval_examples = load_examples(workspace, eval_version) if eval_version else []
        row: Run | None = None
        if resume:
            row = session.scalars(select(Run).where(Run.name == resume)).first()
            if row is None:
                raise TrainingError(f"no run named {resume!r}; see `sftline runs list`")
            if row.config != config.model_dump(mode="json"):
                raise TrainingError(
                    f"--resume {resume}: the config differs from the run's; resume takes no changes"
                )
            if info.is_main:
                row.status = "running"
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
            )
            session.add(row)
            session.flush()
            row.name = f"run-{row.id:04d}"
            row.output_dir = str(project.state_dir / RUNS_DIR / row.name)
        created = (row.id, row.name, row.output_dir) if row is not None else None
        data_ref, data_hash = data_version.ref, data_version.content_hash
        eval_ref = eval_version.ref if eval_version else None
    # Only rank 0 writes the record; the other processes of a torchrun learn the run from it.
    run_id, run_name, output_dir = broadcast(created, info)
    output = Path(output_dir)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # sftline draws its own progress
    hf_logging.set_verbosity_error()  # a new classifier head is expected, not news
    tokenizer = AutoTokenizer.from_pretrained(base.path, local_files_only=True)
    labels: list[str] | None = None
    data: TaskData
    eval_data: TaskData | None = None
    if task == "classify":
        labels = label_set(examples, contract.output.labels, contract.abstention)
        max_length = min(max_length, tokenizer.model_max_length)
        data = prepare_classifier(
            tokenizer, examples, labels, batch_tokens=config.batch_tokens, max_length=max_length
        )
        if eval_examples:
            eval_data = prepare_classifier(
                tokenizer, eval_examples, labels, batch_tokens=config.batch_tokens, max_length=max_length
            )
    else:
        data = prepare(
            tokenizer, examples, config, system_prompt=contract.system_prompt, max_length=max_length
        )
        if eval_examples:
            eval_data = prepare(
                tokenizer, eval_examples, config, system_prompt=contract.system_prompt, max_length=max_length
            )
    device = device_for(info)
    if config.teacher is not None:
        if task != "chat":
            raise TrainingError("--teacher distils a causal LM; it needs task chat")
        from sftline.train.distill import DistillChatData, load_teacher

        teacher = load_teacher(find_base_model(workspace, config.teacher).path, tokenizer, device)
        settings = {
            "teacher": teacher,
            "alpha": config.distill_alpha,
            "temperature": config.distill_temperature,
        }
        assert isinstance(data, ChatData)
        data = DistillChatData.from_chat(data, **settings)
        if isinstance(eval_data, ChatData):
            eval_data = DistillChatData.from_chat(eval_data, **settings)
    torch.manual_seed(config.seed)
    model = build_model(base.path, config, device, labels=labels)

    def record_metrics(history: list[dict[str, Any]]) -> None:
        with workspace.record.session() as session:
            session.add_all(
                RunMetric(run_id=run_id, step=h["step"], name=k, value=v)
                for h in history
                for k, v in h.items()
                if k != "step"
            )

    strategy = strategy_for(config.parallel, config.method, info)
    behaviour = None
    if eval_examples and config.eval_metric != "loss":
        behaviour = holdout_behaviour(
            model, tokenizer, base.path, eval_examples, config, workspace, labels, synced=strategy == "fsdp"
        )
    try:
        result = train_loop(
            model,
            data,
            config,
            checkpoints=output / "checkpoints",
            device=device,
            eval_data=eval_data,
            resume=bool(resume),
            progress=progress,
            on_metrics=record_metrics,
            stop_after_steps=stop_after_steps,
            dist_info=info,
            behaviour=behaviour,
        )
    except BaseException:
        if info.is_main:
            with workspace.record.session() as session:
                failed = session.get(Run, run_id)
                if failed is not None:
                    failed.status = "interrupted"
        raise
    state = result.state
    finished = stop_after_steps is None or state.step >= result.total_steps or result.stopped_early
    manifest = {
        "run": run_name,
        "data": {"ref": data_ref, "content_hash": data_hash},
        "eval": eval_ref,
        "base_model": {"name": base.name, "content_hash": base.content_hash},
        "config": config.model_dump(mode="json"),
        "code_version": code_version(),
        "task": task,
        "labels": labels,
        "seed": config.seed,
        "steps": state.step,
        "trained_tokens": state.trained_tokens,
        "length_policy": data.counts,
        "packing": getattr(data, "layout", None),
        "parallel": {"strategy": strategy, "world_size": info.world_size},
        "best_step": state.best_step,
        "eval_metric": config.eval_metric,
        "best_eval": state.best_eval,
        "tokens_per_step": result.note,
        "stopped_early": result.stopped_early,
    }
    if finished and strategy == "fsdp":
        # The shards come together on rank 0 (every rank takes part), in an unsharded copy.
        weights = full_trainable_state(model, strategy)
        if info.is_main:
            model = build_model(base.path, config, torch.device("cpu"), labels=labels)
            load_trainable(model, weights)
    if finished and info.is_main:
        from sftline.train.export import export_model

        export_model(
            model,
            tokenizer,
            config,
            output,
            best_dir=output / "checkpoints" / "best" if state.best_step else None,
        )
        (output / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    seconds = max(state.train_seconds, 1e-9)
    status = "stopped_early" if result.stopped_early else ("completed" if finished else "interrupted")
    summary = {
        "run": run_name,
        "task": task,
        "status": status,
        "output": str(output / "model"),
        "steps": state.step,
        "total_steps": result.total_steps,
        "trained_tokens": state.trained_tokens,
        "tokens_per_second": round(state.tokens / seconds, 1),
        "computed_tokens_per_second": round(state.computed_tokens / seconds, 1),
        "final_loss": state.history[-1]["loss"] if state.history else None,
        "eval_metric": config.eval_metric,
        "best_eval": state.best_eval,
        "best_step": state.best_step,
        "length_policy": data.counts,
        "tokens_per_step": result.note,
        "packing": getattr(data, "layout", None),
        "parallel": {"strategy": strategy, "world_size": info.world_size},
        "device": str(device),
    }
    barrier(info)
    if not info.is_main:
        return summary
    with workspace.record.session() as session:
        row = session.get(Run, run_id)
        assert row is not None
        row.status, row.steps, row.trained_tokens, row.summary = (
            status,
            state.step,
            state.trained_tokens,
            summary,
        )
        row.finished_at = datetime.now(timezone.utc) if finished else None
    return summary
