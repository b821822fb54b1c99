"""`sftline data ...`: import, list, show, export, versions, diff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.options import Overrides, settings_command
from sftline.cli.output import console, print_json, progress_bar
from sftline.data.importer import describe_quarantined
from sftline.data.settings import ImportSettings
from sftline.errors import ImportInputError

app = typer.Typer(help="Import, inspect, export and compare dataset versions.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
QUARANTINE_SHOWN = 10  # bad records listed in the human summary (all of them are in --json)


@app.command("import")
@settings_command(ImportSettings, arguments=("path",))
def import_(
    overrides: Overrides,
    force: Annotated[
        bool, typer.Option("--force", help="Import again though this file was imported with these options.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Import a file or a dataset folder as a new version of a dataset; bad records are quarantined
    with reasons."""
    from sftline.config import load_settings
    from sftline.stations.ingest import import_station

    settings = load_settings(ImportSettings, None, overrides, "import options")
    with (
        open_workspace() as workspace,
        progress_bar(f"importing {settings.path.name}", quiet=json_output) as update,
    ):
        result = import_station(workspace, settings, root=Path.cwd(), force=force, progress=update)
    summary = {**result.result, "station": result.status, "key": result.key}
    if result.status == "cached":
        summary["created_version"] = False  # this command made nothing new
    if json_output:
        print_json(summary)
    else:
        _print_import(summary)
    if summary["version"] is None:
        quarantined = summary["quarantined"]
        raise ImportInputError(
            f"{settings.path}: no record was accepted ({quarantined} quarantined); nothing versioned"
        )


def _print_import(summary: dict[str, Any]) -> None:
    if summary["station"] == "cached":
        console.print(
            f"[cyan]cached[/]: this file was imported with these options before (key {summary['key'][:12]})"
        )
    if summary["detected"]:
        console.print(f"detected format: [bold]{summary['detected']}[/]")
    console.print(
        f"read {summary['read']} = accepted {summary['accepted']} + quarantined {summary['quarantined']}"
        + (f"  (blank lines skipped: {summary['blank_lines']})" if summary["blank_lines"] else "")
    )
    if summary["skipped_splits"]:
        console.print(f"not imported (other splits): {summary['skipped_splits']}")
    if summary.get("unkept_keys"):
        kept_not = ", ".join(f"{key} ({count})" for key, count in summary["unkept_keys"].items())
        console.print(f"keys not kept (records that carry them): {kept_not}", markup=False)
    if summary["reasons"]:
        table = Table("reason", "count", title="quarantined")
        for reason, count in summary["reasons"].items():
            table.add_row(reason, str(count))
        console.print(table)
        quarantined = summary["quarantine"]
        for record in quarantined[:QUARANTINE_SHOWN]:
            console.print(f"  {describe_quarantined(record)}", markup=False)
        if len(quarantined) > QUARANTINE_SHOWN:
            console.print(f"  ... and {len(quarantined) - QUARANTINE_SHOWN} more (see --json)")
    version = summary["version"]
    if version is None:
        return
    if summary["created_version"]:
        diff = summary["diff"]
        change = f" ({version['changelog']['summary']})" if diff else ""
        console.print(f"[green]new version[/] {version['ref']}  {version['content_hash'][:12]}{change}")
    else:
        console.print(
            f"unchanged: content equals {version['ref']}  {version['content_hash'][:12]}; no new version"
        )


@app.command("list")
def list_(json_output: JsonFlag = False) -> None:
    """List datasets with their head versions."""
    from sftline.data.versions import version_summary
    from sftline.record.queries import datasets, head

    with open_workspace() as workspace, workspace.record.session() as session:
        rows: list[dict[str, Any]] = []
        for dataset in datasets(session):
            version = head(session, dataset)
            rows.append(
                {
                    "name": dataset.name,
                    "head": version_summary(version) if version else None,
                    "versions": len(dataset.versions),
                }
            )
    if json_output:
        print_json(rows)
        return
    table = Table("dataset", "head", "hash", "examples", "versions", "created")
    for row in rows:
        h = row["head"]
        table.add_row(
            row["name"],
            f"v{h['version']}" if h else "-",
            h["content_hash"][:12] if h else "-",
            str(h["examples"]) if h else "0",
            str(row["versions"]),
            h["created_at"][:19] if h else "",
        )
    console.print(
        table if rows else "no datasets yet; import one with `sftline data import FILE --name NAME`"
    )


