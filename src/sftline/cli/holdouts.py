"""`sftline data split`, `sftline data gold freeze` and `sftline data mix`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.options import Overrides, settings_command
from sftline.cli.output import console, print_json
from sftline.data.settings import MixSettings, SplitSettings

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
gold_app = typer.Typer(help="Gold sets: freeze one so it never changes.", no_args_is_help=True)


@settings_command(SplitSettings, arguments=("dataset",))
def split(
    overrides: Overrides,
    force: Annotated[bool, typer.Option("--force", help="Split again though this split was made.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Split a version into NAME-train, NAME-gold, NAME-rolling and NAME-<slice> versions."""
    from sftline.config import load_settings
    from sftline.stations.split import split_station

    settings = load_settings(SplitSettings, None, overrides, "split options")
    with open_workspace() as workspace, console.status(f"splitting {settings.dataset}"):
        station = split_station(workspace, settings, force=force)
    result = {**station.result, "station": station.status, "key": station.key}
    if station.status == "cached":  # this command made nothing new
        result["parts"] = {name: {**part, "created": False} for name, part in result["parts"].items()}
    if json_output:
        print_json(result)
        return
    cached = f" [cyan]cached[/] (key {station.key[:12]})" if station.status == "cached" else ""
    console.print(
        f"split {result['source']} (seed {result['seed']}): {result['groups']} groups, "
        f"largest {result['largest_group']}{cached}"
    )
    _parts_table(result["parts"])
    for note in result["notes"]:
        console.print(f"  {note}", markup=False)
    if "frozen" in result:
        console.print(f"froze {result['frozen']['gold']} ({result['frozen']['content_hash'][:12]})")


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
    from sftline.stations.split import freeze_gold

    with open_workspace() as workspace:
        result = freeze_gold(workspace, name)
    if json_output:
        print_json(result)
        return
    verb = "froze" if result["created"] else "already frozen:"
    console.print(f"{verb} {result['gold']} ({result['content_hash'][:12]})")


@settings_command(MixSettings)
def mix(
    overrides: Overrides,
    force: Annotated[bool, typer.Option("--force", help="Mix again though this mixture was made.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Sample a training set with fixed proportions per slice; report achieved vs requested."""
    from sftline.config import load_settings
    from sftline.stations.mix import mix_station

    settings = load_settings(MixSettings, None, overrides, "mix options")
    with open_workspace() as workspace:
        station = mix_station(workspace, settings, force=force)
    result = {**station.result, "station": station.status, "key": station.key}
    if station.status == "cached":
        result["created"] = False
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
