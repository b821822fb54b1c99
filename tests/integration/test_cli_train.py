"""`sftline train` end to end on a tiny random model: outputs, record, leases, resume after kill -9."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sftline.errors import TrainingError
from sftline.models import materialise
from sftline.record.leases import hostname
from sftline.record.queries import evaluation_named, get_run, resolve
from sftline.record.workspace import Workspace
from sftline.stations.train import start_run
from sftline.train.checkpoint import latest_checkpoint
from sftline.train.config import TrainConfig
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
    chat_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
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
        "manifest.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    manifest = json.loads((run_dir / "model" / "manifest.json").read_text())
    assert manifest["data"]["ref"] == "intents@v1" and manifest["seed"] == 3
    assert manifest["environment"]["libraries"]["torch"] and "commit" in manifest["environment"]["code"]
    assert manifest["base_model"]["name"] == "tiny" and len(manifest["base_model"]["content_hash"]) == 64
    assert "tokens per optimizer step" in manifest["tokens_per_step"]
    shown = run_json(capsys, "runs", "show", summary["run"])
    assert [m["step"] for m in shown["metrics"]] == list(range(1, 13))
    losses = [m["loss"] for m in shown["metrics"]]
    assert losses[-1] < losses[0]
    listed = run_json(capsys, "runs", "list")
    assert listed[0]["name"] == summary["run"] and listed[0]["status"] == "completed"
    # The exported folder was renamed into place whole: no temporary folder or file is left.
    assert sorted(p.name for p in run_dir.iterdir()) == ["adapter", "checkpoints", "model"]
    # Its content hash is taken once, at export, into the record and the manifest.
    files, model_hash = materialise.hash_folder(run_dir / "model")
    assert manifest["model"] == {"content_hash": model_hash, "files": files}
    # Every file but the manifest, which names the hash (and the card, which is written later).
    assert sorted(files) == sorted(p.name for p in (run_dir / "model").iterdir() if p.name != "manifest.json")
    with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
        row = get_run(session, summary["run"])
        assert (row.model_hash, row.model_files, row.error) == (model_hash, files, None)
    assert listed[0]["model_hash"] == model_hash

    # An eval of the run takes the recorded hash instead of hashing the folder again. (Its base,
    # `tiny`, is also a folder in the project, and a folder named on the command line is hashed.)
    def hash_all_but_the_run(path: Path) -> tuple[dict[str, str], str]:
        if Path(path).resolve() == (run_dir / "model").resolve():
            raise AssertionError(f"hashed {path}")
        return hash_folder(path)

    hash_folder = materialise.hash_folder
    monkeypatch.setattr(materialise, "hash_folder", hash_all_but_the_run)
    evaluated = run_json(
        capsys, "eval", summary["run"], "--on", "intents", "--sample", "2", "--max-new-tokens", "2"
    )
    with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
        evaluation = evaluation_named(session, evaluated["sections"][0]["evaluation"])
        assert evaluation.model_hash == model_hash


def _start(project: Path, **settings: object) -> dict[str, object]:
    """`start_run` itself, as the CLI's `train` calls it, on the arguments of TRAIN."""
    config = TrainConfig.model_validate(
        {"base": "tiny", "data": "intents", "max_steps": 12, "batch_tokens": 256, "seed": 3, **settings}
    )
    with Workspace.find(project) as workspace:
        return start_run(workspace, config)


