"""Examples <-> Parquet. Messages and tools are stored as canonical JSON strings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sftline.data.example import Example, Provenance, canonical_json

EXAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("messages", pa.string()),
        ("tools", pa.string()),
        ("text", pa.string()),
        ("label", pa.string()),
        ("tags", pa.map_(pa.string(), pa.string())),
        ("content_hash", pa.string()),
        ("source", pa.string()),
        ("source_sha256", pa.string()),
        ("format", pa.string()),
        ("line", pa.int64()),
        ("pointer", pa.string()),
    ],
    metadata={b"sftline.schema": b"examples/1"},
)
CONTENT_COLUMNS = ("id", "messages", "tools", "text", "label", "tags")


def is_example_table(schema: pa.Schema) -> bool:
    """True for Parquet written by sftline (a version or an export)."""
    return bool(schema.metadata and schema.metadata.get(b"sftline.schema") == b"examples/1")


def example_record_from_row(row: dict[str, object]) -> dict[str, object]:
    """A stored row as the record an import reads: JSON columns decoded, provenance left behind."""
    record: dict[str, object] = {"id": row["id"]}
    for name in ("messages", "tools"):
        if row[name] is not None:
            record[name] = json.loads(str(row[name]))
    for name in ("text", "label"):
        if row[name] is not None:
            record[name] = row[name]
    if row["tags"]:
        record["tags"] = dict(row["tags"])  # type: ignore[arg-type,call-overload]
    return record


def _json_or_none(value: object) -> str | None:
    return None if value is None else canonical_json(value)


def examples_to_table(examples: Sequence[Example]) -> pa.Table:
    columns: dict[str, list[object]] = {name: [] for name in EXAMPLE_SCHEMA.names}
    for example in examples:
        p = example.provenance
        row = {
            "id": example.id,
            "messages": _json_or_none(example.messages),
            "tools": _json_or_none(example.tools),
            "text": example.text,
            "label": example.label,
            "tags": list(example.tags.items()),
            "content_hash": example.content_hash,
            "source": p.source,
            "source_sha256": p.source_sha256,
            "format": p.format,
            "line": p.line,
            "pointer": p.pointer,
        }
        for name, value in row.items():
            columns[name].append(value)
    return pa.table(columns, schema=EXAMPLE_SCHEMA)


def table_to_examples(table: pa.Table) -> list[Example]:
    examples = []
    for row in table.to_pylist():
        provenance = Provenance(
            row["source"], row["source_sha256"], row["format"], row["line"], row["pointer"]
        )
        examples.append(
            Example(
                id=row["id"],
                provenance=provenance,
                messages=json.loads(row["messages"]) if row["messages"] is not None else None,
                tools=json.loads(row["tools"]) if row["tools"] is not None else None,
                text=row["text"],
                label=row["label"],
                tags=dict(row["tags"] or []),
            )
        )
    return examples


def write_examples(examples: Sequence[Example], path: Path) -> None:
    pq.write_table(examples_to_table(examples), path, compression="zstd")


def read_examples(data: bytes | Path) -> list[Example]:
    source = pa.BufferReader(data) if isinstance(data, bytes) else str(data)
    return table_to_examples(pq.read_table(source))
