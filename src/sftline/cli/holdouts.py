"""`sftline data split`, `sftline data gold freeze` and `sftline data mix`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.output import console, print_json

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
gold_app = typer.Typer(help="Gold sets: freeze one so it never changes.", no_args_is_help=True)


def split(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION to split.")],
    gold: Annotated[
        float, typer.Option(help="Share of examples in the gold set (stratified by label).")
    ] = 0.1,
    rolling_days: Annotated[
        float | None, typer.Option(help="Hold out the most recent N days (needs --time-field).")
    ] = None,
    time_field: Annotated[str | None, typer.Option(help="Tag holding each example's ISO time.")] = None,
    targeted: Annotated[
        list[str],
        typer.Option("--targeted", help="TAG=VALUE[:SHARE] slice to hold out (repeatable; share 0.2)."),
    ] = [],  # noqa: B006
    group_by: Annotated[
        str, typer.Option(help="near_duplicate, field:TAG or none: what must stay on one side.")
    ] = "near_duplicate",
    seed: Annotated[int, typer.Option(help="Seed of every choice; recorded.")] = 7,
    json_output: JsonFlag = False,
) -> None:
    """Split a version into NAME-train, NAME-gold, NAME-rolling and NAME-<slice> versions."""
    from sftline.data.holdouts import split_version
    from sftline.data.splits import SplitPlan, TargetedHoldout

    plan = SplitPlan(
        gold=gold,
        rolling_days=rolling_days,
        time_field=time_field,
        targeted=tuple(TargetedHoldout.parse(t) for t in targeted),
        group_by=group_by,
        seed=seed,
    )
    with open_workspace() as workspace, console.status(f"splitting {ref}"):
        result = split_version(workspace, ref, plan)
    if json_output:
        print_json(result)
        return
    console.print(
        f"split {result['source']} (seed {result['seed']}): {result['groups']} groups, "
        f"largest {result['largest_group']}"
    )
    _parts_table(result["parts"])
    for note in result["notes"]:
        console.print(f"  {note}", markup=False)


def _parts_table(parts: dict[str, Any]) -> None:
    table = Table("part", "version", "examples", "hash", "note")
    for part, info in parts.items():
        note = (
            "frozen gold (unchanged)"
            if info.get("frozen")
            else ("new" if info.get("created") else "unchanged")
        )
        table.add_row(
            part, info["version"], str(info["examples"]), (info.get("content_hash") or "")[:12], note
        )
    console.print(table)


@gold_app.command()
def freeze(
    name: Annotated[str, typer.Argument(help="The gold dataset, e.g. support-gold.")],
    json_output: JsonFlag = False,
) -> None:
    """Lock a gold set at its current version; changes are refused and train sets must not overlap it."""
    from sftline.data.holdouts import freeze_gold

    with open_workspace() as workspace:
        result = freeze_gold(workspace, name)
    if json_output:
        print_json(result)
        return
    verb = "froze" if result["created"] else "already frozen:"
    console.print(f"{verb} {result['gold']} ({result['content_hash'][:12]})")


def mix(
    sources: Annotated[
        list[str], typer.Option("--from", help="A source version (repeatable: rehearsal data).")
    ],
    weights: Annotated[
        str, typer.Option(help='e.g. "domain=banking:0.3,domain=travel:0.2,*:0.5"; dataset=NAME too.')
    ],
    total: Annotated[
        int | None, typer.Option(help="Examples in the mixture (default: all sources' size).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampling; recorded.")] = 7,
    name: Annotated[
        str | None, typer.Option(help="Dataset name of the mixture (default SOURCE-mix).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Sample a training set with fixed proportions per slice; report achieved vs requested."""
    from sftline.data.holdouts import mix_versions
    from sftline.data.mixtures import parse_weights

    components = parse_weights(weights)
    with open_workspace() as workspace:
        result = mix_versions(workspace, sources, components, total=total, seed=seed, name=name)
    if json_output:
        print_json(result)
        return
    version = result["version"]
    state = "new version" if result["created"] else "unchanged"
    console.print(f"{state} {version['ref']} {version['content_hash'][:12]}: {result['total']} examples")
    table = Table(
        "component", "weight", "available", "requested", "achieved", "share req.", "share got", "mode"
    )
    for row in result["components"]:
        table.add_row(
            row["component"],
            f"{row['weight']:g}",
            str(row["available"]),
            str(row["requested"]),
            str(row["achieved"]),
            f"{row['requested_share']:.1%}",
            f"{row['achieved_share']:.1%}",
            row["mode"] + (f" x{row['factor']:.2f}" if row["mode"] == "up-sampled" else ""),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(split)
    app.command()(mix)
    app.add_typer(gold_app, name="gold")
