"""The Line page: every station's last run, the station runs newest first, and lineage graphs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from sftline.config import STATION_ORDER
from sftline.errors import LineageError
from sftline.record import leases, queries
from sftline.record.lineage import lineage
from sftline.record.schema import StationRun
from sftline.ui.format import Page
from sftline.ui.graph import layer_of, lineage_svg, link_of


def station_row(row: StationRun) -> dict[str, Any]:
    """A station run as the page lists it. A `running` row whose lease went stale shows as
    `interrupted` (as `sftline runs list` does: a read never writes the record)."""
    status = "interrupted" if row.status == "running" and leases.is_stale(row) else row.status
    return {
        "id": row.id,
        "station": row.station,
        "label": row.label,
        "key": row.key,
        "status": status,
        "started_at": row.started_at,
        "seconds": row.seconds,
        "error": row.error,
        "outputs": [{**output, "link": link_of(output)} for output in row.outputs or []],
    }


def line_page(session: Session, page: Page) -> dict[str, Any]:
    """The stations of `sftline run` in line order (then any other station, such as register),
    each with its newest run; and one page of every station run."""
    latest = {row.station: station_row(row) for row in queries.latest_station_runs(session)}
    order = [s for s in STATION_ORDER if s in latest] + sorted(set(latest) - set(STATION_ORDER))
    rows, total = queries.station_runs_page(session, offset=page.offset, limit=page.size)
    return {
        "stations": [latest[s] for s in order],
        "not_run": [s for s in STATION_ORDER if s not in latest],
        "runs": [station_row(r) for r in rows],
        "page": page.counted(total),
    }


def lineage_page(session: Session, artifact: str) -> dict[str, Any]:
    """The lineage of `artifact` (a name or hash prefix) as a graph and as a list of its nodes."""
    try:
        graph = lineage(session, artifact)
    except LineageError as exc:
        return {"artifact": artifact, "error": str(exc)}
    nodes = sorted(
        [*graph.nodes.values(), *graph.evaluations], key=lambda n: (layer_of(n["kind"]), n["name"])
    )
    return {
        "artifact": artifact,
        "svg": lineage_svg(graph),
        "nodes": [{**n, "link": link_of(n)} for n in nodes],
        "root": graph.nodes[graph.root],
    }
