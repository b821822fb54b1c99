"""`sftline models ...` end to end: the embedded MiniLM, a registered local folder, the list."""

from __future__ import annotations

from pathlib import Path

import pytest

from sftline.cli.main import main
from tests.support.cli import run_json


@pytest.fixture
def tiny_llama(tmp_path: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=256,
    )
    folder = tmp_path / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)
def test_pull_register_and_list(
    project_dir: Path, tiny_llama: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pulled = run_json(capsys, "models", "pull", "minilm")
    assert pulled["name"] == "minilm-l6" and pulled["kind"] == "encoder"
    assert Path(pulled["path"]) == project_dir / ".sftline" / "cache" / "models" / "minilm-l6"
    assert (Path(pulled["path"]) / "model.safetensors").is_file()
    again = run_json(capsys, "models", "pull", "minilm-l6")
    assert again["content_hash"] == pulled["content_hash"]

    with pytest.warns(UserWarning, match="tokenizer"):
        registered = run_json(capsys, "models", "base", "add", "tiny", str(tiny_llama))
    assert registered["kind"] == "causal-lm" and registered["source"] == f"local:{tiny_llama}"

    listed = {row["name"]: row for row in run_json(capsys, "models", "base", "list")}
    assert listed == {row["name"]: row for row in run_json(capsys, "models", "list")["base_models"]}
    assert listed["minilm-l6"]["status"] == "pulled"
    assert listed["minilm-l6"]["content_hash"] == pulled["content_hash"]
    assert listed["smollm2-135m-instruct"]["status"] == "not pulled"
    assert listed["tiny"]["status"] == "registered"


@pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)
def test_unknown_model_is_one_line(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["models", "pull", "gpt-17"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "minilm-l6" in err[0] and "smollm2-135m-instruct" in err[0]


@pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)
def test_an_embedded_base_model_is_pulled_on_first_use(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sftline.record.workspace import Workspace
    from sftline.stations.models import find_base_model

    bases = run_json(capsys, "models", "base", "list")
    assert [m["status"] for m in bases if m["name"] == "minilm-l6"] != ["ready"]
    with Workspace.find(project_dir) as workspace:
        found = find_base_model(workspace, "minilm-l6")
        again = find_base_model(workspace, "minilm-l6")
    assert found == again and found.kind == "encoder" and (found.path / "config.json").is_file()
    listed = {m["name"]: m for m in run_json(capsys, "models", "base", "list")}
    assert listed["minilm-l6"]["content_hash"] == found.content_hash
    with Workspace.find(project_dir) as workspace, pytest.raises(Exception, match="sftline models base add"):
        find_base_model(workspace, "no-such-model")


@pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)
def test_the_old_register_form_says_where_base_models_went(
    project_dir: Path, tiny_llama: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["models", "register", "tiny", str(tiny_llama)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"sftline models base add tiny {tiny_llama}" in err
