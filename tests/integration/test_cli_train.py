"""`sftline train` end to end on a tiny random model: outputs, record, resume after kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.integration.conftest import classify_rows
from tests.support.cli import run_json

CLINC = Path(__file__).resolve().parents[2] / "examples" / "clinc150"
pytestmark = pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)


TRAIN = [
    "train",
    "--base",
    "tiny",
    "--data",
    "intents",
    "--max-steps",
    "12",
    "--batch-tokens",
    "256",
    "--save-every",
    "3",
    "--seed",
    "3",
    "--lr",
    "1e-3",
]


def test_train_writes_the_model_folder_manifest_and_record(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_json(capsys, *TRAIN)
    assert summary["status"] == "completed" and summary["steps"] == 12
    assert summary["trained_tokens"] > 0 and summary["tokens_per_second"] > 0
    # Every chat starts with the template header and the contract's system prompt: shared per row.
    packing = summary["packing"]
    assert packing["shared_prefix_examples"] == packing["examples"] == 120
    assert packing["computed_tokens"] < packing["example_tokens"]
    assert 0 < summary["computed_tokens_per_second"] < summary["tokens_per_second"]
    assert summary["parallel"] == {"strategy": "single", "world_size": 1}
    run_dir = chat_project / ".sftline" / "runs" / summary["run"]
    assert sorted(p.name for p in (run_dir / "model").iterdir()) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data"]["ref"] == "intents@v1" and manifest["seed"] == 3
    assert manifest["base_model"]["name"] == "tiny" and len(manifest["base_model"]["content_hash"]) == 64
    assert "tokens per optimizer step" in manifest["tokens_per_step"]
    shown = run_json(capsys, "runs", "show", summary["run"])
    assert [m["step"] for m in shown["metrics"]] == list(range(1, 13))
    losses = [m["loss"] for m in shown["metrics"]]
    assert losses[-1] < losses[0]
    listed = run_json(capsys, "runs", "list")
    assert listed[0]["name"] == summary["run"] and listed[0]["status"] == "completed"


def test_kill_minus_nine_then_resume_gives_the_same_weights(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    longer = [a if a != "12" else "150" for a in TRAIN]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "sftline", *longer, "--json"]
    # An uninterrupted 150-step run in-process, and one killed with SIGKILL after its first checkpoint.
    full = run_json(capsys, *longer)
    process = subprocess.Popen(
        command, cwd=chat_project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    run_dir = chat_project / ".sftline" / "runs" / f"run-{int(full['run'].split('-')[1]) + 1:04d}"
    deadline = time.monotonic() + 120
    while not list((run_dir / "checkpoints").glob("step-*")) and time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"the run ended before a checkpoint: {error}")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "model").exists()
    resumed = run_json(capsys, "train", "--resume", run_dir.name)
    assert resumed["status"] == "completed" and resumed["steps"] == 150
    a = load_file(str(Path(full["output"]) / "model.safetensors"))
    b = load_file(str(run_dir / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_minilm_classifier_trains_with_the_abstention_label(
    classify_project: Path, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    summary = run_json(
        capsys,
        "train",
        "--base",
        "minilm-l6",
        "--data",
        "intents",
        "--method",
        method,
        "--max-steps",
        "4",
        "--batch-tokens",
        "512",
        "--lr",
        "5e-5",
    )
    assert summary["status"] == "completed" and summary["steps"] == 4
    model_dir = Path(summary["output"])
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["architectures"] == ["BertForSequenceClassification"]
    labels = set(saved["id2label"].values())
    assert "oos" in labels and len(labels) == len({label for _, label in classify_rows()})
    manifest = json.loads((model_dir.parent / "manifest.json").read_text())
    assert manifest["task"] == "classify" and "oos" in manifest["labels"]


def test_torchrun_two_processes_fsdp_full_fine_tuning_exports_one_model(chat_project: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    steps = [a if a != "12" else "4" for a in TRAIN[:-2]]  # 4 steps; lr 1e-4, for full fine-tuning
    command = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "sftline", *steps]
    command += ["--lr", "1e-4", "--method", "full", "--json"]
    result = subprocess.run(command, cwd=chat_project, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{") :])  # rank 0 alone prints
    assert summary["status"] == "completed" and summary["steps"] == 4
    assert summary["parallel"] == {"strategy": "fsdp", "world_size": 2}  # auto: fsdp for full
    exported = load_file(str(Path(summary["output"]) / "model.safetensors"))
    base = load_file(str(chat_project / "tiny" / "model.safetensors"))
    assert exported.keys() == base.keys()
    assert all(exported[n].shape == base[n].shape for n in base)  # whole tensors, not shards
    assert any(not torch.equal(exported[n], base[n]) for n in base)
