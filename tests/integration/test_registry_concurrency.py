"""Processes promoting versions of one name at the same moment, on SQLite and PostgreSQL: one
production version and one consistent history, whoever wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import set_release
from tests.integration.test_cli_registry import TRAIN
from tests.integration.test_concurrency import run_together
from tests.support.cli import run_json


def replay(history: list[dict[str, object]]) -> dict[int, str]:
    """The stages the history leads to, checking each entry starts where the last one left its
    version and that no moment has two versions in production or in canary."""
    stages: dict[int, str] = {}
    for entry in history:
        version = int(entry["version"])  # type: ignore[call-overload]
        assert entry["from"] == stages.get(version), entry
        stages[version] = str(entry["to"])
        for exclusive in ("production", "canary"):
            assert list(stages.values()).count(exclusive) <= 1, history
    return stages


@pytest.mark.parametrize(
    "record_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_concurrent_promotions_leave_one_production_and_one_history(
    registry_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_release(registry_project, [{"metric": "accuracy", "max_drop": 1.0}])
    versions = []
    for seed in (1, 2, 3):
        run = run_json(capsys, *TRAIN, "--seed", str(seed))["run"]
        versions.append(run_json(capsys, "models", "register", run, "--name", "support")["version"])
        # the evidence against the base model, evaluated now: the promotions below race each other
        run_json(capsys, "eval", run, "--on", "release-suite", "--baseline", "tiny")
    # two promotions on their evidence, the third forced
    forced = versions[2]
    promote = [
        ["models", "promote", v, "--to", "production", *(["--force"] if v == forced else [])]
        for v in versions
    ]
    outcomes = run_together(registry_project, [[command] for command in promote])

    results = [worker[0] for worker in outcomes]
    won = [r for r in results if r["code"] == 0]
    assert results[2]["code"] == 0 and results[2]["output"]["status"] == "promoted", results
    for result in results:
        if result["code"] != 0:  # a loser says why in one line: the verdict was against another version
            assert "production version changed meanwhile" in result["output"]["error"], result
    history = run_json(capsys, "models", "history", "support")
    stages = replay(history)
    listed = {m["version"]: m["stage"] for m in run_json(capsys, "models", "list")["models"]}
    assert stages == listed and list(listed.values()).count("production") == 1
    promotions = [h for h in history if h["action"] == "promote"]
    assert len(promotions) == len(won)  # every winner's promotion is in the history, once
    assert listed[promotions[-1]["version"]] == "production"  # the last one holds production
