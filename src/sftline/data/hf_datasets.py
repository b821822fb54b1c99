"""Hugging Face dataset files: Parquet and Arrow tables, their ClassLabel names, dataset folders.

A folder is read in one of the layouts `datasets` writes:

- Parquet shards (`push_to_hub`, the Hub's Parquet conversion): every `*.parquet` below the folder,
  in path order. A shard's split comes from its name: `train-00000-of-00002.parquet` -> `train`,
  `train/0000.parquet` -> `train`, `validation.parquet` -> `validation`.
- `save_to_disk`: `state.json` (its `_data_files` list the `data-*.arrow` Arrow stream files, its
  `_split` names the split) and `dataset_info.json` (the features); a `DatasetDict` adds
  `dataset_dict.json` and one such folder per split.

Rows have no lines: a record's place is its file and `split[row]`, the 0-based row in that file.
Integer values of a ClassLabel column become their names, read from the features `datasets`
stores (dataset_info.json, or the `huggingface` key of the Arrow/Parquet schema metadata); -1,
the "no label" value, becomes null.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from sftline.data.parquet_io import CONTENT_COLUMNS, example_record_from_row, is_example_table
from sftline.data.raw_records import FileRead, RawRecord, read_bytes
from sftline.data.record_limits import Problem, parse_json, printable, value_problem
from sftline.errors import ImportInputError

SHARD_NAME = re.compile(r"^(?P<split>.+)-\d+-of-\d+$")
SPLIT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
NO_CLASS = -1  # datasets' ClassLabel value for an unlabelled row (GLUE's test sets)
FolderKind = Literal["hf-parquet", "hf-arrow"]


def schema_features(schema: pa.Schema) -> dict[str, Any] | None:
    """The `datasets` features stored in a table's schema metadata, if any."""
    stored = (schema.metadata or {}).get(b"huggingface")
    if stored is None:
        return None
    try:
        features = json.loads(stored)["info"]["features"]
    except (ValueError, RecursionError, KeyError, TypeError):
        return None
    return features if isinstance(features, dict) else None


def class_label_names(features: dict[str, Any] | None) -> dict[str, list[str]]:
    """Column -> class names, for each top-level ClassLabel column."""
    return {
        column: [str(name) for name in feature["names"]]
        for column, feature in (features or {}).items()
        if isinstance(feature, dict)
        and feature.get("_type") == "ClassLabel"
        and isinstance(feature.get("names"), list)
    }


def _name_classes(row: dict[str, Any], names: dict[str, list[str]]) -> tuple[str, str, str] | None:
    """Replace ClassLabel integers in `row` by their names; the error for one out of range."""
    for column, classes in names.items():
        value = row.get(column)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if value == NO_CLASS:
            row[column] = None
        elif 0 <= value < len(classes):
            row[column] = classes[value]
        else:
            detail = f"{value} is not a class of {column!r} (its ClassLabel has {len(classes)} names)"
            return ("unknown_class_label", column, detail)
    return None


def table_records(
    table: pa.Table, *, split: str | None, file: str | None, features: dict[str, Any] | None
) -> list[RawRecord]:
    """One record per row, placed at `split[row]` in `file`, bounded like any record (`record_limits`)."""
    names = class_label_names(features or schema_features(table.schema))
    example_rows = is_example_table(table.schema) and set(CONTENT_COLUMNS) <= set(table.column_names)
    records = []
    for index, row in enumerate(_rows(table)):
        pointer = f"{split or ''}[{index}]"
        if isinstance(row, UnicodeDecodeError):
            detail = f"a string column holds bytes that are not valid UTF-8 ({row.reason})"
            records.append(RawRecord(None, pointer, error=("non_utf8", "", detail), file=file))
            continue
        problem = _json_columns_problem(row) if example_rows else None
        if problem is not None:
            raw = printable(json.dumps(row, default=str, ensure_ascii=False))
            records.append(RawRecord(None, pointer, error=problem, raw=raw, file=file))
            continue
        value = example_record_from_row(row) if example_rows else row
        error = value_problem(value) or _name_classes(value, names)
        raw = printable(json.dumps(value, default=str, ensure_ascii=False))
        if error is not None:
            records.append(RawRecord(None, pointer, error=error, raw=raw, file=file))
        else:
            records.append(RawRecord(None, pointer, value=value, raw=raw, file=file))
    return records


def _json_columns_problem(row: dict[str, Any]) -> Problem | None:
    """The first problem in the JSON text of a row of sftline's own table (messages, tools)."""
    for name in ("messages", "tools"):
        if row[name] is None:
            continue
        _, problem = parse_json(str(row[name]))
        if problem is not None:
            reason, inner, detail = problem
            return reason, name + (inner if inner.startswith("[") or not inner else f".{inner}"), detail
    return None


def _rows(table: pa.Table) -> list[dict[str, Any] | UnicodeDecodeError]:
    """The table's rows as dicts; a row whose strings are not UTF-8 as the error (Parquet does not
    check them)."""
    try:
        return table.to_pylist()
    except UnicodeDecodeError:
        pass
    rows: list[dict[str, Any] | UnicodeDecodeError] = []
    for index in range(table.num_rows):
        try:
            rows.extend(table.slice(index, 1).to_pylist())
        except UnicodeDecodeError as exc:
            rows.append(exc)
    return rows


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())  # Arrow's messages may span lines


