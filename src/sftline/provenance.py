"""Which code made an artifact: sftline's version and, in a checkout, its git commit, whether the
checkout had uncommitted changes, and the versions of the libraries that shape a model."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from sftline import __version__

LIBRARIES = ("torch", "transformers", "peft", "tokenizers", "safetensors", "accelerate", "numpy")
"""The packages whose versions a run records (absent ones as null)."""


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[2]  # src/sftline/provenance.py -> the checkout
    try:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def code_info() -> dict[str, Any]:
    """{"version", "commit", "dirty"}: commit and dirty are null outside a git checkout. `dirty`
    says tracked files under src/ differed from the commit (untracked files do not count)."""
    commit = (_git("rev-parse", "--short=12", "HEAD") or "").strip() or None
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "src") if commit else None
    return {"version": __version__, "commit": commit, "dirty": bool(status.strip()) if status else False}


def code_version() -> str:
    """sftline's version, plus the git commit when running from a checkout."""
    info = code_info()
    return f"{__version__}+g{info['commit']}" if info["commit"] else __version__


def environment() -> dict[str, Any]:
    """The code and the library versions of this process, as a run records them."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "code": code_info(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "libraries": versions,
    }
