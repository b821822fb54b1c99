"""Hugging Face dataset folders (Parquet shards, save_to_disk Arrow), ClassLabel names and .gz files."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftline.data.hf_datasets import folder_sha256
from sftline.data.importer import ImportOptions, import_file
from sftline.errors import ImportInputError

FEATURES = {
    "text": {"dtype": "string", "_type": "Value"},
    "label": {"names": ["billing", "refund", "other"], "_type": "ClassLabel"},
}


def table(rows: list[dict[str, Any]], features: dict[str, Any] | None = FEATURES) -> pa.Table:
    """Rows as `datasets` writes them: the features as JSON under the schema metadata's `huggingface`."""
    data = pa.Table.from_pylist(rows)
    if features is None:
        return data
    return data.replace_schema_metadata(
        {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    )


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table(rows), path)
    return path


def write_arrow_stream(path: Path, data: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)


def save_to_disk(folder: Path, shards: list[pa.Table], features: dict[str, Any], split: str | None) -> None:
    """The layout of `Dataset.save_to_disk`: Arrow stream shards, state.json, dataset_info.json."""
    names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
    for name, shard in zip(names, shards, strict=True):
        write_arrow_stream(folder / name, shard)
    state = {
        "_data_files": [{"filename": name} for name in names],
        "_fingerprint": "a8c60c416dd387bf",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": split,
    }
    (folder / "state.json").write_text(json.dumps(state, indent=2))
    info = {"citation": "", "description": "", "features": features, "homepage": "", "license": ""}
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))


@pytest.fixture
def parquet_folder(tmp_path: Path) -> Path:
    """A Hub download: data/{split}-NNNNN-of-NNNNN.parquet, a README and a hidden cache folder."""
    root = tmp_path / "tickets"
    write_parquet(root / "data" / "train-00000-of-00002.parquet", [
        {"text": "refund my order", "label": 1},
        {"text": "where is my bill", "label": 0},
    ])  # fmt: skip
    write_parquet(root / "data" / "train-00001-of-00002.parquet", [
        {"text": "hello", "label": -1},
        {"text": "cancel", "label": 9},
        {"text": "talk to a human", "label": 2},
    ])  # fmt: skip
    write_parquet(root / "data" / "test-00000-of-00001.parquet", [{"text": "refund please", "label": 1}])
    write_parquet(root / ".cache" / "huggingface" / "stale.parquet", [{"text": "not data", "label": 0}])
    (root / "README.md").write_text("---\nlicense: mit\n---\n")
    return root


def test_parquet_shards_map_class_labels_and_place_rows_by_file_and_split(parquet_folder: Path) -> None:
    result = import_file(parquet_folder)

    assert (result.container, result.format) == ("hf-parquet", "classification")
    assert result.n_read == len(result.examples) + len(result.quarantined) == 6
    shard = "tickets/data/train-00001-of-00002.parquet"
    assert [(e.text, e.label, e.tags, e.provenance.location) for e in result.examples] == [
        ("refund please", "refund", {"split": "test"}, "tickets/data/test-00000-of-00001.parquet, test[0]"),
        (
            "refund my order",
            "refund",
            {"split": "train"},
            "tickets/data/train-00000-of-00002.parquet, train[0]",
        ),
        (
            "where is my bill",
            "billing",
            {"split": "train"},
            "tickets/data/train-00000-of-00002.parquet, train[1]",
        ),
        ("talk to a human", "other", {"split": "train"}, f"{shard}, train[2]"),
    ]
    assert all(e.provenance.line is None for e in result.examples)
    shard_bytes = (parquet_folder / "data" / "train-00001-of-00002.parquet").read_bytes()
    assert result.examples[3].provenance.source_sha256 == hashlib.sha256(shard_bytes).hexdigest()
    assert [(q.source, q.line, q.pointer, q.reason, q.field) for q in result.quarantined] == [
        (shard, None, "train[0]", "empty_label", "label"),  # -1: datasets' "no label"
        (shard, None, "train[1]", "unknown_class_label", "label"),
    ]
    assert result.quarantined[1].detail == "9 is not a class of 'label' (its ClassLabel has 3 names)"
    assert result.quarantined[1].describe().startswith(f"{shard}:train[1]: unknown_class_label [label]")
    assert sorted(result.files) == [
        "data/test-00000-of-00001.parquet",
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
    ]


