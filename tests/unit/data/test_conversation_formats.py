"""ShareGPT, `{"text"}` records and LLaMA-Factory's alpaca `history` land in the canonical Example;
keys an example does not keep are counted, not dropped silently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sftline.data.formats import FormatOptions
from sftline.data.importer import ImportOptions, import_file


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def turn(speaker: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"from": speaker, "value": value, **extra}


SHAREGPT: list[tuple[dict[str, Any], str | None, str | None]] = [
    # (record, expected reason or None for accepted, expected field)
    (
        {"conversations": [turn("system", "Be brief."), turn("human", "hi"), turn("gpt", "hello")]},
        None,
        None,
    ),  # 1
    (
        {"conversations": [turn("user", "a"), turn("chatgpt", "b"), turn("human", "c"), turn("bard", "d")]},
        None,
        None,
    ),
    (
        {"conversations": [turn("human", "a"), turn("wizard", "b")]},
        "unknown_role",
        "conversations[1].from",
    ),  # 3
    ({"conversations": [turn("human", "a"), turn("gpt", "  ")]}, "empty_assistant", "conversations[1].value"),
    (
        {
            "system": "You book rooms.",
            "tools": json.dumps([{"name": "book", "description": "Book", "parameters": {"type": "object"}}]),
            "conversations": [
                turn("human", "Book room 4"),
                turn("function_call", json.dumps({"name": "book", "arguments": {"room": 4}})),
                turn("observation", '{"ok": true}'),
                turn("gpt", "Booked."),
            ],
        },
        None,
        None,
    ),  # 5
    (
        {"conversations": [turn("human", "a"), turn("observation", "{}"), turn("gpt", "b")]},
        "invalid_tool_call",
        "conversations[1].from",
    ),  # 6
    ({"conversations": [turn("human", "only a question")]}, "no_assistant_turn", "conversations"),  # 7
    (
        {
            "source": "forum",
            "conversations": [
                turn("human", "a", markdown={"lang": "en"}, name=None),
                turn("gpt", "b", weight=0),
                turn("human", "c"),
                turn("gpt", "d", weight=1),
            ],
        },
        None,
        None,
    ),  # 8
    ({"conversations": "human: hi"}, "wrong_type", "conversations"),  # 9
    (
        {"conversations": [turn("human", "a"), turn("function_call", "{oops"), turn("gpt", "b")]},
        "invalid_tool_call",
        "conversations[1].value",
    ),  # 10
    (
        {"conversations": [{"value": "no speaker"}, turn("gpt", "b")]},
        "missing_field",
        "conversations[0].from",
    ),
]


def test_sharegpt_roles_tools_and_every_bad_turn_named(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "sharegpt.jsonl", [record for record, _, _ in SHAREGPT])
    result = import_file(path)

    assert result.format == "sharegpt"
    expected_bad = {n: (reason, where) for n, (_, reason, where) in enumerate(SHAREGPT, start=1) if reason}
    assert {q.line: (q.reason, q.field) for q in result.quarantined} == expected_bad
    assert [e.provenance.line for e in result.examples] == [1, 2, 5, 8]
    assert result.n_read == len(result.examples) + len(result.quarantined) == len(SHAREGPT)
    assert "'wizard' is not one of human, user, gpt" in result.quarantined[0].detail

    first, roles, tools, weighted = result.examples
    assert first.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert [m["role"] for m in roles.messages or []] == ["user", "assistant", "user", "assistant"]
    assert tools.tools == [
        {
            "type": "function",
            "function": {"name": "book", "description": "Book", "parameters": {"type": "object"}},
        }
    ]
    assert tools.messages == [
        {"role": "system", "content": "You book rooms."},
        {"role": "user", "content": "Book room 4"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1_0",
                    "type": "function",
                    "function": {"name": "book", "arguments": '{"room": 4}'},
                }
            ],
        },
        {"role": "tool", "content": '{"ok": true}', "tool_call_id": "call_1_0"},
        {"role": "assistant", "content": "Booked."},
    ]
    assert [m.get("weight") for m in weighted.messages or []] == [None, 0, None, 1]
    # A key with a null value carries nothing; `markdown` and the record's `source` are reported.
    assert result.unkept_keys == {"conversations[].markdown": 1, "source": 1}
    assert result.summary()["unkept_keys"] == {"conversations[].markdown": 1, "source": 1}


def test_sharegpt_is_detected_in_messages_with_from_and_value(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [{"messages": [turn("human", "q"), turn("model", "a")], "system": "S"}],
    )
    result = import_file(path)
    assert result.format == "sharegpt"
    assert result.examples[0].messages == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]


def test_sharegpt_system_key_beside_a_system_turn_is_reported(tmp_path: Path) -> None:
    record = {
        "system": "ignored",
        "conversations": [turn("system", "kept"), turn("human", "q"), turn("gpt", "a")],
    }
    result = import_file(write_jsonl(tmp_path / "s.jsonl", [record]))
    assert result.examples[0].messages[0] == {"role": "system", "content": "kept"}  # type: ignore[index]
    assert result.unkept_keys == {"system": 1}


def test_text_records_train_the_whole_text_as_one_assistant_turn(tmp_path: Path) -> None:
    records = [
        {"text": "The quick brown fox jumps over the lazy dog.", "url": "https://example.org"},
        {"text": ""},
        {"text": 5},
        {"text": "Second document."},
    ]
    result = import_file(write_jsonl(tmp_path / "corpus.jsonl", records))
    assert result.format == "text"
    assert [e.messages for e in result.examples] == [
        [{"role": "assistant", "content": "The quick brown fox jumps over the lazy dog."}],
        [{"role": "assistant", "content": "Second document."}],
    ]
    assert [e.prompt for e in result.examples] == ["", ""]
    assert [(q.line, q.reason, q.field) for q in result.quarantined] == [
        (2, "empty_text", "text"),
        (3, "wrong_type", "text"),
    ]
    assert result.unkept_keys == {"url": 1}


def test_text_format_takes_the_text_field_option(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"body": "A document."}, {"title": "no body"}])
    options = ImportOptions(format="text", fields=FormatOptions(text_field="body"))
    result = import_file(path, options)
    assert [e.target for e in result.examples] == ["A document."]
    assert [(q.line, q.reason, q.field) for q in result.quarantined] == [(2, "missing_field", "body")]


def test_alpaca_history_becomes_earlier_turns(tmp_path: Path) -> None:
    records = [
        {
            "system": "You are terse.",
            "history": [["Hi", "Hello."], ["What is 2+2?", "4."]],
            "instruction": "And times 3?",
            "input": "",
            "output": "12.",
        },
        {"instruction": "q", "output": "a", "history": [["only one side"]]},
        {"instruction": "q", "output": "a", "history": [["asked", " "]]},
        {"instruction": "q", "output": "a", "history": "Hi -> Hello"},
        {"instruction": "q", "output": "a", "history": [], "category": "math"},
    ]
    result = import_file(write_jsonl(tmp_path / "lf.jsonl", records))
    assert result.format == "alpaca"
    assert result.examples[0].messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And times 3?"},
        {"role": "assistant", "content": "12."},
    ]
    assert result.examples[1].messages == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]
    assert [(q.line, q.reason, q.field) for q in result.quarantined] == [
        (2, "wrong_type", "history[0]"),
        (3, "empty_assistant", "history[0][1]"),
        (4, "wrong_type", "history"),
    ]
    assert result.unkept_keys == {"category": 1}


def test_chat_message_keys_not_kept_are_counted_per_record(tmp_path: Path) -> None:
    records = [
        {
            "messages": [
                {"role": "user", "content": "a", "weight": 0},
                {"role": "assistant", "content": "b", "refusal": "no", "weight": 1},
                {"role": "user", "content": "c", "weight": 0},
                {"role": "assistant", "content": "d", "refusal": None},
            ],
            "source": "crm",
        },
        {
            "messages": [
                {"role": "user", "content": "e"},
                {"role": "assistant", "content": "f", "refusal": "x"},
            ]
        },
        {"messages": [{"role": "user", "content": "g", "lang": "en"}]},  # quarantined: not counted
    ]
    result = import_file(write_jsonl(tmp_path / "chat.jsonl", records))
    assert [q.reason for q in result.quarantined] == ["no_assistant_turn"]
    assert result.examples[0].messages[1] == {"role": "assistant", "content": "b", "weight": 1}  # type: ignore[index]
    assert result.unkept_keys == {"messages[].refusal": 2, "messages[].weight": 1, "source": 1}
