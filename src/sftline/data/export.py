"""Write examples back out: JSONL in the shape they can be re-imported from, or Parquet."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sftline.data.example import Example
from sftline.data.parquet_io import write_examples
from sftline.errors import SftlineError


def example_record(example: Example) -> dict[str, Any]:
    """Chat examples as OpenAI fine-tuning records, classification ones as text/label."""
    record: dict[str, Any] = {"id": example.id}
    if example.messages is not None:
        record["messages"] = example.messages
        if example.tools:
            record["tools"] = example.tools
    else:
        record["text"] = example.text
        record["label"] = example.label
    if example.tags:
        record["tags"] = example.tags
    return record


def export_examples(examples: Sequence[Example], out: Path) -> int:
    suffix = out.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise SftlineError(f"--out {out}: use a .jsonl or .parquet file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp")
    if suffix == ".parquet":
        write_examples(examples, temp)
    else:
        with temp.open("w", encoding="utf-8") as handle:
            for example in examples:
                handle.write(json.dumps(example_record(example), ensure_ascii=False) + "\n")
    os.replace(temp, out)
    return len(examples)
