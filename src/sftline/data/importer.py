"""Import a file or a dataset folder into canonical examples: every record is accepted or quarantined
with a reason."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sftline.data.example import Example, Provenance, content_hash, example_content
from sftline.data.formats import CONVERTERS, FORMATS, Fields, FormatOptions, detect_one
from sftline.data.messages import Rejection
from sftline.data.raw_records import RawRecord, read_bytes
from sftline.data.readers import read_source
from sftline.errors import ImportInputError

DETECT_SAMPLE = 50  # records looked at to detect the format
RAW_KEEP = 2000  # characters of a bad record kept in the quarantine
PROGRESS_EVERY = 1000  # records between progress callbacks


def quarantine_location(source: str, line: int | None, pointer: str | None) -> str:
    """`file.jsonl:line 12`, `file.json:line 3 ($.train[2])` or the source alone."""
    where = f"line {line}" if line is not None else ""
    if pointer:
        where = f"{where} ({pointer})" if where else pointer
    return f"{source}:{where}" if where else source


def describe_quarantined(record: dict[str, Any]) -> str:
    """One line for a quarantined record (as `asdict(QuarantinedRecord)` or its stored JSON)."""
    field_part = f" [{record['field']}]" if record.get("field") else ""
    where = quarantine_location(record["source"], record.get("line"), record.get("pointer"))
    return f"{where}: {record['reason']}{field_part}: {record['detail']}"


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    source: str
    line: int | None
    pointer: str | None
    reason: str
    field: str
    detail: str
    raw: str | None

    @property
    def location(self) -> str:
        return quarantine_location(self.source, self.line, self.pointer)

    def describe(self) -> str:
        return describe_quarantined(asdict(self))


@dataclass(frozen=True)
class ImportOptions:
    format: str = "auto"
    fields: FormatOptions = FormatOptions()
    tags: dict[str, str] = field(default_factory=dict)
    """Tags put on every example (`--tag domain=banking`)."""
    label_groups: dict[str, dict[str, str]] = field(default_factory=dict)
    """tag name -> {label: group}: derives a tag from the label (CLINC150 domains)."""
    splits: tuple[str, ...] = ()
    """For JSON documents holding one array per split: the splits to import (all if empty)."""
    split_tag: str = "split"


@dataclass
class ImportResult:
    source: str
    source_sha256: str
    container: str
    format: str
    detected: str | None
    examples: list[Example]
    quarantined: list[QuarantinedRecord]
    blank_lines: int
    skipped_splits: dict[str, int]
    unkept_keys: dict[str, int] = field(default_factory=dict)
    """Keys the accepted records carried that their examples do not keep -> records with the key."""
    files: dict[str, str] = field(default_factory=dict)
    """A dataset folder's files (relative path -> sha256); empty for a single file."""

    @property
    def n_read(self) -> int:
        return len(self.examples) + len(self.quarantined)

    @property
    def reasons(self) -> dict[str, int]:
        return dict(Counter(q.reason for q in self.quarantined).most_common())

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_sha256": self.source_sha256,
            "container": self.container,
            "format": self.format,
            "detected": self.detected,
            "read": self.n_read,
            "accepted": len(self.examples),
            "quarantined": len(self.quarantined),
            "reasons": self.reasons,
            "blank_lines": self.blank_lines,
            "skipped_splits": self.skipped_splits,
            "unkept_keys": self.unkept_keys,
            "files": self.files,
        }


