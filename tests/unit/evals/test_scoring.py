"""Scoring hand-built outputs under a contract, with every value worked out by hand."""

from __future__ import annotations

import json

import pytest

from sftline.contract.spec import Contract
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


def test_score_gives_intervals_and_reliability() -> None:
    result = score(label_outputs(), LABELS, replicates=200)
    for name, estimate in result["overall"].items():
        assert estimate["low"] <= estimate["value"] <= estimate["high"], name
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
