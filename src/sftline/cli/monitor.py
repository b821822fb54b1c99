"""`sftline monitor`, `sftline review ...`, `sftline feedback import` and `sftline retrain`."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.output import console, err_console, print_json, progress_bar
from sftline.errors import ConfigError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="The served model's name (default: model_name in sftline.yaml).")
]

review_app = typer.Typer(
    help="The human review queue: list it, export it for reviewers, import their labels.",
    no_args_is_help=True,
)
feedback_app = typer.Typer(
    help="Correct answers for logged predictions, by request id.", no_args_is_help=True
)


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def monitor_command(
    model: ModelOption = None,
    window: Annotated[
        str | None, typer.Option(help="How far back to look: 90m, 24h, 7d (default: monitoring.window).")
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"],
            help="Look from this moment on instead of a window (ISO time; UTC unless it says).",
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="Also write the report as an HTML page with plots.")
    ] = None,
    watch: Annotated[
        str | None,
        typer.Option(help="Run again every interval (60s, 5m) until Ctrl-C; each pass is recorded."),
    ] = None,
    no_drift: Annotated[
        bool, typer.Option("--no-drift", help="Skip the drift tests (they embed the traffic).")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """SLIs, SLO burn rates, drift and the review queue over a window of served traffic; records
    alerts (and posts them to monitoring.webhook_url) and the report. With --watch and --json,
    each pass prints one line of JSON."""
    from sftline.monitoring.settings import parse_duration
    from sftline.stations.monitor import run_monitor

    try:
        interval = parse_duration(watch) if watch else None
    except ValueError as exc:
        raise ConfigError(f"--watch: {exc}") from exc
    with open_workspace() as workspace:
        while True:
            say = None if json_output else (lambda line: err_console.print(f"[dim]{escape(line)}[/]"))
            outcome = run_monitor(
                workspace, model_name=model, window=window, since=since, drift=not no_drift, progress=say
            )
            if html is not None:
                from sftline.reports.monitor import render_monitor_report

                html.write_text(render_monitor_report(outcome.report), encoding="utf-8")
            document = outcome.report | {"report_id": outcome.report_id, "html": str(html) if html else None}
            if json_output and interval is not None:  # one compact line per pass: a JSONL stream
                print(json.dumps(document, sort_keys=True), flush=True)
            elif json_output:
                print_json(document)
            else:
                print_monitor_report(outcome.report)
                if html is not None:
                    console.print(f"report: {html}")
            if interval is None:
                return
            time.sleep(interval)


def print_monitor_report(r: dict[str, Any]) -> None:
    o = r["slis"]["overall"]
    serving = r["serving"]
    console.print(
        f"[bold]{escape(r['model'])}[/] since {r['since'][:16].replace('T', ' ')} UTC; serving "
        f"{escape(str(serving['version']))} (trained on {escape(str(serving['trained_on']))})"
    )
    table = Table(
        "slice", "requests", "success", "p50 ms", "p95 ms", "invalid", "abstained", "cost/1k", title="SLIs"
    )
    rows = [("overall", o), *r["slis"]["slices"].items()]
    for name, s in rows:
        table.add_row(
            escape(name), str(s["requests"]), _pct(s["success_rate"], 2), _num(s["latency_ms"]["p50"]),
            _num(s["latency_ms"]["p95"]), _pct(s["contract_invalid_rate"]), _pct(s["abstention_rate"]),
            _num(s["cost_per_1k_requests"], "{:.4f}"),
        )  # fmt: skip
    console.print(table)
    fb = o["feedback"]
    if fb.get("labelled"):
        acc, f1 = fb["accuracy"], fb["macro_f1"]
        ece = fb.get("ece") or {}
        console.print(
            f"feedback: {fb['labelled']} labelled; accuracy {_pct(acc['value'])} "
            f"({_pct(acc['low'])}-{_pct(acc['high'])}), "
            f"macro-F1 {_pct(f1['value'])}, ECE {_pct(ece.get('value'))}"
        )
    fresh = o["freshness_days"]
    console.print(
        f"review rate {_pct(o['review_rate'])}; newest training data {_num(fresh, '{:.1f}')} days old"
    )
    slos = Table("SLO", "objective", "good", "budget left", "burn (long/short) per rule", title="SLOs")
    for s in r["slos"]:
        burns = "; ".join(
            f"{'[red]' if b['firing'] else ''}{b['severity']} "
            f"{_num(b['burn_long'], '{:.1f}')}/{_num(b['burn_short'], '{:.1f}')}"
            f" ≥{b['factor']:g}{'[/]' if b['firing'] else ''}"
            for b in s["burn"]
        )
        slos.add_row(
            s["slo"], f"{s['objective']:.3%}", _pct(s["good_share"], 2), _pct(s["budget_left"]), burns
        )
    console.print(slos)
    drift = r["drift"]
    if drift.get("tests"):
        t = Table(
            "drift test",
            "test",
            "statistic",
            "p",
            "effect",
            "n now/ref",
            "drifted",
            title=f"drift (family level {drift['false_alarm_rate']:g}, "
            f"per test {drift['alpha_per_test']:.3g})",
        )
        for d in drift["tests"]:
            flag = "[dim]skipped[/]" if d.get("skipped") else ("[red]yes[/]" if d["drifted"] else "no")
            t.add_row(
                d["name"], d["test"], _num(d["statistic"], "{:.3g}"), _num(d["p_value"], "{:.2g}"),
                _num(d.get("effect"), "{:.3g}"), f"{d['n_current']}/{d['n_reference']}", flag,
            )  # fmt: skip
        console.print(t)
        for cluster in drift.get("novel") or []:
            examples = "; ".join(cluster.get("examples", [])[:3])
            console.print(f"  new inputs: {cluster['size']} like: {escape(examples)}", soft_wrap=True)
    elif drift.get("skipped"):
        console.print(f"drift: {drift['skipped']}")
    review = r["review"]
    console.print(f"review queue: {review['added']} added; {review['counts']}")
    for alert in r["alerts"]["fired"]:
        console.print(
            f"[red]ALERT[/] {alert['severity']} {escape(alert['name'])}: {escape(alert['message'])}",
            soft_wrap=True,
        )
    for alert in r["alerts"]["resolved"]:
        console.print(f"[green]resolved[/] {escape(alert['name'])}")
    still = [
        a["name"] for a in r["alerts"]["firing"] if a["name"] not in {f["name"] for f in r["alerts"]["fired"]}
    ]
    if still:
        console.print(f"still firing: {', '.join(still)}")


@review_app.command("list")
def review_list(
    status: Annotated[
        Literal["open", "exported", "labelled"] | None, typer.Option(help="Only items in this state.")
    ] = None,
    model: ModelOption = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    json_output: JsonFlag = False,
) -> None:
    """The queue, oldest first: why each request is there, what the model said, any label."""
    from sftline.stations.review import list_items

    with open_workspace() as workspace:
        items = list_items(workspace, status=status, model_name=model, limit=limit)
    if json_output:
        print_json(items)
        return
    if not items:
        console.print("the review queue is empty (`sftline monitor` fills it)")
        return
    table = Table("request", "reason", "status", "prompt", "answer", "conf.", "label", title="review queue")
    for i in items:
        table.add_row(
            i["request_id"][:12], i["reason"], i["status"],
            escape(i["prompt"][:60]), escape(i["output"][:30]),
            _num(i["confidence"], "{:.2f}"), escape(i["label"] or ""),
        )  # fmt: skip
    console.print(table)


@review_app.command("export")
def review_export(
    out: Annotated[
        Path, typer.Argument(help="The file for reviewers: .jsonl or .csv (a `label` column to fill).")
    ],
    status: Annotated[Literal["open", "exported", "labelled"], typer.Option(help="Which items.")] = "open",
    model: ModelOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Write the queue for reviewers and mark those items exported. Fill in `label` and bring
    the file back with `sftline review import`."""
    from sftline.atomic import write_text
    from sftline.stations.review import export_items

    if out.suffix.lower() not in (".jsonl", ".csv"):
        raise ConfigError(f"{out}: export to a .jsonl or .csv file")
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; name a file to export to")
    fields = ["request_id", "reason", "model_version", "prompt", "output", "confidence", "label"]

    def write(items: list[dict[str, Any]]) -> None:
        if out.suffix.lower() == ".jsonl":
            lines = (json.dumps({k: i[k] for k in fields}, ensure_ascii=False) + "\n" for i in items)
            write_text(out, "".join(lines))
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**i, "prompt": _cell(i["prompt"]), "output": _cell(i["output"])} for i in items)
        write_text(out, buffer.getvalue())

    with open_workspace() as workspace:
        items = export_items(workspace, write, status=status, model_name=model)
    if json_output:
        print_json({"path": str(out), "exported": len(items)})
    else:
        console.print(
            f"exported {len(items)} item(s) to {out}; fill in `label`, then `sftline review import {out}`"
        )


