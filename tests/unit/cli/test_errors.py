"""Every error at the CLI boundary is one line on stderr and exit code 1; `--debug` adds the traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sftline.cli.main import main

HINT = (
    "lower --batch-tokens (and raise --grad-accum to keep the tokens per optimizer step) when "
    "training, or --batch-size when evaluating"
)


def _init_raises(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """`sftline init` raises `error` from inside the command."""

    def init_project(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("sftline.project_init.init_project", init_project)


@pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)
def _stdout(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_writing_a_report_into_a_missing_folder_is_one_line(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = project_dir / "chats.jsonl"
    chats = [
        [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "hello"}] for i in range(3)
    ]
    rows.write_text("".join(json.dumps({"messages": chat}) + "\n" for chat in chats))
    assert main(["data", "import", str(rows), "--name", "chats", "--json"]) == 0
    capsys.readouterr()
    report = project_dir / "missing" / "report.html"
    assert main(["data", "check", "chats", "--html", str(report), "--json"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: --html {report}: the folder {report.parent} does not exist"
    ]
    # Refused before the gates ran: nothing was checked or versioned.
    listed = {d["name"]: d for d in json.loads(_stdout(capsys, ["data", "list", "--json"]))}
    assert listed["chats"]["versions"] == 1


def test_os_error_is_one_line_and_debug_adds_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "a-file" / "project"
    _init_raises(monkeypatch, NotADirectoryError(20, "Not a directory", str(folder)))
    assert main(["init", str(folder)]) == 1
    assert capsys.readouterr().err.splitlines() == [f"error: cannot access '{folder}': Not a directory"]

    assert main(["--debug", "init", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "NotADirectoryError" in err
    assert err.splitlines()[-1] == f"error: cannot access '{folder}': Not a directory"


def test_os_error_without_a_file_names_its_type(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _init_raises(monkeypatch, ConnectionRefusedError(111, "Connection refused"))
    assert main(["init"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: Connection refused (ConnectionRefusedError; rerun with --debug for the traceback)"
    ]


def test_out_of_memory_names_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _init_raises(monkeypatch, MemoryError())
    assert main(["init"]) == 1
    assert capsys.readouterr().err.splitlines() == [f"error: out of memory: {HINT}"]

    cuda = torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB\n"
        "of which 1.05 GiB is free."
    )
    _init_raises(monkeypatch, cuda)
    assert main(["init"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: out of memory (tried to allocate 2.00 GiB): {HINT}"
    ]


def test_any_other_error_is_an_internal_error_on_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _init_raises(monkeypatch, ValueError("shapes differ:\n  (2, 3)\n  (3, 2)"))
    assert main(["init"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: internal error: ValueError: shapes differ: (2, 3) (3, 2) "
        "(rerun with --debug for the traceback)"
    ]
    assert main(["--debug", "init"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("error: internal error: ValueError")


def test_ctrl_c_exits_130_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _init_raises(monkeypatch, KeyboardInterrupt())
    assert main(["init"]) == 130
    assert capsys.readouterr().err.splitlines() == ["error: interrupted"]
