"""Resume points: trainable weights, optimizer, scheduler, RNG and loop state, written atomically.

A checkpoint folder is built under a temporary name and renamed into place, so `kill -9` at
any moment leaves the previous checkpoint intact; `latest` is the highest complete step.

Under FSDP the weights and the optimizer state live in shards across the ranks: `capture` gathers
them (every rank must call it) into full tensors on rank 0, keyed by parameter name, and
`load_checkpoint` hands each rank its shards again. Every rank's RNG state is kept, so each
rank draws the same dropout masks after a resume as it would have without the interruption.
"""

from __future__ import annotations

import pickle
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from sftline.atomic import writing_folder
from sftline.errors import TrainingError
from sftline.train.distributed import DistInfo, Strategy, gather

PREFIX = "step-"


@dataclass
class Captured:
    """What a checkpoint holds of the model and optimizer, gathered on rank 0."""

    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: list[dict[str, Any]]
    """One RNG state per rank."""
    strategy: Strategy


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters of an unsharded model, on the CPU."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy `weights` into the unsharded model's parameters of those names."""
    params = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise TrainingError(f"weights for parameters the model does not have: {', '.join(unknown[:5])}")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device))


def full_trainable_state(model: torch.nn.Module, strategy: Strategy) -> dict[str, torch.Tensor]:
    """The trainable parameters as full tensors on rank 0 (under FSDP every rank must call this;
    the others get an empty dict)."""
    if strategy != "fsdp":
        return trainable_state(model)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {
        name: tensor.contiguous()
        for name, tensor in full.items()
        if name in trainable and isinstance(tensor, torch.Tensor)
    }


def capture(model: torch.nn.Module, optimizer: Any, info: DistInfo, strategy: Strategy) -> Captured:
    """The model's and optimizer's state for a checkpoint (a collective under FSDP)."""
    if strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        optimizer_state = get_optimizer_state_dict(model, optimizer, options=options)
    else:
        optimizer_state = optimizer.state_dict() if info.is_main else {}
    return Captured(
        full_trainable_state(model, strategy), optimizer_state, gather(_rng_state(), info), strategy
    )


def save_checkpoint(
    folder: Path, step: int, captured: Captured, scheduler: Any, loop_state: dict[str, Any]
) -> Path:
    """Write a captured state (rank 0 only) as `folder/step-NNNNNNN`, atomically: built and fsynced
    under a temporary name, renamed into place and the folder fsynced; a step written again
    replaces the old one only once the new one is complete (`atomic.writing_folder`)."""
    final = folder / f"{PREFIX}{step:07d}"
    with writing_folder(final) as temp:
        save_file(captured.weights, str(temp / "trainable.safetensors"))
        torch.save(
            {
                "optimizer": captured.optimizer,
                "scheduler": scheduler.state_dict(),
                "rng": captured.rng,
                "strategy": captured.strategy,
                "loop": loop_state,
            },
            temp / "state.pt",
        )
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    steps = sorted(p for p in folder.glob(f"{PREFIX}*") if p.is_dir() and (p / "state.pt").exists())
    return steps[-1] if steps else None


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, info: DistInfo, strategy: Strategy
) -> dict[str, Any]:
    """Restore a checkpoint into the (wrapped) model and its optimizer; returns the loop state.

    state.pt is read with `weights_only=True`: tensors and plain values only, never pickled
    objects, so a checkpoint in a shared run folder cannot run code on `--resume`."""
    try:
        state = torch.load(path / "state.pt", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise TrainingError(
            f"checkpoint {path} holds objects beyond tensors and plain values (written by an older "
            "sftline, or altered), so it is not loaded; train again without --resume"
        ) from exc
    if (state.get("strategy") == "fsdp") != (strategy == "fsdp"):
        raise TrainingError(
            f"checkpoint {path} was written under {state.get('strategy')}; resume it with the same "
            f"parallel setting (this run is {strategy})"
        )
    # One RNG state per process: another number of processes would draw other dropout masks.
    if len(state["rng"]) != info.world_size:
        raise TrainingError(
            f"checkpoint {path}: world size was {len(state['rng'])}, now {info.world_size}; resume it "
            f"with {len(state['rng'])} process(es)"
        )
    weights = load_file(str(path / "trainable.safetensors"))
    if strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(model, dict(weights), options=options)  # type: ignore[arg-type]
        set_optimizer_state_dict(model, optimizer, state["optimizer"], options=options)
    else:
        load_trainable(model, weights)
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"][info.rank])
    return dict(state["loop"])


def prune_checkpoints(folder: Path, keep: int = 2) -> None:
    steps = sorted(p for p in folder.glob(f"{PREFIX}*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain numbers (what `weights_only` loads)."""
    version, words, gauss = random.getstate()
    legacy = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state(legacy=True))
    kind, keys, position, has_gauss, cached_gauss = legacy
    return {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(cached_gauss),
        },
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    python = rng["python"]
    random.setstate((python["version"], tuple(python["words"].tolist()), python["gauss"]))
    numpy = rng["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["position"], numpy["has_gauss"], numpy["gauss"]))
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
