"""The `monitoring:` section of sftline.yaml: SLOs and burn-rate rules, drift, the review queue,
the cost model, retraining triggers and the alert webhook. Every field has a default, so
`sftline monitor` runs on a project that never wrote the section."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: str | float | int) -> float:
    """Seconds in `90s`, `5m`, `1h`, `3d` (a bare number is seconds)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if match is None:
            raise ValueError(f"{text!r} is not a duration: use a number with s, m, h or d (e.g. 24h)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """`parse_duration`'s inverse: a duration in its largest unit that divides it whole (`3600.0`
    is `1h`, `5400.0` is `90m`), so alert names made from windows stay the same pass after pass."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _duration(value: str | float | int) -> str | float | int:
    parse_duration(value)
    return value


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


SliName = Literal["success_rate", "latency", "contract_validity", "accuracy"]


class Slo(_Settings):
    """An objective on the share of good events: served requests (success, latency, contract
    validity) or labelled feedback (accuracy). The error budget is 1 - objective."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,80}$")
    sli: SliName
    """success_rate: not a 5xx or a timeout; latency: answered within threshold_ms;
    contract_validity: an answer the contract accepts; accuracy: labelled feedback that agrees."""
    objective: float = Field(gt=0, lt=1)
    """e.g. 0.99: at most 1% of events may be bad."""
    threshold_ms: float | None = Field(default=None, gt=0)
    """latency: the bound a good request meets. The record counts latencies in buckets, so a
    bound between two edges counts as the edge below it (`monitoring.slis.good_latency`)."""

    @model_validator(mode="after")
    def _latency_has_a_bound(self) -> Slo:
        if self.sli == "latency":
            if self.threshold_ms is None:
                raise ValueError(f"slo {self.name}: a latency SLO needs threshold_ms")
        elif self.threshold_ms is not None:
            raise ValueError(f"slo {self.name}: threshold_ms applies to latency SLOs only")
        return self


class BurnRule(_Settings):
    """A multi-window burn-rate alert (Google SRE workbook, chapter 5): fires when the budget burns
    at least `factor` times the sustainable rate over both the long and the short window (the short
    one makes it stop soon after the problem does)."""

    severity: Literal["page", "ticket"]
    factor: float = Field(gt=0)
    long: str
    short: str

    _check = field_validator("long", "short")(_duration)


def _default_rules() -> list[BurnRule]:
    return [
        BurnRule(severity="page", factor=14.4, long="1h", short="5m"),
        BurnRule(severity="page", factor=6, long="6h", short="30m"),
        BurnRule(severity="ticket", factor=1, long="3d", short="6h"),
    ]


def _default_slos() -> list[Slo]:
    return [
        Slo(name="availability", sli="success_rate", objective=0.99),
        Slo(name="latency", sli="latency", objective=0.95, threshold_ms=1000),
    ]


class DriftSettings(_Settings):
    """Drift between the serving model's training data and recent traffic."""

    enabled: bool = True
    false_alarm_rate: float = Field(default=0.05, gt=0, lt=1)
    """The family's level: the chance that any drift test fires on traffic like the training data.
    Split over the tests run (Bonferroni)."""
    min_samples: int = Field(default=30, ge=5)
    """Logged requests (or feedback labels, for calibration) a test needs; fewer: skipped, said so."""
    min_psi: float = Field(default=0.1, ge=0)
    """A distribution test fires only when the shift is also at least this large (PSI)."""
    permutations: int = Field(default=200, ge=20, le=10_000)
    """Of the embedding test."""
    reference_max: int = Field(default=2000, ge=50)
    """Training examples read as the reference (a seeded sample of larger sets)."""
    seed: int = 0
    reference: str | None = None
    """A dataset (NAME or NAME@vN) whose inputs stand for the traffic to expect; default: the
    serving model's training data. Name one when training reweighted its data (a mixture), so a
    traffic mix like the source's is not reported as drift."""
    reference_on: list[str] = []
    """Datasets whose evaluations of the serving model are the reference for predicted labels,
    confidence and calibration; []: every dataset it was evaluated on (a targeted holdout among
    them skews the label mix)."""


class ReviewSettings(_Settings):
    """Which logged predictions enter the human review queue."""

    confidence_below: float | None = Field(default=0.5, ge=0, le=1)
    """An answer less confident than this; null: none for confidence."""
    abstentions: bool = True
    contract_invalid: bool = True
    audit_share: float = Field(default=0.02, ge=0, le=1)
    """A random sample of the rest (chosen by the request id's hash), so reviewers also see what
    the model thinks it got right."""


class CostSettings(_Settings):
    """Cost per 1,000 requests = price_per_hour x the model's measured busy hours / requests x 1,000."""

    price_per_hour: float = Field(default=0.0, ge=0)
    """What an hour of the serving machine costs."""
    currency: str = "USD"


class TriggerSettings(_Settings):
    """When monitoring records a retraining trigger (`sftline retrain --if-triggered` acts on it)."""

    drift: bool = True
    """Any drift test fired."""
    slo_burn: Literal["page", "ticket", "off"] = "page"
    """A burn-rate alert of this severity (or worse) fired on an SLO of the model's answers
    (accuracy, contract_validity); an availability or latency SLO is not the model's to fix."""
    feedback_examples: int | None = Field(default=100, ge=1)
    """This many labels arrived since the feedback dataset was last trained on; null: off."""


class RetrainSettings(_Settings):
    promote_to: Literal["candidate", "canary"] = "canary"
    """Where the retrained model goes: registered as a candidate only, or also put through the
    registry's evidence-gated promotion to canary. Never production."""


class MonitoringConfig(_Settings):
    """The whole `monitoring:` section."""

    window: str = "24h"
    """What `sftline monitor` looks at by default."""
    window_scale: float = Field(default=1.0, gt=0, le=1)
    """Scales every burn-rate window (tests and drills: 1/60 turns an hour into a minute)."""
    slos: list[Slo] = Field(default_factory=_default_slos)
    burn_rules: list[BurnRule] = Field(default_factory=_default_rules)
    drift: DriftSettings = DriftSettings()
    review: ReviewSettings = ReviewSettings()
    cost: CostSettings = CostSettings()
    triggers: TriggerSettings = TriggerSettings()
    retrain: RetrainSettings = RetrainSettings()
    webhook_url: str | None = None
    """Alerts are POSTed here as JSON (Slack- and Alertmanager-style receivers take it)."""
    webhook_token_env: str | None = None
    """An environment variable holding a bearer token for the webhook (never the token itself)."""

    _window = field_validator("window")(_duration)

    @field_validator("slos")
    @classmethod
    def _unique_names(cls, slos: list[Slo]) -> list[Slo]:
        names = [slo.name for slo in slos]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"SLO names must be unique: {', '.join(twice)} given twice")
        return slos

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url must be an http(s) URL, got {url[:80]!r}")
        return url