def test_a_folder_is_hashed_by_its_files_and_splits_can_be_chosen(parquet_folder: Path) -> None:
    first = import_file(parquet_folder, ImportOptions(splits=("train",)))
    assert first.skipped_splits == {"test": 1}
    assert {e.tags["split"] for e in first.examples} == {"train"}
    assert first.source_sha256 == folder_sha256(parquet_folder)

    (parquet_folder / "README.md").write_text("edited\n")  # not read, so not part of the content
    assert folder_sha256(parquet_folder) == first.source_sha256
    write_parquet(parquet_folder / "data" / "test-00000-of-00001.parquet", [{"text": "changed", "label": 0}])
    assert folder_sha256(parquet_folder) != first.source_sha256


def test_save_to_disk_dataset_dict_reads_class_names_from_dataset_info(tmp_path: Path) -> None:
    root = tmp_path / "intents"
    (root).mkdir()
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    no_metadata = None  # only dataset_info.json names the classes
    save_to_disk(
        root / "train",
        [
            table([{"text": "my bill is wrong", "label": 0}], no_metadata),
            table([{"text": "money back", "label": 1}, {"text": "", "label": 2}], no_metadata),
        ],
        FEATURES,
        split=None,
    )
    save_to_disk(root / "test", [table([{"text": "refund", "label": 1}], no_metadata)], FEATURES, split=None)

    result = import_file(root)
    assert (result.container, result.format) == ("hf-arrow", "classification")
    assert [(e.text, e.label, e.provenance.source, e.provenance.pointer) for e in result.examples] == [
        ("my bill is wrong", "billing", "intents/train/data-00000-of-00002.arrow", "train[0]"),
        ("money back", "refund", "intents/train/data-00001-of-00002.arrow", "train[0]"),
        ("refund", "refund", "intents/test/data-00000-of-00001.arrow", "test[0]"),
    ]
    assert [(q.source, q.pointer, q.reason) for q in result.quarantined] == [
        ("intents/train/data-00001-of-00002.arrow", "train[1]", "empty_text")
    ]
    assert sorted(result.files) == [
        "dataset_dict.json",
        "test/data-00000-of-00001.arrow",
        "test/dataset_info.json",
        "test/state.json",
        "train/data-00000-of-00002.arrow",
        "train/data-00001-of-00002.arrow",
        "train/dataset_info.json",
        "train/state.json",
    ]


def test_save_to_disk_sharegpt_conversations(tmp_path: Path) -> None:
    features = {
        "id": {"dtype": "string", "_type": "Value"},
        "conversations": {
            "feature": {
                "from": {"dtype": "string", "_type": "Value"},
                "value": {"dtype": "string", "_type": "Value"},
            },
            "_type": "List",
        },
    }
    rows = [
        {"id": "c1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        {"id": "c2", "conversations": [{"from": "human", "value": "hi"}, {"from": "robot", "value": "beep"}]},
    ]
    save_to_disk(tmp_path / "chats", [table(rows, features)], features, split="train")
    result = import_file(tmp_path / "chats")
    assert result.format == "sharegpt"
    [example] = result.examples
    assert (example.id, example.provenance.location) == ("c1", "chats/data-00000-of-00001.arrow, train[0]")
    assert example.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert [(q.pointer, q.reason, q.field) for q in result.quarantined] == [
        ("train[1]", "unknown_role", "conversations[1].from")
    ]


def test_chat_rows_of_a_table_whose_struct_fields_are_null_where_a_turn_has_none(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": "a", "weight": None},
                {"role": "assistant", "content": "b", "weight": 0},
                {"role": "user", "content": "c", "weight": None},
                {"role": "assistant", "content": "d", "weight": 1},
            ]
        },
        {"messages": [{"role": "user", "content": "e"}, {"role": "assistant", "content": "f"}]},
    ]
    path = tmp_path / "chats" / "train-00000-of-00001.parquet"
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), path)  # one struct type: `weight` is null in row 2
    result = import_file(tmp_path / "chats")
    assert not result.quarantined
    assert [[m.get("weight") for m in e.messages or []] for e in result.examples] == [
        [None, 0, None, 1],
        [None, None],
    ]
    assert result.unkept_keys == {}


