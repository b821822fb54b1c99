"""The answers' shape read from the data when the contract's output is free text."""

from __future__ import annotations

import json

from sftline.contract.inferred import InferredOutput, infer_output
from sftline.contract.spec import Contract
from sftline.data.example import Example, Provenance
from sftline.gates.format import FormatGate

LABELS = ["balance", "transfer", "card_declined", "timer"]


def test_json_objects_with_their_common_keys() -> None:
    answers = [json.dumps({"intent": LABELS[i % 4], "confidence": 0.9}) for i in range(97)]
    answers += ["Sure, I can help with that.", json.dumps({"intnet": "timer"}), "[1, 2]"]
    inferred = infer_output(answers)
    assert inferred == InferredOutput("json_object", 0.98, 100, keys=("confidence", "intent"))
    assert inferred.problem(answers[0]) is None
    assert inferred.problem(answers[-3]) == "not a JSON object, as 98.0% of the answers are"
    assert inferred.problem(answers[-2]) == "no key 'confidence', which 95%+ of the JSON answers have"
    assert inferred.problem(answers[-1]) == "not a JSON object, as 98.0% of the answers are"
    assert inferred.why == (
        "the contract's output is free text, but 98.0% of the 100 answers are JSON objects "
        "(keys: confidence, intent): the answers that break that shape are flagged"
    )


def test_a_closed_label_set() -> None:
    answers = [LABELS[i % 4] for i in range(96)] + ["balence", "i am not sure", "timer ", "transfer"]
    inferred = infer_output(answers)
    assert inferred is not None and inferred.kind == "labels" and inferred.labels == frozenset(LABELS)
    assert inferred.share == 0.98
    assert inferred.problem("timer ") is None
    assert inferred.problem("balence") == "'balence' is not one of the 4 labels 98.0% of the answers are"


def test_free_text_and_too_few_answers_have_no_shape() -> None:
    assert infer_output([f"Here is answer number {i}." for i in range(200)]) is None
    assert infer_output([json.dumps({"a": 1})] * 19) is None
    # 94% JSON: below the share, and the rest are no label set either
    mixed = [json.dumps({"intent": f"x{i}"}) for i in range(94)] + [f"free text {i}" for i in range(6)]
    assert infer_output(mixed) is None


def chat(i: int, answer: str) -> Example:
    messages = [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": answer}]
    return Example(f"e{i}", Provenance("f.jsonl", "0" * 64, "chat", i + 1), messages=messages)


def test_format_gate_flags_answers_that_break_the_inferred_shape() -> None:
    examples = [chat(i, json.dumps({"intent": LABELS[i % 4]})) for i in range(40)]
    examples += [chat(40, "Your balance is 12 dollars."), chat(41, json.dumps({"label": "timer"}))]
    outcome = FormatGate(Contract()).check(examples)
    assert [(f.example_id, f.reason, f.field) for f in outcome.flags] == [
        ("e40", "breaks_inferred_format", "messages[1].content"),
        ("e41", "breaks_inferred_format", "messages[1].content"),
    ]
    assert outcome.flags[0].detail == "messages[1].content: not a JSON object, as 97.6% of the answers are"
    report = outcome.report
    assert report["checked"] is True and report["inferred"]["kind"] == "json_object"
    assert report["why"].startswith(
        "the contract's output is free text, but 97.6% of the 42 answers are JSON"
    )

    free = FormatGate(Contract()).check([chat(i, f"Answer {i} in prose.") for i in range(40)])
    assert free.flags == [] and free.report == {
        "checked": False,
        "why": "the contract's output is free text, and the answers have no common shape",
    }
