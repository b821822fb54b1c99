"""The exported folders and manifest are renamed into place whole, or not at all."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import torch

from sftline.atomic import write_text, writing_folder
from sftline.train.config import TrainConfig
from sftline.train.export import export_model
from sftline.train.trainer import build_model
from tests.support.tiny_models import make_tiny_chat_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_chat_model(tmp_path_factory.mktemp("tiny"))


class FailingSave:
    """A model whose save dies half-way, after its first file."""

    def save_pretrained(self, folder: Path) -> None:
        (Path(folder) / "config.json").write_text("{}")
        raise OSError("disk full")


def test_lora_export_writes_model_and_adapter_and_replaces_an_earlier_export(
    tiny: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    config = TrainConfig(base="tiny", data="d")
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stale.bin").write_bytes(b"from an earlier export")
    model = build_model(tiny, config, torch.device("cpu"))
    assert export_model(model, tokenizer, config, tmp_path, best_dir=None) == tmp_path / "model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "model"]  # no .tmp-*, no .old-*
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755


def test_a_failed_export_leaves_the_previous_folder_as_it_was(tmp_path: Path) -> None:
    config = TrainConfig(base="tiny", data="d", method="full")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"previous")
    with pytest.raises(OSError, match="disk full"):
        export_model(FailingSave(), tokenizer=None, config=config, output=tmp_path, best_dir=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["model.safetensors"]
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == b"previous"


def test_writing_folder_is_invisible_until_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with writing_folder(target) as staging:
        (staging / "sub").mkdir()
        (staging / "sub" / "a.txt").write_text("a")
        assert not target.exists() and staging.parent == tmp_path
    assert (target / "sub" / "a.txt").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("old")
    write_text(path, '{"run": "run-0001"}')
    assert path.read_text() == '{"run": "run-0001"}'
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
