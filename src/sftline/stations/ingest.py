"""The import station: read a file, quarantine what is bad, version what is good."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sftline.data.formats import FormatOptions
from sftline.data.hf_datasets import folder_sha256
from sftline.data.importer import (
    ImportOptions,
    ImportResult,
    QuarantinedRecord,
    import_file,
    load_label_groups,
)
from sftline.data.raw_records import read_bytes
from sftline.data.settings import ImportSettings
from sftline.data.versions import check_dataset_name, version_summary
from sftline.errors import ImportInputError
from sftline.record import queries
from sftline.record.objects import sha256_file
from sftline.record.schema import DatasetVersion, ImportRun
from sftline.record.workspace import Workspace
from sftline.stations.runner import ArtifactRef, Produced, StationResult, Work, run_station
from sftline.stations.versions import (
    REBASE_ATTEMPTS,
    SETTLE_ATTEMPTS,
    CommitResult,
    commit_version,
    head_number,
    load_examples,
    read_head,
    retry_on_conflict,
)


@dataclass(frozen=True)
class IngestOutcome:
    result: ImportResult
    commit: CommitResult | None
    """None when no record was accepted."""
    import_id: int | None
    """The `imports` row; None when nothing was accepted into a dataset that does not exist (no
    empty dataset is created for it; the station run's result keeps the summary)."""
    version: dict[str, Any] | None
    appended_to: DatasetVersion | None
    """The version the rows were appended to (the head when the commit won, after any retries)."""
    quarantine_object: str | None

    def summary(self) -> dict[str, Any]:
        data = self.result.summary()
        data["import_id"] = self.import_id
        data["version"] = self.version
        data["created_version"] = bool(self.commit and self.commit.created)
        data["diff"] = self.commit.diff.counts() if self.commit and self.commit.diff else None
        data["quarantine"] = [asdict(q) | {"raw": None} for q in self.result.quarantined]
        data["quarantine_object"] = self.quarantine_object
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
    """Import `path` as the next version of `name`, or with `append` as the newest version's
    examples plus the file's.

    The head is read before the file and the version committed as a compare-and-set on it
    (`stations.versions`). An append that loses to another writer reads the new head and applies
    the file's rows on top of it again (ids are allocated against the new head's); a plain import
    tries once more and ends "NAME changed meanwhile (now vN); run again" unless the new head
    holds the same content.
    """
    check_dataset_name(name)
    first_head = read_head(workspace, name)
    read_against: dict[int | None, ImportResult] = {}  # the file's records, by the id of the base

    def attempt() -> IngestOutcome:
        head = read_head(workspace, name) if append and read_against else first_head
        appended_to = head if append else None
        base = load_examples(workspace, appended_to) if appended_to is not None else []
        key = appended_to.id if appended_to is not None else None
        if key not in read_against:
            existing = [e.id for e in base]
            read_against[key] = import_file(path, options, existing_ids=existing, progress=progress)
        result = read_against[key]
        quarantine_object = (
            workspace.objects.put_with(lambda p: _write_quarantine(result.quarantined, p))
            if result.quarantined
            else None
        )
        source = _source_entry(path, result)
        with workspace.record.session() as session:
            commit = None
            if result.examples:
                earlier = list(appended_to.provenance.get("sources", [])) if appended_to else []
                commit = commit_version(
                    workspace,
                    session,
                    name,
                    base + result.examples,
                    created_by="import",
                    provenance={"sources": [*earlier, source]},
                    note=f"{'append' if append else 'import'} {result.source} ({result.format})",
                    expected=head_number(head),
                )
            dataset = queries.dataset_named(session, name)
            if dataset is None:  # nothing accepted into a new name: no empty dataset is left
                return IngestOutcome(
                    result,
                    None,
                    import_id=None,
                    version=None,
                    appended_to=None,
                    quarantine_object=quarantine_object,
                )
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
            return IngestOutcome(
                result, commit, run.id, version, appended_to=appended_to, quarantine_object=quarantine_object
            )

    return retry_on_conflict(workspace, attempt, attempts=REBASE_ATTEMPTS if append else SETTLE_ATTEMPTS)


def _source_entry(path: Path, result: ImportResult) -> dict[str, Any]:
    """The file as a version's provenance names it."""
    source: dict[str, Any] = {
        "path": str(path.resolve()),
        "sha256": result.source_sha256,
        "format": result.format,
        "container": result.container,
    }
    if result.files:
        source["files"] = result.files
    return source


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
    if path.is_dir():  # a Hugging Face dataset folder, by the content of the files it is read from
        return ArtifactRef("source_folder", str(path), folder_sha256(path))
    if not path.is_file():
        read_bytes(path)  # raises the importer's own error for a missing path
    try:
        return ArtifactRef("source_file", str(path), sha256_file(path))
    except OSError as exc:
        raise ImportInputError(f"{path}: cannot read ({exc.strerror})") from exc


def _appended_to(name: str, version: DatasetVersion) -> ArtifactRef:
    return ArtifactRef("dataset_version", f"{name}@v{version.number}", version.content_hash)


def import_work(workspace: Workspace, settings: ImportSettings, root: Path) -> Work:
    """The source file(s) by content, the settings, and for --append the version appended to."""
    path = (root / settings.path).resolve()
    inputs = [_source(path)]
    inputs += [_source((root / spec.partition("=")[2]).resolve()) for spec in settings.label_groups]
    parent = read_head(workspace, settings.name) if settings.append else None
    if parent is not None:
        inputs.append(_appended_to(settings.name, parent))
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
        output = ArtifactRef("dataset_version", version.ref, version.content_hash)
        # An append comes from the version it was applied to, which a retry may have moved past
        # the one the work declared.
        parents = [i for i in work.inputs if i.kind != "dataset_version"]
        base = outcome.appended_to
        if base is not None:
            parents.append(_appended_to(settings.name, base))
        return Produced([output], outcome.summary(), {output: parents})

    return run_station(workspace, work, execute, force=force)
