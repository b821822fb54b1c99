"""Labels coming back: `sftline feedback import` and `sftline review import`, and the feedback
dataset they grow.

A label joins its logged prediction by request id. Every labelled request (its newest label)
becomes an example of the dataset `MODEL-feedback`: the logged (PII-redacted) input and the
correct answer, tagged `source=feedback` (and the reviewer's labels `origin=review`). Each import
writes the whole set as one file under `.sftline/feedback/`, imports it as the dataset's next
version and checks it with the project's gates like any import (PII, duplicates, contamination
against the frozen gold sets and the release suite): the accepted examples are the version a
line's mixture or training data names, so a new label changes the line's inputs and `sftline run`
re-runs exactly what depends on them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sftline.atomic import write_text
from sftline.data.settings import ImportSettings
from sftline.errors import SftlineError
from sftline.gates.settings import CheckSettings
from sftline.monitoring.labels import LabelRow, Rejected, read_labels
from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.stations.check import check_station
from sftline.stations.ingest import import_station
from sftline.stations.registry import current_actor

Progress = Callable[[int, int, str], None]


class FeedbackError(SftlineError):
    pass


def feedback_dataset(model_name: str) -> str:
    return f"{model_name}-feedback"


@dataclass
class LabelImport:
    path: str
    source: str
    read: int
    accepted: int
    rejected: list[Rejected]
    dataset: dict[str, Any] | None = None
    reviewed: int = 0
    unchanged: int = 0
    """Accepted labels equal to the request's newest one: not recorded again."""
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "source": self.source,
            "read": self.read,
            "accepted": self.accepted,
            "rejected": len(self.rejected),
            "reasons": _reasons(self.rejected),
            "rejects": [r.as_json() for r in self.rejected],
            "reviewed": self.reviewed,
            "unchanged": self.unchanged,
            "dataset": self.dataset,
            "notes": self.notes,
        }


def _reasons(rejected: list[Rejected]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rejected:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    return counts


def known_labels(workspace: Workspace, model_name: str) -> list[str]:
    """The answers a label may be: the contract's label set, else the production version's
    labels (a classifier's manifest), with the abstention answer; [] when the task is free text."""
    contract = workspace.project.config.contract
    labels = list(contract.output.labels or [])
    if not labels and contract.output.kind == "labels":
        with workspace.record.session() as session:
            model = queries.registered_model(session, model_name)
            for version in queries.versions_in_stage(session, model, "production") if model else []:
                labels = list(version.record.get("labels") or [])
    if labels and contract.abstention and contract.abstention not in labels:
        labels.append(contract.abstention)
    return labels


def import_labels(
    workspace: Workspace,
    path: Path,
    *,
    source: str = "feedback",
    model_name: str | None = None,
    actor: str | None = None,
    build: bool = True,
    progress: Progress | None = None,
) -> LabelImport:
    """Record the labels in `path` against the logged predictions, then (with `build`) write the
    feedback dataset's next version and check it. Rows that name no logged request, or give a
    label outside the label set, are rejected with their file and line; the counts add up."""
    name = model_name or workspace.project.config.effective_model_name
    labels = read_labels(path, labels=known_labels(workspace, name))
    return record_labels(
        workspace, str(path), labels.accepted, labels.rejected, source=source, model_name=name,
        actor=actor, build=build, progress=progress,
    )  # fmt: skip


def record_labels(
    workspace: Workspace,
    origin: str,
    given: list[LabelRow],
    rejected: list[Rejected],
    *,
    source: str,
    model_name: str | None = None,
    actor: str | None = None,
    build: bool = True,
    progress: Progress | None = None,
) -> LabelImport:
    """`import_labels` for rows already read (a file's, or the dashboard's review form): each is
    joined with its logged prediction or rejected; with `build`, the feedback dataset follows."""
    name = model_name or workspace.project.config.effective_model_name
    actor = actor or current_actor()
    read = len(given) + len(rejected)
    rejected = list(rejected)
    accepted: list[LabelRow] = []
    reviewed = unchanged = 0
    now = datetime.now(timezone.utc)
    with workspace.record.session() as session:
        served = queries.served_predictions(session, [row.request_id for row in given])
        # A label that repeats the request's newest one is accepted but not recorded again: a
        # cumulative label export imported nightly adds nothing, and triggers no retrain.
        known = queries.newest_labels(session, [row.request_id for row in given])
        rows = []
        for row in given:
            prediction = served.get(row.request_id)
            if prediction is None:
                rejected.append(
                    Rejected(
                        row.origin,
                        "unknown_request_id",
                        "request_id",
                        f"{row.request_id} is not in the prediction log "
                        "(it keeps the log.sample share of requests)",
                    )  # fmt: skip
                )
                continue
            if prediction.model_name != name:
                rejected.append(
                    Rejected(
                        row.origin,
                        "other_model",
                        "request_id",
                        f"{row.request_id} was served by {prediction.model_name}, not {name}",
                    )
                )
                continue
            accepted.append(row)
            if known.get(row.request_id) == row.label:
                unchanged += 1
                continue
            rows.append(
                {
                    "request_id": row.request_id,
                    "model_name": name,
                    "model_version": prediction.model_version,
                    "label": row.label,
                    "source": source,
                    "actor": row.reviewer or actor,
                    "origin": row.origin[-1000:],
                    "at": now,
                }
            )
        queries.add_feedback(session, rows)
        if source == "review":
            items = queries.review_items_by_request(session, [row.request_id for row in accepted])
            for row in accepted:
                item = items.get(row.request_id)
                if item is not None:
                    item.status, item.label = "labelled", row.label
                    item.reviewer, item.labelled_at = row.reviewer or actor, now
                    reviewed += 1
    outcome = LabelImport(
        origin, source, read, len(accepted), rejected, reviewed=reviewed, unchanged=unchanged
    )
    if build and accepted:
        outcome.dataset = build_feedback_dataset(workspace, name, progress=progress)
    return outcome


def _example_row(task_labels: bool, prompt: str, answer: str, source: str, request_id: str) -> dict[str, Any]:
    origin = "review" if source == "review" else "feedback"
    tags = {"source": "feedback", "origin": origin, "request_id": request_id}
    if task_labels:
        return {"text": prompt, "label": answer, **tags}
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
        **tags,
    }


