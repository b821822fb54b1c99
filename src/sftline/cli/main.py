"""The `sftline` command. Every error prints as one line; `--debug` adds the traceback."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
import threading

# OpenMP's default spin-waiting makes every small torch op on a few shared CPU cores cost
# milliseconds (a MiniLM step ran 2.4x slower here); passive waiting is the better default for a
# CLI. It must be set before torch loads its OpenMP runtime; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape
from rich.traceback import Traceback

from sftline import __version__
from sftline.cli import check as check_cli
from sftline.cli import config as config_cli
from sftline.cli import data as data_cli
from sftline.cli import evals as evals_cli
from sftline.cli import holdouts as holdouts_cli
from sftline.cli import keys as keys_cli
from sftline.cli import line as line_cli
from sftline.cli import maintenance as maintenance_cli
from sftline.cli import models as models_cli
from sftline.cli import monitor as monitor_cli
from sftline.cli import output
from sftline.cli import serve as serve_cli
from sftline.cli import train as train_cli
from sftline.cli import ui as ui_cli
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
app.add_typer(config_cli.app, name="config")
app.add_typer(keys_cli.app, name="keys")
train_cli.register(app)
evals_cli.register(app)
line_cli.register(app)
serve_cli.register(app)
monitor_cli.register(app)
ui_cli.register(app)
maintenance_cli.register(app, data_cli.app)


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
    """Run the CLI and return its exit code. Any error becomes one line on stderr and exit code 1
    (`--debug` adds the traceback); Ctrl-C exits 130.

    Typer's standalone mode reports usage errors itself and exits (a Ctrl-C it turns into exit
    130, silently); every other error comes out of it as an exception and is caught here, once.
    """
    state.reset()
    output.json_printed = False
    state.json_errors = "--json" in (sys.argv[1:] if argv is None else argv)
    try:
        app(args=argv, prog_name="sftline")
    except SystemExit as exc:
        interrupt = _interrupt_behind(exc)
        if interrupt is not None:
            return _fail("interrupted", interrupt, code=130)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt as exc:
        return _fail("interrupted", exc, code=130)
    except Exception as exc:  # the CLI boundary: whatever went wrong, the user gets one line
        return _fail(error_message(exc), exc)
    return 0


def error_message(exc: Exception) -> str:
    """The line an error prints as, after `error: `."""
    if isinstance(exc, SftlineError):
        return str(exc)
    if _is_out_of_memory(exc):
        allocation = re.search(r"Tried to allocate [\d.]+ \w+", str(exc))
        wanted = f" ({allocation.group(0).replace('Tried', 'tried')})" if allocation else ""
        return (
            f"out of memory{wanted}: lower --batch-tokens (and raise --grad-accum to keep the tokens "
            "per optimizer step) when training, or --batch-size when evaluating"
        )
    if isinstance(exc, OSError):
        reason = exc.strerror or _one_line(str(exc))
        if exc.filename is None:
            return f"{reason} ({type(exc).__name__}; rerun with --debug for the traceback)"
        target = repr(str(exc.filename))
        if exc.filename2 is not None:
            target += f" -> {str(exc.filename2)!r}"
        return f"cannot access {target}: {reason}"
    return (
        f"internal error: {type(exc).__name__}: {_one_line(str(exc))} (rerun with --debug for the traceback)"
    )


def _is_out_of_memory(exc: Exception) -> bool:
    if isinstance(exc, MemoryError):
        return True
    # torch raises its own out-of-memory error (CUDA and CPU alike), and only once it is loaded.
    torch = sys.modules.get("torch")
    torch_oom = getattr(torch, "OutOfMemoryError", None)
    return isinstance(torch_oom, type) and isinstance(exc, torch_oom)


def _interrupt_behind(stop: SystemExit) -> KeyboardInterrupt | None:
    """The Ctrl-C behind an exit, when typer turned one into it."""
    cause = stop.__cause__ or stop.__context__
    for _ in range(8):  # typer chains SystemExit <- Exit <- KeyboardInterrupt; a few links suffice
        if cause is None or isinstance(cause, KeyboardInterrupt):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _fail(message: str, exc: BaseException, *, code: int = 1) -> int:
    if state.debug:
        err_console.print(Traceback.from_exception(type(exc), exc, exc.__traceback__))
    err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    if state.json_errors and not output.json_printed:  # a script reading stdout gets JSON too
        print_json({"error": message, "exit_code": code})
    return code


def run() -> None:
    exit_process(main())


def exit_process(code: int) -> NoReturn:
    """End the process with `code` the way the interpreter would, minus its finalization.

    Arrow's thread pools can abort a process that has finished its work: at finalization a
    pool thread still joinable is destroyed, and libstdc++ calls std::terminate ("terminate
    called without an active exception", exit -6; apache/arrow#34314). Here it took 3 of 240
    short runs that read a version's Parquet with 12 processes on 2 cores, and a CI run. So the
    CLI does what finalization would do for it (wait for non-daemon threads, run the atexit
    handlers: logging, Ray, trackers; flush stdout and stderr) and then leaves with os._exit,
    before any native destructor runs.
    """
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more reaches it
            stream.flush()
    os._exit(code)
