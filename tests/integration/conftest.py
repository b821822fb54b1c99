"""Projects with data and a base model, for the CLI's end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support.cli import run_json
from tests.support.tiny_models import make_tiny_chat_model

CLINC = Path(__file__).resolve().parents[2] / "examples" / "clinc150"


def classify_rows() -> list[list[str]]:
    """150 CLINC150 training queries (one per 10) and 10 out-of-scope ones, as [text, label]."""
    data = json.loads((CLINC / "data_full.json").read_text())
    return data["train"][:1500:10] + data["oos_train"][:10]


@pytest.fixture
def chat_project(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A chat project with the tiny random model registered as `tiny` and 120 intent chats."""
    make_tiny_chat_model(project_dir / "tiny")
    run_json(capsys, "models", "base", "add", "tiny", str(project_dir / "tiny"))
    rows = json.loads((CLINC / "data_full.json").read_text())["train"][:3000:25]
    data = project_dir / "intents.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": label}]}
            )
            + "\n"
            for t, label in rows
        )
    )
    run_json(capsys, "data", "import", str(data), "--name", "intents")
    return project_dir


@pytest.fixture
def classify_project(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A classify project (abstention label `oos`) with MiniLM pulled and `classify_rows` imported."""
    config = project_dir / "sftline.yaml"
    text = config.read_text().replace("task: chat", "task: classify").replace("kind: text", "kind: labels")
    config.write_text(text.replace("abstention: null", "abstention: oos"))
    run_json(capsys, "models", "pull", "minilm-l6")
    path = project_dir / "intents.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in classify_rows()))
    run_json(capsys, "data", "import", str(path), "--name", "intents")
    return project_dir


def set_release(project: Path, criteria: list[dict[str, object]]) -> None:
    """The release suite (a 12-example dataset), short answers, and these criteria."""
    path = project / "sftline.yaml"
    config = yaml.safe_load(path.read_text())
    config["release"]["on"] = ["release-suite"]
    config["release"]["criteria"] = criteria
    config["contract"]["limits"]["max_target_tokens"] = 4
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def registry_project(chat_project: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    rows = [json.loads(line) for line in (chat_project / "intents.jsonl").read_text().splitlines()][:12]
    suite = chat_project / "suite.jsonl"
    suite.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run_json(capsys, "data", "import", str(suite), "--name", "release-suite")
    # A criterion no random tiny model meets: every verdict fails.
    set_release(chat_project, [{"metric": "accuracy", "min": 0.99}])
    return chat_project
