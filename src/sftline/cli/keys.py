"""`sftline keys ...`: the API keys `sftline serve` accepts."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.output import console, err_console, print_json
from sftline.serving.keys import create_key, list_keys, revoke

app = typer.Typer(
    help="API keys for `sftline serve`: add one (shown once), list them, revoke one.",
    no_args_is_help=True,
)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="Who holds the key; the registry's history names it.")],
    scope: Annotated[
        Literal["serve", "admin"],
        typer.Option(help="serve: inference only; admin: also the registry's changes through the server."),
    ] = "serve",
    json_output: JsonFlag = False,
) -> None:
    """Make a new key. It is printed once and only its sha256 is recorded: keep it now."""
    with open_workspace() as workspace:
        key = create_key(workspace, name, scope)
    if json_output:
        print_json({"name": name, "key": key, "scope": scope})
        return
    console.print(f"[green]added[/] API key {name} ({scope}):")
    console.print(key, markup=False, soft_wrap=True)
    err_console.print(
        "shown once: only its sha256 is recorded. A lost key cannot be shown again; "
        f"revoke it (`sftline keys revoke {name}`) and add another.",
        markup=False,
        soft_wrap=True,
    )


@app.command("list")
def list_(json_output: JsonFlag = False) -> None:
    """Every key's name, scope and dates, revoked ones included (never a key or its hash)."""
    with open_workspace() as workspace:
        entries = list_keys(workspace)
    if json_output:
        print_json([entry.as_json() for entry in entries])
        return
    if not entries:
        console.print("no API keys yet: `sftline keys add NAME`")
        return
    table = Table("name", "scope", "created", "revoked", title="API keys")
    for entry in entries:
        revoked = f"[red]{entry.revoked_at:%Y-%m-%d %H:%M}[/]" if entry.revoked_at else ""
        table.add_row(entry.name, entry.scope, f"{entry.created_at:%Y-%m-%d %H:%M}", revoked)
    console.print(table)


@app.command("revoke")
def revoke_(
    name: Annotated[str, typer.Argument(help="The key's name (`sftline keys list`).")],
    json_output: JsonFlag = False,
) -> None:
    """Revoke a key: the server refuses it from now on (after its short cache of verified keys)."""
    with open_workspace() as workspace:
        entry = revoke(workspace, name)
    if json_output:
        print_json(entry.as_json())
        return
    console.print(
        f"[green]revoked[/] API key {entry.name} ({entry.scope}), at {entry.as_json()['revoked_at']}"
    )
