"""Every kind of bad line is quarantined with its line number and reason; the counts add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftline.data.importer import ImportOptions, import_file
from sftline.errors import ImportInputError


def chat(user: str, assistant: str, **extra: object) -> str:
    record = {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}
    record.update(extra)
    return json.dumps(record)


GOOD_TOOLS = json.dumps(
    {
        "messages": [
            {"role": "system", "content": "You book rooms."},
            {"role": "user", "content": "Book room 4 for 2pm"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "book", "arguments": '{"room": 4}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"ok": true}'},
            {"role": "assistant", "content": "Room 4 is booked for 2pm."},
        ],
        "tools": [{"type": "function", "function": {"name": "book", "parameters": {"type": "object"}}}],
    }
)

# line number -> (bytes of the line, expected reason or None for accepted)
LINES: list[tuple[bytes, str | None]] = [
    (chat("How do I reset my PIN?", "Open Settings, then Security.").encode(), None),  # 1
    (b'{"messages": [{"role": "user", "content": "hi"}', "invalid_json"),  # 2
    (chat("caf\xe9", "ok").encode().replace(b"caf\\u00e9", b"caf\xe9"), "non_utf8"),  # 3
    (json.dumps({"conversation": []}).encode(), "missing_field"),  # 4
    (
        json.dumps(
            {"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}
        ).encode(),
        "unknown_role",
    ),  # 5
    (chat("What is my balance?", "   ").encode(), "empty_assistant"),  # 6
    (json.dumps({"messages": "user: hi"}).encode(), "wrong_type"),  # 7
    (b"", None),  # 8: blank line, not a record
    (GOOD_TOOLS.encode(), None),  # 9
    (
        json.dumps(
            {"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]}
        ).encode(),
        "wrong_type",
    ),  # 10
    (json.dumps({"messages": [{"role": "user", "content": "hello"}]}).encode(), "no_assistant_turn"),  # 11
    (
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "go"},
                    {
                        "role": "assistant",
                        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{oops"}}],
                    },
                ]
            }
        ).encode(),
        "invalid_tool_call",
    ),  # 12
    (json.dumps([1, 2, 3]).encode(), "wrong_type"),  # 13
    (chat("Thanks!", "You're welcome.").encode(), None),  # 14
]


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "support.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in LINES) + b"\n")
    return path


def test_every_bad_line_is_quarantined_with_line_and_reason(bad_file: Path) -> None:
    result = import_file(bad_file)

    assert result.format == "chat"
    expected_bad = {number: reason for number, (_, reason) in enumerate(LINES, start=1) if reason}
    expected_good = [n for n, (line, reason) in enumerate(LINES, start=1) if reason is None and line]
    assert {q.line: q.reason for q in result.quarantined} == expected_bad
    assert [e.provenance.line for e in result.examples] == expected_good
    assert result.n_read == len(result.examples) + len(result.quarantined) == 13
    assert result.blank_lines == 1
    assert sum(result.reasons.values()) == len(result.quarantined)
    assert result.reasons["wrong_type"] == 3
    for record in result.quarantined:
        assert record.source == "support.jsonl"
        assert record.detail
        assert f"line {record.line}" in record.describe()


def test_quarantine_names_the_field(bad_file: Path) -> None:
    by_line = {q.line: q for q in import_file(bad_file).quarantined}
    assert by_line[4].field == "messages"
    assert by_line[5].field == "messages[0].role"
    assert by_line[6].field == "messages[1].content"
    assert by_line[10].field == "messages[0].content"
    assert by_line[12].field == "messages[1].tool_calls[0].function.arguments"
    assert "0xe9" in by_line[3].detail


def test_tools_and_tool_calls_are_kept(bad_file: Path) -> None:
    example = next(e for e in import_file(bad_file).examples if e.provenance.line == 9)
    assert example.tools and example.tools[0]["function"]["name"] == "book"
    assert example.messages is not None
    call = example.messages[2]["tool_calls"][0]
    assert call["function"] == {"name": "book", "arguments": '{"room": 4}'}
    assert example.messages[3] == {"role": "tool", "content": '{"ok": true}', "tool_call_id": "c1"}


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (None, ".jsonl", "no such file"),
        (b"\x00\x01\x02binary\x00", ".jsonl", "looks binary"),
        (b"   \n", ".jsonl", "is empty"),
        (b'[{"a": 1}, {"b": ', ".json", "not valid JSON at line 1"),
    ],
)
def test_unreadable_files_are_one_clear_error(
    tmp_path: Path, content: bytes | None, suffix: str, message: str
) -> None:
    path = tmp_path / f"data{suffix}"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImportInputError, match=message) as error:
        import_file(path)
    assert str(path) in str(error.value)


def test_a_directory_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImportInputError, match="is a directory"):
        import_file(tmp_path)


def test_undetectable_format_says_what_it_saw(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text('{"foo": 1, "bar": 2}\n')
    with pytest.raises(ImportInputError, match="first record's keys: bar, foo"):
        import_file(path)


def test_explicit_format_quarantines_records_of_another_shape(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(chat("a", "b") + "\n" + json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    result = import_file(path, ImportOptions(format="chat"))
    assert [q.reason for q in result.quarantined] == ["missing_field"]
    assert len(result.examples) == 1
