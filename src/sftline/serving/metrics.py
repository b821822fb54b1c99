"""The server's Prometheus metrics, labelled by model name and version.

One `CollectorRegistry` per server (not the process-wide default), so two servers in one test
process do not share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        model = ["model", "version"]
        self.requests = Counter(
            "sftline_requests",
            "Requests by status code.",
            [*model, "route", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sftline_request_latency_seconds",
            "Time from request to full answer.",
            [*model, "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "sftline_time_to_first_token_seconds",
            "Time from request to the first generated token.",
            model,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.prompt_tokens = Counter("sftline_prompt_tokens", "Prompt tokens.", model, registry=self.registry)
        self.generated_tokens = Counter(
            "sftline_generated_tokens", "Generated tokens.", model, registry=self.registry
        )
        self.batch_size = Histogram(
            "sftline_batch_size",
            "Requests per model batch.",
            model,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "sftline_queue_depth", "Requests waiting for a batch.", model, registry=self.registry
        )
        self.contract_invalid = Counter(
            "sftline_contract_invalid", "Answers that break the contract.", model, registry=self.registry
        )
        self.abstentions = Counter("sftline_abstentions", "Abstained answers.", model, registry=self.registry)
        self.shadow_agreement = Counter(
            "sftline_shadow_agreement",
            "Shadow answers equal (or not) to the answer returned.",
            [*model, "shadow", "agreed"],
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "sftline_canary_rollbacks", "Canaries rolled back by the analysis.", model, registry=self.registry
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
