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
"""The FSDP worker stops here (a checkpoint step) and resumes in a fresh model."""


def config_for(grad_accum: int, parallel: str = "ddp") -> TrainConfig:
    """ddp: LoRA, as most runs are; fsdp: full fine-tuning, what FSDP is for."""
    shared: dict[str, Any] = {
        "base": "tiny",
        "data": "d",
        "max_steps": MAX_STEPS,
        "batch_tokens": 128,
        "grad_accum": grad_accum,
        "seed": 5,
    }
    if parallel == "fsdp":
        return TrainConfig(**shared, method="full", parallel="fsdp", lr=1e-4, save_every=INTERRUPTED_AT)
    return TrainConfig(**shared, lr=1e-3, save_every=1000, lora={"dropout": 0.0})


def examples() -> list[Example]:
    return clinc_chats(slice(0, 1200, 20), "d")
