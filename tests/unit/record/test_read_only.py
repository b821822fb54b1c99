"""A read-only project (a copy, a read-only mount, another user's folder) can be read; a command
that must write says so in one line.

File modes are enforced for real: the CLI runs in a child process, and when the tests run as root
(whom file modes do not stop) the child gives up the capabilities that override them.
"""

from __future__ import annotations

import ctypes
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sftline.cli.main import main
from sftline.project_init import init_project
from sftline.record.db import head_revision

PR_CAPBSET_DROP = 24
FILE_MODE_OVERRIDES = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _obey_file_modes() -> None:
    """In the child before exec: drop root's capabilities that ignore file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in FILE_MODE_OVERRIDES:
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def sftline(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`sftline ARGS` in a child process that file modes apply to."""
    return subprocess.run(
        [sys.executable, "-m", "sftline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_obey_file_modes if os.geteuid() == 0 else None,
        check=False,
    )


def _chmod_tree(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | 0o200 if writable else mode & ~0o222)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[list[Path]]:
    """Folders to make read-only; they are made writable again after the test."""
    folders: list[Path] = []
    yield folders
    for folder in folders:
        _chmod_tree(folder, writable=True)


@pytest.fixture
def enforced(tmp_path: Path, read_only: list[Path]) -> None:
    """Skips the test where the child processes cannot be made to obey file modes."""
    probe = tmp_path / "probe"
    probe.mkdir()
    read_only.append(probe)
    _chmod_tree(probe, writable=False)
    if sftline(probe, "init", "sub").returncode == 0:
        pytest.skip("file modes are not enforced for this process (no way to drop root's override)")


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A project holding dataset `chats` (3 examples) and a mixture of it."""
    folder = tmp_path / "proj"
    init_project(folder, task="chat")
    rows = folder / "chats.jsonl"
    rows.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "x"}]}
            )
            + "\n"
            for i in range(3)
        )
    )
    assert main(["-C", str(folder), "data", "import", str(rows), "--name", "chats", "--json"]) == 0
    assert main(["-C", str(folder), "data", "mix", "--from", "chats", "--weights", "*:1", "--json"]) == 0
    capsys.readouterr()
    return folder


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.mark.usefixtures("enforced")
def test_a_read_only_project_can_be_read(project: Path, read_only: list[Path], tmp_path: Path) -> None:
    read_only.append(project)
    _chmod_tree(project, writable=False)
    before = _files(project)

    listed = sftline(project, "data", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {d["name"]: d["versions"] for d in json.loads(listed.stdout)} == {"chats": 1, "chats-mix": 1}
    shown = sftline(project, "data", "show", "chats", "--head", "1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["head"][0]["messages"][0]["content"] == "hi 0"
    runs = sftline(project, "runs", "list", "--json")
    assert (runs.returncode, json.loads(runs.stdout)) == (0, [])
    exported = sftline(project, "data", "export", "chats", "-o", str(tmp_path / "out.jsonl"))
    assert exported.returncode == 0, exported.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3
    # A station whose work is recorded reads the record's answer and writes nothing.
    mixed = sftline(project, "data", "mix", "--from", "chats", "--weights", "*:1", "--json")
    assert mixed.returncode == 0, mixed.stderr
    assert json.loads(mixed.stdout)["station"] == "cached"

    assert _files(project) == before  # no -wal, -shm or journal file, nothing changed


@pytest.mark.usefixtures("enforced")
def test_a_command_that_writes_says_the_record_is_read_only(project: Path, read_only: list[Path]) -> None:
    read_only.append(project)
    _chmod_tree(project, writable=False)
    refused = sftline(project, "data", "import", "chats.jsonl", "--name", "other")
    assert refused.returncode == 1
    record = project / ".sftline" / "record.db"
    assert refused.stderr.splitlines() == [
        f"error: the record {record} is read-only and this command writes to it; run it where the "
        "project is writable"
    ]


@pytest.mark.usefixtures("enforced")
def test_a_read_only_record_that_needs_migrating_is_one_line(project: Path, read_only: list[Path]) -> None:
    record = project / ".sftline" / "record.db"
    with sqlite3.connect(record) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    connection.close()
    read_only.append(project)
    _chmod_tree(project, writable=False)
    refused = sftline(project, "data", "list")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"error: the record at sqlite:///{record} is read-only and at revision 0001, older than this "
        f"sftline's {head_revision()}: open it once with write access to migrate it"
    ]


@pytest.mark.usefixtures("enforced")
def test_a_read_only_object_store_is_one_line_on_import(project: Path, read_only: list[Path]) -> None:
    objects = project / ".sftline" / "objects"
    read_only.append(objects)
    _chmod_tree(objects, writable=False)
    (project / "more.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "new"}, {"role": "assistant", "content": "y"}]})
        + "\n"
    )
    refused = sftline(project, "data", "import", "more.jsonl", "--name", "more")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        f"error: cannot write to the object store {objects}: Permission denied"
    )
    assert "Traceback" not in refused.stderr


def test_a_record_from_a_newer_sftline_is_one_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = project / ".sftline" / "record.db"
    with sqlite3.connect(record) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    connection.close()
    assert main(["-C", str(project), "data", "list"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: the record at sqlite:///{record} is at revision 9999, newer than this sftline "
        f"({head_revision()}); upgrade sftline"
    ]
