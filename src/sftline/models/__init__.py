"""Base models: the embedded catalog, materialisation into the cache, and local folders."""

from __future__ import annotations

from sftline.models.catalog import ALIASES, EMBEDDED, CatalogEntry, resolve_name
from sftline.models.materialise import (
    MaterialisedModel,
    describe_folder,
    hash_folder,
    materialise_embedded,
)

__all__ = [
    "ALIASES",
    "EMBEDDED",
    "CatalogEntry",
    "MaterialisedModel",
    "describe_folder",
    "hash_folder",
    "materialise_embedded",
    "resolve_name",
]
