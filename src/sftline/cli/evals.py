"""`sftline eval` and `sftline evals list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.output import console, print_json, progress_bars, require_folder
from sftline.errors import ConfigError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
evals_app = typer.Typer(help="Stored evaluations.", no_args_is_help=True)

VERDICT_STYLE = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow"}


def _print_section(section: dict[str, Any]) -> None:
    # The HTML report's number formats: rates as percentages, changes of rates in points.
    from sftline.reports.eval import change, change_interval, interval, number, p_value

    reused = " (stored outputs reused)" if section["reused"] else f" in {section['seconds']:.1f}s"
    console.print(
        f"\n[bold]{escape(section['model'])}[/] on [bold]{escape(section['dataset'])}[/]: "
        f"{section['n']} examples, {section['method']}, {section['evaluation']}{reused}"
    )
    other_key = next((k for k in ("baseline", "base") if k in section), None)
    diffs = (section.get("comparison") or section.get("sft_change") or {}).get("overall", {})
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    if other_key:
        table.add_column(f"{other_key}: {escape(section[other_key]['model'])}", justify="right")
        table.add_column("change", justify="right")
        table.add_column("95% CI", justify="right")
        table.add_column("p", justify="right")
    for metric, est in section["metrics"]["overall"].items():
        row = [metric, number(metric, est["value"]), interval(metric, est["low"], est["high"])]
        if other_key:
            other = section[other_key]["metrics"]["overall"].get(metric, {})
            d = diffs.get(metric, {})
            row += [
                number(metric, other.get("value")),
                change(metric, d.get("delta")),
                change_interval(metric, d),
                p_value(d.get("p_value")),
            ]
        table.add_row(*row)
    console.print(table)
    slices = section["metrics"]["slices"]
    if slices:
        worst = sorted(
            slices.items(),
            key=lambda kv: (kv[1]["accuracy"]["value"] is None, kv[1]["accuracy"]["value"] or 0),
        )
        shown = ", ".join(
            f"{escape(name)} {number('accuracy', m['accuracy']['value'])}" for name, m in worst[:5]
        )
        console.print(f"least accurate slices: {shown}")
    comparison = section.get("comparison")
    if comparison and "verdict" in comparison:
        v = comparison["verdict"]
        console.print(f"verdict: [{VERDICT_STYLE[v['verdict']]}]{v['verdict']}[/]")
        for reason in v["reasons"]:
            console.print(f"  - {escape(reason)}")


def _settings(suite: Path | None, overrides: dict[str, Any]) -> Any:
    from sftline.stations.release import load_suite

    return load_suite(suite, overrides)


def register(app: typer.Typer) -> None:
    app.command(name="eval")(eval_command)
    app.add_typer(evals_app, name="evals")


def eval_command(
    models: Annotated[
        list[str],
        typer.Argument(
            help="MODEL (a run, a base model, or a model folder), or `compare BASELINE CANDIDATE`.",
            show_default=False,
        ),
    ],
    on: Annotated[list[str] | None, typer.Option("--on", help="Dataset to evaluate on (repeatable).")] = None,
    suite: Annotated[
        Path | None, typer.Option(help="A YAML file of eval settings (datasets, slices, ...).")
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Compare with this model and give the release verdict.")
    ] = None,
    no_base: Annotated[
        bool, typer.Option("--no-base", help="Skip the run's base model (shown to tell what SFT changed).")
    ] = False,
    sample: Annotated[int | None, typer.Option(help="Evaluate a seeded random sample of N examples.")] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Generation limit (default: contract limits.max_target_tokens).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Prompts generated together (32).")] = None,
    constrain: Annotated[
        bool | None,
        typer.Option(
            "--constrain/--no-constrain",
            help="Constrain generated answers to the contract's labels or JSON schema (default: on).",
            show_default=False,
        ),
    ] = None,
    abstain_below: Annotated[
        float | None, typer.Option(help="Classifiers: abstain when the top probability is below this.")
    ] = None,
    calibrate_on: Annotated[
        str | None, typer.Option(help="Classifiers: fit a temperature on this holdout first.")
    ] = None,
    no_stored_abstention: Annotated[
        bool,
        typer.Option(
            "--no-stored-abstention",
            help="Classifiers: ignore the abstention rule the run chose on its holdout; abstain only "
            "when the top label is the abstention label.",
        ),
    ] = False,
    slices: Annotated[
        str | None, typer.Option(help="Comma-separated tag keys to slice by (default all).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Run the model even if stored outputs exist.")
    ] = False,
    html: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Evaluate a model: task and behaviour metrics per slice with 95% intervals, the base model's
    numbers beside them, and with --baseline (or `eval compare A B`) the release verdict.

    Exit status with a verdict: 0 pass, 3 fail, 4 inconclusive (1 is an error)."""
    from sftline.evals.compare import VERDICT_EXIT_CODES
    from sftline.stations.release import eval_station, load_report

    overrides: dict[str, Any] = {
        "on": on or [],
        "sample": sample,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "constrain": constrain,
        "abstain_below": abstain_below,
        "calibrate_on": calibrate_on,
        "stored_abstention": False if no_stored_abstention else None,
        "slices": [s.strip() for s in slices.split(",") if s.strip()] if slices else None,
    }
    settings = _settings(suite, overrides)
    comparing = models[0] == "compare"
    if comparing and (len(models) != 3 or baseline):
        raise ConfigError("usage: sftline eval compare BASELINE CANDIDATE --on DATASET")
    if not comparing and len(models) != 1:
        raise ConfigError("give one MODEL (or `compare BASELINE CANDIDATE`)")
    require_folder(html, "--html")
    model, baseline_ref = (models[2], models[1]) if comparing else (models[0], baseline)
    with open_workspace() as workspace, progress_bars(quiet=json_output) as announce:
        station = eval_station(
            workspace,
            settings,
            model,
            baseline_ref=baseline_ref,
            with_base=not (no_base or comparing),
            announce=announce,
            force=force,
        )
        report = load_report(workspace, station)
    report.update(station=station.status, key=station.key)
    if station.status == "cached":  # nothing ran: every section is the stored one
        for section in report["sections"]:
            section["reused"] = True
    if comparing:
        report["title"] = f"sftline eval compare: {model} against {baseline_ref}"
    if html is not None:
        from sftline.reports.eval import render_eval_report

        html.write_text(render_eval_report(report), encoding="utf-8")
        report["html"] = str(html)
    if json_output:
        print_json(report)
    else:
        for section in report["sections"]:
            _print_section(section)
        if "verdict" in report:
            style = VERDICT_STYLE[report["verdict"]]
            console.print(f"\nrelease verdict for {escape(report['model'])}: [{style}]{report['verdict']}[/]")
        if html is not None:
            console.print(f"report: {html}")
    if "verdict" in report:
        raise typer.Exit(VERDICT_EXIT_CODES[report["verdict"]])


