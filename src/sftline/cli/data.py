"""`sftline data ...`: import, list, show, export, versions, diff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.output import console, print_json, progress_bar
from sftline.errors import ImportInputError

app = typer.Typer(help="Import, inspect, export and compare dataset versions.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
QUARANTINE_SHOWN = 10  # bad records listed in the human summary (all of them are in --json)


def _parse_tags(tags: list[str]) -> dict[str, str]:
    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ImportInputError(f"--tag {tag!r}: expected KEY=VALUE, e.g. --tag domain=banking")
        parsed[key.strip()] = value.strip()
    return parsed


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="The data file: .jsonl, .json, .csv, .tsv or .parquet.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name, e.g. support.")],
    format: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="auto, chat, prompt-completion, alpaca, classification or pairs."
        ),
    ] = "auto",
    text_field: Annotated[
        str | None, typer.Option(help="Classification: the column with the input text.")
    ] = None,
    label_field: Annotated[
        str | None, typer.Option(help="Classification: the column with the label.")
    ] = None,
    id_field: Annotated[str, typer.Option(help="Field holding a record's own id, if any.")] = "id",
    tag: Annotated[
        list[str], typer.Option("--tag", help="KEY=VALUE tag for every example (repeatable).")
    ] = [],  # noqa: B006
    tag_field: Annotated[
        list[str], typer.Option(help="A field whose value becomes a tag (repeatable).")
    ] = [],  # noqa: B006
    label_groups: Annotated[
        list[str],
        typer.Option(help="TAG=FILE.json: tag each example with the group of its label (repeatable)."),
    ] = [],  # noqa: B006
    split: Annotated[
        list[str],
        typer.Option(
            "--split", help="JSON documents of one array per split: import only these (repeatable)."
        ),
    ] = [],  # noqa: B006
    append: Annotated[
        bool, typer.Option(help="Add to the head version instead of replacing its content.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Import a file as a new version of a dataset; bad records are quarantined with reasons."""
    from sftline.data.formats import FormatOptions
    from sftline.data.importer import ImportOptions, load_label_groups
    from sftline.data.ingest import ingest

    groups = {}
    for spec in label_groups:
        tag_name, sep, file_name = spec.partition("=")
        if not sep:
            raise ImportInputError(
                f"--label-groups {spec!r}: expected TAG=FILE.json, e.g. domain=domains.json"
            )
        groups[tag_name] = load_label_groups(Path(file_name))
    options = ImportOptions(
        format=format,
        fields=FormatOptions(
            text_field=text_field, label_field=label_field, id_field=id_field, tag_fields=tuple(tag_field)
        ),
        tags=_parse_tags(tag),
        label_groups=groups,
        splits=tuple(split),
    )
    with open_workspace() as workspace, progress_bar(f"importing {path.name}", quiet=json_output) as update:
        outcome = ingest(workspace, name, path, options, append=append, progress=update)
    summary = outcome.summary()
    if json_output:
        print_json(summary)
    else:
        _print_import(summary, outcome.result.quarantined)
    if outcome.commit is None:
        raise ImportInputError(
            f"{path}: no record was accepted ({summary['quarantined']} quarantined); nothing versioned"
        )


def _print_import(summary: dict[str, Any], quarantined: list[Any]) -> None:
    if summary["detected"]:
        console.print(f"detected format: [bold]{summary['detected']}[/]")
    console.print(
        f"read {summary['read']} = accepted {summary['accepted']} + quarantined {summary['quarantined']}"
        + (f"  (blank lines skipped: {summary['blank_lines']})" if summary["blank_lines"] else "")
    )
    if summary["skipped_splits"]:
        console.print(f"not imported (other splits): {summary['skipped_splits']}")
    if summary["reasons"]:
        table = Table("reason", "count", title="quarantined")
        for reason, count in summary["reasons"].items():
            table.add_row(reason, str(count))
        console.print(table)
        for record in quarantined[:QUARANTINE_SHOWN]:
            console.print(f"  {record.describe()}", markup=False)
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
    from sqlalchemy import select

    from sftline.data.versions import head, version_summary
    from sftline.record.schema import Dataset

    with open_workspace() as workspace, workspace.record.session() as session:
        rows: list[dict[str, Any]] = []
        for dataset in session.scalars(select(Dataset).order_by(Dataset.name)):
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
    head_rows: Annotated[int, typer.Option("--head", help="Show the first N examples.")] = 0,
    json_output: JsonFlag = False,
) -> None:
    """Show a version: counts, slices, labels, provenance and the first examples."""
    from sftline.data.versions import load_examples, resolve, version_summary

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
    return data


@app.command()
def versions(
    name: Annotated[str, typer.Argument(help="Dataset name.")], json_output: JsonFlag = False
) -> None:
    """List every version of a dataset with its changelog."""
    from sftline.data.versions import list_versions, version_summary

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
    from sftline.data.versions import load_examples, resolve

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
    from sftline.data.versions import load_examples, resolve

    with open_workspace() as workspace, workspace.record.session() as session:
        version = resolve(session, ref)
        version_ref, examples = version.ref, load_examples(workspace, version)
    written = export_examples(examples, out)
    if json_output:
        print_json({"ref": version_ref, "out": str(out), "examples": written})
        return
    console.print(f"wrote {written} examples of {version_ref} to {out}")
