"""Write examples back out: JSONL in the shape they can be re-imported from, or Parquet."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sftline.atomic import FILE_MODE, fsync_path
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
    """Write `examples` to `out` (.jsonl or .parquet) through a fsynced temporary file renamed over
    it: a failed write (a full disk) leaves no file behind and `out` as it was."""
    check_destination(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".tmp-{out.name}-", dir=out.parent)
    except OSError as exc:
        raise SftlineError(f"--out {out}: cannot create it ({exc.strerror or exc})") from exc
    os.close(fd)
    temp = Path(name)
    try:
        if out.suffix.lower() == ".parquet":
            write_examples(examples, temp)
        else:
            write_jsonl(examples, temp)
        fsync_path(temp)
        temp.chmod(FILE_MODE)
        os.replace(temp, out)
        fsync_path(out.parent)
    except OSError as exc:
        raise SftlineError(f"--out {out}: cannot write it ({exc.strerror or exc})") from exc
    finally:
        temp.unlink(missing_ok=True)
    return len(examples)


def check_destination(out: Path) -> None:
    """Refuse an export path that cannot become a file: a wrong suffix, a folder, a path under a
    file."""
    if out.suffix.lower() not in (".jsonl", ".parquet"):
        raise SftlineError(f"--out {out}: use a .jsonl or .parquet file name")
    if out.is_dir():
        raise SftlineError(f"--out {out}: is a folder; name a file in it, e.g. {out / 'data.jsonl'}")
    for folder in out.parents:
        if folder.exists():
            if not folder.is_dir():
                raise SftlineError(f"--out {out}: {folder} is a file, not a folder")
            return


def write_jsonl(examples: Sequence[Example], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example_record(example), ensure_ascii=False) + "\n")
