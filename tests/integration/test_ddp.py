"""Two CPU processes (torchrun, gloo) end on the weights of one process with the same micro-batches:
DDP with LoRA, and FSDP with full fine-tuning interrupted and resumed halfway."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sftline.train.checkpoint import trainable_state
from sftline.train.trainer import build_model, prepare, train_loop
from tests.support.ddp_data import (
    GRAD_ACCUM_PER_RANK,
    INTERRUPTED_AT,
    MAX_STEPS,
    WORLD_SIZE,
    config_for,
    examples,
)
from tests.support.tiny_models import make_tiny_chat_model

WORKER = Path(__file__).resolve().parents[1] / "support" / "ddp_worker.py"


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_gloo_processes_match_one_process(tmp_path: Path, parallel: str) -> None:
    from transformers import AutoTokenizer

    model_dir = make_tiny_chat_model(tmp_path / "tiny")
    out = tmp_path / f"{parallel}.safetensors"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [torchrun, "--standalone", f"--nproc_per_node={WORLD_SIZE}", str(WORKER), parallel]
    result = subprocess.run(
        [*command, str(model_dir), str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    where = f"step-{INTERRUPTED_AT:07d}" if parallel == "fsdp" else "the start"
    assert f"rank 0: {MAX_STEPS} steps, resumed from {where}" in result.stdout, result.stdout

    # One process, uninterrupted, with the micro-batches of both ranks per step: grad_accum x world size.
    config = config_for(GRAD_ACCUM_PER_RANK * WORLD_SIZE, parallel)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = prepare(tokenizer, examples(), config, system_prompt=None, max_length=512)
    torch.manual_seed(config.seed)
    model = build_model(model_dir, config, torch.device("cpu"))
    train_loop(model, data, config, checkpoints=tmp_path / "ck", device=torch.device("cpu"))
    single = trainable_state(model)
    distributed = load_file(str(out))
    assert single.keys() == distributed.keys()
    for name, tensor in single.items():
        torch.testing.assert_close(distributed[name], tensor, rtol=1e-5, atol=1e-6)
    initial = build_model(model_dir, config, torch.device("cpu"))
    moved = [n for n, p in trainable_state(initial).items() if not torch.equal(p, single[n])]
    assert moved, "training changed no weight"
