"""Container readers: turn a file (or a dataset folder) into raw records with their places.

A reader never raises for a bad record; it yields a `RawRecord` carrying the failure (invalid
JSON, bytes that are not UTF-8, a CSV row of the wrong width). Only a file that cannot be read
at all (missing, a directory, binary, a JSON document that does not parse, larger than
`MAX_INPUT_BYTES`) raises `ImportInputError`, naming the file and, where there is one, the line. A
gzip file is read as the file it holds (`chats.jsonl.gz` as JSONL); line numbers are those of the
decompressed text. Every parsed record is held to `record_limits` (its strings, nesting, numbers
and size); one that breaks them carries the problem like any other bad record.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import zlib
from pathlib import Path
from typing import Any, Literal, NoReturn

from sftline.data.hf_datasets import read_dataset_folder, read_parquet_table, table_records
from sftline.data.raw_records import FileRead, RawRecord, read_bytes, too_big
from sftline.data.record_limits import (
    DECODER,
    JSON_TOKEN,
    MAX_INPUT_BYTES,
    MAX_RECORD_SIZE,
    PLACING_DECODER,
    has_surrogate,
    has_undecodable_bytes,
    json_problem,
    parse_json,
    printable,
    text_problem,
    too_large,
)
from sftline.errors import ImportInputError

Container = Literal["jsonl", "json", "csv", "tsv", "parquet"]
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
BINARY_SNIFF = 8192  # bytes looked at for NUL bytes
TOO_LARGE_SAMPLE = 4096  # characters of a too-large record kept as its raw text
RECORD_KEYS = frozenset({"messages", "conversations", "prompt", "completion"})
"""Keys that make a JSON object one record, not an object of splits: `{"messages": [...]}` is one
conversation, though each of its values is an array."""
_SPACE = re.compile(r"[ \t\r\n]*")
_JSON_NUMBER = re.compile(r"-?(?:Infinity|NaN|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)")
Parsed = tuple[Container, list[RawRecord], int]
"""A text container's records: (container, records, blank lines)."""


TEXT_SUFFIXES: dict[str, Container] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
}


def guess_container(path: Path, head: bytes) -> Container:
    """The container by the file's suffix; by its first bytes where the suffix says nothing."""
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:  # a first line that starts "PAR1" does not make a JSONL file Parquet
        return TEXT_SUFFIXES[suffix]
    if head.startswith(PARQUET_MAGIC) or suffix == ".parquet":
        return "parquet"
    stripped = head.lstrip()
    if stripped.startswith(b"{") and b"\n{" in stripped:
        return "jsonl"
    if stripped.startswith((b"[", b"{")):
        return "json"
    raise ImportInputError(
        f"{path}: cannot tell the file type from its name; use .jsonl, .json, .csv, .tsv or .parquet "
        "(each may be .gz), or a Hugging Face dataset folder"
    )


def read_source(path: Path) -> FileRead:
    """A data file, or a Hugging Face dataset folder, as raw records."""
    if path.is_dir():
        return read_dataset_folder(path)
    return read_file(path, read_bytes(path))


def _gunzip(path: Path, data: bytes) -> tuple[Path, bytes]:
    """The name and bytes of the file a gzip file holds (`a.jsonl.gz` -> `a.jsonl`)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as archive:
            inner = archive.read(MAX_INPUT_BYTES + 1)  # a gzip bomb stops here
    except (OSError, EOFError, zlib.error) as exc:
        raise ImportInputError(f"{path}: not a readable gzip file ({exc})") from exc
    if len(inner) > MAX_INPUT_BYTES:
        raise ImportInputError(too_big(path, uncompressed=True))
    return (path.with_suffix("") if path.suffix.lower() == ".gz" else path), inner


def read_file(path: Path, data: bytes) -> FileRead:
    """Split a file's bytes into raw records according to its container."""
    sha256 = hashlib.sha256(data).hexdigest()
    compressed = data.startswith(GZIP_MAGIC)
    name, data = _gunzip(path, data) if compressed else (path, data)
    container = guess_container(name, data[:BINARY_SNIFF])
    if container != "parquet" and b"\x00" in data[:BINARY_SNIFF]:
        raise ImportInputError(f"{path}: looks binary (NUL bytes), not a text data file")
    if not data.strip():
        raise ImportInputError(f"{path}: is empty")
    if container == "jsonl":
        container, records, blank = _read_jsonl(data)
    elif container == "json":
        container, records, blank = _read_json_document(path, data)
    elif container in ("csv", "tsv"):
        container, records, blank = _read_csv(path, data, container=container)
    else:
        table = read_parquet_table(data, str(path))
        records, blank = table_records(table, split=None, file=None, features=None), 0
    return FileRead(f"{container}.gz" if compressed else container, records, blank, sha256)


