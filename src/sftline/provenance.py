"""Which code made an artifact: sftline's version and, in a checkout, its git commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sftline import __version__


def code_version() -> str:
    """sftline's version, plus the git commit when running from a checkout."""
    root = Path(__file__).resolve().parents[2]  # src/sftline/provenance.py -> the checkout
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" if commit else __version__
