"""`sftline serve`: the OpenAI-compatible server (see sftline.serving)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sftline.cli.context import open_workspace
from sftline.cli.output import err_console, print_json


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    model: Annotated[
        str | None,
        typer.Option(
            help="A registered name to follow (default: model_name in sftline.yaml), or one model: "
            "NAME@N, a run, a base model or a model folder."
        ),
    ] = None,
    deployments: Annotated[
        Path | None, typer.Option(help="deployments.yaml: canary share, shadows, remote backends, limits.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the address as JSON when listening.")
    ] = False,
) -> None:
    """Serve the production version of the project's model (and its canary) behind an
    OpenAI-compatible API; a promotion or rollback takes effect without a restart."""
    import uvicorn

    from sftline.serving.app import Server, create_app
    from sftline.serving.config import load_deployments

    settings = load_deployments(deployments)
    with open_workspace() as workspace:
        server = Server(workspace, settings, model)
        app = create_app(server)
        url = f"http://{host}:{port}/v1"
        if json_output:
            print_json({"url": url, "model": server.router.name})
        else:
            err_console.print(f"serving {server.router.name} at {url} (Ctrl-C or SIGTERM drains and stops)")
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
        uvicorn.Server(config).run()


def register(app: typer.Typer) -> None:
    app.command(name="serve")(serve_command)
