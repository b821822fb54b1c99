"""The label-noise and semantic-duplicate gates on planted cases, with the real embedded MiniLM."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from sftline.config import GatesConfig
from sftline.contract.spec import Contract
from sftline.data.common_text import CommonText, find_common_text
from sftline.data.example import Example, Provenance
from sftline.evals.predict import EmbeddingPredictor
from sftline.gates.label_noise import Encode, LabelNoiseGate
from sftline.gates.lengths import WhitespaceCounter
from sftline.gates.rows import rows_from_table, rows_table
from sftline.gates.runner import build_gates, run_gates
from sftline.gates.semantic_duplicates import SemanticDuplicateGate, semantic_duplicates
from sftline.models import materialise_embedded

CLINC = Path(__file__).resolve().parents[3] / "examples" / "clinc150" / "data_full.json"
INTENTS = ("translate", "weather", "pay_bill", "alarm", "book_flight", "recipe")
FLIPS = {3: "recipe", 30: "translate", 75: "weather"}
"""Position in the planted set -> the wrong label it is given (20 per intent, in INTENTS order)."""
CLASSIFY = Contract(task="classify", output={"kind": "labels"})
FREE_TEXT = Contract()


@pytest.fixture(scope="module")
def encode(tmp_path_factory: pytest.TempPathFactory) -> Encode:
    folder = materialise_embedded("minilm-l6", tmp_path_factory.mktemp("models")).path
    predictor = EmbeddingPredictor(folder, labels=())
    return lambda texts: predictor.embed(texts)[0]


def never(texts: Sequence[str]) -> np.ndarray:
    raise AssertionError("the encoder was called")


def planted_rows() -> list[tuple[str, str, str]]:
    """(text, given label, original label): 20 CLINC150 queries of each of 6 intents, 3 flipped."""
    train = json.loads(CLINC.read_text())["train"]
    rows: list[tuple[str, str]] = []
    for intent in INTENTS:
        rows += [(t, i) for t, i in train if i == intent][:20]
    return [(text, FLIPS.get(n, intent), intent) for n, (text, intent) in enumerate(rows)]


def classification(rows: Sequence[tuple[str, str, str]]) -> list[Example]:
    return [
        Example(f"e{n}", Provenance("t.jsonl", "0" * 64, "classification", n + 1), text=t, label=label)
        for n, (t, label, _) in enumerate(rows)
    ]


def chats(rows: Sequence[tuple[str, str]], system: str = "You route customer messages.") -> list[Example]:
    return [
        Example(
            f"c{n}",
            Provenance("t.jsonl", "0" * 64, "chat", n + 1),
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ],
        )
        for n, (question, answer) in enumerate(rows)
    ]


def test_flipped_labels_are_flagged_with_the_original_label_suggested(encode: Encode) -> None:
    rows = planted_rows()
    outcome = LabelNoiseGate(encode, CLASSIFY).check(classification(rows))
    flags = {f.example_id: f for f in outcome.flags}
    assert set(flags) == {f"e{n}" for n in FLIPS}
    for n in FLIPS:
        flag = flags[f"e{n}"]
        assert flag.reason == "label_noise" and flag.field == "label"
        assert flag.suggested_label == rows[n][2]
        assert flag.label_confidence is not None and 0.5 < flag.label_confidence <= 1
    assert outcome.report["checked"] and outcome.report["judged"] == 120


def test_chat_answers_from_an_inferred_label_set_are_judged(encode: Encode) -> None:
    rows = planted_rows()
    examples = chats([(t, label) for t, label, _ in rows])
    common = find_common_text({"chats": examples}, None)
    assert common.system_messages  # the shared system message is left out of what is embedded
    outcome = LabelNoiseGate(encode, FREE_TEXT, common=common).check(examples)
    assert outcome.report["labels_from"] == "the label set inferred from the answers"
    assert {f.example_id: f.suggested_label for f in outcome.flags} == {f"c{n}": rows[n][2] for n in FLIPS}
    assert {f.field for f in outcome.flags} == {"messages[2].content"}


def test_free_text_answers_are_not_judged() -> None:
    rows = [(f"tell me about topic {n}", f"Here is a long answer about topic {n}.") for n in range(40)]
    outcome = LabelNoiseGate(never, FREE_TEXT).check(chats(rows))
    assert outcome.flags == []
    assert outcome.report == {"checked": False, "why": "the answers are free text, not labels"}
    json_answers = Contract(output={"kind": "json_schema", "schema": {"type": "object"}})
    assert LabelNoiseGate(never, json_answers).check(chats(rows)).report["checked"] is False


def test_labels_with_fewer_examples_than_folds_are_left_out(encode: Encode) -> None:
    rows = planted_rows() + [("what is the capital of peru", "rare", "rare")] * 3
    outcome = LabelNoiseGate(encode, CLASSIFY).check(classification(rows))
    assert outcome.report["labels_left_out"] == ["rare"]
    assert outcome.report["judged"] == 120
    assert {f.example_id for f in outcome.flags} == {f"e{n}" for n in FLIPS}
    few = classification([("hi", "a", "a")] * 4 + [("yo", "b", "b")] * 4)
    assert LabelNoiseGate(never, CLASSIFY).check(few).report == {
        "checked": False,
        "why": "fewer than 2 labels with at least 5 examples",
    }


def test_runner_keeps_the_suggestion_for_the_rejects_rows(encode: Encode) -> None:
    rows = planted_rows()
    gates = build_gates(
        GatesConfig(),
        CLASSIFY,
        against={},
        common=CommonText(),
        token_counter=WhitespaceCounter(),
        encode=encode,
    )
    assert [g.name for g, _ in gates][-1] == "label_noise"  # semantic duplicates are off by default
    result = run_gates(classification(rows), gates)
    assert len(result.accepted) == 120  # warn: kept
    stored = rows_from_table(pa.table(rows_table(result.flagged)))
    noisy = [r for r in stored if any(x["reason"] == "label_noise" for x in r["reasons"])]
    assert {r["example_id"]: r["suggested_label"] for r in noisy} == {f"e{n}": rows[n][2] for n in FLIPS}
    assert all(r["action"] == "warn" and r["label_confidence"] > 0.5 for r in noisy)


def test_gate_settings_from_yaml() -> None:
    text = """
