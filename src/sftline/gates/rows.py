"""Flagged examples as rows: the one shape `data rejects --json` and the check report share.

    {"example_id", "file", "line", "pointer", "field", "location", "action": "block" | "warn",
     "reasons": [{"gate", "reason", "detail", "action", "field", "related"}],
     "suggested_label", "label_confidence"}

`line` is null only where the source has no lines (a JSON document: `pointer` says where);
`location` is the same place as one string. `action` is `block` when any reason blocks the
example (it is quarantined), else `warn`; a reason's own action may also be `redact`.
`suggested_label` and `label_confidence` are the label-noise gate's, null for other rows.
The rows are stored as Parquet (one row per flagged example, the example's record beside it);
`rows_from_table` also reads the layout of checks made before every reason was kept (one
blocking reason per quarantined example, the place as a sentence).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from sftline.data.example import canonical_json
from sftline.data.export import example_record
from sftline.gates.runner import FlaggedExample

_REASON = pa.struct(
    [
        ("gate", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("action", pa.string()),
        ("field", pa.string()),
        ("related", pa.list_(pa.string())),
    ]
)
ROWS_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),
        ("pointer", pa.string()),
        ("field", pa.string()),
        ("location", pa.string()),
        ("action", pa.string()),
        ("reasons", pa.list_(_REASON)),
        ("suggested_label", pa.string()),
        ("label_confidence", pa.float64()),
        ("example", pa.string()),
    ]
)
_OLD_LOCATION = re.compile(r"^(?P<file>.*?)(?:, line (?P<line>\d+))?(?:, (?P<pointer>[^,]+))?$")


def flagged_row(flagged: FlaggedExample) -> dict[str, Any]:
    """The row of one flagged example (without its record)."""
    provenance = flagged.example.provenance
    reasons = [
        {
            "gate": r.gate,
            "reason": r.reason,
            "detail": r.detail,
            "action": r.action,
            "field": r.field,
            "related": list(r.related),
        }
        for r in flagged.reasons
    ]
    return {
        "example_id": flagged.example.id,
        "file": provenance.source,
        "line": provenance.line,
        "pointer": provenance.pointer,
        "field": next((r.field for r in flagged.reasons if r.field), None),
        "location": provenance.location,
        "action": flagged.action,
        "reasons": reasons,
        "suggested_label": flagged.suggested_label,
        "label_confidence": flagged.label_confidence,
    }


def rows_table(flagged: Sequence[FlaggedExample]) -> pa.Table:
    rows = [flagged_row(f) | {"example": canonical_json(example_record(f.example))} for f in flagged]
    return pa.Table.from_pylist(rows, schema=ROWS_SCHEMA)


def _old_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of the layout before issue 14: one blocking reason, the place as a sentence."""
    match = _OLD_LOCATION.match(row["location"])
    place = match.groupdict() if match else {"file": row["location"], "line": None, "pointer": None}
    reason = {
        "gate": row["gate"],
        "reason": row["reason"],
        "detail": row["detail"],
        "action": "block",
        "field": None,
        "related": row["related"],
    }
    return {
        "example_id": row["example_id"],
        "file": place["file"],
        "line": int(place["line"]) if place["line"] else None,
        "pointer": place["pointer"],
        "field": None,
        "location": row["location"],
        "action": "block",
        "reasons": [reason],
        "suggested_label": None,
        "label_confidence": None,
        "example": row["example"],
    }


def rows_from_table(table: pa.Table) -> list[dict[str, Any]]:
    """The stored rows, each with its example's record parsed."""
    rows = table.to_pylist()
    if "reasons" not in table.column_names:
        rows = [_old_row(row) for row in rows]
    for row in rows:
        row["example"] = json.loads(row["example"])
    return rows
