"""The data and config shared by the 2-process DDP test and its 1-process reference."""

from __future__ import annotations

import json
from pathlib import Path

from sftline.data.example import Example, Provenance
from sftline.train.config import TrainConfig

CLINC = Path(__file__).resolve().parents[2] / "examples" / "clinc150" / "data_full.json"
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
    rows = json.loads(CLINC.read_text())["train"][:1200:20]
    return [
        Example(
            id=f"d{i}",
            provenance=Provenance("d", "0" * 64, "chat", i + 1),
            messages=[{"role": "user", "content": t}, {"role": "assistant", "content": label}],
        )
        for i, (t, label) in enumerate(rows)
    ]