@evals_app.command("list")
def list_evaluations(json_output: JsonFlag = False) -> None:
    """Stored evaluations, newest first."""
    from sftline.record.queries import evaluations

    with open_workspace() as workspace, workspace.record.session() as session:
        rows: list[dict[str, Any]] = [
            {
                "evaluation": e.name,
                "model": e.model,
                "model_kind": e.model_kind,
                "dataset": e.dataset_version.ref,
                "task": e.task,
                "n": e.n_examples,
                "accuracy": (e.metrics.get("overall", {}).get("accuracy") or {}).get("value"),
                "seconds": round(e.seconds, 1),
                "created_at": e.created_at.isoformat(timespec="seconds"),
            }
            for e in evaluations(session)
        ]
    if json_output:
        print_json(rows)
        return
    from sftline.reports.eval import number

    table = Table(show_edge=False, pad_edge=False)
    for column in ("evaluation", "model", "dataset", "task", "n", "accuracy", "seconds", "created_at"):
        table.add_column(column, justify="right" if column in ("n", "accuracy", "seconds") else "left")
    for row in rows:
        table.add_row(
            row["evaluation"],
            escape(row["model"]),
            row["dataset"],
            row["task"],
            str(row["n"]),
            number("accuracy", row["accuracy"]),
            f"{row['seconds']:.1f}",
            row["created_at"],
        )
    console.print(table)
