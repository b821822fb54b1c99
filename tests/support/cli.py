"""Running the CLI in-process in tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sftline.cli.main import main


def run_json(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> Any:
    """Run `sftline ARGS --json`; return the parsed output, or {"err": stderr} for a failing code."""
    capsys.readouterr()
    result = main([*args, "--json"])
    captured = capsys.readouterr()
    assert result == code, captured.err
    if code != 0:
        return {"err": captured.err, "out": json.loads(captured.out) if captured.out.strip() else None}
    return json.loads(captured.out)
