"""Exact duplicates, conflicts, format, lengths and balance on planted defects."""

from __future__ import annotations

from sftline.contract.spec import Contract, OutputFormat
from sftline.data.example import Example, Provenance
from sftline.gates.balance import BalanceGate
from sftline.gates.exact import ConflictGate, ExactDuplicateGate
from sftline.gates.format import FormatGate
from sftline.gates.lengths import LengthGate, WhitespaceCounter


def ex(index: int, text: str, label: str, **tags: str) -> Example:
    return Example(
        id=f"e{index}",
        provenance=Provenance("t.csv", "0" * 64, "classification", index + 2),
        text=text,
        label=label,
        tags=tags,
    )


def chat(index: int, user: str, assistant: str) -> Example:
    return Example(
        id=f"c{index}",
        provenance=Provenance("c.jsonl", "0" * 64, "chat", index + 1),
        messages=[{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
    )


CLEAN = [
    ex(0, "how do i freeze my debit card", "freeze_account", domain="banking"),
    ex(1, "what's the routing number for my checking account", "routing", domain="banking"),
    ex(2, "book a table for four at 7pm", "restaurant_reservation", domain="dining"),
    ex(3, "how long should i boil an egg", "cook_time", domain="dining"),
    ex(4, "set a timer for ten minutes", "timer", domain="utility"),
]


def test_exact_duplicates_after_normalisation_keep_the_first() -> None:
    planted = [
        *CLEAN,
        ex(5, "  How do I FREEZE my debit card ", "freeze_account"),
        ex(6, "how do i freeze my debit card", "freeze_account"),
    ]
    outcome = ExactDuplicateGate().check(planted)
    assert [(f.example_id, f.reason, f.related) for f in outcome.flags] == [
        ("e5", "exact_duplicate", ("e0",)),
        ("e6", "exact_duplicate", ("e0",)),
    ]
    assert outcome.report["groups"] == 1
    assert ExactDuplicateGate().check(CLEAN).flags == []


def test_same_prompt_different_answer_is_not_an_exact_duplicate_but_a_conflict() -> None:
    planted = [
        *CLEAN,
        ex(5, "How do I freeze my debit card?", "report_fraud"),
        ex(6, "how do i freeze my debit card?", "freeze_account"),
    ]
    assert ExactDuplicateGate().check(planted).flags == []
    conflicts = ConflictGate().check(planted)
    assert sorted(f.example_id for f in conflicts.flags) == ["e5", "e6"]
    assert {f.reason for f in conflicts.flags} == {"conflicting_labels"}
    assert conflicts.report["groups"] == 1
    assert ConflictGate().check(CLEAN).flags == []


def test_labels_outside_the_contract_set() -> None:
    contract = Contract(
        task="classify",
        output=OutputFormat(
            kind="labels",
            labels=["freeze_account", "routing", "restaurant_reservation", "cook_time", "timer", "oos"],
        ),
    )
    planted = [*CLEAN, ex(5, "play some jazz", "play_music")]
    outcome = FormatGate(contract).check(planted)
    assert [(f.example_id, f.reason) for f in outcome.flags] == [("e5", "label_not_in_set")]


def test_json_targets_must_parse_and_follow_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"intent": {"type": "string"}, "urgent": {"type": "boolean"}},
        "required": ["intent"],
        "additionalProperties": False,
    }
    contract = Contract(task="chat", output=OutputFormat(kind="json_schema", schema=schema))
    examples = [
        chat(0, "my card was stolen", '{"intent": "report_fraud", "urgent": true}'),
        chat(1, "what's my balance", '{"intent": "balance"'),
        chat(2, "pay my bill", '{"intent": "pay_bill", "urgent": "yes"}'),
        chat(3, "hi", '{"greeting": "hello"}'),
    ]
    outcome = FormatGate(contract).check(examples)
    assert [(f.example_id, f.reason) for f in outcome.flags] == [
        ("c1", "invalid_json_target"),
        ("c2", "schema_violation"),
        ("c3", "schema_violation"),
    ]
    assert "urgent" in outcome.flags[1].detail


def test_free_text_contract_checks_nothing_and_says_so() -> None:
    outcome = FormatGate(Contract()).check([chat(0, "a", "b")])
    assert outcome.flags == [] and outcome.report["checked"] is False


def test_lengths_flag_too_long_empty_and_extreme_and_report_the_distribution() -> None:
    examples = [chat(i, f"question number {i} about my account", "a short helpful answer") for i in range(20)]
    examples.append(chat(20, "tell me everything " * 40, "ok"))  # 123 words
    examples.append(chat(21, "what now?", "   "))
    examples.append(chat(22, "summarise " * 9, "fine"))  # 10 words: ~1.1x median, not extreme
    gate = LengthGate(WhitespaceCounter(), max_length=100, min_target_tokens=1, extreme_factor=3)
    outcome = gate.check(examples)
    assert [(f.example_id, f.reason) for f in outcome.flags] == [("c20", "too_long"), ("c21", "empty_target")]
    assert outcome.report["over_max_length"] == 1
    assert sum(outcome.report["total_tokens"]["counts"]) == len(examples)
    extreme = LengthGate(WhitespaceCounter(), max_length=1000, extreme_factor=3).check(examples)
    assert [(f.example_id, f.reason) for f in extreme.flags] == [
        ("c20", "extreme_length"),
        ("c21", "empty_target"),
    ]


def test_balance_reports_labels_and_slices_below_min_share() -> None:
    examples = [ex(i, f"q{i}", "common", domain="banking") for i in range(98)]
    examples += [ex(98, "rare one", "rare", domain="travel"), ex(99, "untagged", "common")]
    outcome = BalanceGate(min_share=0.02).check(examples)
    assert outcome.flags == []
    found = {(f["slice"], f["value"]) for f in outcome.report["findings"]}
    assert found == {("label", "rare"), ("tag:domain", "travel"), ("tag:domain", "(untagged)")}
    assert outcome.report["tables"]["label"] == {"common": 99, "rare": 1}


def test_hf_token_counts_are_real_lengths_without_truncation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    from sftline.gates.lengths import HfTokenCounter
    from sftline.models import materialise_embedded

    model = materialise_embedded("minilm-l6", tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    long_text = "please check the balance of my savings account " * 200  # ~1,600 tokens > 512
    examples = [ex(0, "how do i freeze my debit card", "freeze_account"), ex(1, long_text, "balance")]
    counts = HfTokenCounter(tokenizer, "minilm-l6").count_batch(examples)
    expected = [len(tokenizer(e.text, truncation=False)["input_ids"]) for e in examples]
    assert [c.total for c in counts] == expected
    assert counts[1].total > 1000
    assert counts[0].target == len(tokenizer("freeze_account", add_special_tokens=False)["input_ids"])


def test_balance_default_threshold_is_relative_to_the_uniform_share() -> None:
    examples = [ex(i, f"q{i}", f"label{i % 150}") for i in range(1500)]
    examples += [ex(1500 + i, f"r{i}", "rare") for i in range(1)]
    outcome = BalanceGate().check(examples)
    assert [(f["slice"], f["value"]) for f in outcome.report["findings"]] == [("label", "rare")]
    assert outcome.report["thresholds"]["label"] == round(0.2 / 151, 6)
