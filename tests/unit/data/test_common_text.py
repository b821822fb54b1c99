"""The text most records share, left out of what duplicate and contamination tests compare."""

from __future__ import annotations

import json
from pathlib import Path

from sftline.data.common_text import CommonText, find_common_text
from sftline.data.example import Example, Provenance
from sftline.data.splits import gold_overlap, group_examples

CLINC = Path(__file__).resolve().parents[3] / "examples" / "clinc150" / "data_full.json"
SYSTEM = "You are a helpful banking assistant. Answer with the intent of the customer's message, in JSON."


def chat(i: int, query: str, system: str | None = SYSTEM, prefix: str = "c") -> Example:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": query}, {"role": "assistant", "content": "{}"}]
    return Example(f"{prefix}{i}", Provenance("f.jsonl", "0" * 64, "chat", i + 1), messages=messages)


def queries(count: int, start: int = 0) -> list[str]:
    return [text for text, _ in json.loads(CLINC.read_text())["train"][start::50][:count]]


def test_a_system_message_most_records_share_is_left_out_and_reported() -> None:
    examples = [chat(i, q) for i, q in enumerate(queries(49))] + [chat(49, "what is my balance", None)]
    common = find_common_text({"support@v1": examples}, None)
    assert [entry.why for entry in common.left_out] == [
        "system message shared by 98% of support@v1's records (1 text, 16 words) "
        "left out of the compared text"
    ]
    assert common.compared_input(examples[0]) == queries(1)[0]
    assert common.input_field(examples[0]) == "messages[1]"
    # the same query with and without the system message compares equal
    assert common.compared_input(chat(0, "What is my  BALANCE", None)) == "what is my balance"


def test_the_contract_system_prompt_is_left_out_whatever_its_share() -> None:
    examples = [chat(0, "what is my balance"), *(chat(i, q, None) for i, q in enumerate(queries(19), 1))]
    common = find_common_text({"d@v1": examples}, SYSTEM)
    assert [entry.kind for entry in common.left_out] == ["contract_system_prompt"]
    assert common.left_out[0].why == (
        "the contract's system prompt (16 words), in 5% of d@v1's records, left out of the compared text"
    )
    assert common.compared_input(examples[0]) == "what is my balance"


def test_a_context_few_records_share_stays_compared() -> None:
    """A retrieval context given to 3 questions of 30 (10%) is what makes those records alike."""
    context = "Refund policy: a purchase can be returned within thirty days with the receipt."
    examples = [chat(i, q, None) for i, q in enumerate(queries(27))]
    examples += [
        chat(27 + i, q, context) for i, q in enumerate(["can i return it", "what is the policy", "how?"])
    ]
    common = find_common_text({"d@v1": examples}, None)
    assert common.left_out == () and common.system_messages == frozenset()
    assert common.compared_input(examples[-1]).startswith("refund policy:")
    assert common.input_field(examples[-1]) == "messages"


def test_template_wording_at_both_ends_is_left_out() -> None:
    texts = [f"Classify the intent of this message: {q} Answer with one label." for q in queries(30)]
    texts += [q for q in queries(10, start=7)]  # a quarter without the template
    examples = [
        Example(f"t{i}", Provenance("f", "0" * 64, "pairs", i + 1), text=t, label="x")
        for i, t in enumerate(texts)
    ]
    common = find_common_text({"d@v1": examples}, None)
    assert [(e.kind, e.sample, e.shares) for e in common.left_out] == [
        ("prefix", "classify the intent of this message:", (0.75,)),
        ("suffix", "answer with one label.", (0.75,)),
    ]
    assert common.left_out[0].why == (
        "template wording that begins 75% of d@v1's records "
        "(6 words: 'classify the intent of this message:') left out of the compared text"
    )
    assert common.compared_input(examples[0]) == queries(1)[0]
    assert common.compared_input(examples[35]) == queries(10, start=7)[5]


def test_natural_queries_and_small_sets_have_no_template() -> None:
    examples = [
        Example(f"t{i}", Provenance("f", "0" * 64, "pairs"), text=q) for i, q in enumerate(queries(300))
    ]
    assert find_common_text({"d": examples}, None) == CommonText()
    few = [Example(f"t{i}", Provenance("f", "0" * 64, "pairs"), text=f"hello there {i}") for i in range(19)]
    assert find_common_text({"d": few}, None).prefixes == ()


def test_a_split_groups_queries_not_their_shared_system_message() -> None:
    """A 15-word system message put 13-word runs and near-duplicate shingles into every pair."""
    examples = [chat(i, q) for i, q in enumerate(queries(200))]
    groups = group_examples(examples, "near_duplicate")
    assert max(len(g) for g in groups) <= 3  # was one group of 200
    gold = [chat(i, q, prefix="g") for i, q in enumerate(queries(20, start=25))]
    assert gold_overlap(examples, gold) == set()  # was all 200
    assert gold_overlap(examples, [chat(0, queries(1)[0], prefix="g")]) == {0}
