"""`sftline config check`: every problem of sftline.yaml at once, or a summary of a valid one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sftline.cli.main import main
from sftline.project_init import render_template

VALID = """\
project: support
model_name: support-intents
base_model: minilm-l6
contract:
  task: classify
  output: {kind: labels, labels: [billing, refund, oos]}
  abstention: oos
gates:
  pii: {action: off}
  balance: {action: off}
release:
  criteria:
    - {metric: accuracy, max_drop: 0.0}
"""


def _project(folder: Path, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "sftline.yaml").write_text(text, encoding="utf-8")
    return (folder / "sftline.yaml").resolve()


def test_valid_config_prints_ok_and_a_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _project(tmp_path, VALID)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # not below the working directory: shown in full
    assert main(["--project", str(tmp_path), "config", "check"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{(tmp_path / 'sftline.yaml').resolve()}: ok",
        "  task: classify  base model: minilm-l6  model name: support-intents",
        "  output: 3 labels  gates: 7 on, 3 off  release criteria: 1",  # semantic_duplicates off by default
    ]
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "sftline.yaml: ok"

    assert main(["config", "check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["problems"] == []
    assert report["summary"] == {
        "project": "support",
        "task": "classify",
        "base_model": "minilm-l6",
        "model_name": "support-intents",
        "output_kind": "labels",
        "labels": 3,
        "gates_on": 7,
        "gates_off": 3,
        "release_criteria": 1,
    }
    assert report["config"]["gates"]["pii"]["action"] == "off"
    assert report["config"]["contract"]["output"]["labels"] == ["billing", "refund", "oos"]


def test_shipped_template_is_valid_and_names_the_model_after_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _project(tmp_path, render_template("intents", "chat", None, None))
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "sftline.yaml: ok",
        "  task: chat  base model: none set  model name: intents (the project's name)",
    ]
    assert main(["config", "check", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert (summary["model_name"], summary["labels"], summary["gates_off"]) == ("intents", None, 1)


def test_every_problem_is_reported_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _project(tmp_path, "project: support\nmodel_name: support intents\ncontract:\n  task: translate\n")
    monkeypatch.chdir(tmp_path)
    problems = [
        "model_name: invalid model name 'support intents': use letters, digits, '-', '_' and '.', "
        "starting with a letter or digit (at most 200 characters)",
        "contract.task: Input should be 'chat' or 'classify'",
    ]
    assert main(["config", "check"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [f"{path}: 2 problem(s)", *(f"  - {p}" for p in problems)]

    assert main(["config", "check", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "file": str(path),
        "ok": False,
        "problems": problems,
        "summary": None,
        "config": None,
    }


def test_yaml_that_does_not_parse_is_one_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _project(tmp_path, "project: support\ncontract: [unclosed\n")
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert len(report["problems"]) == 1 and report["problems"][0].startswith(
        f"{path}: line 3 is not valid YAML"
    )


def test_no_project_is_an_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no sftline.yaml in {tmp_path.resolve()} or above")


def test_the_templates_commented_line_example_is_a_valid_line(tmp_path: Path) -> None:
    """The `line:` example in the sftline.yaml template, uncommented, validates as written."""
    from sftline.config import parse_config

    text = render_template("demo", "classify", None, "oos", base_model="minilm-l6")
    lines = text.splitlines()
    start = lines.index("line: null")
    example = ["line:"] + [line[1:] for line in lines[start + 1 :] if line.startswith("#  ")]
    config = parse_config(yaml.safe_load("\n".join([*lines[:start], *example])), "template")
    assert config.line is not None
    assert [i.name for i in config.line.import_] == ["support", "support-eval"]
    assert config.line.split is not None and config.line.split.freeze_gold
    assert config.line.mix is None and config.line.train is not None and config.line.train.epochs == 3
    assert config.line.eval is not None and config.line.eval.baseline == "minilm-l6"
