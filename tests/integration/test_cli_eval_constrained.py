"""`sftline eval` constrains generated answers to the contract's labels by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from sftline.cli.main import main
from sftline.record.workspace import Workspace
from sftline.stations.evaluate import load_outputs
from tests.support.cli import run_json

EVAL = ["eval", "tiny", "--on", "intents", "--sample", "24", "--max-new-tokens", "12"]


@pytest.fixture
def label_project(chat_project: Path) -> Path:
    """The chat project with a label contract whose set is left to the data (the intents)."""
    config = chat_project / "sftline.yaml"
    config.write_text(config.read_text().replace("kind: text", "kind: labels"))
    return chat_project


@pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)
def test_a_zero_shot_model_answers_only_labels_unless_told_not_to(
    label_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    constrained = run_json(capsys, *EVAL)["sections"][0]
    free = run_json(capsys, *EVAL, "--no-constrain")["sections"][0]
    assert constrained["settings"]["constraint"] == "labels" and free["settings"]["constraint"] is None
    assert not free["reused"] and free["evaluation"] != constrained["evaluation"]
    compliance = [s["metrics"]["overall"]["label_compliance"]["value"] for s in (constrained, free)]
    assert compliance == [1.0, 0.0]  # the random model answers garbage on its own
    with Workspace.find(label_project) as workspace:
        outputs = load_outputs(workspace, constrained["evaluation"])
    targets = {o.target for o in outputs}
    assert [o.output for o in outputs if o.output not in targets] == []
    assert all(o.finished for o in outputs)
    # The stored outputs of each are found again by their settings.
    again = run_json(capsys, *EVAL)["sections"][0]
    assert again["reused"] and again["evaluation"] == constrained["evaluation"]


def test_eval_help_names_the_switch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--help"]) == 0
    assert "--no-constrain" in capsys.readouterr().out
