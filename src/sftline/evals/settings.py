"""What an evaluation is told: the datasets, the sample, the generation limit, calibration."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


def yaml_on(data: Any) -> Any:
    """Settings with an `on:` list of datasets as YAML gives them: YAML 1.1 reads a bare `on:` key
    as the boolean true, and one dataset may be given alone (`on: support-gold`)."""
    if isinstance(data, dict) and True in data:
        data = {("on" if key is True else key): value for key, value in data.items()}
    if isinstance(data, dict) and isinstance(data.get("on"), str):
        data = {**data, "on": [data["on"]]}
    return data


class EvalSettings(BaseModel):
    """How to evaluate; a suite file (`--suite`) holds these, command-line options override them."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    on: list[str] = []
    """Datasets (NAME or NAME@VERSION) to evaluate on, each reported on its own."""
    slices: list[str] | None = None
    """Tag keys to slice by (default: every tag)."""
    sample: int | None = Field(default=None, ge=1)
    """Evaluate a seeded random sample of this many examples instead of all."""
    seed: int = 0
    """Seed of the sample and of the bootstrap."""
    max_new_tokens: int | None = Field(default=None, ge=1)
    """Generation limit (default: the contract's limits.max_target_tokens)."""
    batch_size: int = Field(default=32, ge=1)
    """Most prompts generated together."""
    batch_tokens: int = Field(default=16384, ge=64)
    """Most tokens (prompt + generation, padded) in one batch."""
    constrain: bool = True
    """Constrain generated answers to the contract's labels or JSON schema; --no-constrain turns it off."""
    abstain_below: float | None = Field(default=None, gt=0, lt=1)
    """Classifiers: answer the abstention label when the top probability is below this (instead
    of the rule the run stored)."""
    stored_abstention: bool = True
    """Classifiers: abstain by the rule the run chose on its holdout (score and threshold, stored
    with the model); --no-stored-abstention: only when the top label is the abstention label."""
    calibrate_on: str | None = None
    """Classifiers: fit a temperature on this holdout and apply it before scoring."""
    replicates: int = Field(default=1000, ge=10)
    """Bootstrap replicates for the 95% intervals."""

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        return yaml_on(data)


class EvalStationSettings(EvalSettings):
    """`line: eval:` in sftline.yaml: the suite, and which models it compares."""

    model: str | None = None
    """The model to evaluate (default: the model the line's train station made)."""
    baseline: str | None = None
    """Compare with this model (a run, a base model, or a folder) and give the release verdict."""
    no_base: bool = False
    """Skip the run's base model (shown to tell what SFT changed)."""
