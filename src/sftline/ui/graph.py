"""The lineage of an artifact drawn as an inline SVG graph, one column per kind of artifact.

Columns follow the line, left to right (source files, dataset versions, gate reports, splits and
mixtures, base models, runs, models, registered versions, evaluations), so an edge almost always
points right and the chain reads the way it was made. Each node links to the dashboard's page of
its artifact, or to its own lineage where the dashboard has no page for it.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

from sftline.record.lineage import LineageGraph

LAYERS = (
    ("source_file", "source_folder"),
    ("dataset_version",),
    ("gate_report",),
    ("split", "mixture"),
    ("base_model", "model_folder"),
    ("run",),
    ("model",),
    ("registered_model",),
    ("evaluation",),
)
COLOURS = {
    "source_file": "#bab0ac",
    "source_folder": "#bab0ac",
    "dataset_version": "#4c78a8",
    "gate_report": "#eeca3b",
    "split": "#72b7b2",
    "mixture": "#72b7b2",
    "base_model": "#9d755d",
    "model_folder": "#9d755d",
    "run": "#f58518",
    "model": "#e45756",
    "registered_model": "#b279a2",
    "evaluation": "#54a24b",
}
NODE_WIDTH, NODE_HEIGHT = 170, 34  # px
COLUMN_GAP, ROW_GAP = 50, 12  # px between columns and between nodes of a column
NAME_CHARS = 24  # characters of a name that fit in a node


def layer_of(kind: str) -> int:
    """The column of a kind; a kind the line does not name goes after the known ones."""
    return next((i for i, kinds in enumerate(LAYERS) if kind in kinds), len(LAYERS))


def link_of(node: dict[str, Any]) -> str:
    """The dashboard page of an artifact."""
    kind, name = node["kind"], str(node["name"])
    if kind == "dataset_version":
        return f"/data/{quote(name.partition('@')[0])}"
    if kind == "gate_report" and name.startswith("gate-report-") and name[12:].isdigit():
        return f"/data/reports/{name[12:]}"
    if kind in ("run", "model"):
        return f"/runs/{quote(name)}"
    if kind == "evaluation":
        return f"/evals/{quote(name)}"
    if kind == "registered_model":
        return f"/registry/{quote(name.partition('@')[0])}"
    return f"/lineage?artifact={quote(name)}"


def lineage_svg(graph: LineageGraph) -> str:
    """The graph's nodes (the evaluations downstream of a model included) in columns by kind,
    with an arrow per edge; the root is outlined."""
    nodes = dict(graph.nodes)
    edges = [(e["from"], e["to"], e["station"]) for e in graph.edges]
    models = [i for i, n in nodes.items() if n["kind"] == "model"]
    for evaluation in graph.evaluations:  # the model's evaluations, downstream of its first model
        nodes.setdefault(evaluation["id"], evaluation)
        edges.extend((model, evaluation["id"], "eval") for model in models[:1])
    columns: dict[int, list[int]] = {}
    for node_id in sorted(nodes):
        columns.setdefault(layer_of(nodes[node_id]["kind"]), []).append(node_id)
    used = sorted(columns)
    place: dict[int, tuple[float, float]] = {}
    for column, layer in enumerate(used):
        for row, node_id in enumerate(columns[layer]):
            place[node_id] = (10 + column * (NODE_WIDTH + COLUMN_GAP), 10 + row * (NODE_HEIGHT + ROW_GAP))
    width = 20 + len(used) * (NODE_WIDTH + COLUMN_GAP)
    height = 20 + max(len(ids) for ids in columns.values()) * (NODE_HEIGHT + ROW_GAP)
    parts = [
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="6" markerHeight="6" '
        'orient="auto"><path d="M0 0 L8 4 L0 8 z" fill="#888"/></marker></defs>'
    ]
    for source, target, station in edges:
        if source not in place or target not in place:
            continue
        (x1, y1), (x2, y2) = place[source], place[target]
        start, end = (x1 + NODE_WIDTH, y1 + NODE_HEIGHT / 2), (x2, y2 + NODE_HEIGHT / 2)
        if x2 <= x1:  # an edge within a column or backwards: from the bottom to the top
            start, end = (x1 + NODE_WIDTH / 2, y1 + NODE_HEIGHT), (x2 + NODE_WIDTH / 2, y2)
        parts.append(
            f'<line class="edge" x1="{start[0]:.0f}" y1="{start[1]:.0f}" x2="{end[0]:.0f}" '
            f'y2="{end[1]:.0f}" stroke="#888" marker-end="url(#arrow)">'
            f"<title>{escape(station)}</title></line>"
        )
    for node_id, (x, y) in place.items():
        node = nodes[node_id]
        name = str(node["name"])
        shown = name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"
        outline = ' stroke="#222" stroke-width="2"' if node_id == graph.root else ""
        parts.append(
            f'<a href="{escape(link_of(node))}"><g class="node">'
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="4" '
            f'fill="{COLOURS.get(node["kind"], "#ccc")}" fill-opacity="0.25"{outline}/>'
            f'<text x="{x + 6:.0f}" y="{y + 13:.0f}" fill="#555" font-size="9">{escape(node["kind"])}</text>'
            f'<text x="{x + 6:.0f}" y="{y + 27:.0f}">{escape(shown)}</text>'
            f"<title>{escape(node['kind'])} {escape(name)} {escape(str(node['hash']))}</title></g></a>"
        )
    return (
        f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">{"".join(parts)}</svg>'
    )
