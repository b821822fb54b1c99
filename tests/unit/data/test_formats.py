"""Each import format lands in the canonical Example with provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftline.data.formats import FormatOptions
from sftline.data.importer import ImportOptions, import_file, load_label_groups


def test_prompt_completion_becomes_a_user_and_an_assistant_turn(tmp_path: Path) -> None:
    path = tmp_path / "pc.jsonl"
    rows = [
        {"prompt": "Translate: bonjour", "completion": "hello"},
        {
            "prompt": [{"role": "user", "content": "2+2?"}],
            "completion": [{"role": "assistant", "content": "4"}],
        },
        {"prompt": "x", "completion": ""},
        {"prompt": "x"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = import_file(path)
    assert result.format == "prompt-completion"
    assert result.examples[0].messages == [
        {"role": "user", "content": "Translate: bonjour"},
        {"role": "assistant", "content": "hello"},
    ]
    assert result.examples[1].target == "4"
    assert [(q.line, q.reason, q.field) for q in result.quarantined] == [
        (3, "empty_assistant", "completion"),
        (4, "missing_field", "completion"),
    ]


def test_alpaca_json_array_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    items = [
        {"instruction": "Summarise", "input": "A long text.", "output": "Short."},
        {"instruction": "Say hi", "input": "", "output": "Hi!"},
        {"instruction": "Broken", "output": 3},
    ]
    path.write_text(json.dumps(items, indent=2))
    result = import_file(path)
    assert result.format == "alpaca"
    assert result.examples[0].messages == [
        {"role": "user", "content": "Summarise\n\nA long text."},
        {"role": "assistant", "content": "Short."},
    ]
    assert result.examples[1].messages[0]["content"] == "Say hi"  # type: ignore[index]
    text = path.read_text().splitlines()
    for example in result.examples:
        assert text[example.provenance.line - 1].strip() == "{"  # type: ignore[operator]
    assert [(q.pointer, q.reason) for q in result.quarantined] == [("[2]", "wrong_type")]
    assert result.quarantined[0].line == 12


def test_classification_csv_with_named_fields(tmp_path: Path) -> None:
    path = tmp_path / "tickets.csv"
    path.write_text(
        "utterance,intent,channel\n"
        '"my card, it was stolen",report_fraud,web\n'
        "what is my balance,balance,app\n"
        ",balance,app\n"
        "too,many,fields,here\n"
        '"a multi\nline message",balance,web\n'
    )
    options = ImportOptions(
        fields=FormatOptions(text_field="utterance", label_field="intent", tag_fields=("channel",))
    )
    result = import_file(path, options)
    assert result.format == "classification"
    assert [(e.text, e.label, e.tags, e.provenance.line) for e in result.examples] == [
        ("my card, it was stolen", "report_fraud", {"channel": "web"}, 2),
        ("what is my balance", "balance", {"channel": "app"}, 3),
        ("a multi\nline message", "balance", {"channel": "web"}, 6),
    ]
    assert [(q.line, q.reason) for q in result.quarantined] == [(4, "empty_text"), (5, "wrong_field_count")]


def test_classification_parquet_detects_fields_and_checks_types(tmp_path: Path) -> None:
    path = tmp_path / "cls.parquet"
    pq.write_table(pa.table({"text": ["good", "also good", "bad label"], "label": [1, 0, None]}), path)
    result = import_file(path)
    assert result.format == "classification"
    assert [(e.text, e.label) for e in result.examples] == [("good", "1"), ("also good", "0")]
    # Parquet has no lines: a row is placed by its 0-based index, and `line` is null.
    assert [(q.line, q.pointer, q.reason) for q in result.quarantined] == [(None, "[2]", "empty_label")]
    assert result.examples[1].provenance.location == "cls.parquet, [1]"


def test_pairs_with_splits_and_label_groups(tmp_path: Path) -> None:
    path = tmp_path / "data_full.json"
    path.write_text(
        json.dumps(
            {
                "train": [["hi there", "greet"], ["bye now", "leave"]],
                "test": [["hello", "greet"]],
                "oos_train": [["what is love", "oos"]],
            },
            indent=4,
        )
    )
    groups = tmp_path / "domains.json"
    groups.write_text(json.dumps({"small_talk": ["greet", "leave"]}))
    options = ImportOptions(label_groups={"domain": load_label_groups(groups)}, splits=("train", "oos_train"))
    result = import_file(path, options)
    assert result.format == "pairs"
    assert [(e.text, e.label, e.tags) for e in result.examples] == [
        ("hi there", "greet", {"domain": "small_talk", "split": "train"}),
        ("bye now", "leave", {"domain": "small_talk", "split": "train"}),
        ("what is love", "oos", {"split": "oos_train"}),
    ]
    assert result.skipped_splits == {"test": 1}
    assert result.examples[1].provenance.pointer == "train[1]"


def test_unknown_split_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"train": [["a", "b"]]}))
    with pytest.raises(Exception, match="no split named dev"):
        import_file(path, ImportOptions(splits=("dev",)))


def test_ids_are_kept_or_derived_and_never_repeat(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    rows = [
        {"id": "a", "text": "one", "label": "x"},
        {"id": "a", "text": "two", "label": "x"},
        {"text": "same", "label": "y"},
        {"text": "same", "label": "y"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = import_file(path)
    assert [q.reason for q in result.quarantined] == ["duplicate_id"]
    ids = [e.id for e in result.examples]
    assert ids[0] == "a"
    assert ids[2] == ids[1] + "-2" and ids[1].startswith("ex-")
    again = import_file(path, existing_ids=ids)
    assert [e.id for e in again.examples] == [ids[1] + "-3", ids[1] + "-4"]


def test_tags_from_records_and_options(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "t", "label": "l", "metadata": {"lang": "en", "priority": 2}}) + "\n")
    result = import_file(path, ImportOptions(tags={"source": "crm", "lang": "fr"}))
    assert result.examples[0].tags == {"lang": "en", "priority": "2", "source": "crm"}
