"""The data and config shared by the 2-process DDP test and its 1-process reference."""

from __future__ import annotations

from sftline.data.example import Example
from sftline.train.config import TrainConfig
from tests.support.clinc import clinc_chats

GRAD_ACCUM_PER_RANK = 1
WORLD_SIZE = 2


def config_for(grad_accum: int) -> TrainConfig:
    return TrainConfig(
        base="tiny",
        data="d",
        max_steps=5,
        batch_tokens=128,
        grad_accum=grad_accum,
        lr=1e-3,
        seed=5,
        save_every=1000,
        lora={"dropout": 0.0},
    )


def examples() -> list[Example]:
    return clinc_chats(slice(0, 1200, 20), "d")
