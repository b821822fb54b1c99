"""The run's output: a Hugging Face folder (merged weights or full model, tokenizer, chat template)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from sftline.train.checkpoint import latest_checkpoint, load_trainable
from sftline.train.config import TrainConfig


def _load_best(model: torch.nn.Module, best_dir: Path) -> None:
    best = latest_checkpoint(best_dir)
    if best is None:
        return
    load_trainable(model, load_file(str(best / "trainable.safetensors")))


def export_model(
    model: Any, tokenizer: Any, config: TrainConfig, output: Path, *, best_dir: Path | None
) -> Path:
    """Write output/model (merged or full weights) and, for LoRA, output/adapter."""
    if best_dir is not None:
        _load_best(model, best_dir)
    target = output / "model"
    temp = output / ".tmp-model"
    shutil.rmtree(temp, ignore_errors=True)
    if config.method == "lora":
        model.save_pretrained(output / "adapter")
        tokenizer.save_pretrained(output / "adapter")
        merged = model.merge_and_unload() if config.lora.merge else model
        merged.save_pretrained(temp)
    else:
        model.save_pretrained(temp)
    tokenizer.save_pretrained(temp)
    shutil.rmtree(target, ignore_errors=True)
    temp.rename(target)
    return target
