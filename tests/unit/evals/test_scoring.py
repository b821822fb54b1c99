"""Scoring hand-built outputs under a contract, with every value worked out by hand."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from scipy.stats import scoreatpercentile

from sftline.contract.render import render_prompt
from sftline.contract.spec import Contract
from sftline.data.example import Example, Provenance
from sftline.evals.metrics import bootstrap_weights
from sftline.evals.scoring import Output, confusion, outcomes, point_metrics, score

LABELS = Contract(
    task="classify",
    output={"kind": "labels", "labels": ["balance", "transfer", "card", "oos"]},
    abstention="oos",
    limits={"max_target_tokens": 4},
)

# target, answer, labels ranked best first, confidence, output tokens, finished, domain
ROWS = [
    ("balance", " balance\n", "balance transfer card", 0.9, 2, True, "banking"),
    ("balance", "transfer", "transfer balance oos", 0.62, 2, True, "banking"),
    ("transfer", "transfer", "transfer balance card", 0.9, 3, True, "travel"),
    ("oos", "oos", "oos balance card", 0.9, 1, True, "travel"),
    ("oos", "balance", "balance transfer card", 0.62, 6, False, "travel"),
    ("card", "dunno", "balance transfer oos", 0.62, 8, False, "banking"),
    ("transfer", "oos", "oos transfer card", 0.62, 1, True, "travel"),
]


def label_outputs() -> list[Output]:
    return [
        Output(
            example_id=f"ex-{i}",
            target=target,
            output=answer,
            tags={"domain": domain, "lang": "en"},
            ranked=list(zip(ranked.split(), (confidence, 0.05, 0.05), strict=True)),  # only the order counts
            confidence=confidence,
            output_tokens=tokens,
            finished=finished,
        )
        for i, (target, answer, ranked, confidence, tokens, finished, domain) in enumerate(ROWS)
    ]


def values(section: dict) -> dict:
    return {metric: estimate["value"] for metric, estimate in section.items()}


def test_label_metrics() -> None:
    result = point_metrics(label_outputs(), LABELS)
    expected = {
        "accuracy": 3 / 7,  # examples 0, 2, 3 (0 after whitespace is normalised)
        "in_scope_accuracy": 2 / 5,  # targets other than oos: 0, 1, 2, 5, 6; right on 0 and 2
        # abstained on 3 and 6, should have on 3 and 4: TP = 1 FP = 1 FN = 1
        "abstention_precision": 1 / 2,
        "abstention_recall": 1 / 2,
        "abstention_rate": 2 / 7,
        "label_compliance": 6 / 7,  # "dunno" is not a label
        # balance, transfer, oos: TP=1 FP=1 FN=1 -> 1/2 each; card: FN=1 -> 0; "dunno" is no
        # label of the set and adds no class; mean = 1.5 / 4
        "macro_f1": 1.5 / 4,
        "top_3_accuracy": 5 / 7,  # target absent from the ranked three on examples 4 and 5
        # right at 0.9 (bin 13): |3 x 0.1| ; wrong at 0.62 (bin 9): |4 x -0.62|; (0.3 + 2.48) / 7
        "ece": 2.78 / 7,
        "stop_rate": 5 / 7,
        "output_tokens": 23 / 7,  # 2 + 2 + 3 + 1 + 6 + 8 + 1 = 23
        "verbosity": 23 / 28,  # mean of tokens / max_target_tokens (4)
        "over_limit_rate": 2 / 7,  # 6 and 8 tokens
        "refusal_rate": 0.0,
    }
    assert {name: result[name] for name in expected} == pytest.approx(expected)


@pytest.mark.parametrize("contract", [LABELS, Contract(abstention="oos")], ids=["labels", "text"])
def test_case_and_surrounding_whitespace_count_alike_for_correctness_and_abstention(
    contract: Contract,
) -> None:
    answers = [("oos", "OOS"), ("balance", " Balance\n"), ("card", "TRANSFER"), ("oos", "Oos card")]
    outputs = [Output(example_id=str(i), target=t, output=a) for i, (t, a) in enumerate(answers)]
    outcome = outcomes(outputs, contract)
    assert outcome.columns["correct"].tolist() == [True, True, False, False]
    assert outcome.columns["abstained"].tolist() == [True, False, False, False]
    assert outcome.columns["should_abstain"].tolist() == [True, False, False, True]
    result = point_metrics(outputs, contract)
    assert result["accuracy"] == pytest.approx(2 / 4)
    assert result["in_scope_accuracy"] == pytest.approx(1 / 2)  # balance right, card wrong
    assert result["abstention_precision"] == 1.0 and result["abstention_recall"] == pytest.approx(1 / 2)
    if contract.output.kind == "labels":
        # Reported in the label's own spelling, so the label metrics agree with `correct`.
        assert outcome.predictions == ["oos", "balance", "transfer", "oos card"]
        assert result["label_compliance"] == pytest.approx(3 / 4)  # "oos card" is no label
        # oos: TP=1 FN=1 -> 2/3; balance: 1; card: FN=1 -> 0; mean = 5/9
        assert result["macro_f1"] == pytest.approx(5 / 9)


PROVENANCE = Provenance(source="tools.jsonl", source_sha256="0" * 64, format="chat", line=1)
CHAT_TEMPLATE_STUB = SimpleNamespace(
    chat_template="stub", is_fast=True, apply_chat_template=lambda messages, **_: "prompt"
)


def call(name: str, arguments: str, call_id: str) -> dict[str, Any]:
    """A tool call as import stores it: arguments as a JSON string."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_tool_calls_are_compared_by_name_and_parsed_arguments() -> None:
    calls = [
        call("get_weather", '{"city": "Paris", "unit": "c"}', "c1"),
        call("get_time", '{"tz": "CET"}', "c2"),
    ]
    turns = [{"role": "user", "content": "Weather and time in Paris?"}]
    example = Example(
        "ex", PROVENANCE, messages=[*turns, {"role": "assistant", "content": None, "tool_calls": calls}]
    )
    _, target = render_prompt(CHAT_TEMPLATE_STUB, example)  # what evaluation stores as the target
    weather = '{"name": "get_weather", "arguments": {"unit": "c", "city": "Paris"}}'
    time = '{"name": "get_time", "arguments": {"tz": "CET"}}'
    answers = {
        # Hermes/Qwen: one <tool_call> block per call
        f"<tool_call>\n{weather}\n</tool_call>\n<tool_call>\n{time}\n</tool_call>": True,
        # OpenAI shape, arguments as a JSON string, other ids and order: parallel calls have none
        json.dumps(
            [call("get_time", '{"tz":"CET"}', "x"), call("get_weather", '{"unit":"c","city":"Paris"}', "y")]
        ): True,
        # Llama 3: `parameters`
        '[{"name": "get_time", "parameters": {"tz": "CET"}}, '
        '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "c"}}]': True,
        weather: False,  # one call missing
        f"{weather} {time} {time}": False,  # one call twice
        f"{weather} {time.replace('CET', 'UTC')}": False,  # an argument differs
        f"{weather} {time.replace('get_time', 'get_clock')}": False,  # a name differs
        "It is sunny in Paris and 3 pm.": False,
    }
    outputs = [Output(example_id=str(i), target=target, output=a) for i, a in enumerate(answers)]
    assert outcomes(outputs, Contract()).columns["correct"].tolist() == list(answers.values())
    # The turn's calls one after another (`Example.target`) is the same target.
    again = [Output(example_id=str(i), target=example.target, output=a) for i, a in enumerate(answers)]
    assert outcomes(again, Contract()).columns["correct"].tolist() == list(answers.values())


