"""The prediction log and the per-minute aggregates, written to the record by a background thread.

Every request is counted (status, latency bucket, tokens, contract-invalid answers, abstentions,
busy time) in per-minute rows per model version and route, so monitoring computes success rates,
percentiles, cost and burn rates from the record, also after a restart. A sample of requests
(`log.sample`, chosen by a hash of the request id, so a request is in or out whatever process
logs it) also keeps its prompt and answer, redacted by the PII gate's detectors.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sftline.gates.pii import redact
from sftline.record import queries
from sftline.record.schema import latency_bucket
from sftline.record.workspace import Workspace
from sftline.text.share import stable_share

log = logging.getLogger(__name__)


def sampled(request_id: str, share: float) -> bool:
    """Whether a request's texts are logged: a stable choice by its id."""
    if share <= 0:
        return False
    return stable_share(request_id) < share


@dataclass
class Prediction:
    """One answered (or refused) request, as the log and the aggregates see it."""

    request_id: str
    model_name: str
    model_version: str
    route: str
    endpoint: str
    status_code: int
    latency_ms: float
    prompt: str = ""
    output: str = ""
    label: str | None = None
    confidence: float | None = None
    abstained: bool = False
    contract_valid: bool | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    user_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class _Minute:
    requests: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    latency_buckets: dict[str, int] = field(default_factory=dict)
    latency_sum_ms: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    contract_invalid: int = 0
    abstentions: int = 0
    busy_seconds: float = 0.0


class PredictionLog:
    def __init__(self, workspace: Workspace, *, sample: float, flush_s: float) -> None:
        self.workspace = workspace
        self.sample = sample
        self.flush_s = flush_s
        self._rows: list[dict[str, Any]] = []
        self._minutes: dict[tuple[datetime, str, str, str], _Minute] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sftline-prediction-log", daemon=True)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def _minute(self, at: datetime, model_name: str, version: str, route: str) -> _Minute:
        key = (at.replace(second=0, microsecond=0), model_name, version, route)
        return self._minutes.setdefault(key, _Minute())

    def record(self, p: Prediction) -> None:
        with self._lock:
            minute = self._minute(p.at, p.model_name, p.model_version, p.route)
            minute.requests += 1
            code = str(p.status_code)
            minute.status_counts[code] = minute.status_counts.get(code, 0) + 1
            bucket = latency_bucket(p.latency_ms)
            minute.latency_buckets[bucket] = minute.latency_buckets.get(bucket, 0) + 1
            minute.latency_sum_ms += p.latency_ms
            minute.prompt_tokens += p.prompt_tokens
            minute.output_tokens += p.output_tokens
            minute.contract_invalid += p.contract_valid is False
            minute.abstentions += p.abstained
            if sampled(p.request_id, self.sample):
                self._rows.append(self._row(p))

    def busy(self, model_name: str, version: str, route: str, seconds: float) -> None:
        """Model time spent on a batch (the cost model's busy time)."""
        with self._lock:
            self._minute(datetime.now(timezone.utc), model_name, version, route).busy_seconds += seconds

    @staticmethod
    def _row(p: Prediction) -> dict[str, Any]:
        return {
            "request_id": p.request_id,
            "at": p.at,
            "model_name": p.model_name,
            "model_version": p.model_version,
            "route": p.route,
            "endpoint": p.endpoint,
            "prompt": redact(p.prompt),
            "output": redact(p.output),
            "label": p.label,
            "confidence": p.confidence,
            "abstained": p.abstained,
            "contract_valid": p.contract_valid,
            "latency_ms": p.latency_ms,
            "prompt_tokens": p.prompt_tokens,
            "output_tokens": p.output_tokens,
            "status_code": p.status_code,
            "user_hash": p.user_hash,
            "extra": p.extra,
        }

    def flush(self) -> None:
        """Write what was collected since the last flush; on failure keep it for the next try."""
        with self._lock:
            rows, self._rows = self._rows, []
            minutes, self._minutes = self._minutes, {}
        aggregates = [
            {"minute": minute, "model_name": name, "model_version": version, "route": route, **vars(counts)}
            for (minute, name, version, route), counts in minutes.items()
        ]
        if not rows and not aggregates:
            return
        try:
            with self.workspace.record.session() as session:
                if rows:
                    queries.add_predictions(session, rows)
                if aggregates:
                    queries.add_serving_minutes(session, aggregates)
        except Exception as exc:  # the record is down: keep the counts, say so once per failure run
            self.failures += 1
            if self.failures == 1:
                log.warning("prediction log: cannot write to the record (%s); will retry", exc)
            with self._lock:
                self._rows = rows + self._rows
                for (minute, name, version, route), counts in minutes.items():
                    self._merge(self._minute(minute, name, version, route), counts)
        else:
            self.failures = 0

    @staticmethod
    def _merge(into: _Minute, counts: _Minute) -> None:
        for name, value in vars(counts).items():
            if isinstance(value, dict):
                target = getattr(into, name)
                for key, n in value.items():
                    target[key] = target.get(key, 0) + n
            else:
                setattr(into, name, getattr(into, name) + value)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.flush()
