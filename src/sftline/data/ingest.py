"""`sftline data import`: read a file, quarantine what is bad, version what is good."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from sftline.data.importer import ImportOptions, ImportResult, QuarantinedRecord, import_file
from sftline.data.versions import (
    CommitResult,
    check_dataset_name,
    commit_version,
    head,
    load_examples,
    version_summary,
)
from sftline.record.schema import Dataset, ImportRun
from sftline.record.workspace import Workspace


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
        dataset = session.scalars(select(Dataset).where(Dataset.name == name)).first()
        parent = head(session, dataset) if dataset is not None else None
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
        dataset = session.scalars(select(Dataset).where(Dataset.name == name)).first()
        if dataset is None:
            dataset = Dataset(name=name)
            session.add(dataset)
            session.flush()
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
