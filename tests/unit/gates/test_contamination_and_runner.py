"""Contamination against held-out sets, and the runner's accounting."""

from __future__ import annotations

from pathlib import Path

from sftline.config import GatesConfig
from sftline.contract.spec import Contract, OutputFormat
from sftline.data.common_text import CommonText, find_common_text
from sftline.data.example import Example, Provenance
from sftline.gates.base import GateOutcome
from sftline.gates.contamination import ContaminationGate
from sftline.gates.engine import LocalEngine
from sftline.gates.lengths import WhitespaceCounter
from sftline.gates.runner import build_gates, run_gates

LONG = (
    "the customer reports that the mobile banking application crashes every time they try to "
    "upload a photo of a cheque for deposit after the latest update and support has asked them "
    "to reinstall the application and clear the cache before trying again tomorrow morning"
)


def ex(index: int, text: str, label: str = "x", prefix: str = "t", **tags: str) -> Example:
    return Example(
        id=f"{prefix}{index}",
        provenance=Provenance("f.jsonl", "0" * 64, "classification", index + 1),
        text=text,
        label=label,
        tags=tags,
    )


GOLD = [
    ex(0, "what is the routing number of my bank", prefix="g"),
    ex(1, LONG, prefix="g"),
    ex(2, "please cancel my dinner reservation for tonight", prefix="g"),
]


def test_exact_near_and_ngram_contamination_are_caught_with_the_matched_example() -> None:
    train = [
        ex(0, "What is the ROUTING number of my bank"),  # exact after normalisation
        ex(1, "what is the routing number of my bank?"),  # near (punctuation)
        ex(2, "i was told that " + LONG[4:200] + " and more"),  # shares 13-grams with a long gold text
        ex(3, "how do i make a good risotto"),  # clean
        ex(4, "set an alarm for six thirty in the morning"),  # clean
    ]
    outcome = ContaminationGate({"support-gold@v1": GOLD}).check(train)
    found = {(f.example_id, f.reason, f.related) for f in outcome.flags}
    assert found == {
        ("t0", "contamination_exact", ("support-gold@v1:g0",)),
        ("t1", "contamination_near", ("support-gold@v1:g0",)),
        ("t2", "contamination_ngram", ("support-gold@v1:g1",)),
    }
    assert outcome.report["n_matches"] == 3
    match = next(m for m in outcome.report["matches"] if m["example"] == "t1")
    assert match["against_text"] == GOLD[0].text and match["similarity"] >= 0.8


def test_no_held_out_sets_means_nothing_to_flag() -> None:
    assert ContaminationGate({}).check([ex(0, "anything")]).flags == []


def test_runner_quarantines_blocks_keeps_warnings_and_counts_add_up() -> None:
    contract = Contract(
        task="classify", output=OutputFormat(kind="labels", labels=["balance", "fraud", "timer"])
    )
    examples = [
        ex(0, "what is my balance", "balance", domain="banking"),
        ex(1, "what is my balance", "balance", domain="banking"),  # exact duplicate
        ex(2, "someone stole my card", "fraud", domain="banking"),
        ex(3, "someone stole my card", "balance", domain="banking"),  # conflict with 2
        ex(4, "email me at jane.doe@example.com", "balance", domain="banking"),  # PII
        ex(5, "set a timer for five minutes", "alarm", domain="utility"),  # label not in set
        ex(6, "set a timer for ten minutes please", "timer", domain="utility"),
        ex(7, "please cancel my dinner reservation for tonight", "timer"),  # contamination
    ]
    config = GatesConfig.model_validate({"balance": {"action": "warn", "min_share": 0.6}})
    gates = build_gates(
        config, contract, against={"gold@v1": GOLD}, common=CommonText(), token_counter=WhitespaceCounter()
    )
    result = run_gates(examples, gates)
    reasons = {f.example.id: [r.reason for r in f.reasons] for f in result.rejected}
    assert reasons == {
        "t1": ["exact_duplicate", "near_duplicate"],  # every gate saw it
        "t2": ["conflicting_labels"],
        "t3": ["conflicting_labels", "near_duplicate"],
        "t4": ["pii_email"],
        "t5": ["label_not_in_set"],
        "t7": ["contamination_exact"],
    }
    assert [e.id for e in result.accepted] == ["t0", "t6"]
    assert result.checked == len(result.accepted) + len(result.rejected)
    assert result.passed
    # balance judges the accepted examples: t0 and t6, so each label and domain is half, under 0.6
    assert result.reports["balance"]["tables"] == {
        "label": {"balance": 1, "timer": 1},
        "tag:domain": {"banking": 1, "utility": 1},
    }
    assert result.counts["balance"]["below_min_share"]["warned"] == 4

    blocking = GatesConfig.model_validate({"balance": {"action": "block", "min_share": 0.6}})
    failed = run_gates(
        examples,
        build_gates(blocking, contract, against={}, common=CommonText(), token_counter=WhitespaceCounter()),
    )
    assert not failed.passed and any("balance" in f for f in failed.failures)


