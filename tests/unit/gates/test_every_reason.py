"""Every gate sees every example; the reasons are stored as rows with a structured place."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from sftline.config import GatesConfig, GateSettings
from sftline.contract.spec import Contract, Limits
from sftline.data.common_text import CommonText
from sftline.data.example import Example, Provenance
from sftline.gates.base import Flag, GateOutcome
from sftline.gates.lengths import WhitespaceCounter
from sftline.gates.rows import flagged_row, rows_from_table, rows_table
from sftline.gates.runner import CheckResult, build_gates, run_gates

# exact Jaccard (char 5-grams) 0.87 with each other
QUERY = "i was charged twice for my subscription this month, please refund me"
VARIANT = "i was charged twice for my subscripton this month, please refund me"


def chat(i: int, query: str, answer: str = "ok", pointer: str | None = None) -> Example:
    messages = [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
    line = None if pointer else i + 1
    return Example(f"e{i}", Provenance("d.jsonl", "0" * 64, "chat", line, pointer), messages=messages)


def run(
    examples: list[Example], against: dict[str, list[Example]] | None = None, **gates: object
) -> CheckResult:
    config = GatesConfig.model_validate({"balance": {"action": "off"}, **gates})
    contract = Contract(limits=Limits(max_length=30))
    built = build_gates(
        config, contract, against=against or {}, common=CommonText(), token_counter=WhitespaceCounter()
    )
    return run_gates(examples, built)


def test_an_example_carries_every_gate_s_reasons_and_each_is_counted() -> None:
    eval_set = {"eval@v1": [chat(100, "how do i order new checks for my account")]}
    examples = [
        chat(
            0, "how do i order new checks for my account", "mail jane.doe@example.com"
        ),  # contaminated + PII
        chat(1, "call me on +44 20 7946 0958 " + "now " * 30, "ok"),  # PII + too long
        chat(2, "what time is it in tokyo"),
    ]
    result = run(examples, eval_set)
    reasons = {f.example.id: [(r.gate, r.reason, r.field) for r in f.reasons] for f in result.flagged}
    assert reasons == {
        "e0": [("contamination", "contamination_exact", "messages[0]"), ("pii", "pii_email", "messages[1]")],
        "e1": [("pii", "pii_phone", "messages[0]"), ("lengths", "too_long", None)],
    }
    assert result.counts["pii"] == {
        "pii_email": {"blocked": 1, "warned": 0, "redacted": 0},
        "pii_phone": {"blocked": 1, "warned": 0, "redacted": 0},
    }
    assert result.counts["contamination"]["contamination_exact"]["blocked"] == 1
    assert result.counts["lengths"]["too_long"]["blocked"] == 1
    summary = result.summary()
    assert (summary["checked"], summary["accepted"], summary["quarantined"]) == (3, 1, 2)


def test_a_duplicate_group_keeps_the_member_no_other_gate_blocks() -> None:
    """The earliest member holds an email: the PII gate blocks it, so the other one is kept."""
    examples = [chat(0, QUERY, "write to jane.doe@example.com"), chat(1, VARIANT), chat(2, "play some jazz")]
    result = run(examples)
    assert [e.id for e in result.accepted] == ["e1", "e2"]
    rows = {f.example.id: [(r.reason, r.related) for r in f.reasons] for f in result.flagged}
    assert rows == {"e0": [("near_duplicate", ("e1",)), ("pii_email", ())]}
    assert result.reports["near_duplicates"]["clusters"] == [
        {"representative": "e1", "members": ["e1", "e0"], "size": 2}
    ]


def test_warned_rows_are_kept_and_listed() -> None:
    examples = [chat(0, "email me at jane.doe@example.com"), chat(1, "hello")]
    result = run(examples, pii={"action": "warn"})
    assert [e.id for e in result.accepted] == ["e0", "e1"]
    assert [(f.example.id, f.action) for f in result.flagged] == [("e0", "warn")]
    assert result.summary()["warned"] == 1 and result.summary()["quarantined"] == 0


def test_rows_have_a_structured_place_and_round_trip_through_parquet() -> None:
    examples = [chat(0, "email me at jane.doe@example.com"), chat(1, "hi", "ok", pointer="train[3]")]
    result = run(examples, pii={"action": "warn"}, lengths={"min_target_tokens": 5})
    row = flagged_row(result.flagged[0])
    assert row == {
        "example_id": "e0",
        "file": "d.jsonl",
        "line": 1,
        "pointer": None,
        "field": "messages[0]",
        "location": "d.jsonl, line 1",
        "action": "block",
        "reasons": [
            {
                "gate": "pii",
                "reason": "pii_email",
                "detail": "1 email in messages[0]",
                "action": "warn",
                "field": "messages[0]",
                "related": [],
            },
            {
                "gate": "lengths",
                "reason": "empty_target",
                "detail": "answer has 1 tokens",
                "action": "block",
                "field": "messages[1].content",
                "related": [],
            },
        ],
        "suggested_label": None,
        "label_confidence": None,
    }
    no_lines = flagged_row(result.flagged[1])
    assert (no_lines["file"], no_lines["line"], no_lines["pointer"]) == ("d.jsonl", None, "train[3]")
    buffer = io.BytesIO()
    pq.write_table(rows_table(result.flagged), buffer)
    stored = rows_from_table(pq.read_table(io.BytesIO(buffer.getvalue())))
    assert [{k: v for k, v in r.items() if k != "example"} for r in stored] == [row, no_lines]
    assert stored[0]["example"]["messages"][0]["content"] == "email me at jane.doe@example.com"


def test_rows_stored_before_every_reason_was_kept_are_read_in_the_new_shape() -> None:
    old = pa.Table.from_pylist(
        [
            {
                "example_id": "r7",
                "gate": "near_duplicates",
                "reason": "near_duplicate",
                "detail": "Jaccard ~0.91 with r2 (cluster of 2)",
                "related": ["r2"],
                "location": "train.jsonl, line 8",
                "example": json.dumps({"id": "r7", "text": "hi", "label": "greet"}),
            },
            {
                "example_id": "c3",
                "gate": "pii",
                "reason": "pii_email",
                "detail": "1 email in text",
                "related": [],
                "location": "data_full.json, train[3]",
                "example": json.dumps({"id": "c3", "text": "x", "label": "y"}),
            },
        ]
    )
    rows = rows_from_table(old)
    assert [(r["file"], r["line"], r["pointer"], r["action"]) for r in rows] == [
        ("train.jsonl", 8, None, "block"),
        ("data_full.json", None, "train[3]", "block"),
    ]
    assert rows[0]["reasons"] == [
        {
            "gate": "near_duplicates",
            "reason": "near_duplicate",
            "detail": "Jaccard ~0.91 with r2 (cluster of 2)",
            "action": "block",
            "field": None,
            "related": ["r2"],
        }
    ]
    assert rows[0]["example"] == {"id": "r7", "text": "hi", "label": "greet"}


class SuggestingGate:
    """A stand-in for a label-noise gate: it suggests a label for one example."""

    name = "label_noise"

    def check(self, examples: Sequence[Example]) -> GateOutcome:
        flag = Flag(
            examples[0].id,
            "label_noise",
            "label x, the data says y",
            suggested_label="y",
            label_confidence=0.93,
        )
        return GateOutcome(self.name, [flag])


def test_a_suggested_label_reaches_the_row() -> None:
    result = run_gates([chat(0, "hello"), chat(1, "bye")], [(SuggestingGate(), GateSettings(action="warn"))])
    row = flagged_row(result.flagged[0])
    assert (row["action"], row["suggested_label"], row["label_confidence"]) == ("warn", "y", 0.93)
    assert row["reasons"][0]["reason"] == "label_noise"
