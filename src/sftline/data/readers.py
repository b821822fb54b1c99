"""Container readers: turn a file into raw records with their line numbers.

A reader never raises for a bad record; it yields a `RawRecord` carrying the failure (invalid
JSON, bytes that are not UTF-8, a CSV row of the wrong width). Only a file that cannot be read
at all (missing, a directory, binary, a JSON document that does not parse) raises
`ImportInputError`, naming the file and, where there is one, the line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sftline.data.parquet_io import example_record_from_row, is_example_table
from sftline.errors import ImportInputError

Container = Literal["jsonl", "json", "csv", "tsv", "parquet"]
PARQUET_MAGIC = b"PAR1"
BINARY_SNIFF = 8192  # bytes looked at for NUL bytes
_SPACE = re.compile(r"[ \t\r\n]*")
_SURROGATE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True, slots=True)
class RawRecord:
    line: int | None
    pointer: str | None
    value: Any = None
    error: tuple[str, str, str] | None = None
    """(reason, field, detail) when the record could not even be parsed."""
    raw: str | None = None
    """The record's source text, kept for the quarantine."""


@dataclass(frozen=True, slots=True)
class FileRead:
    container: Container
    records: list[RawRecord]
    blank_lines: int


def guess_container(path: Path, head: bytes) -> Container:
    suffix = path.suffix.lower()
    if head.startswith(PARQUET_MAGIC) or suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".tsv":
        return "tsv"
    if suffix == ".json":
        return "json"
    stripped = head.lstrip()
    if stripped.startswith(b"{") and b"\n{" in stripped:
        return "jsonl"
    if stripped.startswith((b"[", b"{")):
        return "json"
    raise ImportInputError(
        f"{path}: cannot tell the file type from its name; use .jsonl, .json, .csv, .tsv or .parquet"
    )


def read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ImportInputError(f"{path}: no such file")
    if path.is_dir():
        raise ImportInputError(f"{path}: is a directory, not a data file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImportInputError(f"{path}: cannot read ({exc.strerror})") from exc


def read_file(path: Path, data: bytes) -> FileRead:
    """Split a file's bytes into raw records according to its container."""
    container = guess_container(path, data[:BINARY_SNIFF])
    if container != "parquet" and b"\x00" in data[:BINARY_SNIFF]:
        raise ImportInputError(f"{path}: looks binary (NUL bytes), not a text data file")
    if not data.strip():
        raise ImportInputError(f"{path}: is empty")
    if container == "jsonl":
        return _read_jsonl(data)
    if container == "json":
        return _read_json_document(path, data)
    if container in ("csv", "tsv"):
        return _read_csv(path, data, delimiter="\t" if container == "tsv" else ",", container=container)
    return _read_parquet(path, data)


def _decode_error_detail(exc: UnicodeDecodeError) -> str:
    bad = exc.object[exc.start : exc.start + 1].hex()
    return f"byte 0x{bad} at column {exc.start + 1} is not valid UTF-8"


def _read_jsonl(data: bytes) -> FileRead:
    records: list[RawRecord] = []
    blank = 0
    for number, chunk in enumerate(data.split(b"\n"), start=1):
        line_bytes = chunk.rstrip(b"\r")
        if not line_bytes.strip():
            blank += 1
            continue
        try:
            text = line_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = line_bytes.decode("utf-8", errors="replace")
            records.append(
                RawRecord(number, None, error=("non_utf8", "", _decode_error_detail(exc)), raw=raw)
            )
            continue
        text = text.removeprefix("\ufeff") if number == 1 else text
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            detail = f"{exc.msg} at column {exc.colno}"
            records.append(RawRecord(number, None, error=("invalid_json", "", detail), raw=text))
            continue
        records.append(RawRecord(number, None, value=value, raw=text))
    # A file ending in a newline yields one empty last chunk: that is not a blank line.
    if data.endswith(b"\n"):
        blank -= 1
    return FileRead("jsonl", records, blank)


def _has_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_SURROGATE.search(value))
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    return False


def _json_record(line: int, pointer: str, value: Any, raw: str) -> RawRecord:
    if _has_surrogates(value):
        return RawRecord(
            line, pointer, error=("non_utf8", "", "contains bytes that are not valid UTF-8"), raw=raw
        )
    return RawRecord(line, pointer, value=value, raw=raw)


