"""`sftline doctor`, `sftline gc`, `sftline data purge` and `sftline data erasures`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sftline.cli.context import open_workspace, state
from sftline.cli.output import console, err_console, print_json, progress_bar
from sftline.errors import ErasureError, SftlineError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]


def doctor_command(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Remove orphans idle for an hour (never an object the record names) and mark stale "
            "running rows interrupted.",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Check the record against the project's files: object hashes, orphans, interrupted runs,
    run and model folders, the schema revision.

    Exit status: 0 when no problem is left, 1 when one is (after --repair: one it could not fix)."""
    from sftline.config import Project
    from sftline.stations.doctor import doctor

    project = Project.find(state.project_dir)
    with progress_bar("hashing objects", quiet=json_output) as update:
        report = doctor(project, repair=repair, progress=update)
    if json_output:
        print_json(report.as_json())
    else:
        _print_doctor(report)
    raise typer.Exit(report.exit_code)


def _print_doctor(report: Any) -> None:
    checked = ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in report.checked.items())
    schema = report.schema
    console.print(
        f"schema: record {schema['record']}, sftline {schema['sftline']}; checked {checked or 'nothing'}"
    )
    table = Table("kind", "path", "detail", "repair", show_edge=False, pad_edge=False)
    for finding in report.findings:
        style = "dim" if not finding.problem else ("green" if finding.repaired else "red")
        action = "done" if finding.repaired else (finding.repair or "")
        table.add_row(f"[{style}]{finding.kind}[/]", escape(finding.path), escape(finding.detail), action)
    if report.findings:
        console.print(table)
    left = len(report.problems)
    if not any(f.problem for f in report.findings):
        console.print("[green]no problems found[/]")
    elif left:
        fixable = not report.repair and any(f.repair for f in report.problems)
        hint = "; --repair fixes the safe ones" if fixable else ""
        console.print(f"[red]{left} problem(s)[/]{hint}")
    else:
        console.print(f"[green]no problem left[/] ({sum(f.repaired for f in report.findings)} repaired)")


def gc_command(
    apply: Annotated[bool, typer.Option("--apply", help="Remove what the dry run lists.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """List what the project can do without (old checkpoints of finished runs, unreferenced objects,
    leftovers of killed writers, unused cached models) and the space it takes; --apply removes it."""
    from sftline.stations.gc import apply_gc, plan_gc

    with open_workspace() as workspace:
        plan = plan_gc(workspace)
        if apply:
            apply_gc(plan)
    if json_output:
        print_json(plan.as_json(applied=apply))
    else:
        _print_gc(plan, applied=apply)
    if plan.failed:
        raise SftlineError(f"{len(plan.failed)} item(s) could not be removed (see above)")


def _print_gc(plan: Any, *, applied: bool) -> None:
    data = plan.as_json(applied=applied)
    if data["removals"]:
        table = Table("kind", "path", "size", "detail", show_edge=False, pad_edge=False)
        for row in data["removals"]:
            table.add_row(row["kind"], escape(row["path"]), human_bytes(row["bytes"]), escape(row["detail"]))
        console.print(table)
    for row in data["kept"]:
        console.print(f"[dim]kept {row['kind']} {escape(row['path'])}: {escape(row['detail'])}[/]")
    for row in data["failed"]:
        err_console.print(f"[red]not removed[/] {escape(row['path'])}: {escape(row['error'])}")
    total = human_bytes(data["bytes"])
    if not data["removals"]:
        console.print("nothing to remove")
    elif applied:
        console.print(f"[green]removed[/] {data['removed']} item(s), {total} freed")
    else:
        count = len(data["removals"])
        console.print(f"would free {total} ({count} item(s)); `sftline gc --apply` removes them")


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def purge_command(
    match: Annotated[
        list[str],
        typer.Option(
            "--match",
            help="FIELD=VALUE (equals) or FIELD~=TEXT (contains, any case); FIELD is id, label, text "
            "(all of an example's content) or a tag key. Repeatable: an example matching any is erased.",
        ),
    ],
    dataset: Annotated[
        list[str], typer.Option("--dataset", help="Only this dataset (repeatable; default: every dataset).")
    ] = [],  # noqa: B006
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, for the record (e.g. the request's reference).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be erased; write nothing.")
    ] = False,
    refreeze_gold: Annotated[
        bool,
        typer.Option(
            "--refreeze-gold",
            help="Also rewrite frozen gold sets and freeze the new version (evaluations on the old one "
            "stop being comparable with new ones).",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Erase a data subject's examples: write each dataset's next version without them, record the
    erasure, and list the runs made from them (to retrain)."""
    from sftline.data.erasure import ExampleMatch
    from sftline.stations.purge import purge

    matches = [ExampleMatch.parse(spec) for spec in match]
    with open_workspace() as workspace, progress_bar("searching versions", quiet=json_output) as update:
        report = purge(
            workspace,
            matches,
            datasets=dataset,
            reason=reason,
            dry_run=dry_run,
            refreeze_gold=refreeze_gold,
            progress=update,
        )
    if json_output:
        print_json(report.as_json())
    else:
        _print_purge(report)
    if report.blocked:
        names = ", ".join(d.dataset for d in report.blocked)
        raise ErasureError(
            f"not purged: {names} (frozen gold set); run again with --refreeze-gold to write it "
            "without the matches and freeze that version"
        )


def _print_purge(report: Any) -> None:
    table = Table("dataset", "searched", "examples", "erased", "left", "status", "written", show_edge=False)
    for d in report.datasets:
        table.add_row(
            escape(d.dataset),
            d.source,
            str(d.before),
            str(d.removed),
            str(d.after),
            d.status,
            d.written or "",
        )
    console.print(table)
    done = "would erase" if report.dry_run else "erased"
    where = f" (erasure {report.erasure})" if report.erasure is not None else ""
    erased = sum(d.removed for d in report.datasets if d.status != "blocked")
    console.print(f"{done} {erased} example(s){where}")
    if report.runs:
        console.print("[bold]runs made from them (retrain these):[/]")
        for run in report.runs:
            console.print(f"  {run['run']}  {run['status']}  {escape(run['via'])}")
    if report.evaluations:
        names = ", ".join(e["evaluation"] for e in report.evaluations)
        console.print(f"[bold]evaluations whose stored outputs hold their text:[/] {names}")
    if report.still_holding:
        console.print(f"[bold]versions that still hold them:[/] {', '.join(report.still_holding)}")
    for note in report.as_json()["residue"]:
        console.print(f"[dim]note: {escape(note)}[/]")


def erasures_command(json_output: JsonFlag = False) -> None:
    """The erasures carried out in this project (what was matched is shown as hashes)."""
    from sftline.stations.purge import erasures

    with open_workspace() as workspace:
        rows = erasures(workspace)
    if json_output:
        print_json(rows)
        return
    table = Table("erasure", "at", "matches", "erased", "written", "reason", show_edge=False)
    for row in rows:
        matches = ", ".join(f"{m['field']}{m['op']}sha256:{m['value_sha256'][:12]}" for m in row["matches"])
        written = ", ".join(d["written"] for d in row["datasets"] if d.get("written"))
        reason = escape(row["reason"] or "")
        table.add_row(str(row["erasure"]), row["at"][:19], matches, str(row["removed"]), written, reason)
    console.print(table)


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    app.command(name="doctor")(doctor_command)
    app.command(name="gc")(gc_command)
    data_app.command(name="purge")(purge_command)
    data_app.command(name="erasures")(erasures_command)
