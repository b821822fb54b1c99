"""The data and configs shared by the 2-process tests (DDP, FSDP) and their 1-process reference."""

from __future__ import annotations

from typing import Any

from sftline.data.example import Example
from sftline.train.config import TrainConfig
from tests.support.clinc import clinc_chats

GRAD_ACCUM_PER_RANK = 1
WORLD_SIZE = 2
MAX_STEPS = 5
INTERRUPTED_AT = 3
"""The killed runs' last checkpoint (save_every): they are killed after step INTERRUPTED_AT + 1,
whose work is lost, and resume here."""
SETUPS = ("ddp", "fsdp", "fsdp-lora-dropout")


def config_for(grad_accum: int, setup: str = "ddp") -> TrainConfig:
    """ddp: LoRA without dropout, as most runs are but comparable with 1 process; fsdp: full
    fine-tuning, what FSDP is for; fsdp-lora-dropout: LoRA with dropout 0.05, whose masks come
    from each rank's RNG, so a resumed run matches only with every rank's RNG state restored."""
    shared: dict[str, Any] = {
        "base": "tiny",
        "data": "d",
        "max_steps": MAX_STEPS,
        "batch_tokens": 128,
        "grad_accum": grad_accum,
        "seed": 5,
    }
    if setup == "fsdp":
        return TrainConfig(**shared, method="full", parallel="fsdp", lr=1e-4, save_every=INTERRUPTED_AT)
    if setup == "fsdp-lora-dropout":
        lora = {"dropout": 0.05}
        return TrainConfig(**shared, parallel="fsdp", lr=1e-3, save_every=INTERRUPTED_AT, lora=lora)
    return TrainConfig(**shared, parallel="ddp", lr=1e-3, save_every=1000, lora={"dropout": 0.0})


def examples() -> list[Example]:
    return clinc_chats(slice(0, 1200, 20), "d")
