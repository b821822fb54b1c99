"""`sftline train` and `sftline runs ...`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.output import console, err_console, print_json
from sftline.errors import TrainingError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
runs_app = typer.Typer(help="Training runs: list and inspect.", no_args_is_help=True)


def _config(path: Path | None, overrides: dict[str, Any]) -> Any:
    from sftline.config import load_settings
    from sftline.train.config import TrainConfig

    return load_settings(TrainConfig, path, overrides, "training settings")


def train(
    config_file: Annotated[
        Path | None, typer.Option("--config", help="A YAML file of training settings.")
    ] = None,
    base: Annotated[
        str | None, typer.Option(help="Base model (smollm2-135m-instruct or a registered name).")
    ] = None,
    data: Annotated[str | None, typer.Option(help="Training data: NAME or NAME@VERSION.")] = None,
    method: Annotated[str | None, typer.Option(help="lora (default) or full.")] = None,
    task: Annotated[str | None, typer.Option(help="chat (default: the contract's task).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the data (default 1).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps; overrides --epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (2e-4 LoRA, 2e-5 full).")] = None,
    batch_tokens: Annotated[int | None, typer.Option(help="Tokens per packed micro-batch (8192).")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches per optimizer step (1).")] = None,
    row_tokens: Annotated[
        int | None, typer.Option(help="Tokens per packed row of a micro-batch (1024).")
    ] = None,
    prefix_sharing: Annotated[
        bool | None,
        typer.Option(
            "--prefix-sharing/--no-prefix-sharing",
            help="Compute the tokens most examples start with once per row (default on).",
        ),
    ] = None,
    parallel: Annotated[
        str | None, typer.Option(help="Under torchrun: auto (fsdp for full, else ddp), ddp or fsdp.")
    ] = None,
    eval_on: Annotated[str | None, typer.Option(help="Holdout evaluated during training.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Steps between evaluations (50).")] = None,
    eval_metric: Annotated[
        str | None,
        typer.Option(
            help="Picks the best checkpoint: loss, or a behaviour metric (accuracy, macro_f1, ...)."
        ),
    ] = None,
    eval_max_new_tokens: Annotated[
        int | None, typer.Option(help="Generation limit when measuring a chat model's holdout behaviour.")
    ] = None,
    early_stop_patience: Annotated[
        int | None, typer.Option(help="Evaluations without gain before stopping.")
    ] = None,
    save_every: Annotated[int | None, typer.Option(help="Steps between checkpoints (50).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random choice; recorded.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 (default) or bfloat16 (GPU).")] = None,
    max_length: Annotated[
        int | None, typer.Option(help="Longest example in tokens (default: the contract's).")
    ] = None,
    length_policy: Annotated[str | None, typer.Option(help="drop (default) or truncate-prompt.")] = None,
    teacher: Annotated[
        str | None, typer.Option(help="Distil from this model (same tokenizer): KL + CE.")
    ] = None,
    resume: Annotated[str | None, typer.Option(help="Resume this run from its latest checkpoint.")] = None,
    show_masks: Annotated[
        int, typer.Option(help="Print N rendered examples with trained spans highlighted, then exit.")
    ] = 0,
    json_output: JsonFlag = False,
) -> None:
    """Fine-tune a causal LM on a dataset version (LoRA or full), with the model's own chat template."""
    import warnings

    # peft calls an API transformers 5 deprecated; the warning is theirs to fix, not the user's.
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    overrides = {
        "base": base,
        "data": data,
        "method": method,
        "task": task,
        "epochs": epochs,
        "max_steps": max_steps,
        "lr": lr,
        "batch_tokens": batch_tokens,
        "grad_accum": grad_accum,
        "row_tokens": row_tokens,
        "prefix_sharing": prefix_sharing,
        "parallel": parallel,
        "eval_on": eval_on,
        "eval_every": eval_every,
        "eval_metric": eval_metric,
        "eval_max_new_tokens": eval_max_new_tokens,
        "early_stop_patience": early_stop_patience,
        "save_every": save_every,
        "seed": seed,
        "teacher": teacher,
        "dtype": dtype,
        "max_length": max_length,
        "length_policy": length_policy,
    }
    with open_workspace() as workspace:
        if resume and not (base or data or config_file):
            from sqlalchemy import select

            from sftline.record.schema import Run

            with workspace.record.session() as session:
                row = session.scalars(select(Run).where(Run.name == resume)).first()
                if row is None:
                    raise TrainingError(f"no run named {resume!r}; see `sftline runs list`")
                overrides = dict(row.config)
        config = _config(config_file, overrides)
        if show_masks:
            _show_masks(workspace, config, show_masks)
            return
        summary = _run_with_progress(workspace, config, resume, quiet=json_output)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun / accelerate launch only rank 0 reports
    if json_output:
        print_json(summary)
        return
    units = "examples" if summary["task"] == "classify" else "tokens"
    console.print(
        f"[green]{summary['status']}[/] {summary['run']}: {summary['steps']} steps, "
        f"{summary['trained_tokens']:,} trained {units}, {summary['tokens_per_second']:,.0f} tokens/s"
    )
    console.print(f"  {summary['tokens_per_step']}", markup=False)
    console.print(f"  length policy: {summary['length_policy']}", markup=False)
    layout = summary.get("packing")
    if layout and layout["shared_prefix_examples"]:
        console.print(
            f"  packing: {layout['examples']:,} examples in {layout['rows']:,} rows; "
            f"{layout['shared_prefix_examples']:,} behind a shared prefix of up to "
            f"{layout['shared_prefix_tokens']} tokens, so the rows compute {layout['computed_tokens']:,} "
            f"of the examples' {layout['example_tokens']:,} tokens "
            f"({summary['computed_tokens_per_second']:,.0f} computed tokens/s)",
            markup=False,
        )
    processes = summary["parallel"]
    if processes["world_size"] > 1:
        console.print(f"  parallel: {processes['strategy']} over {processes['world_size']} processes")
    if summary["best_eval"] is not None:
        console.print(
            f"  best holdout {summary['eval_metric']} {summary['best_eval']:.4f} "
            f"at step {summary['best_step']}"
        )
    console.print(f"  model: {summary['output']}", markup=False)


