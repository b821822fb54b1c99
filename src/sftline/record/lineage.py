"""The lineage graph of an artifact: everything upstream of it, through the station runs that
made each step (source files -> versions -> gate reports -> splits/mixtures -> runs -> models ->
evaluations), and the other way, everything made from one (`descendants`). Read only: it never
writes to the record."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from sftline.errors import LineageError
from sftline.record import queries

MODEL_KINDS = frozenset({"model", "registered_model"})


@dataclass(frozen=True)
class LineageGraph:
    root: int
    nodes: dict[int, dict[str, Any]]
    """artifact id -> {"id", "kind", "name", "hash"}."""
    edges: list[dict[str, Any]]
    """{"from", "to", "station_run", "station"}, artifact ids and the station run's id."""
    reports: dict[int, list[int]]
    """dataset version id -> the gate reports of checks that read it (evidence beside the chain)."""
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    """For a model or a registered version: the evaluations of that model, downstream of it
    ({"id", "kind", "name", "hash"}), the last link of the chain."""

    def as_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "nodes": [self.nodes[i] for i in sorted(self.nodes)],
            "edges": self.edges,
            "reports": {str(version): ids for version, ids in self.reports.items()},
            "evaluations": self.evaluations,
        }

    def parents(self, node: int) -> list[tuple[int, dict[str, Any]]]:
        """(parent id, edge) of `node`, in edge order; a gate report is not a parent."""
        return [(e["from"], e) for e in self.edges if e["to"] == node and e["to"] not in self.report_ids]

    @property
    def report_ids(self) -> set[int]:
        return {r for ids in self.reports.values() for r in ids}


def lineage(session: Session, name_or_hash: str) -> LineageGraph:
    """Walk the lineage edges from the artifact named `name_or_hash` (a name such as
    `support@v2`, `run-0003`, `eval-0002`, or a hash prefix) back to its sources."""
    found = queries.find_artifacts(session, name_or_hash)
    dataset = queries.dataset_named(session, name_or_hash) if not found else None
    newest = queries.head(session, dataset) if dataset is not None else None
    if newest is not None:  # a dataset's name: its newest version
        found = queries.find_artifacts(session, newest.ref)
    if not found:
        raise LineageError(
            f"no artifact named {name_or_hash!r} in the lineage record; give a dataset version "
            "(NAME@vN), a run, an evaluation or a hash prefix made by a station"
        )
    # The newest artifact of that name is the one a person means (a run's model, say).
    root = max(found, key=lambda a: a.id)
    nodes: dict[int, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    frontier = [root.id]
    seen = {root.id}
    linked: set[tuple[int, int]] = set()
    while frontier:
        incoming = queries.edges_into(session, frontier)
        runs = queries.station_runs_by_id(session, (e.station_run_id for e in incoming))
        frontier = []
        for edge in incoming:
            if (edge.source_id, edge.target_id) in linked:
                continue  # the same step again (a forced re-run): shown once, by its first run
            linked.add((edge.source_id, edge.target_id))
            edges.append(
                {
                    "from": edge.source_id,
                    "to": edge.target_id,
                    "station_run": edge.station_run_id,
                    "station": runs[edge.station_run_id].station,
                }
            )
            if edge.source_id not in seen:
                seen.add(edge.source_id)
                frontier.append(edge.source_id)
    versions = [i for i, a in queries.artifacts_by_id(session, seen).items() if a.kind == "dataset_version"]
    reports: dict[int, list[int]] = {}
    checks = queries.reports_of(session, versions)
    runs = queries.station_runs_by_id(session, (e.station_run_id for e in checks))
    for edge in checks:
        reports.setdefault(edge.source_id, []).append(edge.target_id)
        seen.add(edge.target_id)
        edges.append(
            {
                "from": edge.source_id,
                "to": edge.target_id,
                "station_run": edge.station_run_id,
                "station": "check",
            }
        )
    for artifact in queries.artifacts_by_id(session, seen).values():
        nodes[artifact.id] = {
            "id": artifact.id,
            "kind": artifact.kind,
            "name": artifact.name,
            "hash": artifact.hash,
        }
    models = [i for i, n in nodes.items() if n["kind"] == "model"] if root.kind in MODEL_KINDS else []
    evaluated = [d for d in descendants(session, models) if d["kind"] == "evaluation"] if models else []
    return LineageGraph(root.id, nodes, edges, reports, evaluated)


def descendants(
    session: Session, artifact_ids: Sequence[int], *, stop_at: Collection[int] = ()
) -> list[dict[str, Any]]:
    """Every artifact made from these, directly or through later steps (the lineage walked
    forwards), as {"id", "kind", "name", "hash"}, oldest first. The walk does not enter the
    artifacts in `stop_at` (versions known not to carry what is traced, say)."""
    seen = set(artifact_ids) | set(stop_at)
    frontier = list(artifact_ids)
    while frontier:
        targets = dict.fromkeys(e.target_id for e in queries.edges_from(session, frontier))
        frontier = [t for t in targets if t not in seen]
        seen.update(frontier)
    found = queries.artifacts_by_id(session, seen - set(artifact_ids) - set(stop_at))
    return [
        {"id": a.id, "kind": a.kind, "name": a.name, "hash": a.hash}
        for a in sorted(found.values(), key=lambda a: a.id)
    ]