class _Positions:
    """Walks a JSON document with raw_decode to find the line where each item starts."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.decoder = json.JSONDecoder()
        self._line = 1
        self._line_at = 0

    def line_of(self, index: int) -> int:
        self._line += self.text.count("\n", self._line_at, index)
        self._line_at = index
        return self._line

    def skip(self, index: int) -> int:
        match = _SPACE.match(self.text, index)
        return match.end() if match else index

    def array_items(self, index: int, prefix: str) -> tuple[list[RawRecord], int]:
        """Items of the array whose '[' is at `index`; returns them and the index after ']'."""
        items: list[RawRecord] = []
        index = self.skip(index + 1)
        position = 0
        while self.text[index] != "]":
            value, end = self.decoder.raw_decode(self.text, index)
            pointer = f"{prefix}[{position}]"
            items.append(_json_record(self.line_of(index), pointer, value, self.text[index:end]))
            position += 1
            index = self.skip(end)
            if self.text[index] == ",":
                index = self.skip(index + 1)
        return items, index + 1


def _read_json_document(path: Path, data: bytes) -> FileRead:
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        if _looks_like_jsonl(text):
            return _read_jsonl(data)
        raise ImportInputError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    walker = _Positions(text)
    start = walker.skip(0)
    if isinstance(document, list):
        records, _ = walker.array_items(start, "")
        return FileRead("json", records, 0)
    if isinstance(document, dict) and document and all(isinstance(v, list) for v in document.values()):
        # An object of arrays, e.g. {"train": [...], "test": [...]}: each key is a split.
        records = []
        index = walker.skip(start + 1)
        while text[index] != "}":
            key, end = walker.decoder.raw_decode(text, index)
            index = walker.skip(walker.skip(end) + 1)  # past ':'
            items, index = walker.array_items(index, str(key))
            records.extend(items)
            index = walker.skip(index)
            if text[index] == ",":
                index = walker.skip(index + 1)
        return FileRead("json", records, 0)
    return FileRead("json", [_json_record(1, "", document, text)], 0)


def _looks_like_jsonl(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    try:
        return isinstance(json.loads(first), dict) and "\n" in text.strip()
    except json.JSONDecodeError:
        return False


def _read_csv(path: Path, data: bytes, *, delimiter: str, container: Container) -> FileRead:
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise ImportInputError(f"{path}: cannot read a CSV header ({exc})") from exc
    if any(_SURROGATE.search(name) for name in header):
        raise ImportInputError(f"{path}: line 1 (the header) is not valid UTF-8")
    names = [name.strip() for name in header]
    if len(set(names)) != len(names):
        raise ImportInputError(f"{path}: line 1: the header repeats a column name: {names}")
    records: list[RawRecord] = []
    blank = 0
    start_line = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            records.append(RawRecord(start_line, None, error=("invalid_csv", "", str(exc))))
            start_line = reader.line_num + 1
            continue
        line, start_line = start_line, reader.line_num + 1
        raw = delimiter.join(row)
        if not row or not any(cell.strip() for cell in row):
            blank += 1
            continue
        if len(row) != len(names):
            detail = f"row has {len(row)} fields, the header has {len(names)}"
            records.append(RawRecord(line, None, error=("wrong_field_count", "", detail), raw=raw))
            continue
        if any(_SURROGATE.search(cell) for cell in row):
            detail = "contains bytes that are not valid UTF-8"
            safe = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            records.append(RawRecord(line, None, error=("non_utf8", "", detail), raw=safe))
            continue
        records.append(RawRecord(line, None, value=dict(zip(names, row, strict=True)), raw=raw))
    return FileRead(container, records, blank)


def _read_parquet(path: Path, data: bytes) -> FileRead:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImportInputError(f"{path}: not a readable Parquet file ({exc})") from exc
    rows = table.to_pylist()
    if is_example_table(table.schema):
        rows = [example_record_from_row(row) for row in rows]
    records = [
        RawRecord(row_number, None, value=row, raw=json.dumps(row, default=str, ensure_ascii=False))
        for row_number, row in enumerate(rows, start=1)
    ]
    return FileRead("parquet", records, 0)
