"""Ordinary faults are one line on stderr, never a traceback, and leave nothing half-written:
exports onto folders or a full disk, `init` where it cannot or must not write, corrupt or tampered
objects, unreadable or hostile sftline.yaml files, and out-of-range options."""

from __future__ import annotations

import errno
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import sftline.data.export
from sftline.cli.main import main
from sftline.config import load_config
from sftline.project_init import render_template

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def record_url(tmp_path: Path) -> str:
    """SQLite only: these faults are the files', not the database's."""
    return f"sqlite:///{tmp_path / 'record.db'}"


def _err(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 1) -> list[str]:
    """Run `sftline ARGV`, expecting exit `code`; its stderr lines."""
    capsys.readouterr()
    assert main(argv) == code
    return capsys.readouterr().err.splitlines()


@pytest.fixture
def chats(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The project, holding dataset `chats` of 3 examples."""
    rows = project_dir / "chats.jsonl"
    rows.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "x"}]}
            )
            + "\n"
            for i in range(3)
        )
    )
    assert main(["data", "import", str(rows), "--name", "chats", "--json"]) == 0
    capsys.readouterr()
    return project_dir


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- export ------------------------------------------------------------------------------------


def test_export_onto_a_folder_is_refused_in_one_line(chats: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (chats / "out.jsonl").mkdir()
    assert _err(capsys, ["data", "export", "chats", "-o", "out.jsonl"]) == [
        "error: --out out.jsonl: is a folder; name a file in it, e.g. out.jsonl/data.jsonl"
    ]
    assert list((chats / "out.jsonl").iterdir()) == []
    assert _leftovers(chats) == [".sftline"]


def test_export_under_a_file_is_refused_in_one_line(chats: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (chats / "a-file").write_text("")
    assert _err(capsys, ["data", "export", "chats", "-o", "a-file/sub/out.jsonl"]) == [
        "error: --out a-file/sub/out.jsonl: a-file is a file, not a folder"
    ]


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_export_to_a_full_disk_leaves_no_file_behind(
    chats: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """The disk fills up after the first example is written: one line, and neither the file nor a
    temporary one is left."""
    record = sftline.data.export.example_record
    calls = []

    def filling_up(example: Any) -> dict[str, Any]:
        calls.append(example)
        if len(calls) > 1:
            raise NO_SPACE
        return record(example)

    def parquet_filling_up(examples: Any, path: Path) -> None:
        path.write_bytes(b"PAR1 half a file")
        raise NO_SPACE

    monkeypatch.setattr(sftline.data.export, "example_record", filling_up)
    monkeypatch.setattr(sftline.data.export, "write_examples", parquet_filling_up)
    assert _err(capsys, ["data", "export", "chats", "-o", f"out.{suffix}"]) == [
        f"error: --out out.{suffix}: cannot write it (No space left on device)"
    ]
    assert not (chats / f"out.{suffix}").exists()
    assert _leftovers(chats) == [".sftline"]


# --- objects the record names ------------------------------------------------------------------


def _object_of(project: Path) -> Path:
    with sqlite3.connect(project / ".sftline" / "record.db") as connection:
        (digest,) = connection.execute("SELECT object_hash FROM dataset_versions").fetchone()
    connection.close()
    return project / ".sftline" / "objects" / digest


def test_a_corrupt_object_is_one_line_naming_it(chats: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _object_of(chats)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1  # one bit flipped on disk
    path.write_bytes(bytes(data))
    assert _err(capsys, ["data", "show", "chats", "--head", "1"]) == [
        f"error: object {path.name[:12]} ({path}) is corrupt: its content no longer matches its sha256; "
        "restore it from a backup"
    ]


def test_a_tampered_object_hash_reads_nothing_outside_the_project(
    chats: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = chats.parent / "secret.parquet"
    secret.write_bytes(_object_of(chats).read_bytes())  # a readable dataset, outside the project
    with sqlite3.connect(chats / ".sftline" / "record.db") as connection:
        connection.execute("UPDATE dataset_versions SET object_hash = '../../secret.parquet'")
    connection.close()
    assert _err(capsys, ["data", "export", "chats", "-o", "out.jsonl"]) == [
        "error: the record names object '../../secret.parquet', which is not a sha256: the record was "
        "damaged or tampered with; restore it from a backup"
    ]
    assert not (chats / "out.jsonl").exists()


# --- init --------------------------------------------------------------------------------------


def test_init_onto_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    message = f"error: {blocker} is a file; `sftline init` needs a folder (new or existing)"
    assert _err(capsys, ["init", str(blocker)]) == [message]
    assert _err(capsys, ["init", str(blocker / "project")]) == [message]


def test_init_checks_everything_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    err = _err(capsys, ["init", str(folder), "--task", "bogus"])
    assert err[-1] == "  - contract.task: Input should be 'chat' or 'classify'"
    assert not folder.exists()
    (tmp_path / "existing").mkdir()
    _err(capsys, ["init", str(tmp_path / "existing"), "--task", "bogus"])
    assert list((tmp_path / "existing").iterdir()) == []
    assert main(["init", str(folder), "--task", "classify"]) == 0  # nothing was left to refuse it


def test_an_init_whose_record_cannot_be_created_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SFTLINE_DB_URL", "nosuchdb://host/record")
    err = _err(capsys, ["init", str(tmp_path / "p")])
    assert len(err) == 1 and err[0].startswith("error: cannot open the record at nosuchdb://host/record: ")
    assert not (tmp_path / "p").exists()
    (tmp_path / "existing").mkdir()
    _err(capsys, ["init", str(tmp_path / "existing")])
    assert list((tmp_path / "existing").iterdir()) == []


def test_init_cannot_inject_keys_through_a_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, elsewhere = tmp_path / "p", tmp_path / "elsewhere.db"
    err = _err(capsys, ["init", str(folder), "--base-model", f"x\ndatabase_url: sqlite:///{elsewhere}"])
    assert err[-1].startswith("  - base_model: invalid model name 'x\\ndatabase_url: sqlite:///")
    assert not folder.exists() and not elsewhere.exists()


@pytest.mark.parametrize(
    "value",
    [
        "x\ndatabase_url: sqlite:///elsewhere.db",
        'quotes " and \\ backslashes',
        "a\u2028line\u0085separator\ttab\r",
        "emoji \U0001f600 and é",
        "null",
        "yes",
        "1.0",
        "# not a comment",
        "{flow: mapping}",
    ],
)
def test_the_template_reads_back_every_value_as_given(tmp_path: Path, value: str) -> None:
    read = yaml.safe_load(render_template("p", "chat", None, None, base_model=value))
    assert (read["base_model"], read["database_url"]) == (value, None)  # (then refused as a name)
    text = render_template(value, "chat", [value, "other"], value, system_prompt=value)
    path = tmp_path / "sftline.yaml"
    path.write_text(text, encoding="utf-8")
    assert yaml.safe_load(text)["database_url"] is None
    config = load_config(path)
    assert config.project == value
    assert config.contract.system_prompt == value
    assert config.contract.abstention == value
    assert config.contract.output.labels == [value, "other"]


def test_the_template_names_a_command_that_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "`sftline config check`" in render_template("p", "chat", None, None)
    assert main(["init", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    assert main(["-C", str(tmp_path / "p"), "config", "check"]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'p' / 'sftline.yaml'}: ok")


# --- sftline.yaml ------------------------------------------------------------------------------


def test_a_non_utf8_config_is_one_line(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project_dir / "sftline.yaml"
    text = path.read_bytes().split(b"\n")
    text[3] = b"# caf\xe9 in Latin-1"
    path.write_bytes(b"\n".join(text))
    assert _err(capsys, ["data", "list"]) == [
        f"error: {path}: line 4 is not UTF-8 (byte 0xe9); save the file as UTF-8"
    ]


def test_a_duplicate_key_is_an_error_naming_it_and_both_lines(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project_dir / "sftline.yaml"
    lines = path.read_text().splitlines()
    first = lines.index("database_url: null") + 1
    path.write_text("\n".join([*lines, "database_url: sqlite:///elsewhere.db", ""]))
    assert _err(capsys, ["data", "list"]) == [
        f"error: {path}: line {len(lines) + 1} is not valid YAML (duplicate key 'database_url', first given "
        f"on line {first})"
    ]


def test_an_alias_bomb_in_the_contracts_schema_fails_fast(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Six levels of ten aliases: a million values from seven short lines."""
    path = project_dir / "sftline.yaml"
    text = path.read_text().replace(
        "    kind: text\n",
        "    kind: json_schema\n    schema:\n      type: object\n"
        + f"      x0: &x0 [{', '.join(['a'] * 10)}]\n"
        + "".join(f"      x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]\n" for i in range(1, 6)),
    )
    path.write_text(text)
    bomb_line = text.splitlines().index(f"      x4: &x4 [{', '.join(['*x3'] * 10)}]") + 1
    started = time.perf_counter()
    err = _err(capsys, ["data", "list"])
    assert time.perf_counter() - started < 5
    assert err == [
        f"error: {path}: line {bomb_line} is not valid YAML (aliases expand this value to more than "
        "100,000 values)"
    ]


# --- options out of range ----------------------------------------------------------------------


def test_a_version_number_too_large_for_the_record_is_no_such_version(
    chats: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _err(capsys, ["data", "show", "chats@v99999999999999999999999"]) == [
        "error: chats@v99999999999999999999999: no such version; see `sftline data versions chats`"
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--weights", "*:nan"], "error: --weights item '*:nan': a weight is a positive number"),
        (["--weights", "*:inf"], "error: --weights item '*:inf': a weight is a positive number"),
        (["--weights", "*:1", "--total", "-5"], "  - total: Input should be greater than 0"),
        (["--weights", "*:1", "--total", "0"], "  - total: Input should be greater than 0"),
        (
            ["--weights", "*:1", "--total", "50000000"],
            "  - total: Input should be less than or equal to 10000000",
        ),
        (
            ["--weights", "*:1", "--total", "301"],
            "error: --total 301 is above the ceiling of 300 for 3 source examples (at most 100x the "
            "sources and 10,000,000 in all)",
        ),
    ],
)
def test_mix_options_out_of_range_are_refused(
    chats: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    assert _err(capsys, ["data", "mix", "--from", "chats", *options])[-1] == message


def test_a_mixture_at_the_ceiling_is_made(chats: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["data", "mix", "--from", "chats", "--weights", "*:1", "--total", "300", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 300


def test_a_negative_head_is_a_usage_error(chats: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "show", "chats", "--head", "-5"]) == 2
    assert "Invalid value for '--head'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ("-3", "  - rolling_days: Input should be greater than 0"),
        ("inf", "  - rolling_days: Input should be a finite number"),
        ("1e300", "  - rolling_days: Input should be less than or equal to 36525"),
    ],
)
def test_rolling_days_out_of_range_are_refused(
    chats: Path, capsys: pytest.CaptureFixture[str], days: str, message: str
) -> None:
    err = _err(capsys, ["data", "split", "chats", "--rolling-days", days, "--time-field", "at"])
    assert err == ["error: split options: 1 problem(s)", message]
