"""Settings of the check station: `sftline data check DATASET ...` and `line: check:`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict


class CheckSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    dataset: str
    """NAME[@VERSION] to check."""
    against: list[str] = []
    """A holdout or eval set to check contamination against (repeatable)."""
    config: Path | None = None
    """A YAML file of gate settings (default: the gates: section of sftline.yaml)."""
    engine: Literal["local", "ray"] = "local"
    """local, or ray (Ray Data: RAY_ADDRESS or a local instance); the same result either way."""