def _decode_error_detail(exc: UnicodeDecodeError) -> str:
    bad = exc.object[exc.start : exc.start + 1].hex()
    return f"byte 0x{bad} at column {exc.start + 1} is not valid UTF-8"


def _read_jsonl(data: bytes) -> Parsed:
    records: list[RawRecord] = []
    blank = 0
    for number, chunk in enumerate(data.split(b"\n"), start=1):
        line_bytes = chunk.rstrip(b"\r")
        if not line_bytes.strip():
            blank += 1
            continue
        if len(line_bytes) > MAX_RECORD_SIZE:
            raw = line_bytes[:TOO_LARGE_SAMPLE].decode("utf-8", errors="replace")
            records.append(RawRecord(number, None, error=too_large(len(line_bytes), "bytes"), raw=raw))
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
        value, problem = parse_json(text)
        records.append(RawRecord(number, None, value=value, error=problem, raw=text))
    # A file ending in a newline yields one empty last chunk: that is not a blank line.
    if data.endswith(b"\n"):
        blank -= 1
    return "jsonl", records, blank


def _json_record(line: int, pointer: str, value: Any, raw: str) -> RawRecord:
    """A parsed JSON item, or the problem that keeps it out (see `record_limits`)."""
    if len(raw) > MAX_RECORD_SIZE:
        return RawRecord(line, pointer, error=too_large(len(raw)), raw=printable(raw[:TOO_LARGE_SAMPLE]))
    problem = text_problem(value, raw)
    if problem is not None and problem[0] == "invalid_unicode" and has_undecodable_bytes(raw):
        problem = ("non_utf8", problem[1], "contains bytes that are not valid UTF-8")
    # A raw byte that is not UTF-8 may sit in a value the parse dropped (a repeated key), so the
    # raw text is made printable even for a record accepted so far.
    return RawRecord(line, pointer, value=None if problem else value, error=problem, raw=printable(raw))


class _Positions:
    """Walks a JSON document with raw_decode to find the line where each item starts.

    An item too deep or holding a number too large for `json` becomes a quarantined record; the walk
    goes on past it by matching brackets. A document that breaks the JSON grammar is one error.
    """

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.decoder = DECODER
        self._line = 1
        self._line_at = 0

    def line_of(self, index: int) -> int:
        self._line += self.text.count("\n", self._line_at, index)
        self._line_at = index
        return self._line

    def skip(self, index: int) -> int:
        match = _SPACE.match(self.text, index)
        return match.end() if match else index

    def invalid(self, index: int, message: str) -> ImportInputError:
        line = self.text.count("\n", 0, index) + 1
        column = index - self.text.rfind("\n", 0, index)
        return ImportInputError(f"{self.path}: not valid JSON at line {line} column {column}: {message}")

    def expect(self, index: int, marks: str) -> str:
        """The mark (one of `marks`) at `index`, or the error saying which were expected."""
        if index < len(self.text) and self.text[index] in marks:
            return self.text[index]
        return self.fail(index, f"Expecting {' or '.join(repr(m) for m in marks)}")

    def fail(self, index: int, message: str) -> NoReturn:
        raise self.invalid(index, message)

    def value_end(self, index: int) -> int:
        """The index past the value at `index`, found by matching brackets, without parsing it."""
        number = _JSON_NUMBER.match(self.text, index)
        if number is not None:
            return number.end()
        depth = 0
        for token in JSON_TOKEN.finditer(self.text, index):
            mark = token.group()
            if mark in ("[", "{"):
                depth += 1
            elif mark in ("]", "}"):
                depth -= 1
            if depth == 0:
                return token.end()
        return self.fail(index, "Unterminated value")

    def item(self, index: int, pointer: str) -> tuple[RawRecord, int]:
        """The record whose value starts at `index`, and the index after it."""
        line = self.line_of(index)
        try:
            value, end = self.decoder.raw_decode(self.text, index)
        except json.JSONDecodeError as exc:
            raise self.invalid(exc.pos, exc.msg) from exc
        except (ValueError, RecursionError) as exc:
            end = self.value_end(index)
            raw = self.text[index:end]
            problem = too_large(len(raw)) if len(raw) > MAX_RECORD_SIZE else json_problem(exc, raw)
            return RawRecord(line, pointer, error=problem, raw=printable(raw[:TOO_LARGE_SAMPLE])), end
        return _json_record(line, pointer, value, self.text[index:end]), end

    def array_items(self, index: int, prefix: str) -> tuple[list[RawRecord], int]:
        """Items of the array whose '[' is at `index`; returns them and the index after ']'."""
        items: list[RawRecord] = []
        index = self.skip(index + 1)
        if self.text.startswith("]", index):
            return items, index + 1
        while True:
            record, end = self.item(index, f"{prefix}[{len(items)}]")
            items.append(record)
            index = self.skip(end)
            if self.expect(index, ",]") == "]":
                return items, index + 1
            index = self.skip(index + 1)

    def splits(self, index: int) -> tuple[list[RawRecord], int] | None:
        """An object of arrays, e.g. `{"train": [...], "test": [...]}`: each key is a split.

        None when the object at `index` is not one: a value is not an array, or a key is one of a
        record's (`RECORD_KEYS`).
        """
        records: list[RawRecord] = []
        index = self.skip(index + 1)
        if self.text.startswith("}", index):
            return None
        while True:
            key, end = self.split_name(index)
            index = self.skip(end)
            self.expect(index, ":")
            index = self.skip(index + 1)
            if key.lower() in RECORD_KEYS or not self.text.startswith("[", index):
                return None
            items, index = self.array_items(index, key)
            records.extend(items)
            index = self.skip(index)
            if self.expect(index, ",}") == "}":
                return records, index + 1
            index = self.skip(index + 1)

    def split_name(self, index: int) -> tuple[str, int]:
        if not self.text.startswith('"', index):
            self.fail(index, "Expecting property name enclosed in double quotes")
        try:
            key, end = self.decoder.raw_decode(self.text, index)
        except json.JSONDecodeError as exc:
            raise self.invalid(exc.pos, exc.msg) from exc
        if has_surrogate(key):
            line = self.line_of(index)
            raise ImportInputError(f"{self.path}: line {line}: a split name is not valid UTF-8 text")
        return key, end

    def whole(self, index: int) -> RawRecord:
        """The document as one record, starting at `index`."""
        try:
            value = self.decoder.decode(self.text)
        except json.JSONDecodeError as exc:
            raise self.invalid(exc.pos, exc.msg) from exc
        except (ValueError, RecursionError) as exc:
            raw = self.text[index:]
            problem = too_large(len(raw)) if len(raw) > MAX_RECORD_SIZE else json_problem(exc, raw)
            return RawRecord(self.line_of(index), "", error=problem, raw=printable(raw[:TOO_LARGE_SAMPLE]))
        return _json_record(self.line_of(index), "", value, self.text[index:])


