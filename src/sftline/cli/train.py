"""`sftline train` and `sftline runs ...`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.options import Overrides, settings_command
from sftline.cli.output import console, err_console, print_json
from sftline.cli.progress import Pace, progress_lines
from sftline.record.leases import shown_status
from sftline.train.config import REPORTING_ONLY, TrainConfig

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
runs_app = typer.Typer(help="Training runs: list and inspect.", no_args_is_help=True)


def _startup(line: str) -> None:
    err_console.print(f"training: {line}", markup=False, soft_wrap=True)


def _config(path: Path | None, overrides: dict[str, Any]) -> Any:
    from sftline.config import load_settings

    return load_settings(TrainConfig, path, overrides, "training settings")


@settings_command(TrainConfig)
def train(
    overrides: Overrides,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="A YAML file of training settings.")
    ] = None,
    resume: Annotated[str | None, typer.Option(help="Resume this run from its latest checkpoint.")] = None,
    show_masks: Annotated[
        int, typer.Option(help="Print N rendered examples with trained spans highlighted, then exit.")
    ] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Train even when a run of the same inputs and settings exists.")
    ] = False,
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            "--sweep",
            help="NAME=V1,V2,...: train one run per value (repeat for a grid) and rank them by "
            "eval_metric on the holdout, e.g. --sweep lr=1e-5,5e-5,1e-4.",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Fine-tune a model on a dataset version: LoRA or full, a causal LM with its own chat template
    or a sequence classifier. A finished run of the same data, base model and settings is reused
    (`--force` trains again)."""
    import warnings

    # peft calls an API transformers 5 deprecated; the warning is theirs to fix, not the user's.
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    from sftline.stations.train import start_run, train_station

    with open_workspace() as workspace:
        if resume and not (overrides.get("base") or overrides.get("data") or config_file):
            from sftline.record.queries import get_run

            with workspace.record.session() as session:
                recorded = dict(get_run(session, resume).config)
            # Where the run is reported may change on a resume; nothing else may.
            overrides = {**recorded, **{k: overrides[k] for k in REPORTING_ONLY if overrides.get(k)}}
        config = _config(config_file, overrides)
        if show_masks:
            _show_masks(workspace, config, show_masks)
            return
        announce = None if json_output else _startup
        if sweep:
            from sftline.stations.sweep import parse_grid, run_sweep

            grid = parse_grid(sweep)
            with training_progress(quiet=json_output) as progress:
                outcome = run_sweep(
                    workspace, config, grid, force=force, progress=progress, announce=announce
                )
            _print_sweep(outcome, json_output)
            return
        with training_progress(quiet=json_output) as progress:
            if resume or int(os.environ.get("WORLD_SIZE", "1")) > 1:
                # A resume continues its own run; under torchrun every rank must train.
                summary = start_run(workspace, config, progress=progress, resume=resume, announce=announce)
            else:
                result = train_station(workspace, config, force=force, progress=progress, announce=announce)
                summary = {**result.result, "station": result.status, "key": result.key}
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun / accelerate launch only rank 0 reports
    if json_output:
        print_json(summary)
        return
    if summary.get("station") == "cached":
        console.print(
            f"[cyan]cached[/] {summary['run']}: the same data, base model and settings were trained "
            f"before (key {summary['key'][:12]}); --force trains again"
        )
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
    if layout and layout.get("prefix_sharing_off"):
        console.print(f"  packing: prefix sharing off: {layout['prefix_sharing_off']}", markup=False)
    processes = summary["parallel"]
    if processes["world_size"] > 1:
        console.print(f"  parallel: {processes['strategy']} over {processes['world_size']} processes")
    if summary["best_eval"] is not None:
        console.print(
            f"  best holdout {summary['eval_metric']} {summary['best_eval']:.4f} "
            f"at step {summary['best_step']}"
        )
    console.print(f"  model: {summary['output']}", markup=False)
    for warning in summary.get("warnings", []):
        err_console.print(f"[bold yellow]warning:[/] {escape(warning)}", soft_wrap=True)


