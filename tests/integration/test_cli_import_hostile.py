"""`sftline data import` of hostile records and files: quarantined lines and one-line errors, never a
traceback (issue 15, points 2, 8 and 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_json

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def test_hostile_records_are_quarantined_and_the_rest_versioned(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep_tools = '[{"type": "function", "function": {"name": "f", "parameters": ' + "[" * 1_000 + "]" * 1_000
    chat = json.dumps(GOOD)[:-1]
    data = project_dir / "hostile.jsonl"
    data.write_text(
        "\n".join(
            [
                json.dumps(GOOD),
                chat + ', "id": "\\ud800"}',
                chat + ', "id": ' + "9" * 5_000 + "}",
                "[" * 100_000 + "]" * 100_000,
                chat + ', "tools": ' + deep_tools + "}}]}",
                chat + ', "tags": {"score": NaN}}',
            ]
        )
        + "\n"
    )

    summary = run_json(capsys, "data", "import", str(data), "--name", "hostile")

    assert (summary["read"], summary["accepted"], summary["quarantined"]) == (6, 1, 5)
    assert [(q["line"], q["reason"], q["field"][:14]) for q in summary["quarantine"]] == [
        (2, "invalid_unicode", "id"),
        (3, "number_too_large", "id"),
        (4, "too_deep", "[0][0][0][0][0"),
        (5, "too_deep", "tools[0].funct"),
        (6, "invalid_number", "tags.score"),
    ]
    assert summary["version"]["ref"] == "hostile@v1"


def test_a_device_is_refused_in_one_line(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failed = run_json(capsys, "data", "import", "/dev/zero", "--name", "zeros", code=1)
    assert failed["err"].strip().splitlines() == [
        "error: /dev/zero: is not a regular file (a device, pipe or socket); copy the data into a file"
    ]


def test_a_chat_object_in_a_json_file_is_one_example(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project_dir / "one.json").write_text(json.dumps(GOOD, indent=2))
    summary = run_json(capsys, "data", "import", "one.json", "--name", "one")
    assert (summary["format"], summary["read"], summary["accepted"]) == ("chat", 1, 1)
    assert summary["skipped_splits"] == {}
