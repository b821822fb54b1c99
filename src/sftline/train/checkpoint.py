"""Resume points: trainable weights, optimizer, scheduler, RNG and loop state, written atomically.

A checkpoint folder is built under a temporary name and renamed into place, so `kill -9` at
any moment leaves the previous checkpoint intact; `latest` is the highest complete step.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

PREFIX = "step-"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    folder: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    loop_state: dict[str, Any],
) -> Path:
    final = folder / f"{PREFIX}{step:07d}"
    temp = folder / f".tmp-{PREFIX}{step:07d}-{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    save_file(trainable_state(model), str(temp / "trainable.safetensors"))
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            "loop": loop_state,
        },
        temp / "state.pt",
    )
    for path in temp.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(temp, final)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    steps = sorted(p for p in folder.glob(f"{PREFIX}*") if p.is_dir() and (p / "state.pt").exists())
    return steps[-1] if steps else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device))
    state = torch.load(path / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return dict(state["loop"])


def prune_checkpoints(folder: Path, keep: int = 2) -> None:
    steps = sorted(p for p in folder.glob(f"{PREFIX}*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
