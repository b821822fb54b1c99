"""`sftline train` with stderr a log file, not a terminal: a plain line per step, then the last one."""

from __future__ import annotations

from pathlib import Path

import pytest

from sftline.cli import progress
from sftline.cli.main import main
from tests.support.cli import run_json

pytestmark = pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)


def test_training_logs_a_plain_line_per_step_when_the_interval_is_zero(
    chat_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFTLINE_PROGRESS_SECONDS", "0")
    monkeypatch.setattr(progress, "monotonic", lambda: 50.0)  # time stands still: no eta
    capsys.readouterr()
    args = ["--base", "tiny", "--data", "intents", "--max-steps", "4", "--batch-tokens", "256", "--seed", "3"]
    assert main(["train", *args]) == 0
    logged = capsys.readouterr().err.splitlines()

    runs = run_json(capsys, "runs", "list")
    metrics = run_json(capsys, "runs", "show", runs[0]["name"])["metrics"]
    expected = [
        f"step {m['step']}/4 loss {m['loss']:.4f} tok/s {m['tokens_per_second']:,.0f}" for m in metrics
    ]
    startup = (
        "training: micro-batches of 256 tokens x 1 accumulation = 256 tokens per optimizer step; "
        "rows of <= 256 tokens (batch_tokens as set)"
    )
    assert logged[:5] == [startup, *expected[:3], f"{expected[3]} done in 0s"]
    # Four steps of a tiny random model learn nothing, and the run says so, one line each.
    assert logged[5:] and all(line.startswith("warning: ") for line in logged[5:])
