"""The `sftline` command. Errors from the library print as one line; `--debug` adds the traceback."""

from __future__ import annotations

import os
import sys

# OpenMP's default spin-waiting makes every small torch op on a few shared CPU cores cost
# milliseconds (a MiniLM step ran 2.4x slower here); passive waiting is the better default for a
# CLI. It must be set before torch loads its OpenMP runtime; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sftline import __version__
from sftline.cli import check as check_cli
from sftline.cli import data as data_cli
from sftline.cli import evals as evals_cli
from sftline.cli import holdouts as holdouts_cli
from sftline.cli import models as models_cli
from sftline.cli import train as train_cli
from sftline.cli.context import state
from sftline.cli.output import console, err_console, print_json
from sftline.errors import SftlineError

app = typer.Typer(
    name="sftline",
    help="Supervised fine-tuning as a reproducible production line.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
check_cli.register(data_cli.app)
holdouts_cli.register(data_cli.app)
app.add_typer(data_cli.app, name="data")
app.add_typer(models_cli.app, name="models")
train_cli.register(app)
evals_cli.register(app)


def _version(value: bool) -> None:
    if value:
        console.print(f"sftline {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            "-C",
            help="Project folder (default: nearest sftline.yaml above the working directory).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    state.project_dir = project
    state.debug = debug or bool(os.environ.get("SFTLINE_DEBUG"))


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="Folder to create the project in.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder's name).")] = None,
    task: Annotated[str, typer.Option(help="chat or classify.")] = "chat",
    labels: Annotated[str | None, typer.Option(help="Comma-separated label set for the contract.")] = None,
    abstention: Annotated[str | None, typer.Option(help="The out-of-scope answer or label.")] = None,
    system_prompt: Annotated[
        str | None, typer.Option(help="The system prompt training and serving use (default for chat only).")
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(help="Base model to fine-tune (smollm2-135m-instruct, minilm-l6, or registered)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable output.")] = False,
) -> None:
    """Create a project: a commented sftline.yaml and the .sftline/ state folder."""
    from sftline.project_init import init_project

    label_list = [label.strip() for label in labels.split(",") if label.strip()] if labels else None
    project = init_project(
        folder,
        name=name,
        task=task,
        labels=label_list,
        abstention=abstention,
        base_model=base_model,
        system_prompt=system_prompt,
    )
    if json_output:
        print_json(
            {
                "project": project.config.project,
                "root": str(project.root),
                "database_url": project.database_url,
            }
        )
        return
    console.print(f"[green]created[/] project {project.config.project!r} in {project.root}")
    console.print("  sftline.yaml   the contract (edit it), .sftline/   record and objects")
    console.print("next: sftline data import FILE --name NAME")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; `SftlineError` becomes one line on stderr.

    Typer's standalone mode reports usage errors itself and exits; library errors come out
    of it as exceptions and are caught here, once.
    """
    state.reset()
    try:
        app(args=argv, prog_name="sftline")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except SftlineError as exc:
        if state.debug:
            err_console.print_exception()
        err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return 1
    return 0


def run() -> None:
    sys.exit(main())
