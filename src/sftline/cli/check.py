"""`sftline data check` and `sftline data rejects`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.output import console, print_json, progress_bar
from sftline.errors import ConfigError, SftlineError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]


def _gates_config(path: Path | None) -> Any:
    from sftline.config import GatesConfig, format_validation_error

    if path is None:
        return None
    import yaml
    from pydantic import ValidationError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read gate config ({exc})") from exc
    data = data.get("gates", data) if isinstance(data, dict) else data
    try:
        return GatesConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc


def check(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION to check.")],
    against: Annotated[
        list[str],
        typer.Option(
            "--against", help="A holdout, gold or eval set version to test for contamination (repeatable)."
        ),
    ] = [],  # noqa: B006
    config: Annotated[
        Path | None,
        typer.Option("--config", help="A YAML file of gate settings (default: sftline.yaml's gates)."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="local (in-process) or ray (Ray Data; a local instance unless RAY_ADDRESS is set)."
        ),
    ] = "local",
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Run the quality gates; quarantine what they block and version the accepted examples."""
    from sftline.gates.check import check_version
    from sftline.reports.gates import render_gate_report

    if engine not in ("local", "ray"):
        raise SftlineError(f"--engine {engine!r}: use local or ray")
    from sftline.gates.engine import make_engine

    gates_config = _gates_config(config)
    runner = make_engine(engine)
    with open_workspace() as workspace, progress_bar(f"checking {ref}", quiet=json_output) as update:
        outcome = check_version(
            workspace,
            ref,
            against=against,
            gates_config=gates_config,
            engine=runner,
            progress=lambda done, total, _name: update(done, total),
        )
    if html is not None:
        html.write_text(render_gate_report(outcome.report), encoding="utf-8")
    summary = {
        "report_id": outcome.report_id,
        "version_checked": outcome.checked,
        **outcome.result.summary(),
        "created_version": outcome.created_version,
        "version": outcome.version,
        "html": str(html) if html else None,
    }
    if json_output:
        print_json(summary)
    else:
        _print_check(summary, outcome.report)
    if not outcome.result.passed:
        raise SftlineError(f"check of {outcome.checked} failed: {'; '.join(outcome.result.failures)}")


def _print_check(summary: dict[str, Any], report: dict[str, Any]) -> None:
    console.print(
        f"checked {summary['version_checked']}: {summary['checked']} = accepted {summary['accepted']}"
        f" + quarantined {summary['quarantined']}"
        f"  ({summary['warned']} warned, {summary['redacted']} redacted)"
    )
    table = Table("gate", "reason", "blocked", "warned", "redacted", title="gates")
    for gate, reasons in summary["counts"].items():
        if not reasons:
            table.add_row(gate, "-", "0", "0", "0")
        for reason, c in reasons.items():
            table.add_row(gate, reason, str(c["blocked"]), str(c["warned"]), str(c["redacted"]))
    console.print(table)
    lengths = report["gates"].get("lengths")
    if lengths:
        p = lengths["total_tokens"].get("percentiles", {})
        console.print(
            f"lengths ({lengths['tokenizer']}): "
            + ", ".join(f"{k} {v:.0f}" for k, v in p.items())
            + f"; {lengths['over_max_length']} over max_length {lengths['max_length']}"
        )
    near = report["gates"].get("near_duplicates")
    if near:
        console.print(f"near-duplicate clusters: {near['n_clusters']}")
    version = summary["version"]
    if summary["created_version"]:
        console.print(
            f"[green]new version[/] {version['ref']}  {version['content_hash'][:12]} (accepted examples)"
        )
    elif version:
        console.print(f"no change: every example passed; {version['ref']} stays the head")
    if summary["html"]:
        console.print(f"report: {summary['html']}")


def rejects(
    ref: Annotated[
        str, typer.Argument(help="NAME@VERSION that was checked (or the version a check produced).")
    ],
    reason: Annotated[str | None, typer.Option(help="Only this reason, e.g. near_duplicate.")] = None,
    limit: Annotated[int, typer.Option(help="Rows shown in the human output.")] = 50,
    json_output: JsonFlag = False,
) -> None:
    """The examples the latest check of a version quarantined, with gate, reason and detail."""
    import pyarrow.parquet as pq
    from sqlalchemy import or_, select

    from sftline.data.versions import resolve
    from sftline.record.schema import GateReport

    with open_workspace() as workspace, workspace.record.session() as session:
        version = resolve(session, ref)
        report = session.scalars(
            select(GateReport)
            .where(
                or_(GateReport.checked_version_id == version.id, GateReport.result_version_id == version.id)
            )
            .order_by(GateReport.id.desc())
        ).first()
        if report is None:
            raise SftlineError(f"{version.ref} has not been checked; run `sftline data check {version.ref}`")
        rows = (
            pq.read_table(workspace.objects.open_path(report.rejects_object)).to_pylist()
            if report.rejects_object
            else []
        )
        checked_ref = report.checked_version.ref
    if reason:
        rows = [r for r in rows if r["reason"] == reason]
    for row in rows:
        row["example"] = json.loads(row["example"])
    if json_output:
        print_json({"checked": checked_ref, "report_id": report.id, "rejects": rows})
        return
    table = Table(
        "example", "where", "gate", "reason", "detail", title=f"quarantined by the check of {checked_ref}"
    )
    for row in rows[:limit]:
        table.add_row(row["example_id"], row["location"], row["gate"], row["reason"], row["detail"])
    console.print(table)
    if len(rows) > limit:
        console.print(f"... {len(rows) - limit} more (--limit or --json)")


def register(app: typer.Typer) -> None:
    app.command()(check)
    app.command()(rejects)
