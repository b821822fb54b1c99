"""Label files: what reviewers and feedback pipelines send back, one correct answer per request.

A row names a logged request (`request_id`) and its correct answer (`label`; `answer` or
`correct` are read too). JSONL, JSON, CSV (quoted newlines and all), TSV and Parquet are read by
the importer's own readers, so a bad row is reported with its file, line and field like a bad
training example, and nothing is dropped: every row read is accepted or rejected with a reason.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sftline.data.readers import read_source

LABEL_FIELDS = ("label", "answer", "correct")
"""Where a row's correct answer may be, the first present wins."""


@dataclass(frozen=True)
class LabelRow:
    request_id: str
    label: str
    origin: str
    """FILE:LINE (or FILE[ROW] where the format has no lines)."""
    reviewer: str | None = None


@dataclass(frozen=True)
class Rejected:
    origin: str
    reason: str
    field: str
    detail: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.origin}: {self.reason} ({self.field}): {self.detail}"


@dataclass
class LabelFile:
    path: Path
    accepted: list[LabelRow]
    rejected: list[Rejected]

    @property
    def read(self) -> int:
        return len(self.accepted) + len(self.rejected)


def _origin(path: Path, line: int | None, pointer: str | None) -> str:
    return f"{path}:{line}" if line is not None else f"{path}{pointer or ''}"


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return value.strip() if isinstance(value, str) and value.strip() else None


def read_labels(path: Path, *, labels: Collection[str] = ()) -> LabelFile:
    """Every row of `path`, accepted or rejected with a reason; with `labels` (the contract's set,
    its abstention answer included) a label outside it is rejected."""
    read = read_source(path)
    out = LabelFile(path, [], [])
    seen: dict[str, str] = {}
    for record in read.records:
        origin = _origin(path, record.line, record.pointer)
        if record.error is not None:
            reason, field, detail = record.error
            out.rejected.append(Rejected(origin, reason, field, detail))
            continue
        value = record.value
        if not isinstance(value, dict):
            out.rejected.append(
                Rejected(
                    origin, "not_an_object", "(record)", f"expected an object, got {type(value).__name__}"
                )
            )
            continue
        request_id = _text(value.get("request_id"))
        if request_id is None:
            out.rejected.append(Rejected(origin, "missing_field", "request_id", "no request id"))
            continue
        given = next((name for name in LABEL_FIELDS if name in value), None)
        label = _text(value.get(given)) if given else None
        if label is None:
            out.rejected.append(
                Rejected(
                    origin,
                    "missing_field",
                    given or "label",
                    f"no label for {request_id} (give one of: {', '.join(LABEL_FIELDS)})",
                )
            )
            continue
        if labels and label not in labels:
            out.rejected.append(
                Rejected(
                    origin,
                    "unknown_label",
                    given or "label",
                    f"{label[:80]!r} is not in the contract's label set",
                )
            )
            continue
        if request_id in seen:
            out.rejected.append(
                Rejected(
                    origin,
                    "duplicate_request_id",
                    "request_id",
                    f"{request_id} is labelled already at {seen[request_id]}",
                )
            )
            continue
        seen[request_id] = origin
        out.accepted.append(LabelRow(request_id, label, origin, _text(value.get("reviewer"))))
    return out