def _print_sweep(outcome: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print_json(outcome)
        return
    direction = "higher" if outcome["higher_is_better"] else "lower"
    table = Table(
        "rank", "settings", "run", f"holdout {outcome['metric']} ({direction} is better)", "at step"
    )
    for trial in sorted(outcome["trials"], key=lambda t: t.get("rank", 10**9)):
        shown = ", ".join(f"{k}={v}" for k, v in trial["settings"].items())
        value = "-" if trial["best_eval"] is None else f"{trial['best_eval']:.4f}"
        table.add_row(str(trial.get("rank", "-")), shown, trial["run"], value, str(trial["best_step"] or "-"))
    console.print(table)
    best = outcome["best"]
    console.print(f"best: {', '.join(f'{k}={v}' for k, v in best['settings'].items())} ({best['run']})")


@contextmanager
def training_progress(*, quiet: bool) -> Iterator[Callable[[dict[str, Any]], None]]:
    """The trainer's `progress` callback: a rich bar on a terminal, plain lines in a log, nothing
    when `quiet`."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not quiet and not err_console.is_terminal:
        with training_progress_lines(err_console) as report:
            yield report
        return
    columns = [
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err_console, disable=quiet) as bar:
        task = bar.add_task("train", total=None, info="")

        def progress(update: dict[str, Any]) -> None:
            info = f"loss {update['loss']:.4f}  {update['tokens_per_second']:,.0f} tok/s"
            if "eval_loss" in update:
                info += f"  eval {update['eval_loss']:.4f}"
            bar.update(task, completed=update["step"], total=update["total"], info=info)

        yield progress


@contextmanager
def training_progress_lines(console: Console) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Training progress as plain lines for a log (`ProgressLines`): `step 40/200 loss 1.2345 tok/s
    1,234 eta 3m12s`, a line at every holdout evaluation (with its loss), and a last one with the
    run's duration. Yields the trainer's `progress` callback."""

    def render(pace: Pace) -> str:
        return " ".join(part for part in (f"step {pace.counts}", pace.detail, pace.timing) if part)

    with progress_lines(console) as start:
        lines = start(render)

        def report(update: dict[str, Any]) -> None:
            detail = f"loss {update['loss']:.4f}"
            if "eval_loss" in update:
                detail += f" eval loss {update['eval_loss']:.4f}"
            detail += f" tok/s {update['tokens_per_second']:,.0f}"
            lines.update(update["step"], update["total"], detail=detail, force="eval_loss" in update)

        yield report


def _show_masks(workspace: Any, config: Any, count: int) -> None:
    from transformers import AutoTokenizer

    from sftline.contract.render import format_masks, render_chat
    from sftline.record.queries import resolve
    from sftline.stations.models import find_base_model
    from sftline.stations.versions import load_examples

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
    from sftline.record.queries import runs

    with open_workspace() as workspace, workspace.record.session() as session:
        rows = [_run_json(r) for r in runs(session)]
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
    """A run as `runs list` and `runs show` report it. The status is the one a reader sees: a
    `running` row whose lease went stale shows `interrupted`, and nothing is written."""
    return {
        "name": row.name,
        "status": shown_status(row),
        "error": row.error,
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
        "model_hash": row.model_hash,
        "started_at": row.started_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "heartbeat_at": row.heartbeat_at.isoformat() if row.heartbeat_at else None,
    }


@runs_app.command("show")
def show_run(
    name: Annotated[str, typer.Argument(help="Run name, e.g. run-0001.")], json_output: JsonFlag = False
) -> None:
    """A run's config, lineage, outcome and metrics by step."""
    from sftline.record.queries import get_run, run_metrics

    with open_workspace() as workspace, workspace.record.session() as session:
        row = get_run(session, name)
        data = _run_json(row)
        metrics = run_metrics(session, row)
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
    if data["error"]:
        console.print(f"error: {data['error']}", markup=False)
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