def _run_with_progress(workspace: Any, config: Any, resume: str | None, *, quiet: bool) -> dict[str, Any]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from sftline.train.run import start_run

    columns = [
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err_console, disable=quiet or not err_console.is_terminal) as bar:
        task = bar.add_task("train", total=None, info="")

        def progress(update: dict[str, Any]) -> None:
            info = f"loss {update['loss']:.4f}  {update['tokens_per_second']:,.0f} tok/s"
            if "eval_loss" in update:
                info += f"  eval {update['eval_loss']:.4f}"
            bar.update(task, completed=update["step"], total=update["total"], info=info)

        return start_run(workspace, config, progress=progress, resume=resume)


def _show_masks(workspace: Any, config: Any, count: int) -> None:
    from transformers import AutoTokenizer

    from sftline.data.versions import load_examples, resolve
    from sftline.models.lookup import find_base_model
    from sftline.train.render import format_masks, render_chat

    base = find_base_model(workspace, config.base)
    tokenizer = AutoTokenizer.from_pretrained(base.path, local_files_only=True)
    with workspace.record.session() as session:
        examples = load_examples(workspace, resolve(session, config.data))[:count]
    system_prompt = workspace.project.config.contract.system_prompt
    for example in examples:
        rendered = render_chat(tokenizer, example, system_prompt=system_prompt)
        console.rule(f"{example.id}: {rendered.n_trained} of {len(rendered.input_ids)} tokens trained")
        console.print(format_masks(tokenizer, rendered))


@runs_app.command("list")
def list_runs(json_output: JsonFlag = False) -> None:
    """Every training run with its status and outcome."""
    from sqlalchemy import select

    from sftline.record.schema import Run

    with open_workspace() as workspace, workspace.record.session() as session:
        rows = [_run_json(r) for r in session.scalars(select(Run).order_by(Run.id))]
    if json_output:
        print_json(rows)
        return
    table = Table("run", "status", "base", "data", "steps", "tokens", "tokens/s", "final loss", "started")
    for r in rows:
        s = r["summary"]
        table.add_row(
            r["name"],
            r["status"],
            r["base_model"],
            r["data"],
            str(r["steps"]),
            f"{r['trained_tokens']:,}",
            f"{s.get('tokens_per_second', 0):,.0f}",
            f"{s['final_loss']:.4f}" if s.get("final_loss") else "-",
            r["started_at"][:19],
        )
    console.print(table)


def _run_json(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "status": row.status,
        "base_model": row.base_model,
        "base_model_hash": row.base_model_hash,
        "data": row.data_version.ref,
        "data_hash": row.data_version.content_hash,
        "config": row.config,
        "seed": row.seed,
        "code_version": row.code_version,
        "output_dir": row.output_dir,
        "steps": row.steps,
        "trained_tokens": row.trained_tokens,
        "summary": row.summary,
        "started_at": row.started_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


@runs_app.command("show")
def show_run(
    name: Annotated[str, typer.Argument(help="Run name, e.g. run-0001.")], json_output: JsonFlag = False
) -> None:
    """A run's config, lineage, outcome and metrics by step."""
    from sqlalchemy import select

    from sftline.record.schema import Run, RunMetric

    with open_workspace() as workspace, workspace.record.session() as session:
        row = session.scalars(select(Run).where(Run.name == name)).first()
        if row is None:
            raise TrainingError(f"no run named {name!r}; see `sftline runs list`")
        data = _run_json(row)
        metrics = session.scalars(
            select(RunMetric).where(RunMetric.run_id == row.id).order_by(RunMetric.step)
        ).all()
        by_step: dict[int, dict[str, float]] = {}
        for metric in metrics:
            by_step.setdefault(metric.step, {})[metric.name] = metric.value
        data["metrics"] = [{"step": step, **values} for step, values in sorted(by_step.items())]
    if json_output:
        print_json(data)
        return
    console.print(
        f"[bold]{data['name']}[/] {data['status']}: {data['base_model']} on {data['data']} "
        f"(seed {data['seed']}, code {data['code_version']})"
    )
    console.print(f"output: {data['output_dir']}", markup=False)
    table = Table("step", "loss", "eval loss", "lr", "tokens/s")
    for m in data["metrics"][-20:]:
        table.add_row(
            str(m["step"]),
            f"{m.get('loss', 0):.4f}",
            f"{m['eval_loss']:.4f}" if "eval_loss" in m else "",
            f"{m.get('lr', 0):.2e}",
            f"{m.get('tokens_per_second', 0):,.0f}",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.add_typer(runs_app, name="runs")
