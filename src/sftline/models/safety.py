"""How sftline loads model weights: safetensors only, never code shipped in a folder.

A `.bin`/`.pt` checkpoint is a pickle, and unpickling runs whatever it names; an `auto_map` in a
config makes transformers import Python from the model folder. A registered or shared folder is
data, so weights load with `use_safetensors=True` (a folder with pickle weights only fails with
transformers' own message) and `trust_remote_code=False`, from local files.
"""

from __future__ import annotations

from typing import Any

SAFE_LOADING: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": False, "local_files_only": True}
"""Keyword arguments of every `from_pretrained` that loads weights."""