def build_feedback_dataset(
    workspace: Workspace, model_name: str, *, progress: Progress | None = None
) -> dict[str, Any] | None:
    """Write every labelled request as the feedback dataset's next version, then gate it. None
    when nothing is labelled yet."""
    config = workspace.project.config
    name = feedback_dataset(model_name)
    with workspace.record.session() as session:
        rows = queries.feedback(session, model_name=model_name)
        served = queries.served_predictions(session, [r.request_id for r in rows])
    labels_task = config.contract.output.kind == "labels"
    examples = [
        _example_row(labels_task, served[r.request_id].prompt, r.label, r.source, r.request_id)
        for r in sorted(rows, key=lambda r: r.request_id)
        if r.request_id in served and served[r.request_id].prompt.strip()
    ]
    if not examples:
        return None
    folder = workspace.project.state_dir / "feedback"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    write_text(path, "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in examples))
    groups = _label_groups(workspace) if labels_task else []
    settings = ImportSettings(
        path=path,
        name=name,
        format="classification" if labels_task else "chat",
        text_field="text" if labels_task else None,
        label_field="label" if labels_task else None,
        tag_field=["source", "origin", "request_id"],
        label_groups=groups,
    )
    imported = import_station(workspace, settings, root=workspace.project.root)
    version = (imported.result.get("version") or {}).get("ref")
    if version is None:
        raise FeedbackError(
            f"{path}: no example of the feedback set could be imported: {imported.result.get('reasons')}"
        )
    against = _release_sets(workspace)
    checked = check_station(workspace, CheckSettings(dataset=version, against=against), progress=progress)
    result = checked.result
    return {
        "name": name,
        "imported": version,
        "examples": len(examples),
        "checked_against": against,
        "accepted": (result.get("version") or {}).get("ref"),
        "passed": result.get("status") == "passed",
        "n_accepted": result.get("accepted"),
        "n_quarantined": result.get("quarantined"),
        "report_id": result.get("report_id"),
        "import_status": imported.status,
        "check_status": checked.status,
    }


def _label_groups(workspace: Workspace) -> list[str]:
    """The label groups the line's imports tag with (domain=domains.json), so feedback examples
    carry the same slices as the training data and a mixture weighs them the same way."""
    line = workspace.project.config.line
    groups: list[str] = []
    for spec in line.import_ if line else []:
        groups += [g for g in spec.label_groups if g not in groups]
    return groups


def _release_sets(workspace: Workspace) -> list[str]:
    """The release suite's datasets that exist: feedback that repeats one would leak it."""
    out = []
    with workspace.record.session() as session:
        for ref in workspace.project.config.release.on:
            if queries.dataset_named(session, ref.split("@")[0]) is not None:
                out.append(ref)
    return out