def _cell(text: str) -> str:
    """A user's text as a spreadsheet shows it, never as a formula (`=HYPERLINK(...)` in a prompt)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _label_import(path: Path, source: str, model: str | None, json_output: bool, no_build: bool) -> None:
    from sftline.stations.feedback import import_labels

    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    with (
        open_workspace() as workspace,
        progress_bar("checking the feedback set", quiet=json_output) as update,
    ):
        outcome = import_labels(
            workspace, path, source=source, model_name=model, build=not no_build,
            progress=lambda done, total, _name: update(done, total),
        )  # fmt: skip
    data = outcome.as_json()
    if json_output:
        print_json(data)
        return
    console.print(
        f"{path}: read {data['read']} = accepted {data['accepted']} + rejected {data['rejected']}"
        + (f" {data['reasons']}" if data["rejected"] else "")
    )
    for reject in outcome.rejected[:10]:
        err_console.print(f"  {escape(reject.describe())}", soft_wrap=True)
    if len(outcome.rejected) > 10:
        err_console.print(f"  ... {len(outcome.rejected) - 10} more (--json lists them all)")
    if source == "review":
        console.print(f"{data['reviewed']} review item(s) labelled")
    ds = data["dataset"]
    if ds:
        console.print(
            f"{ds['name']}: imported {ds['imported']} ({ds['examples']} examples), gated -> "
            f"{ds['accepted']} ({ds['n_accepted']} accepted, {ds['n_quarantined']} quarantined"
            + (f"; checked against {', '.join(ds['checked_against'])}" if ds["checked_against"] else "")
            + ")"
        )


NoBuild = Annotated[
    bool, typer.Option("--no-build", help="Record the labels only; do not write the feedback dataset.")
]


@review_app.command("import")
def review_import(
    path: Annotated[
        Path, typer.Argument(help="The reviewers' file: request_id and label per row (JSONL, CSV, Parquet).")
    ],
    model: ModelOption = None,
    no_build: NoBuild = False,
    json_output: JsonFlag = False,
) -> None:
    """Take reviewers' labels: the items become `labelled`, the labels feedback."""
    _label_import(path, "review", model, json_output, no_build)