def read_parquet_table(data: bytes, where: str) -> pa.Table:
    try:
        return pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise ImportInputError(f"{where}: not a readable Parquet file ({_one_line(exc)})") from exc


def read_arrow_table(data: bytes, where: str) -> pa.Table:
    """An Arrow stream file (what `save_to_disk` writes), or an Arrow IPC file."""
    try:
        return pa.ipc.open_stream(pa.BufferReader(data)).read_all()
    except (pa.ArrowException, OSError):
        pass
    try:
        return pa.ipc.open_file(pa.BufferReader(data)).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise ImportInputError(f"{where}: not a readable Arrow file ({_one_line(exc)})") from exc


@dataclass(frozen=True)
class Shard:
    path: Path
    split: str | None
    info: Path | None
    """The dataset_info.json holding its features (save_to_disk), or None."""


@dataclass(frozen=True)
class DatasetFolder:
    root: Path
    kind: FolderKind
    shards: list[Shard]
    metadata: list[Path]
    """state.json, dataset_info.json, dataset_dict.json: read, so part of the folder's content."""

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def files(self) -> list[Path]:
        return sorted({*self.metadata, *(shard.path for shard in self.shards)}, key=self.relative)


def shard_split(relative: Path) -> str | None:
    """The split a Parquet shard belongs to, from its name (see the module docstring)."""
    stem = relative.name.split(".", 1)[0]
    match = SHARD_NAME.match(stem)
    if match:
        return match["split"]
    if stem.isdigit():
        return relative.parent.name or None
    return stem if SPLIT_NAME.match(stem) else None


def _json_file(path: Path) -> Any:
    try:
        return json.loads(read_bytes(path).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, too deep, a huge number
        raise ImportInputError(f"{path}: not valid JSON ({exc})") from exc


def _saved_split(folder: Path, split: str | None) -> tuple[list[Shard], list[Path]]:
    """One `save_to_disk` Dataset folder: its Arrow files from state.json."""
    state_path = folder / "state.json"
    state = _json_file(state_path)
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, dict) and "filename" in f for f in files):
        raise ImportInputError(f"{state_path}: expected `_data_files`, a list of {{'filename': ...}}")
    if split is None and isinstance(state.get("_split"), str):
        split = state["_split"]
    info = folder / "dataset_info.json"
    has_info = info.is_file()
    shards = [Shard(folder / str(f["filename"]), split, info if has_info else None) for f in files]
    return shards, [state_path, info] if has_info else [state_path]


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def dataset_folder(path: Path) -> DatasetFolder:
    """The layout of a Hugging Face dataset folder, or one error saying what was looked for."""
    if (path / "dataset_dict.json").is_file():
        index = _json_file(path / "dataset_dict.json")
        splits = index.get("splits") if isinstance(index, dict) else None
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise ImportInputError(f"{path / 'dataset_dict.json'}: expected {{'splits': [names]}}")
        shards, metadata = [], [path / "dataset_dict.json"]
        for split in splits:
            if not (path / split / "state.json").is_file():
                raise ImportInputError(f"{path / split}: split {split!r} has no state.json")
            split_shards, split_metadata = _saved_split(path / split, split)
            shards += split_shards
            metadata += split_metadata
        return DatasetFolder(path, "hf-arrow", shards, metadata)
    if (path / "state.json").is_file():
        shards, metadata = _saved_split(path, None)
        return DatasetFolder(path, "hf-arrow", shards, metadata)
    parquet = sorted(p for p in path.rglob("*.parquet") if p.is_file() and _visible(p, path))
    if parquet:
        shards = [Shard(p, shard_split(p.relative_to(path)), None) for p in parquet]
        return DatasetFolder(path, "hf-parquet", shards, [])
    raise ImportInputError(
        f"{path}: is a directory, not a data file or a Hugging Face dataset folder "
        "(no *.parquet shards, no save_to_disk state.json or dataset_dict.json)"
    )


def manifest_sha256(files: dict[str, str]) -> str:
    """A folder's content hash: each file's relative path and sha256, in path order."""
    manifest = "".join(f"{name}\0{digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(manifest.encode("utf-8")).hexdigest()


def folder_sha256(path: Path) -> str:
    folder = dataset_folder(path)
    return manifest_sha256(
        {folder.relative(f): hashlib.sha256(read_bytes(f)).hexdigest() for f in folder.files()}
    )


def read_dataset_folder(path: Path) -> FileRead:
    folder = dataset_folder(path)
    digests = {folder.relative(f): hashlib.sha256(read_bytes(f)).hexdigest() for f in folder.metadata}
    features: dict[Path, Any] = {}
    records: list[RawRecord] = []
    for shard in folder.shards:
        name = folder.relative(shard.path)
        data = read_bytes(shard.path)
        digests[name] = hashlib.sha256(data).hexdigest()
        if folder.kind == "hf-parquet":
            table = read_parquet_table(data, str(shard.path))
        else:
            table = read_arrow_table(data, str(shard.path))
        if shard.info is not None and shard.info not in features:
            info = _json_file(shard.info)
            features[shard.info] = info.get("features") if isinstance(info, dict) else None
        shard_features = features.get(shard.info) if shard.info is not None else None
        records += table_records(table, split=shard.split, file=name, features=shard_features)
    return FileRead(folder.kind, records, 0, manifest_sha256(digests), digests)