label_noise: {action: block, folds: 3, seed: 7}
semantic_duplicates: {action: warn, threshold: 0.9}
"""
    config = GatesConfig.model_validate(yaml.safe_load(text))
    gates = dict(
        (g.name, g)
        for g, _ in build_gates(
            config, CLASSIFY, against={}, common=CommonText(), token_counter=WhitespaceCounter(), encode=never
        )
    )
    assert (gates["label_noise"].folds, gates["label_noise"].seed) == (3, 7)  # type: ignore[attr-defined]
    assert gates["semantic_duplicates"].threshold == 0.9  # type: ignore[attr-defined]
    off = GatesConfig.model_validate(yaml.safe_load("label_noise: {action: off}"))
    built = build_gates(
        off, CLASSIFY, against={}, common=CommonText(), token_counter=WhitespaceCounter(), encode=never
    )
    assert "label_noise" not in [g.name for g, _ in built]
    assert GatesConfig().label_noise.action == "warn" and GatesConfig().semantic_duplicates.action == "off"


def test_semantic_duplicates_compare_with_the_representative_only() -> None:
    # a ~ b at 0.96, b ~ c at 0.96, a ~ c at 0.84: c is not chained to a through b.
    angle = np.arccos(0.96)
    vectors = np.array([[np.cos(k * angle), np.sin(k * angle)] for k in range(3)], dtype=np.float32)
    assert semantic_duplicates(vectors, [0, 1, 2], 0.95) == {1: (0, pytest.approx(0.96, abs=1e-5))}
    # with a blocked by another gate, b is taken first and both others are its members
    assert set(semantic_duplicates(vectors, [1, 0, 2], 0.95)) == {0, 2}


def test_semantic_duplicates_find_a_paraphrase_with_few_shared_words(encode: Encode) -> None:
    texts = [
        "how do i cancel my credit card",
        "how can i cancel my credit card",
        "what is the weather in paris tomorrow",
        "book a flight from boston to denver",
    ]
    examples = classification([(t, "x", "x") for t in texts])
    outcome = SemanticDuplicateGate(encode).check(examples)
    assert [(f.example_id, f.related, f.reason) for f in outcome.flags] == [
        ("e1", ("e0",), "semantic_duplicate")
    ]
