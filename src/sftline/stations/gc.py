"""`sftline gc`: what a project can do without, and removing it (`--apply`; a dry run by default).

- Checkpoints of finished runs (completed, stopped early, failed) beyond the ones kept: the
  newest `step-*` (what `--resume` of a failed run continues from) and the best one
  (`checkpoints/best/`). A run still running or interrupted keeps every checkpoint for its
  resume. Only folders under the project's `runs/` are touched, whatever a row says.
- Objects no record row names, and temporary leftovers of killed writers, under the rules of
  `sftline.stations.housekeeping` (idle for an hour; objects only while nothing runs).
- Stale caches: folders in `.sftline/cache/models/` that no recorded base model (and no run's
  base model) is. A base model in the record is in use and stays.

Never removed: an object any row names, an exported model, a manifest, an adapter, a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from sftline.record import leases, queries
from sftline.record.workspace import Workspace
from sftline.stations.housekeeping import (
    TEMP_PREFIXES,
    find_leftovers,
    is_under,
    live_work,
    object_index,
    remove,
    shown_path,
    tree_size,
)
from sftline.train.checkpoint import PREFIX

FINISHED = ("completed", "stopped_early", "failed")
"""Runs whose checkpoints are pruned to the kept ones; the others may still resume."""


@dataclass(frozen=True)
class Removal:
    kind: str
    """checkpoint, object, temp or cache."""
    path: Path
    bytes: int
    detail: str


@dataclass(frozen=True)
class Kept:
    kind: str
    path: Path
    detail: str


@dataclass
class GcPlan:
    root: Path
    """The project folder (paths are shown relative to it)."""
    removals: list[Removal] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    removed: list[Removal] = field(default_factory=list)
    """Filled by `apply_gc`."""
    failed: list[tuple[Removal, str]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removals)

    def as_json(self, *, applied: bool) -> dict[str, Any]:
        def row(kind: str, path: Path, detail: str, size: int | None = None) -> dict[str, Any]:
            data = {"kind": kind, "path": shown_path(path, self.root), "detail": detail}
            return data if size is None else {**data, "bytes": size}

        return {
            "applied": applied,
            "bytes": self.bytes,
            "removals": [row(r.kind, r.path, r.detail, r.bytes) for r in self.removals],
            "removed": len(self.removed) if applied else 0,
            "failed": [{**row(r.kind, r.path, r.detail), "error": e} for r, e in self.failed],
            "kept": [row(k.kind, k.path, k.detail) for k in self.kept],
        }


def plan_gc(workspace: Workspace) -> GcPlan:
    """What `gc --apply` would remove, and what it keeps that looks removable (with why)."""
    plan = GcPlan(workspace.project.root)
    with workspace.record.session() as session:
        _checkpoints(workspace, session, plan)
        _caches(workspace, session, plan)
        index = object_index(session)
        live = live_work(session)
    for leftover in find_leftovers(workspace, index, live):
        what = (
            "no record row names it" if leftover.kind == "object" else "a temporary never renamed into place"
        )
        if leftover.removable:
            plan.removals.append(Removal(leftover.kind, leftover.path, leftover.bytes, what))
        else:
            plan.kept.append(Kept(leftover.kind, leftover.path, f"{what}; {leftover.kept_because}"))
    return plan


def apply_gc(plan: GcPlan) -> GcPlan:
    """Remove what `plan` lists; what cannot be removed is listed in `failed` with the reason."""
    for removal in plan.removals:
        try:
            remove(removal.path)
        except OSError as exc:
            plan.failed.append((removal, exc.strerror or str(exc)))
        else:
            plan.removed.append(removal)
    return plan


def _steps(folder: Path) -> list[Path]:
    """The checkpoint folders `step-NNNNNNN` in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{PREFIX}*") if p.is_dir() and not p.is_symlink())


def _checkpoints(workspace: Workspace, session: Session, plan: GcPlan) -> None:
    runs_root = workspace.project.runs_dir
    for run in queries.runs(session):
        if not run.output_dir:
            continue
        checkpoints = Path(run.output_dir) / "checkpoints"
        latest, best = _steps(checkpoints), _steps(checkpoints / "best")
        if not (latest or best):
            continue
        if not is_under(checkpoints, runs_root):
            plan.kept.append(
                Kept("checkpoint", checkpoints, f"{run.name}'s folder is outside {runs_root}; left alone")
            )
            continue
        status = leases.shown_status(run)
        if status not in FINISHED:
            detail = f"{run.name} is {status}: every checkpoint kept for its resume"
            plan.kept.append(Kept("checkpoint", checkpoints, detail))
            continue
        for old in latest[:-1]:
            detail = f"{run.name} ({status}): older than its latest checkpoint, {latest[-1].name}"
            plan.removals.append(Removal("checkpoint", old, tree_size(old), detail))
        for old in best[:-1]:
            detail = f"{run.name} ({status}): older than its best checkpoint, {best[-1].name}"
            plan.removals.append(Removal("checkpoint", old, tree_size(old), detail))


def _caches(workspace: Workspace, session: Session, plan: GcPlan) -> None:
    cache = workspace.project.models_cache_dir
    if not cache.is_dir():
        return
    in_use = {Path(m.path).resolve() for m in queries.base_models(session)}
    names = {m.name for m in queries.base_models(session)} | {r.base_model for r in queries.runs(session)}
    for folder in sorted(cache.iterdir()):
        if folder.name.startswith(TEMP_PREFIXES) or not folder.is_dir() or folder.is_symlink():
            continue  # temporaries follow the housekeeping rules
        if folder.resolve() in in_use or folder.name in names:
            continue
        detail = "a materialised base model no recorded base model or run uses"
        plan.removals.append(Removal("cache", folder, tree_size(folder), detail))
