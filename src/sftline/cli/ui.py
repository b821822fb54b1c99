"""`sftline ui`: the dashboard (see sftline.ui)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sftline.cli.context import open_workspace, state
from sftline.cli.output import err_console, print_json


def ui_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project", help="Project folder (default: nearest sftline.yaml above the working directory)."
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the address as JSON when listening.")
    ] = False,
) -> None:
    """The dashboard: the line, data, runs, evaluations, registry and serving, read-only; promote
    and roll back after signing in with an admin API key (`sftline keys add NAME --scope admin`)."""
    import uvicorn

    from sftline.ui.app import create_app

    if project is not None:
        state.project_dir = project
    with open_workspace() as workspace:
        app = create_app(workspace)
        url = f"http://{host}:{port}/"
        if json_output:
            print_json({"url": url, "project": str(workspace.project.root)})
        else:
            err_console.print(f"dashboard of {workspace.project.root} at {url} (Ctrl-C stops)")
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()


def register(app: typer.Typer) -> None:
    app.command(name="ui")(ui_command)
