"""The project configuration, `sftline.yaml`, as pydantic models.

Validation collects every problem and raises one `ConfigError` that lists them all, each with
its dotted path in the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from sftline.errors import ConfigError, ProjectNotFound

_M = TypeVar("_M", bound=BaseModel)

CONFIG_FILE = "sftline.yaml"
STATE_DIR = ".sftline"


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
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError

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


def _yaml_off(value: Any) -> Any:
    # YAML 1.1 reads a bare `off` as false; a gate action written `off` means off.
    return "off" if value is False else value


Action = Annotated[Literal["block", "warn", "off"], BeforeValidator(_yaml_off)]


class GateSettings(_Strict):
    """What a gate does with the examples it flags."""

    action: Action = "block"
    """`block` quarantines flagged examples, `warn` keeps and reports them, `off` skips the gate."""
    reason_actions: dict[str, Action] = {}
    """Per-reason overrides, e.g. `{extreme_length: warn}`."""

    def action_for(self, reason: str) -> Action:
        return self.reason_actions.get(reason, self.action)


class NearDuplicateSettings(GateSettings):
    threshold: float = Field(default=0.8, gt=0, le=1)
    """Estimated Jaccard similarity of shingles at or above which two examples are near duplicates."""
    num_perm: int = Field(default=128, ge=16, le=1024)
    """MinHash permutations: more is more precise and slower."""
    field: Literal["prompt", "example"] = "prompt"
    """Compare the input side only, or input and answer together."""


class ContaminationSettings(GateSettings):
    threshold: float = Field(default=0.8, gt=0, le=1)
    """MinHash Jaccard threshold for short texts."""
    ngram: int = Field(default=13, ge=3)
    """Word n-gram size for long texts: any shared n-gram is contamination."""
    long_words: int = Field(default=50, ge=5)
    """Texts of at least this many words are compared by n-gram overlap, shorter ones by MinHash."""


class PiiSettings(GateSettings):
    mode: Literal["quarantine", "redact"] = "quarantine"
    """`quarantine` flags examples holding PII; `redact` replaces it with <EMAIL> etc. and keeps them."""
    kinds: list[Literal["email", "phone", "credit_card", "iban", "ssn", "ip_address"]] = [
        "email",
        "phone",
        "credit_card",
        "iban",
        "ssn",
        "ip_address",
    ]


class LengthSettings(GateSettings):
    min_target_tokens: int = Field(default=1, ge=0)
    """Answers shorter than this many tokens are `empty`."""
    extreme_factor: float = Field(default=8.0, gt=1)
    """Examples longer than this many times the median length are `extreme_length`."""
    reason_actions: dict[str, Action] = {"extreme_length": "warn"}


class BalanceSettings(GateSettings):
    action: Action = "warn"
    min_share: float | None = Field(default=None, ge=0, lt=1)
    """A label or slice below this share of the examples is flagged; by default a fifth of the
    uniform share (0.2 / number of values), so 151 balanced labels flag nothing."""
    tags: list[str] | None = None
    """Tag keys to check (default: every tag key)."""


class GatesConfig(_Strict):
    """The quality gates `sftline data check` runs, in this order."""

    exact_duplicates: GateSettings = GateSettings()
    conflicts: GateSettings = GateSettings()
    near_duplicates: NearDuplicateSettings = NearDuplicateSettings()
    contamination: ContaminationSettings = ContaminationSettings()
    pii: PiiSettings = PiiSettings()
    format: GateSettings = GateSettings()
    lengths: LengthSettings = LengthSettings()
    balance: BalanceSettings = BalanceSettings()


class ReleaseCriterion(_Strict):
    """One condition a candidate must meet to replace the baseline."""

    metric: str
    """A metric's plain name, as `sftline eval --json` prints it: accuracy, macro_f1, ece, ..."""
    slices: Literal["overall", "critical", "all"] | list[str] = "overall"
    """Where it applies: overall, each critical slice, every slice, or the named slices."""
    max_drop: float | None = Field(default=None, ge=0)
    """Largest allowed worsening against the baseline (0.01 = one point of a rate); for metrics where
    lower is better (ece, latency_ms, ...) a rise counts as the worsening."""
    min: float | None = None
    """The candidate's value must be at least this."""
    max: float | None = None
    """The candidate's value must be at most this."""

    @model_validator(mode="after")
    def _has_a_bound(self) -> ReleaseCriterion:
        if self.max_drop is None and self.min is None and self.max is None:
            raise ValueError(f"criterion on {self.metric!r} needs max_drop, min or max")
        return self


def _default_criteria() -> list[ReleaseCriterion]:
    return [
        ReleaseCriterion(metric="accuracy", max_drop=0.0),
        ReleaseCriterion(metric="accuracy", slices="critical", max_drop=0.01),
        ReleaseCriterion(metric="schema_compliance", min=1.0),
    ]


class ReleaseConfig(_Strict):
    """When `sftline eval --baseline` / `eval compare` says a candidate may ship."""

    critical_slices: list[str] = []
    """Slices (`tag=value`) that must not regress, e.g. `domain=banking`."""
    criteria: list[ReleaseCriterion] = Field(default_factory=_default_criteria)
    """Checked in order. A relative criterion fails when the paired 95% interval of the change lies
    wholly beyond the allowed drop, passes when it lies wholly within it, and is inconclusive
    otherwise. A criterion on a metric the task does not have is skipped."""


class ProjectConfig(_Strict):
    """The whole of sftline.yaml."""

    project: str
    """The project's name."""
    database_url: str | None = None
    """SQLAlchemy URL of the record; default SQLite in .sftline/record.db. SFTLINE_DB_URL overrides."""
    base_model: str | None = None
    """The base model to fine-tune (an embedded name or a registered one); its tokenizer measures lengths."""
    contract: Contract = Contract()
    gates: GatesConfig = GatesConfig()
    release: ReleaseConfig = ReleaseConfig()


def format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"{source}: {error.error_count()} problem(s)"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def parse_config(data: Any, source: str) -> ProjectConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc


def load_settings(model: type[_M], path: Path | None, overrides: dict[str, Any], what: str) -> _M:
    """Settings of `model` from an optional YAML file, with command-line `overrides` (None and
    empty values ignored) on top; every problem reported at once, naming the file."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read {what} ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: {what} must be a mapping of settings")
    data.update({k: v for k, v in overrides.items() if v is not None and v != []})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path) if path else f"{what} options")) from exc


def load_config(path: Path) -> ProjectConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    return parse_config(data, str(path))


class Project:
    """A project folder: its config and where its state lives."""

    def __init__(self, root: Path, config: ProjectConfig) -> None:
        self.root = root
        self.config = config

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def objects_dir(self) -> Path:
        return self.state_dir / "objects"

    @property
    def models_cache_dir(self) -> Path:
        return self.state_dir / "cache" / "models"

    @property
    def database_url(self) -> str:
        """SFTLINE_DB_URL, else sftline.yaml's database_url, else SQLite in .sftline/record.db."""
        env = os.environ.get("SFTLINE_DB_URL")
        if env:
            return env
        if self.config.database_url:
            return self.config.database_url
        return f"sqlite:///{self.state_dir / 'record.db'}"

    @classmethod
    def find(cls, start: Path | None = None) -> Project:
        """The project at `start` or the nearest folder above it holding sftline.yaml."""
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / CONFIG_FILE).is_file():
                return cls(folder, load_config(folder / CONFIG_FILE))
        raise ProjectNotFound(
            f"no {CONFIG_FILE} in {here} or above; run `sftline init <folder>` or pass --project"
        )