def _slice_table(stats: dict[str, Any], title: str) -> Table:
    table = Table("slice", "value", "examples", "share", title=title)
    total = sum(stats["kinds"].values()) or 1
    for key, values in stats["tags"].items():
        tagged = sum(values.values())
        for value, count in values.items():
            table.add_row(key, value, str(count), f"{count / total:.1%}")
        if tagged < total:
            table.add_row(key, "(untagged)", str(total - tagged), f"{(total - tagged) / total:.1%}")
    return table


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION (v2, a hash prefix, latest).")],
    head_rows: Annotated[int, typer.Option("--head", min=0, help="Show the first N examples.")] = 0,
    json_output: JsonFlag = False,
) -> None:
    """Show a version: counts, slices, labels, provenance and the first examples."""
    from sftline.data.versions import version_summary
    from sftline.record.queries import resolve
    from sftline.stations.versions import load_examples

    with open_workspace() as workspace, workspace.record.session() as session:
        version = resolve(session, ref)
        summary = version_summary(version)
        examples = load_examples(workspace, version)[:head_rows] if head_rows else []
    summary["head"] = [_example_json(e) for e in examples]
    if json_output:
        print_json(summary)
        return
    console.print(f"[bold]{summary['ref']}[/]  {summary['content_hash']}")
    console.print(
        f"{summary['examples']} examples, created by {summary['created_by']} at {summary['created_at'][:19]}"
        + (f", parent {summary['parent']}" if summary["parent"] else "")
    )
    console.print(
        f"changelog: {summary['changelog'].get('note', '')}: {summary['changelog'].get('summary', '')}"
    )
    for source in summary["provenance"].get("sources", []):
        console.print(
            f"source: {source['path']} ({source['format']}, sha256 {source['sha256'][:12]})", markup=False
        )
    stats = summary["stats"]
    if stats["tags"]:
        console.print(_slice_table(stats, "slices"))
    if stats["labels"]:
        labels = list(stats["labels"].items())
        shown = ", ".join(f"{label} {count}" for label, count in labels[:12])
        more = f", ... ({len(labels)} labels)" if len(labels) > 12 else f" ({len(labels)} labels)"
        console.print(f"labels: {shown}{more}", markup=False)
    for example in examples:
        console.print_json(json.dumps(_example_json(example), ensure_ascii=False))


def _example_json(example: Any) -> dict[str, Any]:
    data = {"id": example.id, **{k: v for k, v in example.content().items() if v not in (None, {}, [])}}
    data["provenance"] = example.provenance.location
    # the same place, structured, as in `data rejects --json`
    place = example.provenance
    data.update(file=place.source, line=place.line, pointer=place.pointer)
    return data


@app.command()
def versions(
    name: Annotated[str, typer.Argument(help="Dataset name.")], json_output: JsonFlag = False
) -> None:
    """List every version of a dataset with its changelog."""
    from sftline.data.versions import version_summary
    from sftline.record.queries import list_versions

    with open_workspace() as workspace, workspace.record.session() as session:
        rows = [version_summary(v) for v in list_versions(session, name)]
    if json_output:
        print_json(rows)
        return
    table = Table("version", "hash", "examples", "parent", "by", "created", "changelog")
    for row in rows:
        table.add_row(
            f"v{row['version']}",
            row["content_hash"][:12],
            str(row["examples"]),
            row["parent"] or "-",
            row["created_by"],
            row["created_at"][:19],
            f"{row['changelog'].get('note', '')}: {row['changelog'].get('summary', '')}",
        )
    console.print(table)


@app.command()
def diff(
    before: Annotated[str, typer.Argument(help="NAME@VERSION to compare from.")],
    after: Annotated[str, typer.Argument(help="NAME@VERSION to compare to.")],
    limit: Annotated[int, typer.Option(help="Examples listed per kind of change in the human output.")] = 20,
    json_output: JsonFlag = False,
) -> None:
    """Examples added, removed and changed between two versions."""
    from sftline.data.diff import diff_examples
    from sftline.record.queries import resolve
    from sftline.stations.versions import load_examples

    with open_workspace() as workspace, workspace.record.session() as session:
        old, new = resolve(session, before), resolve(session, after)
        old_ref, new_ref = old.ref, new.ref
        result = diff_examples(load_examples(workspace, old), load_examples(workspace, new))
    data = {
        "before": old_ref,
        "after": new_ref,
        **result.counts(),
        "added_examples": [_example_json(e) for e in result.added],
        "removed_examples": [_example_json(e) for e in result.removed],
        "changed_examples": [
            {"before": _example_json(c.before), "after": _example_json(c.after), "fields": c.fields}
            for c in result.changed
        ],
    }
    if json_output:
        print_json(data)
        return
    console.print(f"{old_ref} -> {new_ref}: {result.summary()}")
    for sign, examples in (("+", result.added), ("-", result.removed)):
        for example in examples[:limit]:
            console.print(
                f" {sign} {example.id}  {example.provenance.location}  {_short(example)}", markup=False
            )
    for change in result.changed[:limit]:
        console.print(
            f" ~ {change.after.provenance.location}  fields: {', '.join(change.fields)}", markup=False
        )
        console.print(f"     - {_short(change.before)}", markup=False)
        console.print(f"     + {_short(change.after)}", markup=False)


def _short(example: Any, width: int = 90) -> str:
    text = f"{example.prompt} => {example.target}".replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


@app.command()
def export(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="FILE.jsonl or FILE.parquet.")],
    json_output: JsonFlag = False,
) -> None:
    """Write a version to JSONL (OpenAI chat format, or text/label) or Parquet."""
    from sftline.data.export import export_examples
    from sftline.record.queries import resolve
    from sftline.stations.versions import load_examples

    with open_workspace() as workspace, workspace.record.session() as session:
        version = resolve(session, ref)
        version_ref, examples = version.ref, load_examples(workspace, version)
    written = export_examples(examples, out)
    if json_output:
        print_json({"ref": version_ref, "out": str(out), "examples": written})
        return
    console.print(f"wrote {written} examples of {version_ref} to {out}")
