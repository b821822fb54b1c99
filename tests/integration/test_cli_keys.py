"""`sftline keys add / list / revoke`, end to end: the key printed once, never listed, refused
once revoked."""

from __future__ import annotations

from pathlib import Path

import pytest

from sftline.cli.main import main
from sftline.record.workspace import Workspace
from sftline.serving.keys import KeyInfo, verify
from tests.support.cli import run_json

pytestmark = pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)


def test_add_list_revoke(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    added = run_json(capsys, "keys", "add", "ops", "--scope", "admin")
    assert set(added) == {"name", "key", "scope"} and (added["name"], added["scope"]) == ("ops", "admin")
    assert added["key"].startswith("sk-sftline-")
    alice = run_json(capsys, "keys", "add", "alice")
    assert alice["scope"] == "serve"
    with Workspace.find(project_dir) as workspace:
        assert verify(workspace, added["key"]) == KeyInfo("ops", "admin")

    capsys.readouterr()
    assert main(["keys", "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert added["key"] not in out and alice["key"] not in out
    listed = run_json(capsys, "keys", "list")
    assert [(k["name"], k["scope"], k["revoked_at"]) for k in listed] == [
        ("alice", "serve", None),
        ("ops", "admin", None),
    ]

    revoked = run_json(capsys, "keys", "revoke", "alice")
    assert revoked["name"] == "alice" and revoked["revoked_at"] is not None
    assert [k["revoked_at"] for k in run_json(capsys, "keys", "list")] == [revoked["revoked_at"], None]
    with Workspace.find(project_dir) as workspace:
        assert verify(workspace, alice["key"]) is None
        assert verify(workspace, added["key"]) == KeyInfo("ops", "admin")


def test_taken_names_unknown_keys_and_scopes_are_one_line_errors(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(capsys, "keys", "add", "alice")
    taken = run_json(capsys, "keys", "add", "alice", code=1)
    assert taken["out"]["error"].startswith("an API key named 'alice' exists")
    unknown = run_json(capsys, "keys", "revoke", "bob", code=1)
    assert unknown["out"]["error"] == "no API key named 'bob'; see `sftline keys list`"
    refused = run_json(capsys, "keys", "add", "carol", "--scope", "root", code=2)["err"]
    assert "'--scope': Value error, 'root' is not one of 'serve', 'admin'" in " ".join(
        refused.replace("│", " ").split()
    )


def test_the_human_output_shows_the_key_once_and_says_so(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["keys", "add", "alice"]) == 0
    printed = capsys.readouterr()
    key = next(word for word in printed.out.split() if word.startswith("sk-sftline-"))
    assert "shown once" in printed.err
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert "alice" in listed and key not in listed
