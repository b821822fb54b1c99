"""Settings of the data stations, one model each: the long options of `sftline data import`,
`data split` and `data mix` (dashes become underscores) and the keys of sftline.yaml's `line:`.

A field's docstring is its `--help` text; a new option is added here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sftline.data.mixtures import MAX_TOTAL
from sftline.data.versions import NAME_PATTERN


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, populate_by_name=True)


def _dataset_name(value: str | None) -> str | None:
    if value is not None and not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"invalid dataset name {value!r}: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit (a version is chosen with NAME@VERSION elsewhere)"
        )
    return value


class ImportSettings(_Settings):
    """`sftline data import PATH --name NAME ...`."""

    path: Path
    """The data: .jsonl, .json, .csv, .tsv or .parquet, each optionally .gz, or a Hugging Face
    dataset folder (Parquet shards or save_to_disk); relative to the project folder."""
    name: str
    """Dataset name, e.g. support."""
    format: Literal[
        "auto", "chat", "sharegpt", "prompt-completion", "alpaca", "classification", "pairs", "text"
    ] = "auto"
    """The record format; auto detects it from the first records and says what it saw."""
    text_field: str | None = None
    """Classification and text: the column with the input text."""
    label_field: str | None = None
    """Classification: the column with the label."""
    id_field: str = "id"
    """Field holding a record's own id, if any."""
    tag: list[str] = []
    """KEY=VALUE tag for every example (repeatable)."""
    tag_field: list[str] = []
    """A field whose value becomes a tag (repeatable)."""
    label_groups: list[str] = []
    """TAG=FILE.json: tag each example with the group of its label (repeatable)."""
    split: list[str] = []
    """JSON documents of one array per split: import only these (repeatable)."""
    append: bool = False
    """Add to the head version instead of replacing its content."""

    _name = field_validator("name")(_dataset_name)


class SplitSettings(_Settings):
    """`sftline data split DATASET ...`."""

    dataset: str
    """NAME[@VERSION] to split."""
    gold: float = Field(default=0.1, ge=0, lt=1)
    """Share of examples in the gold set (stratified by label)."""
    rolling_days: float | None = Field(default=None, gt=0, le=36_525, allow_inf_nan=False)
    """Hold out the most recent N days (needs --time-field; at most 36,525, a century)."""
    time_field: str | None = None
    """Tag holding each example's ISO time."""
    targeted: list[str] = []
    """TAG=VALUE[:SHARE] slice to hold out (repeatable; share 0.2)."""
    group_by: str = "near_duplicate"
    """near_duplicate, field:TAG or none: what must stay on one side."""
    seed: int = 7
    """Seed of every choice; recorded."""
    freeze_gold: bool = False
    """Freeze the gold set right after the split (it never changes again)."""


class MixSettings(_Settings):
    """`sftline data mix --from SOURCE --weights ...`."""

    sources: list[str] = Field(alias="from", min_length=1)
    """A source version (repeatable: rehearsal data)."""
    weights: str
    """e.g. "domain=banking:0.3,domain=travel:0.2,*:0.5"; dataset=NAME too."""
    total: int | None = Field(default=None, gt=0, le=MAX_TOTAL)
    """Examples in the mixture (default: all sources' size); at most 100 times the sources' size
    and 10,000,000."""
    seed: int = 7
    """Seed of the sampling; recorded."""
    name: str | None = None
    """Dataset name of the mixture (default SOURCE-mix)."""

    _name = field_validator("name")(_dataset_name)
