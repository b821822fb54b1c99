"""`sftline config check`: validate sftline.yaml without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from sftline.cli.context import state
from sftline.cli.output import console, print_json
from sftline.config import ProjectConfig, find_config_file, load_config
from sftline.errors import ConfigError

app = typer.Typer(help="The project's sftline.yaml.", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]


@app.command("check")
def check(json_output: JsonFlag = False) -> None:
    """Validate sftline.yaml and list every problem at once; exit 1 when there is any."""
    path = find_config_file(state.project_dir)
    try:
        config = load_config(path)
    except ConfigError as exc:
        if json_output:
            print_json(
                {"file": str(path), "ok": False, "problems": exc.problems, "summary": None, "config": None}
            )
        else:
            console.print(str(exc), markup=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    summary = config_summary(config)
    if json_output:
        print_json(
            {
                "file": str(path),
                "ok": True,
                "problems": [],
                "summary": summary,
                "config": config.model_dump(mode="json", by_alias=True),
            }
        )
        return
    console.print(f"{escape(_shown(path))}: [green]ok[/]", soft_wrap=True)
    named = "" if config.model_name else " (the project's name)"
    console.print(
        f"  task: {summary['task']}  base model: {summary['base_model'] or 'none set'}  "
        f"model name: {summary['model_name']}{named}",
        markup=False,
        soft_wrap=True,
    )
    console.print(
        f"  output: {_output(config)}  gates: {summary['gates_on']} on, {summary['gates_off']} off  "
        f"release criteria: {summary['release_criteria']}",
        markup=False,
        soft_wrap=True,
    )


def config_summary(config: ProjectConfig) -> dict[str, Any]:
    """What a valid sftline.yaml sets up, in a few numbers."""
    actions = [settings.action for _, settings in config.gates]
    labels = config.contract.output.labels
    return {
        "project": config.project,
        "task": config.contract.task,
        "base_model": config.base_model,
        "model_name": config.effective_model_name,
        "output_kind": config.contract.output.kind,
        "labels": len(labels) if labels is not None else None,
        "gates_on": sum(action != "off" for action in actions),
        "gates_off": sum(action == "off" for action in actions),
        "release_criteria": len(config.release.criteria),
    }


def _output(config: ProjectConfig) -> str:
    output = config.contract.output
    if output.kind != "labels":
        return output.kind
    return f"{len(output.labels)} labels" if output.labels else "labels from the data"


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