def load_label_groups(path: Path) -> dict[str, str]:
    """A JSON object of group -> [labels] (CLINC150's domains.json) as label -> group."""
    try:
        groups = json.loads(read_bytes(path).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, too deep, a huge number
        raise ImportInputError(f"{path}: not a JSON object of group -> [labels] ({exc})") from exc
    if not isinstance(groups, dict) or not all(isinstance(v, list) for v in groups.values()):
        raise ImportInputError(f"{path}: expected a JSON object of group -> [labels]")
    mapping: dict[str, str] = {}
    for group, labels in groups.items():
        for label in labels:
            if str(label) in mapping:
                raise ImportInputError(f"{path}: label {label!r} is in two groups")
            mapping[str(label)] = str(group)
    return mapping


def _key_list(keys: list[str], shown: int = 10, width: int = 40) -> str:
    """A record's keys for a one-line message: a key with a newline or a surrogate as its repr."""
    names = [key[:width] if key[:width].isprintable() else repr(key[:width]) for key in keys[:shown]]
    return ", ".join(names) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def detect_format(records: list[RawRecord], options: FormatOptions, source: str) -> tuple[str, str]:
    votes: Counter[str] = Counter()
    first_keys: list[str] | None = None
    for record in records:
        if record.error is not None:
            continue
        if first_keys is None and isinstance(record.value, dict):
            first_keys = sorted(record.value)
        guess = detect_one(record.value, options)
        if guess:
            votes[guess] += 1
        if sum(votes.values()) + (0 if guess else 1) >= DETECT_SAMPLE:
            break
    if not votes:
        keys = f" (first record's keys: {_key_list(first_keys)})" if first_keys else ""
        raise ImportInputError(
            f"{source}: cannot detect the format{keys}; pass --format "
            f"{'|'.join(FORMATS)} (and --text-field/--label-field for classification)"
        )
    name, count = votes.most_common(1)[0]
    looked = sum(votes.values())
    return name, f"{name} ({count} of the first {looked} records look like it)"


def _split_of(pointer: str | None) -> str | None:
    if not pointer or "[" not in pointer:
        return None
    split = pointer.split("[", 1)[0]
    return split or None


def import_file(
    path: Path,
    options: ImportOptions = ImportOptions(),
    *,
    existing_ids: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Read `path` into examples and quarantined records.

    `existing_ids` are ids already in the dataset (when appending): a record's own id that
    repeats one is quarantined, a content-derived one gets the next free suffix.
    """
    read = read_source(path)
    source = path.name
    records = read.records
    skipped: Counter[str] = Counter()
    if options.splits:
        present = {_split_of(r.pointer) for r in records}
        unknown = [s for s in options.splits if s not in present]
        if unknown:
            have = ", ".join(sorted(s for s in present if s)) or "none"
            raise ImportInputError(f"{path}: no split named {', '.join(unknown)} (splits: {have})")
        kept = []
        for record in records:
            split = _split_of(record.pointer)
            if split in options.splits:
                kept.append(record)
            else:
                skipped[split or ""] += 1
        records = kept
    if options.format == "auto":
        format_name, detected = detect_format(records, options.fields, str(path))
    elif options.format in CONVERTERS:
        format_name, detected = options.format, None
    else:
        raise ImportInputError(f"unknown --format {options.format!r}; use auto or {', '.join(FORMATS)}")
    convert = CONVERTERS[format_name]

    examples: list[Example] = []
    quarantined: list[QuarantinedRecord] = []
    unkept: Counter[str] = Counter()
    ids = _IdAllocator(existing_ids)

    def source_of(record: RawRecord) -> str:
        return f"{source}/{record.file}" if record.file is not None else source

    def reject(record: RawRecord, reason: str, field_name: str, detail: str) -> None:
        raw = record.raw[:RAW_KEEP] if record.raw is not None else None
        quarantined.append(
            QuarantinedRecord(source_of(record), record.line, record.pointer, reason, field_name, detail, raw)
        )

    for position, record in enumerate(records, start=1):
        if progress is not None and (position % PROGRESS_EVERY == 0 or position == len(records)):
            progress(position, len(records))
        if record.error is not None:
            reject(record, *record.error)
            continue
        result = convert(record.value, options.fields)
        if isinstance(result, Rejection):
            reject(record, result.reason, result.field, result.detail)
            continue
        _add_tags(result, record, options)
        example_id = ids.allocate(result)
        if example_id is None:
            reject(
                record,
                "duplicate_id",
                options.fields.id_field,
                f"id {result.record_id!r} is used by an earlier record",
            )
            continue
        unkept.update(set(result.unkept))
        sha256 = read.files[record.file] if record.file is not None else read.sha256
        provenance = Provenance(source_of(record), sha256, format_name, record.line, record.pointer or None)
        examples.append(
            Example(
                id=example_id,
                provenance=provenance,
                messages=result.messages,
                tools=result.tools,
                text=result.text,
                label=result.label,
                tags=dict(sorted(result.tags.items())),
            )
        )
    return ImportResult(
        source=source,
        source_sha256=read.sha256,
        container=read.container,
        format=format_name,
        detected=detected,
        examples=examples,
        quarantined=quarantined,
        blank_lines=read.blank_lines,
        skipped_splits=dict(skipped),
        unkept_keys=dict(sorted(unkept.items(), key=lambda item: (-item[1], item[0]))),
        files=read.files,
    )


def _add_tags(fields: Fields, record: RawRecord, options: ImportOptions) -> None:
    split = _split_of(record.pointer)
    if split is not None:
        fields.tags.setdefault(options.split_tag, split)
    if fields.label is not None:
        for tag, mapping in options.label_groups.items():
            if fields.label in mapping:
                fields.tags.setdefault(tag, mapping[fields.label])
    for key, value in options.tags.items():
        fields.tags.setdefault(key, value)


class _IdAllocator:
    """Ids: a record's own id, or one derived from its content (`ex-<hash>`, then `-2`, `-3`...)."""

    def __init__(self, existing: Sequence[str]) -> None:
        self.taken = set(existing)
        self.next_suffix: Counter[str] = Counter()

    def allocate(self, fields: Fields) -> str | None:
        """The example's id, or None when the record's own id is already taken."""
        if fields.record_id is not None:
            if fields.record_id in self.taken:
                return None
            self.taken.add(fields.record_id)
            return fields.record_id
        tags = dict(sorted(fields.tags.items()))
        digest = content_hash(example_content(fields.messages, fields.tools, fields.text, fields.label, tags))
        base = candidate = f"ex-{digest[:16]}"
        while candidate in self.taken:
            self.next_suffix[base] = max(self.next_suffix[base], 1) + 1
            candidate = f"{base}-{self.next_suffix[base]}"
        self.taken.add(candidate)
        return candidate
