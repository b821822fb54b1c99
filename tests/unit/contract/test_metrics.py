"""The metric registry: every metric the eval station produces is registered, with its direction."""

from __future__ import annotations

import pytest

from sftline.contract.metrics import (
    METRICS,
    UnknownMetric,
    eval_metric,
    higher_is_better,
    is_known,
    metric,
)
from sftline.contract.spec import Contract
from sftline.errors import ConfigError
from sftline.evals.scoring import Output, metric_functions, outcomes
from sftline.train.config import TrainConfig

LABELS = Contract(
    task="classify", output={"kind": "labels", "labels": ["balance", "card", "oos"]}, abstention="oos"
)
JSON = Contract(output={"kind": "json_schema", "schema": {"type": "object", "required": ["city"]}})
TEXT = Contract()


def produced(contract: Contract, outputs: list[Output]) -> set[str]:
    return set(metric_functions(outcomes(outputs, contract), contract))


def label_outputs() -> list[Output]:
    # Ranked labels and confidences: the richest label evaluation (top-k, ece, abstention).
    return [
        Output(example_id="0", target="balance", output="balance", ranked=[("balance", 0.8)], confidence=0.8),
        Output(example_id="1", target="oos", output="card", ranked=[("card", 0.6)], confidence=0.6),
    ]


def every_produced_name() -> set[str]:
    text = [Output(example_id="0", target="hi", output="hello", confidence=0.5)]
    json_out = [Output(example_id="0", target='{"city": "Oslo"}', output='{"city": "Oslo"}')]
    return produced(LABELS, label_outputs()) | produced(JSON, json_out) | produced(TEXT, text)


def test_every_metric_the_eval_station_produces_is_registered() -> None:
    names = every_produced_name()
    # The three contracts between them reach every branch of metric_functions.
    assert {"macro_f1", "top_5_accuracy", "abstention_rate", "schema_compliance", "ece"} <= names
    assert [name for name in sorted(names) if not is_known(name)] == []


def test_every_registered_name_is_produced_or_is_trainings_loss() -> None:
    """No stale entries: the registry's fixed names are exactly what scoring produces, plus loss."""
    produced_fixed = {name for name in every_produced_name() if not name.startswith("top_")}
    assert set(METRICS) == produced_fixed | {"loss"}


def test_directions_units_and_kinds() -> None:
    assert metric("accuracy").higher_is_better and metric("accuracy").kind == "rate"
    for lower in ("loss", "ece", "refusal_rate", "over_limit_rate", "verbosity", "latency_ms"):
        assert not higher_is_better(lower), lower
    assert metric("output_tokens").kind == "tokens" and metric("latency_ms").kind == "ms"
    # Kept as before (no better direction of their own; see the module docstring).
    assert higher_is_better("abstention_rate") and higher_is_better("mean_confidence")


def test_top_k_accuracy_for_any_k_above_one() -> None:
    spec = metric("top_7_accuracy")
    assert (spec.name, spec.higher_is_better, spec.kind) == ("top_7_accuracy", True, "rate")
    assert is_known("top_12_accuracy")
    assert not is_known("top_1_accuracy")  # that is accuracy
    assert not is_known("top_03_accuracy") and not is_known("top_k_accuracy")


def test_an_unknown_name_names_the_closest_or_lists_them_all() -> None:
    with pytest.raises(UnknownMetric, match=r"^unknown metric 'acuracy' \(did you mean 'accuracy'\?\)$"):
        metric("acuracy")
    with pytest.raises(UnknownMetric, match=r"did you mean 'top_3_accuracy'\?"):
        metric("top3_accuracy")
    with pytest.raises(ConfigError) as error:
        higher_is_better("bleu")
    message = str(error.value)
    assert message.startswith("unknown metric 'bleu' (known: abstention_precision, ")
    assert "top_K_accuracy (any K > 1)" in message and "latency_ms" in message


def test_loss_is_trainings_and_not_a_release_metric() -> None:
    assert metric("loss").kind == "loss" and not metric("loss").higher_is_better
    with pytest.raises(UnknownMetric, match="`sftline eval` does not measure"):
        eval_metric("loss")
    assert eval_metric("ece").name == "ece"


def test_trainings_eval_metric_is_checked_against_the_registry() -> None:
    assert TrainConfig(base="tiny", data="d", eval_metric="macro_f1").eval_metric == "macro_f1"
    assert TrainConfig(base="tiny", data="d").eval_metric == "loss"
    with pytest.raises(ValueError, match=r"unknown metric 'exact_mach' \(did you mean 'exact_match'\?\)"):
        TrainConfig(base="tiny", data="d", eval_metric="exact_mach")
