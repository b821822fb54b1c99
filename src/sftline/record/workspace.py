"""A project opened for work: its config, its record and its object store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sftline.config import Project
from sftline.record.db import Record
from sftline.record.objects import LocalObjectStore


@dataclass
class Workspace:
    project: Project
    record: Record
    objects: LocalObjectStore

    @classmethod
    def open(cls, project: Project) -> Workspace:
        project.state_dir.mkdir(exist_ok=True)
        return cls(project, Record(project.database_url), LocalObjectStore(project.objects_dir))

    @classmethod
    def find(cls, start: Path | None = None) -> Workspace:
        return cls.open(Project.find(start))

    def close(self) -> None:
        self.record.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
