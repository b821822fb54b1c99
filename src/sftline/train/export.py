"""The run's output: a Hugging Face folder (merged weights or full model, tokenizer, chat template).

Each folder is written beside its place and renamed into it (`sftline.atomic.writing_folder`), so
a reader finds the previous export or the whole new one, never a folder still being written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from sftline.atomic import writing_folder
from sftline.train.checkpoint import latest_checkpoint, load_trainable
from sftline.train.config import TrainConfig


def load_best(model: torch.nn.Module, best_dir: Path) -> None:
    """The trainable weights of the newest checkpoint in `best_dir` into `model` (none: as is)."""
    best = latest_checkpoint(best_dir)
    if best is None:
        return
    load_trainable(model, load_file(str(best / "trainable.safetensors")))


def export_model(
    model: Any, tokenizer: Any, config: TrainConfig, output: Path, *, best_dir: Path | None
) -> Path:
    """Write output/model (merged or full weights) and, for LoRA, output/adapter, each atomically;
    returns output/model."""
    if best_dir is not None:
        load_best(model, best_dir)
    if config.method == "lora":
        with writing_folder(output / "adapter") as adapter:
            model.save_pretrained(adapter)
            tokenizer.save_pretrained(adapter)
        model = model.merge_and_unload() if config.lora.merge else model
    target = output / "model"
    with writing_folder(target) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return target