def test_refusal_uses_the_contracts_phrases_or_the_default_list() -> None:
    answers = ["That is NOT my department.", "I'm sorry, but no.", "Sure: 42"]
    outputs = [Output(example_id=str(i), target="42", output=a) for i, a in enumerate(answers)]
    own = Contract(refusal_phrases=["Not my department"])
    assert outcomes(outputs, own).columns["refused"].tolist() == [True, False, False]
    assert outcomes(outputs, Contract()).columns["refused"].tolist() == [False, True, False]
    assert point_metrics(outputs, own)["refusal_rate"] == pytest.approx(1 / 3)


def test_json_schema_metrics() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }
    contract = Contract(output={"kind": "json_schema", "schema": schema})
    target = json.dumps({"city": "Oslo", "days": 3})
    answers = [
        '{ "days":3,\n  "city":"Oslo" }',  # equal JSON: right
        '{"city": "Oslo"}',  # valid JSON, misses "days"
        "Oslo for 3 days",  # not JSON
        '{"city": "Bergen", "days": 2}',  # valid, wrong
    ]
    outputs = [Output(example_id=str(i), target=target, output=a) for i, a in enumerate(answers)]
    result = point_metrics(outputs, contract)
    assert result["json_validity"] == pytest.approx(3 / 4)
    assert result["schema_compliance"] == pytest.approx(2 / 4)
    assert result["exact_match"] == pytest.approx(1 / 4)
    assert "macro_f1" not in result and "label_compliance" not in result


