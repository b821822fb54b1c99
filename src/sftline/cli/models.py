"""`sftline models ...`: the embedded base models and registered local folders."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.output import console, err_console, print_json

if TYPE_CHECKING:
    from sftline.models import MaterialisedModel

app = typer.Typer(
    help="Base models: list, pull the embedded defaults, register local folders.", no_args_is_help=True
)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]


def _model_json(model: MaterialisedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "kind": model.kind,
        "path": str(model.path),
        "source": model.source,
        "content_hash": model.content_hash,
        "n_parameters": model.n_parameters,
        "files": len(model.files),
    }


@app.command("list")
def list_(json_output: JsonFlag = False) -> None:
    """The embedded defaults and every model registered in this project."""
    from sftline.models import EMBEDDED
    from sftline.record.queries import base_models

    with open_workspace() as workspace, workspace.record.session() as session:
        registered = {e.name: e for e in base_models(session)}
        rows = []
        for name, entry in EMBEDDED.items():
            saved = registered.pop(name, None)
            rows.append(
                {
                    "name": name,
                    "kind": entry.kind,
                    "source": f"embedded ({entry.package})",
                    "status": "pulled" if saved else "not pulled",
                    "content_hash": saved.content_hash if saved else None,
                    "path": saved.path if saved else None,
                    "description": entry.description,
                }
            )
        for name, saved in registered.items():
            rows.append(
                {
                    "name": name,
                    "kind": saved.kind,
                    "source": saved.source,
                    "status": "registered",
                    "content_hash": saved.content_hash,
                    "path": saved.path,
                    "description": "",
                }
            )
    if json_output:
        print_json(rows)
        return
    table = Table("name", "kind", "source", "status", "hash", "path")
    for row in rows:
        table.add_row(
            row["name"],
            row["kind"],
            row["source"],
            row["status"],
            (row["content_hash"] or "")[:12],
            row["path"] or "",
        )
    console.print(table)


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="smollm2-135m-instruct or minilm-l6.")],
    force: Annotated[bool, typer.Option(help="Materialise again even if the folder exists.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Materialise an embedded base model as a trainable Hugging Face folder in .sftline/cache/models/."""
    from sftline.stations.models import pull_base_model

    with open_workspace() as workspace, err_console.status(f"materialising {name}") as status:
        model = pull_base_model(
            workspace,
            name,
            force=force,
            progress=None if json_output else lambda stage: status.update(f"{name}: {stage}"),
        )
    data = _model_json(model)
    if json_output:
        print_json(data)
        return
    params = f", {model.n_parameters / 1e6:.1f}M parameters" if model.n_parameters else ""
    console.print(f"[green]ready[/] {model.name} ({model.kind}{params}) at {model.path}")
    console.print(f"  source {model.source}; content hash {model.content_hash[:12]}", markup=False)


@app.command()
def register(
    name: Annotated[str, typer.Argument(help="A name for the model in this project.")],
    path: Annotated[Path, typer.Argument(help="A local Hugging Face model folder.")],
    json_output: JsonFlag = False,
) -> None:
    """Register a local Hugging Face folder as a base model (its files are hashed, not copied)."""
    from sftline.models import describe_folder
    from sftline.stations.models import save_base_model

    model = describe_folder(name, path.resolve(), source=f"local:{path.resolve()}")
    with open_workspace() as workspace:
        save_base_model(workspace, model)
    data = _model_json(model)
    if json_output:
        print_json(data)
        return
    console.print(
        f"[green]registered[/] {model.name} ({model.kind}) at {model.path}, hash {model.content_hash[:12]}"
    )
