"""Hostile records are quarantined with their place, reason and field; hostile files are one error.

Each record here crashed the whole import before `record_limits`: `json` reads it, and something
later (encoding to UTF-8, `str()` of an int, a recursive walk) raises.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftline.data import readers
from sftline.data.importer import ImportOptions, ImportResult, import_file
from sftline.data.parquet_io import examples_to_table
from sftline.data.record_limits import MAX_DEPTH, MAX_INPUT_BYTES, value_problem
from sftline.errors import ImportInputError

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def chat(user: str = '"hi"', **extra: str) -> str:
    """A chat record's JSON text, with `user` and `extra` values pasted in as JSON text."""
    fields = "".join(f', "{key}": {value}' for key, value in extra.items())
    return (
        f'{{"messages": [{{"role": "user", "content": {user}}}, {{"role": "assistant", "content": "ok"}}]'
        f"{fields}}}"
    )


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def tool(parameters: str) -> str:
    return f'[{{"type": "function", "function": {{"name": "f", "parameters": {parameters}}}}}]'


def assert_storable(result: ImportResult) -> None:
    """What the import station writes: the examples and the quarantine, as Parquet."""
    examples_to_table(result.examples)
    pa.Table.from_pylist([asdict(q) for q in result.quarantined])
    for record in result.quarantined:
        record.describe().encode("utf-8")


# (the bad record's JSON text, its format, reason, field)
HOSTILE = [
    (chat('"\\ud800"'), "chat", "invalid_unicode", "messages[0].content"),
    (chat('"a\\udfffb"'), "chat", "invalid_unicode", "messages[0].content"),
    (chat(tags='{"\\ud800": "x"}'), "chat", "invalid_unicode", "tags.\ufffd"),
    ('{"text": "hi", "label": ' + "9" * 5000 + "}", "classification", "number_too_large", "label"),
    ('{"text": "hi", "label": -' + "1" * 30 + "}", "classification", "number_too_large", "label"),
    ('{"text": "hi", "label": 18446744073709551616}', "classification", "number_too_large", "label"),
    (chat(id="9" * 4000), "chat", "number_too_large", "id"),
    (nested(100_000), "pairs", "too_deep", "[0]" * MAX_DEPTH),
    (chat(tools=tool(nested(1_000))), "chat", "too_deep", "tools[0].function.parameters[0][0]"),
    (chat(tools=tool(nested(MAX_DEPTH))), "chat", "too_deep", "tools[0].function.parameters[0][0]"),
    ('{"text": "hi", "label": NaN}', "classification", "invalid_number", "label"),
    ('{"text": "hi", "label": "x", "tags": {"w": -Infinity}}', "classification", "invalid_number", "tags.w"),
    ('{"text": "hi", "label": 1e999}', "classification", "invalid_number", "label"),
]


@pytest.mark.parametrize(("record", "fmt", "reason", "field"), HOSTILE)
def test_a_hostile_jsonl_line_is_quarantined_with_its_reason_and_field(
    tmp_path: Path, record: str, fmt: str, reason: str, field: str
) -> None:
    path = tmp_path / "hostile.jsonl"
    good = json.dumps(
        GOOD if fmt == "chat" else ["hi", "greeting"] if fmt == "pairs" else {"text": "hi", "label": 1}
    )
    path.write_text(f"{good}\n{record}\n{good.replace('hi', 'hey')}\n")

    result = import_file(path, ImportOptions(format=fmt))

    [bad] = result.quarantined
    assert (bad.source, bad.line, bad.reason) == ("hostile.jsonl", 2, reason)
    assert bad.field.startswith(field)
    assert [e.provenance.line for e in result.examples] == [1, 3]
    assert_storable(result)


@pytest.mark.parametrize(("record", "fmt", "reason", "field"), HOSTILE)
def test_a_hostile_json_item_is_quarantined_with_its_pointer(
    tmp_path: Path, record: str, fmt: str, reason: str, field: str
) -> None:
    good = json.dumps(
        GOOD if fmt == "chat" else ["hi", "greeting"] if fmt == "pairs" else {"text": "hi", "label": 1}
    )
    array = tmp_path / "hostile.json"
    array.write_text(f"[{good},\n {record},\n {good}]")
    splits = tmp_path / "splits.json"
    splits.write_text(f'{{"train": [{good}], "test": [{good},\n {record}]}}')

    for path, pointer in ((array, "[1]"), (splits, "test[1]")):
        result = import_file(path, ImportOptions(format=fmt))
        [bad] = result.quarantined
        assert (bad.line, bad.pointer, bad.reason) == (2, pointer, reason)
        assert bad.field.startswith(field)
        assert len(result.examples) == 2
        assert_storable(result)


