"""The project configuration, `sftline.yaml`, as pydantic models.

Validation collects every problem and raises one `ConfigError` that lists them all, each with
its dotted path in the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sftline.contract.metrics import BOUNDED_KINDS, checked_name, eval_metric
from sftline.contract.spec import Contract
from sftline.data.settings import ImportSettings, MixSettings, SplitSettings
from sftline.data.versions import NAME_PATTERN
from sftline.errors import ConfigError, ProjectNotFound
from sftline.evals.settings import EvalStationSettings, yaml_on
from sftline.gates.settings import CheckSettings
from sftline.monitoring.settings import MonitoringConfig
from sftline.safe_yaml import load_yaml
from sftline.train.config import TrainConfig

_M = TypeVar("_M", bound=BaseModel)

CONFIG_FILE = "sftline.yaml"
"""What a dataset or model name may be: letters, digits, '-', '_' and '.', at most 200 of them."""
STATE_DIR = ".sftline"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class LabelNoiseSettings(GateSettings):
    action: Action = "warn"
    """On by default where it applies: classification labels, or chat answers from a label set
    (the contract's, or one inferred from the answers); free-text answers are not judged."""
    folds: int = Field(default=5, ge=2, le=20)
    """Folds of out-of-fold probabilities; labels with fewer examples than this are left out."""
    seed: int = 0
    """Seed of the fold assignment."""


class SemanticDuplicateSettings(GateSettings):
    action: Action = "off"
    threshold: float = Field(default=0.95, gt=0, le=1)
    """Cosine similarity of MiniLM embeddings at or above which two inputs are paraphrases."""


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
    label_noise: LabelNoiseSettings = LabelNoiseSettings()
    semantic_duplicates: SemanticDuplicateSettings = SemanticDuplicateSettings()


class ReleaseCriterion(_Strict):
    """One condition a candidate must meet to replace the baseline."""

    metric: str
    """A metric's plain name, as `sftline eval --json` prints it: accuracy, macro_f1, ece, ...
    (see sftline.contract.metrics); an unknown name is a configuration error."""
    slices: Literal["overall", "critical", "all"] | list[str] = "overall"
    """Where it applies: overall, each critical slice, every slice, or the named slices."""
    max_drop: float | None = Field(default=None, ge=0)
    """Largest allowed worsening against the baseline (0.01 = one point of a rate); for metrics where
    lower is better (ece, latency_ms, ...) a rise counts as the worsening."""
    min: float | None = None
    """The candidate's value must be at least this."""
    max: float | None = None
    """The candidate's value must be at most this."""

    @field_validator("metric")
    @classmethod
    def _measured_by_eval(cls, name: str) -> str:
        return checked_name(name, measured_by_eval=True)

    @model_validator(mode="after")
    def _has_a_bound(self) -> ReleaseCriterion:
        if self.max_drop is None and self.min is None and self.max is None:
            raise ValueError(f"criterion on {self.metric!r} needs max_drop, min or max")
        # Every metric is at least 0, and a rate or score at most 1: a bound past them cannot be met.
        problems = []
        if self.min is not None and self.max is not None and self.min > self.max:
            problems.append(f"min {self.min:g} is above max {self.max:g}")
        if self.max is not None and self.max < 0:
            problems.append(f"max {self.max:g} is below 0, the least {self.metric} can be")
        if self.min is not None and self.min > 1 and eval_metric(self.metric).kind in BOUNDED_KINDS:
            problems.append(f"min {self.min:g} is above 1, the most {self.metric} can be")
        if problems:
            raise ValueError(f"{'; '.join(problems)}: the criterion could never pass")
        return self


def _default_criteria() -> list[ReleaseCriterion]:
    return [
        ReleaseCriterion(metric="accuracy", max_drop=0.0),
        ReleaseCriterion(metric="accuracy", slices="critical", max_drop=0.01),
        ReleaseCriterion(metric="schema_compliance", min=1.0),
    ]


class ReleaseConfig(_Strict):
    """When `sftline eval --baseline` / `eval compare` says a candidate may ship."""

    on: list[str] = []
    """The release suite: the datasets `sftline models promote` computes a version's verdict on
    (against the version in production, or the run's base model for a first promotion). Empty:
    the project's frozen gold sets."""

    critical_slices: list[str] = []
    """Slices (`tag=value`) that must not regress, e.g. `domain=banking`."""
    criteria: list[ReleaseCriterion] = Field(default_factory=_default_criteria)
    """Checked in order. A relative criterion fails when the paired 95% interval of the change lies
    wholly beyond the allowed drop, passes when it lies wholly within it, and is inconclusive
    otherwise. A criterion on a metric the task does not have is skipped; a verdict all of whose
    criteria were skipped is inconclusive. At least one criterion is required."""

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        return yaml_on(data)

    @field_validator("criteria")
    @classmethod
    def _not_empty(cls, criteria: list[ReleaseCriterion]) -> list[ReleaseCriterion]:
        if not criteria:
            raise ValueError("no criteria; a verdict needs one or more, e.g. {metric: accuracy, max_drop: 0}")
        return criteria


STATION_ORDER = ("import", "check", "split", "mix", "train", "eval")
"""The stations `sftline run` runs, in this order (the keys of `line:`)."""


class LineConfig(_Strict):
    """`sftline run`: each station's settings are the long options of its command (dashes become
    underscores). A station set to null, or absent, is not run."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    import_: list[ImportSettings] = Field(default_factory=list, alias="import")
    """`sftline data import` of each file, in order (paths relative to the project folder)."""
    check: CheckSettings | None = None
    """`sftline data check`."""
    split: SplitSettings | None = None
    """`sftline data split`."""
    mix: MixSettings | None = None
    """`sftline data mix`."""
    train: TrainConfig | None = None
    """`sftline train`."""
    eval: EvalStationSettings | None = None
    """`sftline eval` of the trained model (or `model:`), with the verdict against `baseline:`."""

    @field_validator("import_", mode="before")
    @classmethod
    def _one_or_none(cls, value: Any) -> Any:
        # `import: null` runs no import; one mapping is a list of one.
        return [] if value is None else [value] if isinstance(value, dict) else value


class ProjectConfig(_Strict):
    """The whole of sftline.yaml."""

    # pydantic before 2.10 reserves names starting with `model_`; `model_name` is not one of its own.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    project: str
    """The project's name."""
    model_name: str | None = None
    """The name of the model this project makes; the registry, serving and monitoring default to it.
    Default: the project's name."""
    database_url: str | None = None
    """SQLAlchemy URL of the record; default SQLite in .sftline/record.db. SFTLINE_DB_URL overrides."""
    base_model: str | None = None
    """The base model to fine-tune (an embedded name or a registered one); its tokenizer measures lengths."""
    contract: Contract = Contract()
    gates: GatesConfig = GatesConfig()
    release: ReleaseConfig = ReleaseConfig()
    line: LineConfig | None = None
    """The stations `sftline run` runs (see LineConfig)."""
    monitoring: MonitoringConfig = MonitoringConfig()
    """SLOs, drift, the review queue, cost, retraining triggers and alerts (`sftline monitor`)."""

    @field_validator("model_name", "base_model")
    @classmethod
    def _model_name_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"invalid model name {value[:80]!r}: use letters, digits, '-', '_' and '.', "
                "starting with a letter or digit (at most 200 characters)"
            )
        return value

    @property
    def effective_model_name(self) -> str:
        """`model_name`, else the project's name."""
        return self.model_name or self.project