@feedback_app.command("import")
def feedback_import(
    path: Annotated[Path, typer.Argument(help="request_id and label per row (JSONL, CSV, Parquet).")],
    model: ModelOption = None,
    no_build: NoBuild = False,
    json_output: JsonFlag = False,
) -> None:
    """Correct answers for logged predictions. Each import writes MODEL-feedback's next version
    (source=feedback) through the gates; name that dataset in the line to train on it."""
    _label_import(path, "feedback", model, json_output, no_build)


def retrain_command(
    if_triggered: Annotated[
        bool,
        typer.Option("--if-triggered", help="Do nothing unless monitoring recorded a retraining trigger."),
    ] = False,
    model: ModelOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for another `sftline run` to finish.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """The feedback dataset's next version, then the line; the new model is registered as a
    candidate and promoted to canary only on its release verdict (never to production)."""
    from sftline.cli.output import progress_bars
    from sftline.cli.train import training_progress
    from sftline.stations.line import LineHooks
    from sftline.stations.retrain import retrain

    say = None if json_output else (lambda line: err_console.print(f"[bold]>[/] {escape(line)}"))
    with (
        open_workspace() as workspace,
        progress_bars(quiet=json_output) as announce,
        training_progress(quiet=json_output) as train_progress,
    ):
        hooks = LineHooks(announce=announce, train_progress=train_progress)
        outcome = retrain(
            workspace, model_name=model, if_triggered=if_triggered, wait=wait, hooks=hooks, say=say
        )
    if json_output:
        print_json(outcome.as_json())
    else:
        style = {"promoted": "green", "registered": "green", "failed": "red"}.get(outcome.status, "cyan")
        console.print(f"[{style}]{outcome.status}[/]: {escape(outcome.message)}")
        if outcome.triggers:
            console.print(f"triggers handled: {', '.join(outcome.triggers)}")
    if outcome.status == "failed":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor_command)
    app.command("retrain")(retrain_command)
    app.add_typer(review_app, name="review")
    app.add_typer(feedback_app, name="feedback")