def test_score_by_slice() -> None:
    result = score(label_outputs(), LABELS, replicates=200)
    assert result["n"] == 7
    assert set(result["slices"]) == {"domain=banking", "domain=travel", "lang=en"}
    banking, travel = result["slices"]["domain=banking"], result["slices"]["domain=travel"]
    assert banking["accuracy"]["value"] == pytest.approx(1 / 3) and banking["accuracy"]["n"] == 3
    assert travel["accuracy"]["value"] == pytest.approx(2 / 4) and travel["accuracy"]["n"] == 4
    # no banking example should abstain: recall is undefined
    assert banking["abstention_recall"] == {"value": None, "low": None, "high": None, "n": 3}
    assert values(result["slices"]["lang=en"]) == values(result["overall"])
    only_domain = score(label_outputs(), LABELS, slice_keys=["domain"], replicates=20)
    assert set(only_domain["slices"]) == {"domain=banking", "domain=travel"}


def mean_over(values: Sequence[float], drawn: list[int], where: Sequence[bool] | None = None) -> float:
    chosen = [values[i] for i in drawn if where is None or where[i]]
    return sum(chosen) / len(chosen) if chosen else math.nan


def macro_f1_over(targets: list[str], predictions: list[str], drawn: list[int]) -> float:
    """F1 = 2 TP / (2 TP + FP + FN) per label drawn as a target, averaged."""
    pairs = [(targets[i], predictions[i]) for i in drawn]
    f1 = []
    for label in sorted({t for t, _ in pairs}):
        tp = sum(t == p == label for t, p in pairs)
        fp = sum(p == label != t for t, p in pairs)
        fn = sum(t == label != p for t, p in pairs)
        f1.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1) / len(f1)


def test_score_intervals_are_percentiles_over_resampled_examples() -> None:
    """Each metric recomputed by hand on every resample (the examples each weight row draws), and
    the 2.5th and 97.5th percentiles of the defined ones taken with scipy."""
    result = score(label_outputs(), LABELS, replicates=200, seed=5)
    resamples = [
        np.repeat(np.arange(7), row.astype(int)).tolist()
        for row in bootstrap_weights(7, replicates=200, seed=5)
    ]
    correct = [True, False, True, True, False, False, False]
    should_abstain = [False, False, False, True, True, False, False]
    abstained = [False, False, False, True, False, False, True]
    targets = [row[0] for row in ROWS]
    predictions = ["balance", "transfer", "transfer", "oos", "balance", "dunno", "oos"]
    by_hand: dict[str, Callable[[list[int]], float]] = {
        "accuracy": lambda drawn: mean_over(correct, drawn),
        "in_scope_accuracy": lambda drawn: mean_over(correct, drawn, [not s for s in should_abstain]),
        "abstention_recall": lambda drawn: mean_over(abstained, drawn, should_abstain),
        "macro_f1": lambda drawn: macro_f1_over(targets, predictions, drawn),
        "output_tokens": lambda drawn: mean_over([row[4] for row in ROWS], drawn),
    }
    for name, metric in by_hand.items():
        point, *replicates = [metric(drawn) for drawn in resamples]  # the first row draws each once
        defined = [v for v in replicates if not math.isnan(v)]
        low, high = scoreatpercentile(defined, [2.5, 97.5])
        expected = {
            "value": pytest.approx(point),
            "low": pytest.approx(low),
            "high": pytest.approx(high),
            "n": 7,
        }
        assert result["overall"][name] == expected, name
        assert low < high, name  # the resamples differ, so the check means something
    assert len(result["reliability"]) == 15
    assert result["reliability"][9]["count"] == 4 and result["reliability"][13]["count"] == 3


def test_confusion() -> None:
    # errors: balance->transfer, oos->balance, card->dunno, transfer->oos
    # per label: balance 2, oos 2, transfer 2, card 1, dunno 1 (ties by name)
    result = confusion(outcomes(label_outputs(), LABELS))
    assert result["labels"] == ["balance", "oos", "transfer", "card", "dunno"]
    # rows are targets, columns predictions, right answers on the diagonal
    assert result["matrix"] == [
        [1, 0, 1, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0],
    ]
    assert result["pairs"][0] == {"target": "balance", "prediction": "transfer", "count": 1}
    assert len(result["pairs"]) == 4
    assert confusion(outcomes(label_outputs(), LABELS), limit=2)["labels"] == ["balance", "oos"]
