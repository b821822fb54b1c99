"""Several processes, one run: torchrun / accelerate launch set the environment, this joins it.

Every rank builds the same plan; an optimizer step's micro-batches are dealt out round-robin
(rank r takes every world_size-th), so N ranks with grad_accum k consume exactly the micro-batches
one process with grad_accum N*k would, and end on the same weights (up to all-reduce rounding).
Only rank 0 writes checkpoints, the record and the exported model.

Two ways to spread the model (`parallel`): DDP keeps a whole replica on every rank and
all-reduces gradients; FSDP (torch's `fully_shard`, FSDP2) shards parameters, gradients and
optimizer state across ranks, one unit per transformer block plus the root, and all-gathers a
block's parameters just before it runs. Both average gradients over ranks, so the loss
arithmetic of a step is the same. `auto` takes FSDP for full fine-tuning (where replicated
AdamW state is what runs out of memory first) or when `accelerate launch --use_fsdp` asked for
it, and DDP otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist

from sftline.errors import TrainingError

Strategy = Literal["single", "ddp", "fsdp"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group that torchrun or accelerate launch describes (gloo on CPU, nccl on GPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def device_for(info: DistInfo) -> torch.device:
    return torch.device("cuda", info.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def strategy_for(parallel: str, method: str, info: DistInfo) -> Strategy:
    """What `parallel` (auto, ddp or fsdp) means for this run's processes."""
    if not info.active:
        return "single"
    if parallel == "auto":
        asked = os.environ.get("ACCELERATE_USE_FSDP", "").lower() in {"1", "true"}
        return "fsdp" if asked or method == "full" else "ddp"
    if parallel not in ("ddp", "fsdp"):
        raise TrainingError(f"parallel must be auto, ddp or fsdp, not {parallel!r}")
    return parallel  # type: ignore[return-value]


def wrap(model: torch.nn.Module, info: DistInfo, strategy: Strategy = "ddp") -> torch.nn.Module:
    """The model as the training step calls it. FSDP shards `model` in place (its parameters
    become DTensor shards), so build the optimizer after this."""
    if not info.active or strategy == "single":
        return model
    if strategy == "fsdp":
        return shard(model, info)
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.local_rank] if torch.cuda.is_available() else None
    return DistributedDataParallel(model, device_ids=device_ids)


def shard(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """FSDP2: one `fully_shard` unit per transformer block (the classes the model names in
    `_no_split_modules`), then the root, which holds the embeddings, the final norm and the head
    (tied embeddings stay together in it)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    base = getattr(model, "get_base_model", None)  # a peft model keeps the HF model inside
    inner = base() if callable(base) else model
    names = set(getattr(inner, "_no_split_modules", None) or ())
    blocks = [module for module in model.modules() if type(module).__name__ in names]
    if not blocks:
        raise TrainingError(
            f"FSDP shards a model by its transformer blocks, and {type(inner).__name__} names none "
            "(_no_split_modules); use parallel: ddp"
        )
    mesh = init_device_mesh("cuda" if torch.cuda.is_available() else "cpu", (info.world_size,))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


@contextlib.contextmanager
def gradient_sync(model: torch.nn.Module, strategy: Strategy, enabled: bool) -> Iterator[None]:
    """Within a step's micro-batches, gradients are reduced across ranks only after the last."""
    if strategy == "ddp" and not enabled:
        with model.no_sync():  # type: ignore[operator]
            yield
    elif strategy == "fsdp":
        model.set_requires_gradient_sync(enabled)  # type: ignore[operator]  # FSDPModule adds it
        yield
    else:
        yield


def sum_across(value: float, info: DistInfo) -> float:
    if not info.active:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item())


def gather(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if not info.active:
        return [value]
    values: list[Any] = [None] * info.world_size
    dist.all_gather_object(values, value)
    return values


def broadcast(value: Any, info: DistInfo) -> Any:
    """Rank 0's `value` on every rank."""
    if not info.active:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()