def test_a_document_too_deep_to_parse_is_one_quarantined_record(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('\n{"messages": ' + nested(100_000) + "}")
    result = import_file(path, ImportOptions(format="chat"))
    [bad] = result.quarantined
    assert (bad.line, bad.reason) == (2, "too_deep")
    assert bad.field.startswith("messages[0][0]")


def test_tool_call_arguments_and_sharegpt_tools_are_held_to_the_limits(tmp_path: Path) -> None:
    deep_arguments = json.dumps(nested(2_000))
    call = {"type": "function", "function": {"name": "f", "arguments": json.loads(deep_arguments)}}
    records = [
        {"messages": [{"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [call]}]},
        {
            "conversations": [{"from": "human", "value": "go"}, {"from": "gpt", "value": "ok"}],
            "tools": '[{"name": "\\ud800"}]',
        },
        {
            "conversations": [
                {"from": "human", "value": "go"},
                {"from": "function_call", "value": '{"name": "f", "arguments": {"n": ' + "7" * 5000 + "}}"},
            ]
        },
    ]
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")

    chat_result = import_file(path, ImportOptions(format="chat"))
    assert (chat_result.quarantined[0].reason, chat_result.quarantined[0].field) == (
        "too_deep",
        "messages[1].tool_calls[0].function.arguments",
    )
    sharegpt = {
        q.line: (q.reason, q.field) for q in import_file(path, ImportOptions(format="sharegpt")).quarantined
    }
    assert sharegpt[2] == ("invalid_unicode", "tools")
    assert sharegpt[3] == ("number_too_large", "conversations[1].value")


def test_bytes_that_are_not_utf8_are_named_in_every_text_container(tmp_path: Path) -> None:
    json_file = tmp_path / "bytes.json"
    json_file.write_bytes(b'[{"text": "caf\xe9", "label": "x"}, {"text": "ok", "label": "y"}]')
    [bad] = import_file(json_file).quarantined
    assert (bad.line, bad.pointer, bad.reason, bad.field) == (1, "[0]", "non_utf8", "text")
    assert bad.raw is not None and "\ufffd" in bad.raw

    csv_file = tmp_path / "bytes.csv"
    csv_file.write_bytes(b"text,label\ncaf\xe9,x,extra\nok,y\n")
    result = import_file(csv_file)
    assert [(q.line, q.reason) for q in result.quarantined] == [(2, "wrong_field_count")]
    assert_storable(result)


def test_a_record_over_the_size_limit_is_quarantined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "MAX_RECORD_SIZE", 1_000)
    long_chat = json.dumps({"messages": [{"role": "user", "content": "x" * 2_000}, GOOD["messages"][1]]})
    jsonl = tmp_path / "long.jsonl"
    jsonl.write_text(json.dumps(GOOD) + "\n" + long_chat + "\n")
    document = tmp_path / "long.json"
    document.write_text(f"[{json.dumps(GOOD)}, {long_chat}]")
    table = tmp_path / "long.csv"
    table.write_text(f"text,label\nshort,a\n{'y' * 500},b\n{'z' * 1_500},c\n")

    for path, accepted, line in ((jsonl, 1, 2), (document, 1, 1), (table, 2, 4)):
        result = import_file(path)
        assert [(q.line, q.reason) for q in result.quarantined] == [(line, "record_too_large")], path
        assert len(result.examples) == accepted


def test_a_device_or_pipe_is_refused_not_read(tmp_path: Path) -> None:
    with pytest.raises(ImportInputError, match="/dev/zero: is not a regular file"):
        import_file(Path("/dev/zero"))
    fifo = tmp_path / "chats.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ImportInputError, match="is not a regular file"):
        import_file(fifo)


def test_a_file_over_the_input_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sparse = tmp_path / "huge.jsonl"
    with sparse.open("wb") as handle:
        handle.truncate(MAX_INPUT_BYTES + 1)  # sparse: no disk used, nothing read
    with pytest.raises(ImportInputError, match=r"huge.jsonl: is larger than 2,147,483,648 bytes"):
        import_file(sparse)

    monkeypatch.setattr(readers, "MAX_INPUT_BYTES", 10_000)
    bomb = tmp_path / "bomb.jsonl.gz"
    bomb.write_bytes(gzip.compress((json.dumps(GOOD) + "\n").encode() * 1_000))
    assert len(bomb.read_bytes()) < 10_000
    with pytest.raises(ImportInputError, match="bomb.jsonl.gz: holds more than .* uncompressed"):
        import_file(bomb)


def test_a_chat_object_in_a_json_file_is_one_record_not_splits(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({**GOOD, "tools": [{"type": "function", "function": {"name": "f"}}]}))
    result = import_file(path)
    assert (result.format, len(result.examples), result.quarantined) == ("chat", 1, [])
    assert result.examples[0].tags == {}  # no `split` tag: not read as splits

    conversational = tmp_path / "pc.json"
    conversational.write_text(
        json.dumps({"prompt": [GOOD["messages"][0]], "completion": [GOOD["messages"][1]]})
    )
    assert len(import_file(conversational).examples) == 1

    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": [GOOD], "test": [GOOD]}))
    assert [e.tags["split"] for e in import_file(splits).examples] == ["train", "test"]


def test_parquet_rows_are_held_to_the_limits(tmp_path: Path) -> None:
    text = pa.array([b"fine", b"caf\xe9", b"also fine"], pa.binary())
    table = pa.table(
        {
            "text": pa.Array.from_buffers(pa.string(), 3, text.buffers()),  # Parquet does not check UTF-8
            "label": ["a", "b", "c"],
            "score": [1.0, float("nan"), 2.0],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    path = tmp_path / "rows.parquet"
    path.write_bytes(buffer.getvalue())

    result = import_file(path, ImportOptions(format="classification"))
    assert [(q.pointer, q.reason) for q in result.quarantined] == [("[1]", "non_utf8")]
    assert [e.text for e in result.examples] == ["fine", "also fine"]

    version = examples_to_table(import_file(path, ImportOptions(format="classification")).examples)
    version = version.set_column(
        version.schema.get_field_index("messages"),
        "messages",
        pa.array([json.dumps(GOOD["messages"]), nested(5_000)]),
    )
    stored = tmp_path / "version.parquet"
    pq.write_table(version.replace_schema_metadata(version.schema.metadata), stored)
    result = import_file(stored, ImportOptions(format="chat"))
    [bad] = result.quarantined
    assert (bad.pointer, bad.reason) == ("[1]", "too_deep")
    assert bad.field.startswith("messages[0][0]")


def test_value_problem_walks_without_recursion() -> None:
    value: list[object] = []
    for _ in range(50_000):
        value = [value]
    assert value_problem(value) == (
        "too_deep",
        "[0]" * MAX_DEPTH,
        f"arrays and objects nested deeper than {MAX_DEPTH}",
    )
    assert value_problem({"a": [1, 2.5, "x", None, True, 2**64 - 1, -(2**63)]}) is None


def test_a_non_finite_number_as_a_whole_item_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "numbers.json"
    path.write_text('[["hi", "greeting"], NaN, -Infinity, 1e999, ' + "7" * 5_000 + "]")
    result = import_file(path, ImportOptions(format="pairs"))
    assert len(result.examples) == 1
    assert [(q.pointer, q.reason) for q in result.quarantined] == [
        ("[1]", "invalid_number"),
        ("[2]", "invalid_number"),
        ("[3]", "invalid_number"),
        ("[4]", "number_too_large"),
    ]


def test_whole_file_errors_stay_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.jsonl"
    keys.write_text(json.dumps({"a\nb": 1, "x" * 100: 2}) + "\n")
    with pytest.raises(ImportInputError) as error:
        import_file(keys)
    assert "\n" not in str(error.value)
    assert f"first record's keys: 'a\\nb', {'x' * 40}" in str(error.value)


def test_a_jsonl_file_whose_first_line_starts_like_parquet_is_still_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text("PAR1 not a record\n" + json.dumps(GOOD) + "\n")
    result = import_file(path)
    assert (result.container, len(result.examples)) == ("jsonl", 1)
    assert [(q.line, q.reason) for q in result.quarantined] == [(1, "invalid_json")]
