"""Checkpoints: loaded without pickle, restoring every RNG exactly; written so that a crash or a
failed rewrite never loses the step that was there, with the folder fsynced after the rename."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import get_scheduler

import sftline.atomic
from sftline.errors import TrainingError
from sftline.train.checkpoint import capture, latest_checkpoint, load_checkpoint, save_checkpoint
from sftline.train.distributed import DistInfo

SINGLE = DistInfo()


def _training() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=2, num_training_steps=10)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def _save(folder: Path, step: int = 5) -> Path:
    model, optimizer, scheduler = _training()
    captured = capture(model, optimizer, SINGLE, "single")
    return save_checkpoint(folder, step, captured, scheduler, {"step": step, "history": [{"loss": 1.5}]})


def _draws() -> tuple[list[float], float, list[float]]:
    """The next numbers of torch's, Python's and NumPy's generators (NumPy's cached gaussian too)."""
    return torch.rand(3).tolist(), random.random(), np.random.standard_normal(3).tolist()


def test_a_checkpoint_loads_without_pickle_and_restores_every_generator(tmp_path: Path) -> None:
    random.seed(3)
    np.random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in NumPy's state
    random.gauss(0, 1)  # and one in Python's
    path = _save(tmp_path)
    expected = _draws()
    state = torch.load(path / "state.pt", weights_only=True)  # tensors and plain values only
    assert state["loop"] == {"step": 5, "history": [{"loss": 1.5}]}

    model, optimizer, scheduler = _training()
    _draws()  # move every generator on
    assert load_checkpoint(path, model, optimizer, scheduler, SINGLE, "single")["step"] == 5
    assert _draws() == expected
    assert scheduler.last_epoch == 1 and optimizer.state_dict()["state"][0]["step"].item() == 1


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


def test_a_state_holding_a_pickled_object_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    path = _save(tmp_path)
    marker = tmp_path / "code-ran"
    state = torch.load(path / "state.pt", weights_only=True)
    state["loop"]["payload"] = _RunsCode(marker)
    torch.save(state, path / "state.pt")
    model, optimizer, scheduler = _training()
    with pytest.raises(TrainingError, match="holds objects beyond tensors and plain values"):
        load_checkpoint(path, model, optimizer, scheduler, SINGLE, "single")
    assert not marker.exists()


def test_a_failed_rewrite_of_a_step_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _save(tmp_path)
    weights = (first / "trainable.safetensors").read_bytes()
    rename = os.replace

    def failing_rename(source: str | Path, target: str | Path) -> None:
        if Path(source).name.startswith(".tmp-"):  # the new checkpoint moving into place
            raise OSError(5, "Input/output error")
        rename(source, target)

    monkeypatch.setattr(os, "replace", failing_rename)
    with pytest.raises(OSError, match="Input/output error"):
        _save(tmp_path)
    assert latest_checkpoint(tmp_path) == first
    assert (first / "trainable.safetensors").read_bytes() == weights
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no temporary folder left


def test_the_folder_is_fsynced_after_the_checkpoint_is_renamed_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    rename, fsync = os.replace, sftline.atomic.fsync_path

    def recorded_rename(source: str | Path, target: str | Path) -> None:
        events.append(("rename", Path(target).name))
        rename(source, target)

    def recorded_fsync(path: Path) -> None:
        events.append(("fsync", str(path)))
        fsync(path)

    monkeypatch.setattr(os, "replace", recorded_rename)
    monkeypatch.setattr(sftline.atomic, "fsync_path", recorded_fsync)
    final = _save(tmp_path)
    renamed = events.index(("rename", final.name))
    assert ("fsync", str(tmp_path)) in events[renamed + 1 :]
    assert ("fsync", str(final)) not in events[renamed + 1 :]  # its files were flushed before
