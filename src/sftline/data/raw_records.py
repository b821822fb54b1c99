"""What a reader hands the importer: raw records with their places, and the bytes they came from."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftline.data.record_limits import MAX_INPUT_BYTES
from sftline.errors import ImportInputError


@dataclass(frozen=True, slots=True)
class RawRecord:
    line: int | None
    """1-based line where the record starts; None where the source has no lines (Parquet, Arrow)."""
    pointer: str | None
    """Position inside the source: `train[17]` (a JSON split, or row 17 of a train shard), `[3]`."""
    value: Any = None
    error: tuple[str, str, str] | None = None
    """(reason, field, detail) when the record could not even be parsed."""
    raw: str | None = None
    """The record's source text, kept for the quarantine."""
    file: str | None = None
    """The file holding the record, relative to a dataset folder; None for a single-file import."""


@dataclass(frozen=True, slots=True)
class FileRead:
    container: str
    """jsonl, json, csv, tsv, parquet (a `.gz` suffix when decompressed), hf-parquet or hf-arrow."""
    records: list[RawRecord]
    blank_lines: int
    sha256: str
    """sha256 of the file's bytes; for a folder, of its manifest (each file's path and sha256)."""
    files: dict[str, str] = field(default_factory=dict)
    """A folder's files (relative path -> sha256) that records and features were read from."""


def read_bytes(path: Path) -> bytes:
    """A regular file's bytes, at most `MAX_INPUT_BYTES` of them.

    A device, pipe or socket is refused: `/dev/zero` or a FIFO would be read without end.
    """
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ImportInputError(f"{path}: is a directory, not a data file")
        if not stat.S_ISREG(info.st_mode):
            raise ImportInputError(
                f"{path}: is not a regular file (a device, pipe or socket); copy the data into a file"
            )
        if info.st_size > MAX_INPUT_BYTES:
            raise ImportInputError(too_big(path))
        with path.open("rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)  # the file may grow while it is read
    except FileNotFoundError as exc:
        raise ImportInputError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ImportInputError(f"{path}: cannot read ({exc.strerror})") from exc
    if len(data) > MAX_INPUT_BYTES:
        raise ImportInputError(too_big(path))
    return data


def too_big(path: Path, *, uncompressed: bool = False) -> str:
    """The error for a file (or what a gzip file holds) of more than `MAX_INPUT_BYTES`."""
    what = "holds more than" if uncompressed else "is larger than"
    return (
        f"{path}: {what} {MAX_INPUT_BYTES:,} bytes{' uncompressed' if uncompressed else ''}, the most "
        "one import reads; split it and import the parts with --append"
    )
