"""A registered version as a Hugging Face folder that loads elsewhere as is, without sftline.

Two shapes. `merged`: the run's model folder (full weights as safetensors, config, tokenizer, chat
template, generation config), which transformers and, for causal LMs, vLLM load directly; a
classifier's folder also keeps sftline's head (`classifier.json`, `classifier_head.safetensors`).
`adapter`: the LoRA adapter alone, its base named by its portable name (a Hub id, not the cache
path it was trained from). Either carries the card as README.md and the record as manifest.json.

Nothing that runs code when loaded leaves: a folder with pickle weights or an `auto_map` (custom
modelling code, which needs trust_remote_code) is refused, not filtered, so an export is the
model that was registered or nothing. A merged export is checked against the record's hashes
first, so its manifest never describes other weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from sftline.atomic import FILE_MODE, writing_folder
from sftline.errors import ModelError
from sftline.models.catalog import EMBEDDED
from sftline.models.classifier import is_classifier_folder
from sftline.models.materialise import DESCRIPTIVE_FILES, hash_folder, read_json_object
from sftline.registry.card import is_embedded, portable_base_name

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
"""Weight formats loaded with pickle, which can run arbitrary code."""
CODE_CONFIGS = ("config.json", "tokenizer_config.json")
"""Files whose `auto_map` makes transformers import code shipped in the folder."""
ADAPTER_CONFIG = "adapter_config.json"

Mode = Literal["merged", "adapter"]


def export_folder(
    source_model: Path,
    out: Path,
    *,
    record: dict[str, Any],
    card: str,
    mode: Mode,
    adapter: Path | None = None,
) -> dict[str, Any]:
    """Write the export of `record`'s version to `out` atomically; returns {"path", "mode",
    "files" (name -> sha256 of the model's files, the card and manifest aside), "content_hash",
    "warnings"}.

    `source_model` is the run's model folder, `adapter` its adapter folder (LoRA runs). `out` must
    not exist or be an empty folder. Raises ModelError naming what stops the export.
    """
    source_model, out = Path(source_model), Path(out)
    _check_out(out)
    folder = _folder_to_export(source_model, record, mode, adapter)
    _refuse_code(folder)
    if mode == "adapter":
        _refuse_code(source_model)  # the base the adapter applies to
    else:
        _check_matches_record(folder, record)
    warnings = _warnings(record, mode)
    with writing_folder(out) as staging:
        _copy_model_files(folder, staging)
        if mode == "adapter":
            _name_base(staging / ADAPTER_CONFIG, portable_base_name(record["base_model"]))
        _write(staging / "README.md", card)
        _write(staging / "manifest.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    files, content_hash = hash_folder(out)
    return {
        "path": str(out.resolve()),
        "mode": mode,
        "files": files,
        "content_hash": content_hash,
        "warnings": warnings,
    }


def _check_out(out: Path) -> None:
    if out.is_dir() and not out.is_symlink():
        if any(out.iterdir()):
            raise ModelError(f"{out} is not empty; export into a new or empty folder")
    elif out.exists() or out.is_symlink():
        raise ModelError(f"{out} exists and is not a folder; export into a new or empty folder")


def _folder_to_export(source_model: Path, record: dict[str, Any], mode: str, adapter: Path | None) -> Path:
    """The folder whose files the export copies, once it is known to hold what `mode` needs."""
    name = f"{record['name']}@{record['version']}"
    classifier = record["run"]["task"] == "classify" or is_classifier_folder(source_model)
    if mode == "adapter":
        if classifier:
            raise ModelError(f"{name} is a classifier: its only export is merged (the encoder with its head)")
        if adapter is None or not (Path(adapter) / ADAPTER_CONFIG).is_file():
            raise ModelError(f"{name} has no LoRA adapter folder to export; export it merged")
        return Path(adapter)
    if mode != "merged":
        raise ModelError(f"unknown export mode {mode!r}: use merged or adapter")
    if not (source_model / "config.json").is_file():
        if (source_model / ADAPTER_CONFIG).is_file():
            raise ModelError(f"{source_model} holds only an adapter (lora.merge off): export it as adapter")
        raise ModelError(f"{source_model} is not a model folder to export: it has no config.json")
    return source_model


def _refuse_code(folder: Path) -> None:
    """Refuse weights loaded through pickle and configs that import code from the folder."""
    pickles = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES
    )
    if pickles:
        raise ModelError(
            f"{folder} holds pickle files ({', '.join(pickles)}), which can run code when loaded; "
            "sftline exports safetensors only"
        )
    for name in CODE_CONFIGS:
        if "auto_map" in _read_json(folder / name):
            raise ModelError(
                f"{folder / name} has an auto_map (custom model code, which needs trust_remote_code); "
                "sftline does not export models that run their own code"
            )


def _check_matches_record(folder: Path, record: dict[str, Any]) -> None:
    """The folder's files are the ones the version registered (the manifest will say they are)."""
    _, content_hash = hash_folder(folder)
    expected = record["artifact"]["content_hash"]
    if content_hash != expected:
        raise ModelError(
            f"{folder} no longer holds {record['name']}@{record['version']}: its content hash is "
            f"{content_hash[:12]}, the record's {expected[:12]}"
        )


def _warnings(record: dict[str, Any], mode: str) -> list[str]:
    """An adapter of an embedded GGUF base does not reproduce the model on the Hub's weights."""
    base = record["base_model"]
    if mode != "adapter" or not is_embedded(base) or EMBEDDED[base["name"]].layout != "gguf":
        return []
    return [
        f"the base {base['name']} was dequantised from the GGUF file sftline embeds, so its weights "
        f"differ from the Hub's {portable_base_name(base)}: this adapter on the Hub's weights is not "
        "the model that was measured; the merged export is the faithful one"
    ]


def _copy_model_files(source: Path, target: Path) -> None:
    """Every file under `source` but its card and manifest (the export writes its own)."""
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = file.relative_to(source)
        if relative.as_posix() in DESCRIPTIVE_FILES:
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target / relative)
        (target / relative).chmod(FILE_MODE)


def _name_base(adapter_config: Path, base_name: str) -> None:
    """Point the adapter at its base by a name another machine resolves."""
    config = _read_json(adapter_config)
    config["base_model_name_or_path"] = base_name
    _write(adapter_config, json.dumps(config, indent=2, sort_keys=True) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object file's content; {} when absent."""
    return read_json_object(path) if path.is_file() else {}


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(FILE_MODE)