def test_redaction_keeps_the_example_with_placeholders() -> None:
    config = GatesConfig.model_validate({"pii": {"mode": "redact"}, "balance": {"action": "off"}})
    gates = build_gates(
        config, Contract(), against={}, common=CommonText(), token_counter=WhitespaceCounter()
    )
    result = run_gates([ex(0, "call me on +44 20 7946 0958 about my order"), ex(1, "no pii here")], gates)
    assert [e.text for e in result.accepted] == ["call me on <PHONE> about my order", "no pii here"]
    assert result.rejected == [] and result.counts["pii"]["pii_redacted"]["redacted"] == 1
    assert [(f.example.id, f.action, [r.action for r in f.reasons]) for f in result.flagged] == [
        ("t0", "warn", ["redact"])
    ]


SYSTEM = (
    "You are the support assistant of a bank and a travel agency. "
    "Reply with the customer's intent as a JSON object."
)


def chat(index: int, query: str, prefix: str, system: str | None = SYSTEM) -> Example:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": query}, {"role": "assistant", "content": '{"intent": "x"}'}]
    return Example(f"{prefix}{index}", Provenance("f.jsonl", "0" * 64, "chat", index + 1), messages=messages)


def test_a_system_message_both_sets_share_is_no_evidence_of_contamination() -> None:
    """The issue's case: "Can I use my card in Austria?" matched an eval row through the system message."""
    train = [chat(0, "can i use my card in austria?", "t"), chat(1, "what is my routing number", "t")]
    train += [chat(2, "please cancel my dinner reservation for tonight", "t")]  # leaked
    gold = [
        chat(0, "how do i report a stolen card", "g"),
        chat(1, "please cancel my dinner reservation for tonight", "g"),
    ]
    gold += [chat(i, f"question number {i} about a transfer", "g") for i in range(2, 12)]
    common = find_common_text({"train": train, "gold@v1": gold}, None)
    outcome = ContaminationGate({"gold@v1": gold}, common=common).check(train)
    assert [(f.example_id, f.reason, f.field) for f in outcome.flags] == [
        ("t2", "contamination_exact", "messages[1]")
    ]
    assert [e.kind for e in common.left_out] == ["system_message", "system_message"]


def test_an_ngram_in_more_than_1_percent_of_the_reference_set_is_not_evidence() -> None:
    stock = "thank you for contacting the customer care team of the national railway company today"
    gold = [ex(i, f"{stock} ticket {i} was lost", prefix="g") for i in range(3)]
    gold += [ex(i, f"unrelated reference question number {i}", prefix="g") for i in range(3, 200)]
    gold.append(ex(200, LONG, prefix="g"))
    train = [
        ex(0, f"{stock} my bag is gone"),  # shares the stock phrase 3 of 201 references have (1.5%)
        ex(1, "i was told that " + LONG[4:200]),  # shares a run of one reference: leaked
    ]
    outcome = ContaminationGate({"gold@v1": gold}).check(train)
    assert [(f.example_id, f.reason) for f in outcome.flags] == [("t1", "contamination_ngram")]
    assert outcome.report["common_ngrams"] == 3  # the stock phrase's 15 words make three 13-grams
    assert outcome.report["ngram_max_share"] == 0.01
    # in 2 of 201 references (1.0%, not more than 1%) the run is still evidence
    rare = gold[1:]
    assert [f.example_id for f in ContaminationGate({"gold@v1": rare}).check(train).flags] == ["t0", "t1"]


def test_the_runner_gives_the_engine_and_the_source_file_while_no_example_was_replaced() -> None:
    """A gate whose check takes `engine` and `source` gets them; the file only while it still
    holds what the gate sees (a redaction before it replaced an example: no file)."""
    seen: list[tuple[str, object, object]] = []

    class Recording:
        name, stage = "recording", "duplicates"

        def check(
            self, examples: list[Example], *, blocked: frozenset[str], engine: object, source: object = None
        ) -> GateOutcome:
            seen.append((examples[0].text or "", engine, source))
            return GateOutcome(self.name)

    config = GatesConfig.model_validate({"pii": {"mode": "redact"}})
    pii = build_gates(config, Contract(), against={}, common=CommonText(), token_counter=WhitespaceCounter())
    pii = [(gate, settings) for gate, settings in pii if gate.name == "pii"]
    recording = (Recording(), GatesConfig().near_duplicates)
    engine, source = LocalEngine(), Path("version.parquet")
    run_gates([ex(0, "no pii here")], [*pii, recording], engine=engine, source=source)
    run_gates([ex(0, "call me on +44 20 7946 0958")], [*pii, recording], engine=engine, source=source)
    run_gates([ex(0, "no source given")], [recording], engine=engine)
    assert seen == [
        ("no pii here", engine, source),
        ("call me on <PHONE>", engine, None),
        ("no source given", engine, None),
    ]
