"""`sftline run` (the line of sftline.yaml) and `sftline lineage ARTIFACT`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from sftline.cli.context import open_workspace
from sftline.cli.output import console, err_console, print_json, progress_bars
from sftline.cli.train import training_progress
from sftline.errors import ConfigError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
STATUS_STYLE = {"ran": "green", "cached": "cyan", "failed": "red", "skipped": "dim"}


def run_command(
    until: Annotated[
        str | None, typer.Option(help="Stop after this station (import, check, split, mix, train, eval).")
    ] = None,
    force: Annotated[
        list[str], typer.Option("--force", help="Run this station even when its key is cached (repeatable).")
    ] = [],  # noqa: B006
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for another `sftline run` on this project to finish.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Run the `line:` of sftline.yaml: every station whose inputs or settings changed, nothing else.

    Exit status: 0 done (or verdict pass), 3 verdict fail, 4 verdict inconclusive, 1 a station failed."""
    from sftline.stations.line import LineHooks, line_lock, run_line

    with open_workspace() as workspace:
        line = workspace.project.config.line
        if line is None:
            raise ConfigError(
                "sftline.yaml has no `line:` section; add one (see `sftline init`'s template) "
                "to say which stations `sftline run` runs"
            )
        if wait and not json_output:
            err_console.print("waiting for the line's lock (another `sftline run` may hold it)")
        with (
            line_lock(workspace, wait=wait),
            progress_bars(quiet=json_output) as announce,
            training_progress(quiet=json_output) as train_progress,
        ):
            hooks = LineHooks(
                announce=announce,
                train_progress=train_progress,
                station_started=None if json_output else _started,
                note=None if json_output else _note,
            )
            outcome = run_line(workspace, line, until=until, force=force, hooks=hooks)
    if json_output:
        print_json(outcome.as_json())
    else:
        _print_line(outcome)
    if outcome.error is not None:  # on stderr also with --json: stdout stays one JSON document
        err_console.print(f"[red]error:[/] {escape(outcome.error)}", soft_wrap=True)
    raise typer.Exit(outcome.exit_code)


def _started(label: str) -> None:
    err_console.print(f"[bold]>[/] {escape(label)}")


def _note(line: str) -> None:
    err_console.print(f"  {line}", markup=False, soft_wrap=True)


def _outputs(result: Any) -> str:
    return ", ".join(o.name for o in result.outputs if o.kind in ("dataset_version", "run", "evaluation"))


def _print_line(outcome: Any) -> None:
    table = Table("station", "status", "key", "outputs", "time", show_edge=False, pad_edge=False)
    for result in outcome.stations:
        style = STATUS_STYLE[result.status]
        table.add_row(
            escape(result.label),
            f"[{style}]{result.status}[/]",
            result.key[:12],
            escape(_outputs(result) or (result.error or "")),
            f"{result.seconds:.1f}s" if result.status in ("ran", "cached") else "",
        )
    console.print(table)
    if outcome.verdict:
        console.print(f"release verdict: {outcome.verdict}")
        evaluation = next(r for r in outcome.stations if r.station == "eval")
        for reason in evaluation.result.get("reasons", []):
            console.print(f"  {escape(reason)}")


def lineage_command(
    artifact: Annotated[
        str,
        typer.Argument(
            help="A dataset version (NAME@vN), a registered model version (NAME@N), a run, an "
            "evaluation, or a hash prefix."
        ),
    ],
    json_output: JsonFlag = False,
) -> None:
    """Where an artifact came from: the station runs and inputs back to the source files."""
    from sftline.record.lineage import lineage

    with open_workspace() as workspace, workspace.record.session() as session:
        graph = lineage(session, artifact)
    if json_output:
        print_json(graph.as_json())
        return
    console.print(_tree(graph))


def _label(node: dict[str, Any]) -> str:
    return f"[bold]{escape(node['name'])}[/] [dim]{node['kind']} {node['hash'][:12]}[/]"


def _tree(graph: Any) -> Tree:
    """The artifact at the top, each input below the artifact it went into, with the station.
    A node reached again (an input several steps share) is named, not expanded, the second time."""
    tree = Tree(_label(graph.nodes[graph.root]))
    expanded: set[int] = set()

    def grow(branch: Tree, node: int) -> None:
        expanded.add(node)
        for report in graph.reports.get(node, []):
            branch.add(f"{_label(graph.nodes[report])} [dim](checked)[/]")
        for parent, edge in graph.parents(node):
            child = branch.add(f"{_label(graph.nodes[parent])} [dim]--{edge['station']}-->[/]")
            if parent in expanded:
                child.label = f"{child.label} [dim](above)[/]"
            else:
                grow(child, parent)

    if graph.evaluations:
        evaluated = tree.add("[dim]evaluated in[/]")
        for evaluation in graph.evaluations:
            evaluated.add(_label(evaluation))
    grow(tree, graph.root)
    return tree


def register(app: typer.Typer) -> None:
    app.command(name="run")(run_command)
    app.command(name="lineage")(lineage_command)
