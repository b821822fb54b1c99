"""`sftline models register / promote / rollback / history / show` and `lineage NAME@N`, end to end
on the tiny chat model: evidence-gated promotion, --force recorded, rollback through history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import set_release
from tests.support.cli import run_json
from tests.support.tiny_models import make_tiny_chat_model

pytestmark = pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)

TRAIN = ["train", "--base", "tiny", "--data", "intents", "--max-steps", "2", "--batch-tokens", "256"]


def test_register_promote_force_rollback_and_history(
    registry_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_json(capsys, *TRAIN, "--seed", "1")["run"]
    registered = run_json(capsys, "models", "register", first, "--name", "support")
    assert registered == {**registered, "version": "support@1", "created": True, "stage": "candidate"}
    again = run_json(capsys, "models", "register", first, "--name", "support")
    assert again["version"] == "support@1" and again["created"] is False

    # The record: base model with file hashes, data, config, code and libraries, the model's files.
    shown = run_json(capsys, "models", "show", "support@1")
    record = shown["record"]
    assert record["base_model"]["name"] == "tiny" and record["base_model"]["files"]
    assert record["data"]["train"]["ref"] == "intents@v1" and record["seed"] == 1
    assert record["environment"]["libraries"]["torch"] and record["environment"]["recorded"] == "at training"
    assert {"version", "commit", "dirty"} <= record["code"].keys()
    assert "model.safetensors" in record["artifact"]["files"]
    assert "manifest.json" not in record["artifact"]["files"]

    # A failing verdict blocks the promotion: exit 3, nothing changes, and it says why.
    blocked = run_json(capsys, "models", "promote", "support@1", "--to", "production", code=3)
    assert blocked["out"]["status"] == "blocked" and blocked["out"]["verdict"] == "fail"
    assert blocked["out"]["evidence"]["baseline"] == "tiny"  # a first promotion: against the base model
    assert run_json(capsys, "models", "show", "support@1")["stage"] == "candidate"

    # --force overrides it, and the history says so, with the evidence it overrode.
    forced = run_json(
        capsys, "models", "promote", "support@1", "--to", "production", "--force", "--reason", "hotfix"
    )
    assert forced["status"] == "promoted" and forced["forced"] is True
    assert forced["overridden"][0] == "verdict fail"
    history = run_json(capsys, "models", "history", "support")
    assert [(h["version"], h["from"], h["to"], h["forced"]) for h in history] == [
        (1, None, "candidate", False),
        (1, "candidate", "production", True),
    ]
    promotion = history[-1]
    assert promotion["reason"] == "hotfix" and promotion["actor"]
    assert promotion["evidence"]["verdict"] == "fail" and promotion["evidence"]["evaluations"]
    assert set(history[0]) == {
        "version",
        "action",
        "from",
        "to",
        "actor",
        "at",
        "reason",
        "forced",
        "evidence",
    }

    # Criteria a model passes when it is no worse: the second version is promoted on its evidence,
    # against the version in production, and the first is archived.
    set_release(registry_project, [{"metric": "accuracy", "max_drop": 1.0}])
    second = run_json(capsys, *TRAIN, "--seed", "2")["run"]
    assert run_json(capsys, "models", "register", second, "--name", "support")["version"] == "support@2"
    promoted = run_json(capsys, "models", "promote", "support@2", "--to", "production")
    assert promoted["status"] == "promoted" and promoted["verdict"] == "pass" and not promoted["forced"]
    assert (
        promoted["evidence"]["baseline"] == first and promoted["evidence"]["baseline_version"] == "support@1"
    )
    assert promoted["moved_aside"] == "support@1"
    stages = {m["ref"]: m["stage"] for m in run_json(capsys, "models", "list")["models"]}
    assert stages == {"support@1": "archived", "support@2": "production"}

    # Production is left by a rollback (or for the archive), not by a promotion elsewhere.
    refused = run_json(capsys, "models", "promote", "support@2", "--to", "canary", code=1)
    assert "is in production" in refused["err"] and "rollback" in refused["err"]
    unknown = run_json(capsys, "models", "promote", "support@2", "--to", "staging", code=2)
    assert "staging" in unknown["err"]
    # Rollback puts support@1 back in one step; support@2 returns to candidate.
    rolled = run_json(capsys, "models", "rollback", "support", "--reason", "complaints")
    assert rolled == {"name": "support", "restored": "support@1", "rolled_back": "support@2"}
    stages = {m["ref"]: m["stage"] for m in run_json(capsys, "models", "list")["models"]}
    assert stages == {"support@1": "production", "support@2": "candidate"}
    # Nothing was in production before support@1: a second rollback has nowhere to go.
    nowhere = run_json(capsys, "models", "rollback", "support", code=1)
    assert "no earlier production version" in nowhere["err"]
    tail = run_json(capsys, "models", "history", "support")[-2:]
    assert [(h["version"], h["action"], h["from"], h["to"], h["reason"]) for h in tail] == [
        (2, "rollback", "production", "candidate", "complaints"),
        (1, "rollback", "archived", "production", "complaints"),
    ]


def test_lineage_of_a_registered_version_runs_from_the_file_to_its_evaluations(
    registry_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_json(capsys, *TRAIN, "--seed", "1")["run"]
    run_json(capsys, "models", "register", run, "--name", "support")
    run_json(capsys, "models", "promote", "support@1", "--to", "canary", code=3)  # evaluates it
    graph = run_json(capsys, "lineage", "support@1")
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes[graph["root"]] == {**nodes[graph["root"]], "kind": "registered_model", "name": "support@1"}
    kinds = {n["kind"] for n in graph["nodes"]}
    assert {"source_file", "dataset_version", "model", "registered_model"} <= kinds
    # Every node but the root feeds another one: the chain is connected.
    assert {e["from"] for e in graph["edges"]} | {graph["root"]} == set(nodes)
    # ... and its last link: the evaluations of the model (the promotion's evidence).
    evaluated = {e["name"] for e in graph["evaluations"]}
    shown = run_json(capsys, "models", "show", "support@1")["evaluations"]
    assert evaluated and evaluated == {e["name"] for e in shown}
    assert [e["dataset"] for e in shown] == ["release-suite@v1"]


def test_promotions_need_a_release_suite(chat_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_json(capsys, *TRAIN, "--seed", "1")["run"]
    run_json(capsys, "models", "register", run)
    name = yaml.safe_load((chat_project / "sftline.yaml").read_text())["project"]
    failed = run_json(capsys, "models", "promote", f"{name}@1", "--to", "production", code=1)
    assert "no release suite" in failed["err"] and "release:" in failed["err"]
    # archiving needs no evidence
    assert run_json(capsys, "models", "promote", f"{name}@1", "--to", "archived")["status"] == "promoted"


def test_reproduce_trains_again_and_compares_every_metric(
    registry_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_json(capsys, *TRAIN, "--seed", "1")["run"]
    run_json(capsys, "models", "register", run, "--name", "support")
    refused = run_json(capsys, "models", "reproduce", "support@1", code=1)
    assert "no evaluation to compare with" in refused["err"]
    run_json(capsys, "eval", run, "--on", "release-suite", "--no-base")
    result = run_json(capsys, "models", "reproduce", "support@1")
    assert result["reproduced"] and result["same_weights"] and result["run"] != run
    assert {m["metric"] for m in result["metrics"]} >= {"accuracy"}
    assert all(m["difference"] == 0 and m["dataset"] == "release-suite@v1" for m in result["metrics"])
    # A base model replaced under the same name: the recorded line cannot be repeated, and says why.
    make_tiny_chat_model(registry_project / "other-tiny", seed=5)
    run_json(capsys, "models", "base", "add", "tiny", str(registry_project / "other-tiny"))
    changed = run_json(capsys, "models", "reproduce", "support@1", code=3)["out"]
    assert not changed["reproduced"] and changed["problems"][0].startswith("base model tiny has content")


def front_matter(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])  # type: ignore[no-any-return]


def test_card_and_export_of_a_registered_version(
    registry_project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import torch
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    from sftline.models.materialise import hash_folder

    run = run_json(capsys, *TRAIN, "--seed", "1")["run"]
    run_json(capsys, "models", "register", run, "--name", "support")
    folder = Path(run_json(capsys, "models", "show", "support@1")["record"]["artifact"]["path"])
    before = hash_folder(folder)[1]

    # The card, before any evaluation: model-index present, with no results yet.
    path = Path(run_json(capsys, "models", "card", "support@1")["path"])
    assert path == folder / "README.md"
    assert ModelCard.load(path).data.base_model == "tiny"  # huggingface_hub reads it
    assert front_matter(path)["model-index"][0]["results"] == []
    # After an evaluation: results per dataset, and the model's identity has not changed.
    run_json(capsys, "eval", run, "--on", "release-suite", "--no-base")
    run_json(capsys, "models", "card", "support@1")
    card = ModelCard.load(path)
    assert card.data.eval_results and card.data.eval_results[0].dataset_name.startswith("release-suite")
    results = front_matter(path)["model-index"][0]["results"]
    assert results and results[0]["dataset"]["name"].startswith("release-suite")
    assert "release-suite@v1" in card.text
    assert hash_folder(folder)[1] == before == run_json(capsys, "models", "show", "support@1")["model_hash"]

    # A merged export loads with transformers as is, with the run's logits.
    out = tmp_path / "export"
    exported = run_json(capsys, "models", "export", "support@1", "--out", str(out))
    assert (
        exported["mode"] == "merged" and (out / "README.md").is_file() and (out / "manifest.json").is_file()
    )
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in out.rglob("*"))
    ids = torch.tensor([[5, 17, 42, 8]])
    with torch.no_grad():
        mine = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)(ids).logits
        theirs = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)(ids).logits
    assert torch.equal(mine, theirs)
    # An export never overwrites: a non-empty target is refused in one line.
    refused = run_json(capsys, "models", "export", "support@1", "--out", str(out), code=1)
    assert str(out) in refused["err"]
