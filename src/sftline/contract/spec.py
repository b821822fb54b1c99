"""The behaviour contract as written in sftline.yaml's `contract:` section (pydantic models)."""

from __future__ import annotations

from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutputFormat(_Strict):
    """What a correct target looks like."""

    kind: Literal["text", "labels", "json_schema"] = "text"
    """`text`: free text; `labels`: one label from `labels`; `json_schema`: JSON valid against `schema`."""
    labels: list[str] | None = None
    """The label set, for `kind: labels`; left empty, the labels seen in the training data."""
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    """A JSON schema (draft 2020-12) every target must validate against, for `kind: json_schema`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _matches_kind(self) -> OutputFormat:
        if self.kind == "labels" and self.labels and len(set(self.labels)) != len(self.labels):
            raise ValueError("'labels' has duplicates")
        if self.kind == "json_schema":
            if self.json_schema is None:
                raise ValueError("kind 'json_schema' needs a 'schema'")
            try:
                Draft202012Validator.check_schema(self.json_schema)
            except SchemaError as exc:
                raise ValueError(f"'schema' is not a valid JSON schema: {exc.message}") from exc
        return self


class Limits(_Strict):
    """Length limits, in tokens of the base model's tokenizer."""

    max_length: int = Field(default=2048, gt=0)
    """Longest rendered example (prompt + target) used in training."""
    max_target_tokens: int = Field(default=512, gt=0)
    """Longest answer a served model may give."""


class Contract(_Strict):
    """The behaviour contract: the seed of every station."""

    task: Literal["chat", "classify"] = "chat"
    """`chat`: generation with the model's chat template; `classify`: a label per input."""
    system_prompt: str | None = None
    """Used by training and serving alike."""
    output: OutputFormat = OutputFormat()
    abstention: str | None = None
    """The answer (or label) that means "out of scope", for example `oos`."""
    refusal_phrases: list[str] = []
    """Phrases that mark a refusal in generated text."""
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _abstention_in_labels(self) -> Contract:
        labels = self.output.labels
        if self.output.kind == "labels" and self.abstention and labels and self.abstention not in labels:
            raise ValueError(f"abstention answer {self.abstention!r} is not in output.labels")
        if self.task == "classify" and self.output.kind != "labels":  # labels may come from the data
            raise ValueError("task 'classify' needs output.kind 'labels'")
        return self
