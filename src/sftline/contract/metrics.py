"""The metric registry: every metric sftline measures, by the name a user writes in sftline.yaml,
`--eval-metric` or `sftline eval --json`, with the direction in which it improves.

A name must be registered here before the eval station may produce it (a test checks that every
name `sftline.evals.scoring.metric_functions` yields is), so release criteria and the trainer's
checkpoint choice can be checked against it when the configuration loads: an unknown metric is a
configuration error, never a criterion that silently never applies.

Two metrics have no better direction of their own; they keep the direction they always had
(higher is better), and a criterion on them should be read with that in mind:

- `abstention_rate`: the right rate is the share of out-of-scope inputs, not 0 or 1; whether
  abstaining is right is what `abstention_precision` and `abstention_recall` measure.
- `mean_confidence`: a model is not better for being surer; whether its confidence is earned is
  what `ece` measures.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from sftline.errors import UnknownMetric


@dataclass(frozen=True)
class MetricSpec:
    """What a metric's value means."""

    name: str
    higher_is_better: bool
    """Direction of improvement; for `abstention_rate` and `mean_confidence` a convention (see the
    module docstring)."""
    unit: str
    """What one unit of the value is, for a reader."""
    kind: str
    """`rate`: a share of examples, 0 to 1; `score`: another statistic between 0 and 1;
    `ratio`: a mean relative to a limit (above 1 past it); `tokens`: mean tokens per example;
    `ms`: mean milliseconds per example; `loss`: training's holdout cross-entropy."""


BOUNDED_KINDS = frozenset({"rate", "score"})
"""Kinds whose values lie between 0 and 1."""


def _rate(name: str, higher_is_better: bool = True) -> MetricSpec:
    return MetricSpec(name, higher_is_better, "fraction of examples", "rate")


_FIXED: tuple[MetricSpec, ...] = (
    _rate("accuracy"),
    _rate("exact_match"),
    MetricSpec("macro_f1", True, "F1 averaged over labels", "score"),
    _rate("label_compliance"),
    _rate("in_scope_accuracy"),
    _rate("abstention_precision"),
    _rate("abstention_recall"),
    _rate("abstention_rate"),  # no better direction of its own; see the module docstring
    _rate("refusal_rate", higher_is_better=False),
    _rate("json_validity"),
    _rate("schema_compliance"),
    MetricSpec("ece", False, "probability (expected calibration error)", "score"),
    MetricSpec("mean_confidence", True, "probability", "score"),  # see the module docstring
    _rate("stop_rate"),
    MetricSpec("output_tokens", False, "tokens per answer", "tokens"),
    MetricSpec("verbosity", False, "fraction of limits.max_target_tokens", "ratio"),
    _rate("over_limit_rate", higher_is_better=False),
    MetricSpec("prompt_tokens", False, "tokens per prompt", "tokens"),
    MetricSpec("latency_ms", False, "milliseconds per example", "ms"),
)
"""The eval station's metrics with a fixed name."""

LOSS = MetricSpec("loss", False, "nats per trained token (per example for classifiers)", "loss")
"""Training's holdout loss: what `--eval-metric` watches by default. `sftline eval` does not
measure it."""

TOP_K_EXAMPLES = ("top_3_accuracy", "top_5_accuracy")
"""The top-k accuracies `sftline eval` reports by default; any k > 1 is a metric."""

_TOP_K = re.compile(r"top_([1-9][0-9]*)_accuracy")

METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in (*_FIXED, LOSS)}
"""Every metric with a fixed name, by name; top-k accuracies are matched by `_TOP_K`."""


def _lookup(name: str) -> MetricSpec | None:
    spec = METRICS.get(name)
    if spec is not None:
        return spec
    match = _TOP_K.fullmatch(name)
    if match and int(match.group(1)) > 1:
        return _rate(name)
    return None


def known_names() -> list[str]:
    """Every metric name, sorted, with the top-k accuracies as one pattern."""
    return sorted([*METRICS, "top_K_accuracy (any K > 1)"])


def is_known(name: str) -> bool:
    return _lookup(name) is not None


def metric(name: str) -> MetricSpec:
    """The spec of `name`; `UnknownMetric` naming the closest known metric, or, when none is
    close, listing them all."""
    spec = _lookup(name)
    if spec is None:
        close = difflib.get_close_matches(name, [*METRICS, *TOP_K_EXAMPLES], n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known_names())}"
        raise UnknownMetric(f"unknown metric {name!r} ({hint})")
    return spec


def eval_metric(name: str) -> MetricSpec:
    """The spec of a metric `sftline eval` measures (what a release criterion may use)."""
    spec = metric(name)
    if spec.kind == "loss":
        raise UnknownMetric(
            f"{name!r} is training's holdout loss, which `sftline eval` does not measure; "
            "use a behaviour metric such as accuracy"
        )
    return spec


def higher_is_better(name: str) -> bool:
    return metric(name).higher_is_better


def checked_name(name: str, *, measured_by_eval: bool = False) -> str:
    """`name` if it is registered (and, with `measured_by_eval`, one `sftline eval` measures);
    else a ValueError with the suggestion, for pydantic validators to collect."""
    try:
        eval_metric(name) if measured_by_eval else metric(name)
    except UnknownMetric as exc:
        raise ValueError(str(exc)) from exc
    return name
