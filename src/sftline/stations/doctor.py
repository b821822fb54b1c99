"""`sftline doctor`: check a project's record against its files, and repair what is safe to.

It checks the record's schema revision against this sftline's; that every object a row names
exists and hashes to its name; that every finished run's folder and exported model files, and
every base model's files, are there as recorded; it finds runs and station runs whose lease went
stale (their process died), orphan objects and temporary leftovers of killed writers
(`sftline.stations.housekeeping`).

`repair=True` does only what cannot lose data: it removes the leftovers the housekeeping rules
allow (never an object a row names), and marks stale `running` rows `interrupted`, as the next
writer would. A missing or corrupt object, a changed model file or a newer schema is reported
with what to do, never "fixed".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from sftline.config import Project
from sftline.record import db, leases, queries
from sftline.record.objects import sha256_file
from sftline.record.workspace import Workspace
from sftline.stations.housekeeping import (
    LiveWork,
    ObjectIndex,
    find_leftovers,
    live_work,
    object_index,
    remove,
    shown_path,
    stray_entries,
)
from sftline.stations.runner import mark_interrupted

Progress = Callable[[int, int], None]
FINISHED = ("completed", "stopped_early")
"""Run statuses that promise an exported model."""


@dataclass
class Finding:
    kind: str
    """schema_newer, schema_migrated, malformed_reference, missing_object, corrupt_object,
    orphan_object, orphan_temp, stray_file, stale_run, stale_station_run, missing_run_folder,
    changed_model, missing_base_model, changed_base_model, unrecorded_run_folder."""
    path: str
    detail: str
    problem: bool = True
    """False for a note: something worth knowing that needs nothing done."""
    repair: str | None = None
    """What `--repair` does about it; None when nothing is safe to do automatically."""
    repaired: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoctorReport:
    schema: dict[str, str | None]
    """{"record": revision, "sftline": head revision}."""
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    repair: bool = False

    @property
    def problems(self) -> list[Finding]:
        """The problems still there (a repaired one is not)."""
        return [f for f in self.findings if f.problem and not f.repaired]

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "checked": self.checked,
            "repair": self.repair,
            "problems": len(self.problems),
            "repaired": sum(f.repaired for f in self.findings),
            "findings": [f.as_json() for f in self.findings],
        }


def doctor(project: Project, *, repair: bool = False, progress: Progress | None = None) -> DoctorReport:
    """Check `project` (see the module); with `repair`, fix what is safe to."""
    record_revision, head, known = schema_state(project.database_url)
    report = DoctorReport({"record": record_revision, "sftline": head}, repair=repair)
    if not known:
        report.findings.append(
            Finding(
                "schema_newer",
                "record",
                f"the record is at schema revision {record_revision}, which this sftline (head {head}) "
                "does not know: a newer sftline wrote it; upgrade sftline (the other checks need it)",
            )
        )
        return report
    with Workspace.open(project) as workspace:
        if record_revision != head:
            report.findings.append(
                Finding(
                    "schema_migrated",
                    "record",
                    f"the record was at revision {record_revision or 'none'}; opening it migrated it "
                    f"to {head}",
                    problem=False,
                )
            )
        with workspace.record.session() as session:
            index = object_index(session)
            live = live_work(session)
            report.findings += _object_findings(workspace, index, report.checked, progress)
            report.findings += _run_findings(workspace, session, report.checked)
            report.findings += _base_model_findings(session, report.checked)
        report.findings += _leftover_findings(workspace, index, live, repair)
        if repair:
            _repair_leases(workspace, report.findings)
    return report


def schema_state(url: str) -> tuple[str | None, str | None, bool]:
    """(the record's revision, this sftline's head, whether this sftline knows the record's
    revision), read without migrating."""
    engine = db.make_engine(url)
    try:
        current = db.current_revision(engine)
    finally:
        engine.dispose()
    return current, db.head_revision(), current is None or current in db.known_revisions()


def _object_findings(
    workspace: Workspace, index: ObjectIndex, checked: dict[str, int], progress: Progress | None
) -> list[Finding]:
    root = workspace.project.root
    findings = [
        Finding(
            "malformed_reference",
            where,
            f"the record names object {value[:80]!r}, which is not a sha256; the record was damaged or "
            "tampered with: restore it from a backup",
        )
        for value, where in index.malformed
    ]
    digests = sorted(index.references)
    for done, digest in enumerate(digests, start=1):
        path = workspace.objects.path(digest)
        named_by = _named_by(index.references[digest])
        if not path.is_file():
            findings.append(
                Finding(
                    "missing_object",
                    shown_path(path, root),
                    f"named by {named_by} but missing; restore .sftline/objects from a backup",
                )
            )
        else:
            try:
                actual = sha256_file(path)
            except OSError as exc:
                actual = f"unreadable ({exc.strerror})"
            if actual != digest:
                findings.append(
                    Finding(
                        "corrupt_object",
                        shown_path(path, root),
                        f"named by {named_by}, but its content hashes to {actual[:16]}: the file "
                        "changed on disk; restore it from a backup (it is never removed)",
                    )
                )
        if progress is not None:
            progress(done, len(digests))
    checked["objects"] = len(digests)
    checked["references"] = sum(len(v) for v in index.references.values())
    for path in stray_entries(workspace.objects.root):
        findings.append(
            Finding(
                "stray_file",
                shown_path(path, root),
                "not an object sftline wrote (its name is not a sha256); left alone",
                problem=False,
            )
        )
    return findings


def _named_by(places: list[str]) -> str:
    shown = ", ".join(places[:3])
    return shown + (f" and {len(places) - 3} more" if len(places) > 3 else "")


def _run_findings(workspace: Workspace, session: Session, checked: dict[str, int]) -> list[Finding]:
    root = workspace.project.root
    findings: list[Finding] = []
    runs = queries.runs(session)
    for run in runs:
        folder = Path(run.output_dir) if run.output_dir else None
        if leases.is_stale(run):
            findings.append(
                Finding(
                    "stale_run",
                    run.name,
                    f"recorded as running (pid {run.pid} on {run.host}), but its process stopped",
                    repair="mark it interrupted (its checkpoints stay for --resume)",
                )
            )
        elif run.status in FINISHED and (folder is None or not folder.is_dir()):
            findings.append(
                Finding(
                    "missing_run_folder",
                    shown_path(folder, root) if folder else run.name,
                    f"{run.name} is {run.status} but its folder is gone: its model cannot be evaluated; "
                    "restore the folder or train the run again",
                )
            )
        elif run.status in FINISHED and folder is not None and run.model_files:
            changed = _changed_files(folder / "model", run.model_files)
            if changed:
                findings.append(
                    Finding(
                        "changed_model",
                        shown_path(folder / "model", root),
                        f"{run.name}'s model differs from what was exported: {changed}; evaluations "
                        "and lineage name the exported hash: restore the folder or train again",
                    )
                )
    for station_run in queries.running_station_runs(session):
        if leases.is_stale(station_run):
            findings.append(
                Finding(
                    "stale_station_run",
                    f"station run {station_run.id}",
                    f"{station_run.label} is recorded as running (pid {station_run.pid} on "
                    f"{station_run.host}), but its process stopped",
                    repair="mark it interrupted",
                )
            )
    runs_root = workspace.project.runs_dir
    recorded = {Path(run.output_dir).name for run in runs if run.output_dir}
    if runs_root.is_dir():
        for folder in sorted(p for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if folder.name not in recorded:
                findings.append(
                    Finding(
                        "unrecorded_run_folder",
                        shown_path(folder, root),
                        "no run in the record has this folder (a record restored from an older "
                        "backup?); left alone: delete it by hand if it is not wanted",
                        problem=False,
                    )
                )
    checked["runs"] = len(runs)
    return findings


def _changed_files(folder: Path, files: dict[str, Any]) -> str:
    """`2 missing (a, b), 1 changed (c)` for the recorded files of `folder` that are not as
    recorded; empty when all are."""
    missing, changed = [], []
    for relative, digest in sorted(files.items()):
        path = folder / relative
        if not path.is_file():
            missing.append(relative)
        elif sha256_file(path) != digest:
            changed.append(relative)
    parts = [
        f"{len(names)} {what} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
        for names, what in ((missing, "missing"), (changed, "changed"))
        if names
    ]
    return ", ".join(parts)


def _base_model_findings(session: Session, checked: dict[str, int]) -> list[Finding]:
    findings: list[Finding] = []
    models = queries.base_models(session)
    for model in models:
        folder = Path(model.path)
        if not folder.is_dir():
            findings.append(
                Finding(
                    "missing_base_model",
                    model.path,
                    f"base model {model.name}'s folder is gone; `sftline models pull {model.name}` "
                    f"(embedded) or `sftline models base add {model.name} PATH` puts it back",
                )
            )
        elif model.files and (changed := _changed_files(folder, model.files)):
            findings.append(
                Finding(
                    "changed_base_model",
                    model.path,
                    f"base model {model.name} differs from what was recorded: {changed}; runs name "
                    "the recorded hash: restore the folder, or register it again (a new hash)",
                )
            )
    checked["base_models"] = len(models)
    return findings


def _leftover_findings(
    workspace: Workspace, index: ObjectIndex, live: LiveWork, repair: bool
) -> list[Finding]:
    root = workspace.project.root
    findings: list[Finding] = []
    for leftover in find_leftovers(workspace, index, live):
        what = (
            "an object no record row names"
            if leftover.kind == "object"
            else "a temporary never renamed into place"
        )
        finding = Finding(
            "orphan_object" if leftover.kind == "object" else "orphan_temp",
            shown_path(leftover.path, root),
            f"{what}, {leftover.bytes:,} bytes"
            + (f"; kept: {leftover.kept_because}" if leftover.kept_because else ""),
            problem=leftover.removable,
            repair="remove it" if leftover.removable else None,
        )
        if repair and leftover.removable:
            remove(leftover.path)
            finding.repaired = True
        findings.append(finding)
    return findings


def _repair_leases(workspace: Workspace, findings: list[Finding]) -> None:
    """Mark stale `running` rows `interrupted`, as the next writer would (the runner's rule)."""
    stale = [f for f in findings if f.kind in ("stale_run", "stale_station_run")]
    if not stale:
        return
    with workspace.record.session() as session:
        mark_interrupted(session)
    for finding in stale:
        finding.repaired = True