def test_folders_written_by_the_datasets_library_itself(tmp_path: Path) -> None:
    """The reference is `datasets` (when installed): its own files, its own int -> name mapping."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos", "mixed"])}
    )
    texts = [f"review number {i}" for i in range(7)]
    labels = [i % 3 for i in range(7)]
    dataset = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
    expected = [(row["text"], features["label"].int2str(row["label"])) for row in dataset]

    datasets.DatasetDict({"train": dataset}).save_to_disk(str(tmp_path / "saved"), num_shards={"train": 2})
    dataset.to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    dataset.to_parquet(str(tmp_path / "one.parquet"))
    for source in ("saved", "hub", "one.parquet"):
        result = import_file(tmp_path / source)
        assert [(e.text, e.label) for e in result.examples] == expected
        assert not result.quarantined


def test_gzip_files_of_each_line_format(tmp_path: Path) -> None:
    chats = b"\n".join(
        [
            b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
            b"{not json",
            b'{"messages": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}',
        ]
    )
    cases = {
        "chats.jsonl.gz": (chats, "jsonl.gz", "chat"),
        "tickets.csv.gz": (b"text,label\nwhere is my bill,billing\n,refund\n", "csv.gz", "classification"),
        "alpaca.json.gz": (
            json.dumps([{"instruction": "Say hi", "output": "Hi!"}], indent=2).encode(),
            "json.gz",
            "alpaca",
        ),
        "dump.gz": (chats, "jsonl.gz", "chat"),  # no inner suffix: the content says JSONL
    }
    for name, (content, container, format_name) in cases.items():
        compressed = gzip.compress(content)
        (tmp_path / name).write_bytes(compressed)
        result = import_file(tmp_path / name)
        assert (result.container, result.format) == (container, format_name), name
        assert result.source_sha256 == hashlib.sha256(compressed).hexdigest()
        assert result.n_read == len(result.examples) + len(result.quarantined)
        assert all(e.provenance.source == name for e in result.examples)

    by_name = {name: import_file(tmp_path / name) for name in ("chats.jsonl.gz", "tickets.csv.gz")}
    assert [(q.line, q.reason) for q in by_name["chats.jsonl.gz"].quarantined] == [(2, "invalid_json")]
    assert [e.provenance.line for e in by_name["chats.jsonl.gz"].examples] == [1, 3]
    assert [(q.line, q.reason) for q in by_name["tickets.csv.gz"].quarantined] == [(3, "empty_text")]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "is a directory, not a data file or a Hugging Face dataset folder"),
        ({"README.md": "# card"}, "no \\*.parquet shards, no save_to_disk state.json"),
        (
            {"state.json": json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]})},
            "no such file",
        ),
        ({"state.json": "{"}, "state.json: not valid JSON"),
        ({"dataset_dict.json": json.dumps({"splits": ["train"]})}, "split 'train' has no state.json"),
        ({"x.parquet": "not parquet"}, "x.parquet: not a readable Parquet file"),
    ],
)
def test_unreadable_folders_are_one_clear_error(tmp_path: Path, layout: dict[str, str], message: str) -> None:
    root = tmp_path / "folder"
    root.mkdir()
    for name, content in layout.items():
        (root / name).write_text(content)
    with pytest.raises(ImportInputError, match=message) as error:
        import_file(root)
    assert str(root) in str(error.value)


def test_a_corrupt_gzip_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(ImportInputError, match="chats.jsonl.gz: not a readable gzip file"):
        import_file(path)
