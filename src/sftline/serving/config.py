"""`deployments.yaml`: what the registry's stages do not say about serving.

The registry is the source of truth for which version is in production and which in canary; this
file adds how traffic meets them: the canary's share, shadow copies, remote backends, the canary
analysis, limits, batching and the prediction log. Every field has a default, so a server runs
without the file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from sftline.config import load_settings


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class RemoteBackend(_Settings):
    """An OpenAI-compatible server (vLLM, TGI, another `sftline serve`) that answers for a version."""

    url: str
    """Its base URL, up to and including /v1 (e.g. http://gpu-1:8000/v1)."""
    api_key_env: str | None = None
    """The environment variable holding its API key (the key itself never goes in this file)."""
    model: str | None = None
    """The model name to send it (default: the version's name, e.g. support@3)."""
    timeout_s: float = Field(default=60.0, gt=0)


class AnalysisSettings(_Settings):
    """The canary analysis: canary against production over a sliding window."""

    enabled: bool = True
    window_s: float = Field(default=300.0, gt=0)
    """The window both are measured over."""
    interval_s: float = Field(default=30.0, gt=0)
    """How often the analysis runs."""
    min_requests: int = Field(default=50, ge=1)
    """Requests each side needs in the window before the analysis decides anything."""
    max_error_rate_increase: float = Field(default=0.02, ge=0)
    """Largest allowed rise of the canary's error rate (5xx and timeouts) over production's."""
    max_p95_ratio: float = Field(default=1.5, gt=0)
    """Largest allowed ratio of the canary's p95 latency to production's."""
    max_invalid_rate_increase: float = Field(default=0.01, ge=0)
    """Largest allowed rise of the share of answers that break the contract."""
    max_abstention_rate_change: float = Field(default=0.1, ge=0)
    """Largest allowed change, either way, of the share of abstentions."""
    promote_on_pass: bool = False
    """Promote the canary to production once a full window passes (the registry still asks for
    its release verdict)."""


class Limits(_Settings):
    """Request limits; each breach is a 4xx with a message saying which."""

    max_body_bytes: int = Field(default=1_000_000, gt=0)
    max_messages: int = Field(default=64, gt=0)
    max_prompt_tokens: int | None = Field(default=None, gt=0)
    """Default: the contract's limits.max_length."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Most tokens an answer may ask for. Default: the contract's limits.max_target_tokens."""
    max_inputs: int = Field(default=256, gt=0)
    """Most texts in one /v1/classify request."""
    requests_per_minute: int | None = Field(default=None, gt=0)
    """Per API key; None: no limit."""


class Queue(_Settings):
    """Batching and backpressure of the in-process models."""

    batching: bool = True
    max_batch: int = Field(default=16, ge=1)
    window_ms: float = Field(default=5.0, ge=0)
    max_queue: int = Field(default=256, ge=1)
    """Requests waiting per model; more are answered 429 with Retry-After."""
    deadline_s: float = Field(default=30.0, gt=0)
    """A request not answered by then gets 408 (overload is never a 5xx)."""


class PredictionLogSettings(_Settings):
    sample: float = Field(default=0.1, ge=0, le=1)
    """Share of requests whose (PII-redacted) prompt and answer go to the record; every request is
    counted in the per-minute aggregates regardless."""
    flush_s: float = Field(default=5.0, gt=0)
    """How often the log and the aggregates are written to the record."""


class Deployments(_Settings):
    """The whole of deployments.yaml."""

    model: str | None = None
    """The registered name to serve (default: model_name in sftline.yaml)."""
    canary_share: float = Field(default=0.1, ge=0, le=1)
    """Share of traffic the canary version answers, sticky per user (the request's `user`, else
    the API key)."""
    shadows: list[str] = []
    """Versions (NAME@N, a run or a base model) that get a copy of the traffic; their answers are
    logged and compared with the one returned, never returned."""
    backends: dict[str, RemoteBackend] = {}
    """Version (NAME@N, run or base name) -> the remote server that answers for it."""
    analysis: AnalysisSettings = AnalysisSettings()
    limits: Limits = Limits()
    queue: Queue = Queue()
    log: PredictionLogSettings = PredictionLogSettings()


def load_deployments(path: Path | None) -> Deployments:
    return load_settings(Deployments, path, {}, "deployments")
