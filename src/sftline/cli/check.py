"""`sftline data check` and `sftline data rejects`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.options import Overrides, settings_command
from sftline.cli.output import console, print_json, progress_bar, require_folder
from sftline.errors import SftlineError
from sftline.gates.settings import CheckSettings

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]


@settings_command(CheckSettings, arguments=("dataset",))
def check(
    overrides: Overrides,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Check again though this version was checked with these gates.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Run the quality gates; quarantine what they block and version the accepted examples."""
    from sftline.config import load_settings
    from sftline.reports.gates import render_gate_report
    from sftline.stations.check import check_station

    settings = load_settings(CheckSettings, None, overrides, "check options")
    require_folder(html, "--html")
    with (
        open_workspace() as workspace,
        progress_bar(f"checking {settings.dataset}", quiet=json_output) as update,
    ):
        result = check_station(
            workspace, settings, force=force, progress=lambda done, total, _name: update(done, total)
        )
        report = json.loads(workspace.objects.get_bytes(result.result["report_object"]))
    if html is not None:
        html.write_text(render_gate_report(report), encoding="utf-8")
    summary = {
        **result.result,
        "html": str(html) if html else None,
        "station": result.status,
        "key": result.key,
    }
    if result.status == "cached":
        summary["created_version"] = False
    if json_output:
        print_json(summary)
    else:
        _print_check(summary, report)
    if summary["status"] == "failed":
        raise SftlineError(f"check of {summary['version_checked']} failed: {'; '.join(summary['failures'])}")


def _print_check(summary: dict[str, Any], report: dict[str, Any]) -> None:
    if summary["station"] == "cached":
        console.print(
            f"[cyan]cached[/]: the same content was checked with these gates as "
            f"{summary['version_checked']} (key {summary['key'][:12]}); --force checks again"
        )
    console.print(
        f"checked {summary['version_checked']}: {summary['checked']} = accepted {summary['accepted']}"
        f" + quarantined {summary['quarantined']}"
        f"  ({summary['warned']} warned, {summary['redacted']} redacted)"
    )
    for entry in summary.get("left_out", []):
        console.print(f"compared: {entry['why']}", markup=False)
    table = Table("gate", "reason", "blocked", "warned", "redacted", title="gates (examples per reason)")
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
    shape = report["gates"].get("format", {}).get("inferred")
    if shape:
        console.print(f"format: {report['gates']['format']['why']}", markup=False)
    near = report["gates"].get("near_duplicates")
    if near:
        console.print(f"near-duplicate clusters: {near['n_clusters']}")
    version = summary["version"]
    if summary["created_version"]:
        console.print(
            f"[green]new version[/] {version['ref']}  {version['content_hash'][:12]} (accepted examples)"
        )
    elif version:
        console.print(f"no change: every example passed; {version['ref']} is the accepted version")
    if summary["html"]:
        console.print(f"report: {summary['html']}")


def rejects(
    ref: Annotated[
        str, typer.Argument(help="NAME@VERSION that was checked (or the version a check produced).")
    ],
    reason: Annotated[
        str | None, typer.Option(help="Only rows with this reason, e.g. near_duplicate.")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="Only rows with this action: block (quarantined) or warn (kept).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows shown in the human output.")] = 50,
    json_output: JsonFlag = False,
) -> None:
    """Every example the latest check of a version flagged, blocked or warned, with all its reasons."""
    import pyarrow.parquet as pq

    from sftline.gates.rows import rows_from_table
    from sftline.record.queries import latest_gate_report, resolve

    if action not in (None, "block", "warn"):
        raise SftlineError(f"--action {action!r}: use block or warn")
    with open_workspace() as workspace, workspace.record.session() as session:
        version = resolve(session, ref)
        report = latest_gate_report(session, version)
        if report is None:
            raise SftlineError(f"{version.ref} has not been checked; run `sftline data check {version.ref}`")
        rows = (
            rows_from_table(pq.read_table(workspace.objects.open_path(report.rejects_object)))
            if report.rejects_object
            else []
        )
        checked_ref = report.checked_version.ref
    if reason:
        rows = [row for row in rows if any(r["reason"] == reason for r in row["reasons"])]
    if action:
        rows = [row for row in rows if row["action"] == action]
    if json_output:
        print_json({"checked": checked_ref, "report_id": report.id, "rows": rows})
        return
    table = Table(
        "example", "where", "action", "reasons", "detail", title=f"flagged by the check of {checked_ref}"
    )
    for row in rows[:limit]:
        table.add_row(
            row["example_id"],
            row["location"],
            row["action"],
            ", ".join(f"{r['gate']}/{r['reason']}" for r in row["reasons"]),
            "; ".join(r["detail"] for r in row["reasons"]),
        )
    console.print(table)
    if len(rows) > limit:
        console.print(f"... {len(rows) - limit} more (--limit or --json)")


def register(app: typer.Typer) -> None:
    app.command()(check)
    app.command()(rejects)
