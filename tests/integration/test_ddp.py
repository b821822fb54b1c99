"""Two CPU processes (torchrun, gloo) end on the weights, and log the losses and gradient norms,
of one process with the same micro-batches: DDP with LoRA, and FSDP with full fine-tuning killed
(SIGKILL) halfway and resumed. Two processes with LoRA dropout, killed and resumed, end
bit-identical to their uninterrupted run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from sftline.record.leases import _pid_alive
from sftline.train.checkpoint import trainable_state
from sftline.train.dropout import BitDropout
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
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def worker_command(setup: str, model_dir: Path, out: Path, *flags: str) -> list[str]:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    command = [torchrun, "--standalone", f"--nproc_per_node={WORLD_SIZE}", str(WORKER)]
    return [*command, setup, str(model_dir), str(out), *flags]


def logged(out: Path) -> list[dict[str, Any]]:
    """The metric rows the worker's run handed over with its checkpoints, in order."""
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def two_processes(setup: str, model_dir: Path, out: Path, *, killed: bool = False) -> None:
    """Train `setup` under torchrun into `out`; `killed`: first a run killed after its checkpoint
    at INTERRUPTED_AT (and one more step), then `--resume`."""
    out.mkdir()
    if killed:
        kill_after_checkpoint(setup, model_dir, out)
    command = worker_command(setup, model_dir, out, *(["--resume"] if killed else []))
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    where = f"step-{INTERRUPTED_AT:07d}" if killed else "the start"
    assert f"rank 0: {MAX_STEPS} steps, resumed from {where}" in result.stdout, result.stdout


def kill_after_checkpoint(setup: str, model_dir: Path, out: Path) -> None:
    """SIGKILL every process of a run held after step INTERRUPTED_AT + 1: its checkpoint at
    INTERRUPTED_AT written, the step after it done and lost."""
    command = worker_command(setup, model_dir, out, "--hold-after", str(INTERRUPTED_AT + 1))
    with (out / "killed.log").open("w") as log:
        process = subprocess.Popen(command, env=ENV, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "held").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                log_tail = (out / "killed.log").read_text()[-3000:]
                pytest.fail(f"the run ended or hung before step {INTERRUPTED_AT + 1}: {log_tail}")
            time.sleep(0.05)
    finally:
        # torchrun starts each worker in a session of its own (start_new_session in torch's
        # SubprocessHandler): killing torchrun's process group alone leaves the workers running.
        workers = [int(path.read_text()) for path in out.glob("pid-*")]
        for group in [process.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        process.wait()
        gone_by = time.monotonic() + 30
        while any(_pid_alive(pid) for pid in workers) and time.monotonic() < gone_by:
            time.sleep(0.01)
    assert not any(_pid_alive(pid) for pid in workers)
    assert len(workers) == WORLD_SIZE
    assert [p.name for p in (out / "checkpoints").glob("step-*")] == [f"step-{INTERRUPTED_AT:07d}"]
    assert [row["step"] for row in logged(out)] == list(range(1, INTERRUPTED_AT + 1))
    assert not (out / "weights.safetensors").exists()


@pytest.mark.parametrize("setup", ["ddp", "fsdp"])
def test_two_gloo_processes_match_one_process(tmp_path: Path, setup: str) -> None:
    from transformers import AutoTokenizer

    model_dir = make_tiny_chat_model(tmp_path / "tiny")
    two_processes(setup, model_dir, tmp_path / setup, killed=setup == "fsdp")

    # One process, uninterrupted, with the micro-batches of both ranks per step: grad_accum x world size.
    config = config_for(GRAD_ACCUM_PER_RANK * WORLD_SIZE, setup)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = prepare(tokenizer, examples(), config, system_prompt=None, max_length=512)
    torch.manual_seed(config.seed)
    model = build_model(model_dir, config, torch.device("cpu"))
    result = train_loop(model, data, config, checkpoints=tmp_path / "ck", device=torch.device("cpu"))

    # Every step's logged loss and gradient norm, each step logged once across the kill. Seen: the
    # losses equal; gradient norms within 7e-8 (DDP) and 2e-5 (FSDP) relative, though the gradients
    # are bit-identical at step 1: clip_grad_norm_'s float32 norm is 3e-5 off the float64 one with
    # 1 process, and sharding sums it in another order. A halved loss is 0.5 off, 5e5 x the loss
    # tolerance; a halved or doubled gradient 0.5 or 1.0, 5e3 or 1e4 x the gradient norm's.
    rows = logged(tmp_path / setup)
    assert [row["step"] for row in rows] == list(range(1, MAX_STEPS + 1))
    for name, rtol in [("loss", 1e-6), ("grad_norm", 1e-4), ("lr", 0.0)]:
        two = torch.tensor([row[name] for row in rows], dtype=torch.float64)
        one = torch.tensor([row[name] for row in result.state.history], dtype=torch.float64)
        torch.testing.assert_close({name: two}, {name: one}, rtol=rtol, atol=0)  # names the metric

    single = trainable_state(model)
    distributed = load_file(str(tmp_path / setup / "weights.safetensors"))
    assert single.keys() == distributed.keys()
    for name, tensor in single.items():
        torch.testing.assert_close(distributed[name], tensor, rtol=1e-5, atol=1e-6)
    initial = build_model(model_dir, config, torch.device("cpu"))
    moved = [n for n, p in trainable_state(initial).items() if not torch.equal(p, single[n])]
    assert moved, "training changed no weight"


def test_two_processes_killed_and_resumed_with_lora_dropout_end_bit_identical(tmp_path: Path) -> None:
    model_dir = make_tiny_chat_model(tmp_path / "tiny")
    config = config_for(GRAD_ACCUM_PER_RANK, "fsdp-lora-dropout")
    # Dropout masks are drawn: the 7 linear layers (q, k, v, o, gate, up, down) of 2 blocks.
    dropouts = build_model(model_dir, config, torch.device("cpu")).modules()
    assert sum(isinstance(m, BitDropout) and m.p == 0.05 for m in dropouts) == 14
    two_processes("fsdp-lora-dropout", model_dir, tmp_path / "whole")
    two_processes("fsdp-lora-dropout", model_dir, tmp_path / "resumed", killed=True)
    whole = load_file(str(tmp_path / "whole" / "weights.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "weights.safetensors"))
    assert whole.keys() == resumed.keys()
    for name, tensor in whole.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0)
    metrics = ("step", "loss", "grad_norm", "lr")
    assert [{k: r[k] for k in metrics} for r in logged(tmp_path / "resumed")] == [
        {k: r[k] for k in metrics} for r in logged(tmp_path / "whole")
    ]