def _read_json_document(path: Path, data: bytes) -> Parsed:
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    try:
        PLACING_DECODER.decode(text)  # the grammar; the records are held to the limits one by one
    except json.JSONDecodeError as exc:
        if _looks_like_jsonl(text):
            return _read_jsonl(data)
        raise ImportInputError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except RecursionError:
        pass  # an item too deep to parse: quarantined below
    walker = _Positions(path, text)
    start = walker.skip(0)
    found = None
    if text.startswith("[", start):
        found = walker.array_items(start, "")
    elif text.startswith("{", start):
        found = walker.splits(start)
    if found is None:
        return "json", [walker.whole(start)], 0
    records, end = found
    if walker.skip(end) != len(text):
        walker.fail(walker.skip(end), "Extra data")
    return "json", records, 0


def _looks_like_jsonl(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    try:
        return isinstance(json.loads(first), dict) and "\n" in text.strip()
    except (ValueError, RecursionError):
        return False


def _read_csv(path: Path, data: bytes, *, container: Container) -> Parsed:
    delimiter = "\t" if container == "tsv" else ","
    # The csv module's field limit is process-wide, 128 KiB by default: raised so that a long text
    # is read, and a field past MAX_RECORD_SIZE is one bad row.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD_SIZE))
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise ImportInputError(f"{path}: cannot read a CSV header ({exc})") from exc
    if any(has_undecodable_bytes(name) for name in header):
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
            error = ("invalid_csv", "", str(exc))
            if "field larger than field limit" in str(exc):
                error = ("record_too_large", "", f"a field longer than {MAX_RECORD_SIZE:,} characters")
            records.append(RawRecord(start_line, None, error=error))
            start_line = reader.line_num + 1
            continue
        line, start_line = start_line, reader.line_num + 1
        raw = delimiter.join(row)
        if not row or not any(cell.strip() for cell in row):
            blank += 1
            continue
        if len(raw) > MAX_RECORD_SIZE:
            sample = printable(raw[:TOO_LARGE_SAMPLE])
            records.append(RawRecord(line, None, error=too_large(len(raw)), raw=sample))
            continue
        if len(row) != len(names):
            detail = f"row has {len(row)} fields, the header has {len(names)}"
            records.append(RawRecord(line, None, error=("wrong_field_count", "", detail), raw=printable(raw)))
            continue
        if any(has_undecodable_bytes(cell) for cell in row):
            detail = "contains bytes that are not valid UTF-8"
            records.append(RawRecord(line, None, error=("non_utf8", "", detail), raw=printable(raw)))
            continue
        records.append(RawRecord(line, None, value=dict(zip(names, row, strict=True)), raw=raw))
    return container, records, blank
