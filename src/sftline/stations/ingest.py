"""The import station: read a file, quarantine what is bad, version what is good."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sftline.data.formats import FormatOptions
from sftline.data.importer import (
    ImportOptions,
    ImportResult,
    QuarantinedRecord,
    import_file,
    load_label_groups,
)
from sftline.data.readers import read_bytes
from sftline.data.settings import ImportSettings
from sftline.data.versions import check_dataset_name, version_summary
from sftline.errors import ImportInputError
from sftline.record import queries
from sftline.record.objects import sha256_file
from sftline.record.schema import ImportRun
from sftline.record.workspace import Workspace
from sftline.stations.runner import ArtifactRef, Produced, StationResult, Work, run_station
from sftline.stations.versions import CommitResult, commit_version, load_examples


@dataclass(frozen=True)
class IngestOutcome:
    result: ImportResult
    commit: CommitResult | None
    """None when no record was accepted."""
    import_id: int
    version: dict[str, Any] | None

    def summary(self) -> dict[str, Any]:
        data = self.result.summary()
        data["import_id"] = self.import_id
        data["version"] = self.version
        data["created_version"] = bool(self.commit and self.commit.created)
        data["diff"] = self.commit.diff.counts() if self.commit and self.commit.diff else None
        data["quarantine"] = [asdict(q) | {"raw": None} for q in self.result.quarantined]
        return data


def _write_quarantine(records: list[QuarantinedRecord], path: Path) -> None:
    pq.write_table(pa.Table.from_pylist([asdict(r) for r in records]), path, compression="zstd")


def ingest(
    workspace: Workspace,
    name: str,
    path: Path,
    options: ImportOptions,
    *,
    append: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> IngestOutcome:
    check_dataset_name(name)
    with workspace.record.session() as session:
        dataset = queries.dataset_named(session, name)
        parent = queries.head(session, dataset) if dataset is not None else None
        base = load_examples(workspace, parent) if (append and parent is not None) else []
        result = import_file(path, options, existing_ids=[e.id for e in base], progress=progress)
        quarantine_object = (
            workspace.objects.put_with(lambda p: _write_quarantine(result.quarantined, p))
            if result.quarantined
            else None
        )
        source = {
            "path": str(path.resolve()),
            "sha256": result.source_sha256,
            "format": result.format,
            "container": result.container,
        }
        commit = None
        if result.examples:
            earlier = list(parent.provenance.get("sources", [])) if (append and parent) else []
            commit = commit_version(
                workspace,
                session,
                name,
                base + result.examples,
                created_by="import",
                provenance={"sources": [*earlier, source]},
                note=f"{'append' if append else 'import'} {result.source} ({result.format})",
            )
        dataset = queries.get_or_create_dataset(session, name)
        run = ImportRun(
            dataset_id=dataset.id,
            version_id=commit.version.id if commit else None,
            source_path=source["path"],
            source_sha256=result.source_sha256,
            format=result.format,
            n_read=result.n_read,
            n_accepted=len(result.examples),
            n_quarantined=len(result.quarantined),
            reasons=result.reasons,
            quarantine_object=quarantine_object,
            options={
                "append": append,
                "format": options.format,
                "tags": options.tags,
                "splits": list(options.splits),
            },
        )
        session.add(run)
        session.flush()
        version = version_summary(commit.version) if commit else None
        return IngestOutcome(result, commit, run.id, version)


def import_options(settings: ImportSettings, root: Path) -> ImportOptions:
    """The importer's options from the station settings; label-group files are read here."""
    groups = {}
    for spec in settings.label_groups:
        tag_name, sep, file_name = spec.partition("=")
        if not sep:
            raise ImportInputError(
                f"--label-groups {spec!r}: expected TAG=FILE.json, e.g. domain=domains.json"
            )
        groups[tag_name] = load_label_groups(root / file_name)
    return ImportOptions(
        format=settings.format,
        fields=FormatOptions(
            text_field=settings.text_field,
            label_field=settings.label_field,
            id_field=settings.id_field,
            tag_fields=tuple(settings.tag_field),
        ),
        tags=parse_tags(settings.tag),
        label_groups=groups,
        splits=tuple(settings.split),
    )


def parse_tags(tags: list[str]) -> dict[str, str]:
    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ImportInputError(f"--tag {tag!r}: expected KEY=VALUE, e.g. --tag domain=banking")
        parsed[key.strip()] = value.strip()
    return parsed


def _source(path: Path) -> ArtifactRef:
    if not path.is_file():
        read_bytes(path)  # raises the importer's own error for a missing path or a folder
    try:
        return ArtifactRef("source_file", str(path), sha256_file(path))
    except OSError as exc:
        raise ImportInputError(f"{path}: cannot read ({exc.strerror})") from exc


def import_work(workspace: Workspace, settings: ImportSettings, root: Path) -> Work:
    """The source file(s) by content, the settings, and for --append the version appended to."""
    path = (root / settings.path).resolve()
    inputs = [_source(path)]
    inputs += [_source((root / spec.partition("=")[2]).resolve()) for spec in settings.label_groups]
    if settings.append:
        with workspace.record.session() as session:
            dataset = queries.dataset_named(session, settings.name)
            parent = queries.head(session, dataset) if dataset is not None else None
            if parent is not None:
                inputs.append(ArtifactRef("dataset_version", parent.ref, parent.content_hash))
    shaping = settings.model_dump(mode="json", exclude={"path", "label_groups"})
    shaping["path"] = str(path)  # the provenance names it
    shaping["label_groups"] = [spec.partition("=")[0] for spec in settings.label_groups]
    return Work("import", f"import {settings.name}", tuple(inputs), shaping)


def import_station(
    workspace: Workspace,
    settings: ImportSettings,
    *,
    root: Path,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> StationResult:
    """`data import` as a station: the same file bytes and settings are imported once."""
    work = import_work(workspace, settings, root)

    def execute() -> Produced:
        path = Path(work.inputs[0].name)
        outcome = ingest(
            workspace,
            settings.name,
            path,
            import_options(settings, root),
            append=settings.append,
            progress=progress,
        )
        if outcome.commit is None:  # nothing accepted: the summary says why; callers stop on it
            return Produced([], outcome.summary())
        version = outcome.commit.version
        return Produced(
            [ArtifactRef("dataset_version", version.ref, version.content_hash)], outcome.summary()
        )

    return run_station(workspace, work, execute, force=force)