def test_a_run_whose_data_preparation_fails_is_recorded_failed_with_its_error(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No rendered chat fits in 8 tokens: preparation refuses the data after the run's row exists.
    with pytest.raises(TrainingError, match=r"no example fits max_length 8 \(policy drop\)"):
        _start(chat_project, max_length=8)
    [listed] = run_json(capsys, "runs", "list")
    assert (listed["status"], listed["error"]) == ("failed", "no example fits max_length 8 (policy drop)")
    assert listed["finished_at"] is None and listed["model_hash"] is None
    assert not (chat_project / ".sftline" / "runs" / listed["name"] / "model").exists()


@pytest.mark.parametrize(
    ("raised", "status", "error"),
    [
        (KeyboardInterrupt(), "interrupted", None),
        (
            RuntimeError("CUDA error:\n  device-side assert"),
            "failed",
            "RuntimeError: CUDA error: device-side assert",
        ),
    ],
)
def test_what_ends_a_run_after_its_row_exists_is_recorded(
    chat_project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    raised: BaseException,
    status: str,
    error: str | None,
) -> None:
    def build_model(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr("sftline.stations.train.build_model", build_model)
    with pytest.raises(type(raised)):
        _start(chat_project)
    [listed] = run_json(capsys, "runs", "list")
    assert (listed["status"], listed["error"]) == (status, error)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_runs_list_shows_a_stale_running_row_interrupted_without_writing(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(TrainingError):
        _start(chat_project, max_length=8)  # a run row, cheaply
    now = datetime.now(timezone.utc)
    leases = {
        "dead pid, fresh heartbeat": (_dead_pid(), now, "interrupted"),
        "live pid, heartbeat an hour old": (os.getpid(), now - timedelta(hours=1), "interrupted"),
        "live pid, fresh heartbeat": (os.getpid(), now, "running"),
    }
    with Workspace.find(chat_project) as workspace:
        for case, (pid, beat, shown) in leases.items():
            with workspace.record.session() as session:
                row = get_run(session, "run-0001")
                row.status, row.pid, row.host, row.heartbeat_at = "running", pid, hostname(), beat
            [listed] = run_json(capsys, "runs", "list")
            assert listed["status"] == shown, case
            assert run_json(capsys, "runs", "show", "run-0001")["status"] == shown, case
            with workspace.record.session() as session:
                stored = get_run(session, "run-0001")
                assert stored.heartbeat_at is not None
                # SQLite hands back UTC without its zone.
                stored_beat = stored.heartbeat_at.replace(tzinfo=stored.heartbeat_at.tzinfo or timezone.utc)
                assert (stored.status, stored.pid, stored_beat) == ("running", pid, beat), case
        # A live lease also refuses a resume that would train beside its holder.
        with pytest.raises(TrainingError, match="run-0001: the run is still running"):
            start_run(workspace, TrainConfig.model_validate(stored.config), resume="run-0001")
        with workspace.record.session() as session:
            assert get_run(session, "run-0001").pid == os.getpid()


def test_kill_minus_nine_then_resume_gives_the_same_weights(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    longer = [a if a != "12" else "150" for a in TRAIN]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # --force: the same inputs and settings would otherwise reuse the first run instead of training.
    command = [sys.executable, "-m", "sftline", *longer, "--force", "--json"]
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
    saved = json.loads((model_dir / "classifier.json").read_text())
    assert saved["pooling"] == "mean"
    labels = set(saved["labels"])
    assert "oos" in labels and len(labels) == len({label for _, label in classify_rows()})
    # The encoder is saved whole (LoRA merged) and without the pooler the head does not read.
    weights = load_file(str(model_dir / "model.safetensors"))
    assert not any("pooler" in name or "lora" in name for name in weights)
    # Calibrated on the carved holdout (10% of 160 rows, stratified): a temperature and a rule.
    assert saved["calibrated_on"] == "intents@v1 (carved 10%)" and saved["temperature"] > 0
    assert saved["abstention"]["rule"]["label"] == "oos"
    assert saved["abstention"]["holdout"]["in_scope"] + saved["abstention"]["holdout"]["out_of_scope"] == 16
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["task"] == "classify" and "oos" in manifest["labels"]
    assert manifest["config"]["method"] == method and manifest["config"]["batch_size"] == 32
    # Settings not given take the classifier recipe's values (the lr was given).
    assert manifest["recipe"] == {
        "weight_decay": 0.01,
        "warmup_ratio": 0.1,
        "schedule": "linear",
        "eval_every": 5,  # once an epoch: 144 examples / 32
        "save_every": 5,
    }


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


def _stopped_half_way(project: Path) -> str:
    """A run of `_start`'s settings stopped after 6 of its 12 steps, on its checkpoint at step 6."""
    config = TrainConfig.model_validate(
        {"base": "tiny", "data": "intents", "max_steps": 12, "batch_tokens": 256, "seed": 3, "save_every": 3}
    )
    with Workspace.find(project) as workspace:
        summary = start_run(workspace, config, stop_after_steps=6)
    assert (summary["status"], summary["steps"]) == ("interrupted", 6)
    return str(summary["run"])


def test_resume_trains_on_the_data_version_the_run_started_on(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = _start(chat_project, save_every=3)  # uninterrupted, on intents@v1
    name = _stopped_half_way(chat_project)
    # Meanwhile a new version of `intents`: the bare name now resolves to it.
    lines = (chat_project / "intents.jsonl").read_text().splitlines(keepends=True)
    (chat_project / "intents-v2.jsonl").write_text("".join(lines[:60]))
    run_json(capsys, "data", "import", str(chat_project / "intents-v2.jsonl"), "--name", "intents")
    resumed = run_json(capsys, "train", "--resume", name)
    assert (resumed["status"], resumed["steps"], resumed["total_steps"]) == ("completed", 12, 12)
    with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
        assert resolve(session, "intents").ref == "intents@v2"
        v1_hash = resolve(session, "intents@v1").content_hash
    run_dir = chat_project / ".sftline" / "runs" / name
    manifest = json.loads((run_dir / "model" / "manifest.json").read_text())
    assert manifest["data"] == {"ref": "intents@v1", "content_hash": v1_hash}
    a = load_file(str(Path(str(full["output"])) / "model.safetensors"))
    b = load_file(str(run_dir / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for tensor in a:
        torch.testing.assert_close(a[tensor], b[tensor], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        (
            'system_prompt: "You are a helpful assistant."',
            'system_prompt: "Answer with the intent."',
            "contract system_prompt was 'You are a helpful assistant.', now 'Answer with the intent.'",
        ),
        ("max_length: 2048 ", "max_length: 1024 ", "max_length was 2048, now 1024"),
    ],
    ids=["system_prompt", "max_length"],
)
def test_resume_is_refused_in_one_line_when_the_contract_changed(
    chat_project: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, changed: str
) -> None:
    name = _stopped_half_way(chat_project)
    contract = chat_project / "sftline.yaml"
    assert old in contract.read_text()
    contract.write_text(contract.read_text().replace(old, new))
    refused = run_json(capsys, "train", "--resume", name, code=1)
    line = (
        f"--resume {name}: {changed}; resume takes no changes: restore what the run started with, "
        "or train a new run without --resume"
    )
    assert refused["err"] == f"error: {line}\n"
    assert refused["out"] == {"error": line, "exit_code": 1}
    # The refusal left the run as it was: stopped at step 6, resumable once the contract is restored.
    [listed] = run_json(capsys, "runs", "list")
    assert (listed["status"], listed["steps"], listed["error"]) == ("interrupted", 6, None)


def test_resume_is_refused_when_the_base_tokenizers_chat_template_was_edited_in_place(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _stopped_half_way(chat_project)
    template = chat_project / "tiny" / "chat_template.jinja"
    template.write_text(template.read_text().replace("m['content']", "m['content'] | trim"))
    refused = run_json(capsys, "train", "--resume", name, code=1)
    # The folder keeps the content hash it was registered with; only the template tells.
    assert "base model hash" not in refused["out"]["error"]
    assert re.fullmatch(
        rf"--resume {name}: base tokenizer's chat template hash was [0-9a-f]{{12}}, now [0-9a-f]{{12}}; "
        r"resume takes no changes: .*",
        refused["out"]["error"],
    )


def test_resume_is_refused_with_another_number_of_processes(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _stopped_half_way(chat_project)
    # As if the run had started under `torchrun --nproc_per_node=2`: its fingerprint says so ...
    with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
        row = get_run(session, name)
        recorded = row.summary["fingerprint"]
        row.summary = {**row.summary, "fingerprint": {**recorded, "world_size": 2}}
    refused = run_json(capsys, "train", "--resume", name, code=1)
    assert refused["out"]["error"] == (
        f"--resume {name}: world size was 2, now 1; resume takes no changes: restore what the run "
        "started with, or train a new run without --resume"
    )
    # ... and so does its checkpoint, with one RNG state per process, for a run recorded without
    # a fingerprint: the restore refuses instead of handing rank r the state of rank r % 2.
    with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
        row = get_run(session, name)
        row.summary = {k: v for k, v in row.summary.items() if k != "fingerprint"}
    checkpoint = latest_checkpoint(chat_project / ".sftline" / "runs" / name / "checkpoints")
    assert checkpoint is not None and checkpoint.name == "step-0000006"
    state = torch.load(checkpoint / "state.pt", weights_only=False)
    torch.save({**state, "rng": state["rng"] * 2}, checkpoint / "state.pt")
    refused = run_json(capsys, "train", "--resume", name, code=1)
    assert refused["out"]["error"] == (
        f"checkpoint {checkpoint}: world size was 2, now 1; resume it with 2 process(es)"
    )


def test_a_classifier_that_learned_nothing_says_so(
    classify_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # LoRA at lr 1e-7 for 4 steps: the loss stays at the label prior's (ln 151 = 5.02).
    args = ["train", "--base", "minilm-l6", "--data", "intents", "--method", "lora", "--max-steps", "4"]
    summary = run_json(capsys, *args, "--lr", "1e-7")
    assert summary["status"] == "completed"
    assert any("learned little" in w and "label prior" in w for w in summary["warnings"])
    assert any("not above chance" in w for w in summary["warnings"])


def test_a_learning_rate_sweep_trains_one_run_per_value_and_ranks_them_on_the_holdout(
    classify_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "--base", "minilm-l6", "--data", "intents", "--max-steps", "10"]
    outcome = run_json(capsys, *args, "--sweep", "lr=1e-7,1e-3")
    assert outcome["metric"] == "loss" and outcome["higher_is_better"] is False
    trials = {t["settings"]["lr"]: t for t in outcome["trials"]}
    assert set(trials) == {"1e-7", "1e-3"} and trials["1e-7"]["run"] != trials["1e-3"]["run"]
    # The holdout loss at each run's best checkpoint ranks them: lr 1e-7 barely moves.
    assert trials["1e-3"]["best_eval"] < trials["1e-7"]["best_eval"]
    assert (trials["1e-3"]["rank"], trials["1e-7"]["rank"]) == (1, 2)
    assert outcome["best"]["run"] == trials["1e-3"]["run"]
    runs = {r["name"]: r for r in run_json(capsys, "runs", "list")}
    assert runs[trials["1e-7"]["run"]]["config"]["lr"] == 1e-7
    # Each trial is an ordinary run of the train station: asked again, both are reused.
    again = run_json(capsys, *args, "--sweep", "lr=1e-7,1e-3")
    assert [t["station"] for t in again["trials"]] == ["cached", "cached"]
    bad = run_json(capsys, *args, "--sweep", "data=a,b", code=1)
    assert "not a training setting a sweep can vary" in bad["err"]
    bad = run_json(capsys, *args, "--sweep", "lr=fast", code=1)
    assert "lr" in bad["err"]


def test_a_classifier_says_which_token_settings_it_ignores(
    classify_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sftline.cli.main import main

    capsys.readouterr()
    args = ["train", "--base", "minilm-l6", "--data", "intents", "--max-steps", "1", "--batch-tokens", "512"]
    assert main(args) == 0
    startup = next(line for line in capsys.readouterr().err.splitlines() if "classifier (full" in line)
    assert (
        "32 per step" in startup
        and "batch_tokens ignored: a classifier's step is batch_size examples" in startup
    )
