"""Plain progress lines when stderr is not a terminal: their text, the throttling, the final line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from sftline.cli import output, progress
from sftline.cli.main import main
from sftline.cli.progress import format_duration, format_rate, progress_seconds
from sftline.cli.train import training_progress_lines
from sftline.errors import ConfigError


class Clock:
    """The monotonic clock of the progress lines, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def at(self, seconds: float) -> None:
        self.now = 1000.0 + seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress, "monotonic", fake)
    monkeypatch.setenv("SFTLINE_PROGRESS_SECONDS", "30")
    return fake


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """stderr as a log file: the CLI's console, not a terminal, 40 columns (lines must not wrap)."""
    buffer = io.StringIO()
    monkeypatch.setattr(output, "err_console", Console(file=buffer, force_terminal=False, width=40))
    return buffer


def test_bar_prints_the_first_update_one_line_per_interval_and_a_final_line(
    clock: Clock, log: io.StringIO
) -> None:
    with output.progress_bar("importing support.jsonl", quiet=False) as update:
        for seconds, done in [(0, 100), (5, 200), (20, 300), (30, 400), (45, 1000)]:
            clock.at(seconds)
            update(done, 1000)
    # 200 and 300 come within 30 s of the line before; the rate counts from the first update.
    assert log.getvalue().splitlines() == [
        "importing support.jsonl: 100/1,000",
        "importing support.jsonl: 400/1,000 (10/s, eta 1m00s)",
        "importing support.jsonl: 1,000/1,000 (20/s, done in 45s)",
    ]


def test_bar_prints_every_n_updates_and_a_final_line_for_unfinished_work(
    clock: Clock, log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "PROGRESS_EVERY", 3)
    with output.progress_bars(quiet=False) as add:
        update = add("gates")
        for done in range(1, 8):
            update(done, 10)
    assert log.getvalue().splitlines() == [
        "gates: 1/10",
        "gates: 4/10",
        "gates: 7/10",
        "gates: 7/10 (done in 0s)",
    ]


def test_interval_zero_prints_every_update(
    clock: Clock, log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFTLINE_PROGRESS_SECONDS", "0")
    with output.progress_bars(quiet=False) as add:
        first, second = add("a on gold"), add("b on gold")
        for seconds in range(4):
            clock.at(seconds)
            first(seconds + 1, 4)
        clock.at(10)
        second(1, 2)
    assert log.getvalue().splitlines() == [
        "a on gold: 1/4",
        "a on gold: 2/4 (1/s, eta 2s)",
        "a on gold: 3/4 (1/s, eta 1s)",
        "a on gold: 4/4 (1/s, done in 3s)",
        "b on gold: 1/2",
        "b on gold: 1/2 (done in 10s)",
    ]


def test_quiet_prints_nothing_and_an_error_skips_the_final_line(clock: Clock, log: io.StringIO) -> None:
    with output.progress_bar("json", quiet=True) as update:
        update(1, 2)
    with pytest.raises(RuntimeError), output.progress_bar("failing", quiet=False) as update:
        update(1, 4)
        clock.at(5)
        update(2, 4)
        raise RuntimeError("station failed")
    assert log.getvalue().splitlines() == ["failing: 1/4"]


def test_training_lines_carry_loss_speed_eta_and_every_evaluation(clock: Clock) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=40)
    updates = [
        (0, {"step": 10, "loss": 1.5, "tokens_per_second": 1200.0}),
        (12, {"step": 20, "loss": 1.4, "tokens_per_second": 1210.0}),
        (36, {"step": 40, "loss": 1.23451, "tokens_per_second": 1234.4}),
        (48, {"step": 50, "loss": 1.2, "eval_loss": 1.3, "tokens_per_second": 1250.0}),
        (60, {"step": 60, "loss": 1.1, "tokens_per_second": 1260.0}),
        (228, {"step": 200, "loss": 0.9, "tokens_per_second": 1300.0}),
    ]
    with training_progress_lines(console) as report:
        for seconds, update in updates:
            clock.at(seconds)
            report({**update, "total": 200, "lr": 1e-4, "grad_norm": 0.5})
    # 30 steps in 36 s: the other 160 take 192 s. The evaluation at step 50 prints though only
    # 12 s passed; step 60 does not.
    assert buffer.getvalue().splitlines() == [
        "step 10/200 loss 1.5000 tok/s 1,200",
        "step 40/200 loss 1.2345 tok/s 1,234 eta 3m12s",
        "step 50/200 loss 1.2000 eval loss 1.3000 tok/s 1,250 eta 3m00s",
        "step 200/200 loss 0.9000 tok/s 1,300 done in 3m48s",
    ]


def test_training_that_stops_early_ends_with_its_last_step(clock: Clock) -> None:
    buffer = io.StringIO()
    with training_progress_lines(Console(file=buffer, force_terminal=False)) as report:
        clock.at(0)
        report({"step": 1, "total": 200, "loss": 2.0, "tokens_per_second": 900.0})
        clock.at(20)
        report({"step": 81, "total": 200, "loss": 1.0, "eval_loss": 1.5, "tokens_per_second": 1000.0})
        clock.at(25)
        report({"step": 90, "total": 200, "loss": 0.8, "tokens_per_second": 1000.0})
    assert buffer.getvalue().splitlines() == [
        "step 1/200 loss 2.0000 tok/s 900",
        "step 81/200 loss 1.0000 eval loss 1.5000 tok/s 1,000 eta 30s",
        "step 90/200 loss 0.8000 tok/s 1,000 done in 25s",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59.4, "59s"),
        (59.6, "1m00s"),
        (192, "3m12s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (7530, "2h05m"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_rate() -> None:
    assert [format_rate(r) for r in (12345.6, 10, 9.87, 2.5, 0.0312)] == [
        "12,346/s",
        "10/s",
        "9.9/s",
        "2.5/s",
        "0.031/s",
    ]


def test_progress_seconds_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFTLINE_PROGRESS_SECONDS", raising=False)
    assert progress_seconds() == 30.0
    monkeypatch.setenv("SFTLINE_PROGRESS_SECONDS", "2.5")
    assert progress_seconds() == 2.5
    for bad in ("soon", "-1", "nan", "inf"):
        monkeypatch.setenv("SFTLINE_PROGRESS_SECONDS", bad)
        with pytest.raises(ConfigError, match="SFTLINE_PROGRESS_SECONDS"):
            progress_seconds()


@pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)
def test_import_without_a_terminal_logs_its_progress(
    project_dir: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = project_dir / "rows.jsonl"
    rows.write_text('{"text": "hi", "label": "greet"}\n{"text": "bye", "label": "leave"}\n')
    capsys.readouterr()
    assert main(["data", "import", str(rows), "--name", "rows"]) == 0
    assert capsys.readouterr().err.splitlines() == ["importing rows.jsonl: 2/2 (done in 0s)"]