def validation_problems(error: ValidationError) -> list[str]:
    """Each problem as `dotted.path: message`."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return problems


def format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"{source}: {error.error_count()} problem(s)"]
    lines += [f"  - {problem}" for problem in validation_problems(error)]
    return "\n".join(lines)


def parse_config(data: Any, source: str) -> ProjectConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source), validation_problems(exc)) from exc


def load_settings(model: type[_M], path: Path | None, overrides: dict[str, Any], what: str) -> _M:
    """Settings of `model` from an optional YAML file, with command-line `overrides` (None and
    empty values ignored) on top; every problem reported at once, naming the file."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = load_yaml(read_utf8(path)) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: cannot read {what} ({' '.join(str(exc).split())})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: {what} must be a mapping of settings")
    data.update({k: v for k, v in overrides.items() if v is not None and v != []})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        source = str(path) if path else what
        raise ConfigError(format_validation_error(exc, source), validation_problems(exc)) from exc


def load_config(path: Path) -> ProjectConfig:
    text = read_utf8(path)
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    return parse_config(data, str(path))


def read_utf8(path: Path) -> str:
    """The text of a config file, or a `ConfigError` naming the file and what is wrong with it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line} is not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from exc


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
    def embeddings_cache_dir(self) -> Path:
        """Embeddings `sftline monitor` keeps of its reference inputs (`<hash>.npy`)."""
        return self.state_dir / "cache" / "embeddings"

    @property
    def runs_dir(self) -> Path:
        """Training runs' folders: `runs/<run name>/` (checkpoints, model, manifest)."""
        return self.state_dir / "runs"

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
        path = find_config_file(start)
        return cls(path.parent, load_config(path))


def find_config_file(start: Path | None = None) -> Path:
    """sftline.yaml in `start` (default: the working directory) or the nearest folder above it."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder / CONFIG_FILE
    raise ProjectNotFound(
        f"no {CONFIG_FILE} in {here} or above; run `sftline init <folder>` or pass --project"
    )
