"""Planting record rows and files for the maintenance tests (doctor, gc, purge)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sftline.data.example import Example, Provenance
from sftline.record.leases import hostname
from sftline.record.schema import DatasetVersion, Run
from sftline.record.workspace import Workspace
from sftline.stations.versions import commit_version


def chat(example_id: str, user: str, question: str, answer: str = "ok") -> Example:
    """A chat example tagged with its `user_id`."""
    return Example(
        id=example_id,
        provenance=Provenance("chats.jsonl", "0" * 64, "chat", 1),
        messages=[{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        tags={"user_id": user},
    )


def labelled(example_id: str, text: str, label: str = "x") -> Example:
    return Example(
        id=example_id,
        provenance=Provenance("labels.csv", "0" * 64, "classification", 1),
        text=text,
        label=label,
    )


def commit(workspace: Workspace, name: str, examples: list[Example]) -> DatasetVersion:
    with workspace.record.session() as session:
        return commit_version(
            workspace, session, name, examples, created_by="test", provenance={}, note="planted"
        ).version


def add_run(
    workspace: Workspace,
    name: str,
    data: DatasetVersion,
    *,
    status: str = "completed",
    holdout: DatasetVersion | None = None,
    live: bool = False,
    heartbeat_age: timedelta | None = None,
    **fields: Any,
) -> Run:
    """A run row whose folder is `.sftline/runs/NAME`. `live`: held by this process now;
    `heartbeat_age`: held by a process on another host that last beat that long ago."""
    lease: dict[str, Any] = {}
    if live:
        lease = {"pid": os.getpid(), "host": hostname(), "heartbeat_at": datetime.now(timezone.utc)}
    elif heartbeat_age is not None:
        lease = {"pid": 1, "host": "elsewhere", "heartbeat_at": datetime.now(timezone.utc) - heartbeat_age}
    row = Run(
        name=name,
        status=status,
        config={},
        seed=0,
        data_version_id=data.id,
        eval_version_id=holdout.id if holdout else None,
        base_model="tiny",
        base_model_hash="0" * 64,
        code_version="test",
        output_dir=str(workspace.project.runs_dir / name),
        **lease,
        **fields,
    )
    with workspace.record.session() as session:
        session.add(row)
    return row


def make_checkpoints(run_folder: Path, steps: Sequence[int], best: Sequence[int] = ()) -> None:
    """`checkpoints/step-NNNNNNN/` (and `checkpoints/best/step-...`) holding 100 bytes each."""
    for folder, numbers in ((run_folder / "checkpoints", steps), (run_folder / "checkpoints" / "best", best)):
        for step in numbers:
            path = folder / f"step-{step:07d}"
            path.mkdir(parents=True)
            (path / "trainable.safetensors").write_bytes(b"w" * 100)


def age(path: Path, hours: float) -> None:
    """Set the modification time of `path` and everything under it to `hours` ago."""
    then = time.time() - hours * 3600
    targets = [path, *path.rglob("*")] if path.is_dir() else [path]
    for target in targets:
        os.utime(target, (then, then), follow_symlinks=False)
