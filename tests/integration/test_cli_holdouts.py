"""`sftline data split / gold freeze / mix` on CLINC150, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_json

CLINC = Path(__file__).resolve().parents[2] / "examples" / "clinc150"


@pytest.fixture
def clinc(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    run_json(
        capsys,
        "data",
        "import",
        str(CLINC / "data_full.json"),
        "--name",
        "clinc",
        "--split",
        "train",
        "--split",
        "oos_train",
        "--label-groups",
        f"domain={CLINC / 'domains.json'}",
    )
    return "clinc"


def test_split_freeze_and_mix_on_clinc150(
    clinc: str, project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = run_json(
        capsys, "data", "split", "clinc@v1", "--gold", "0.1", "--targeted", "domain=banking", "--seed", "7"
    )
    parts = split["parts"]
    assert set(parts) == {"train", "gold", "domain-banking"}
    assert parts["gold"]["version"] == "clinc-gold@v1"
    assert sum(p["examples"] for p in parts.values()) == 15100
    assert abs(parts["gold"]["examples"] - 1510) <= 40
    assert parts["domain-banking"]["examples"] >= 300
    again = run_json(
        capsys, "data", "split", "clinc@v1", "--gold", "0.1", "--targeted", "domain=banking", "--seed", "7"
    )
    assert {p: v["content_hash"] for p, v in again["parts"].items()} == {
        p: v["content_hash"] for p, v in parts.items()
    }
    assert not any(v["created"] for v in again["parts"].values())
    assert again["station"] == "cached" and again["key"] == split["key"]

    frozen = run_json(capsys, "data", "gold", "freeze", "clinc-gold")
    assert frozen["gold"] == "clinc-gold@v1" and frozen["created"]
    # A frozen gold set never changes: a re-split with another seed keeps it and holds its matches out.
    resplit = run_json(capsys, "data", "split", "clinc@v1", "--gold", "0.1", "--seed", "99")
    assert resplit["parts"]["gold"]["frozen"] and resplit["parts"]["gold"]["version"] == "clinc-gold@v1"
    assert resplit["parts"]["gold"]["held_out_from_source"] >= frozen["examples"]
    refused = run_json(
        capsys,
        "data",
        "import",
        str(CLINC / "data_full.json"),
        "--name",
        "clinc-gold",
        "--split",
        "val",
        code=1,
    )
    assert "frozen gold set" in refused["err"]

    mixture = run_json(
        capsys,
        "data",
        "mix",
        "--from",
        "clinc-train",
        "--weights",
        "domain=banking:0.3,domain=travel:0.2,*:0.5",
        "--total",
        "3001",
        "--name",
        "clinc-mix",
    )
    rows = {r["component"]: r for r in mixture["components"]}
    for component, weight in (("domain=banking", 0.3), ("domain=travel", 0.2), ("*", 0.5)):
        assert abs(rows[component]["achieved"] - weight * 3001) <= 1
    shown = run_json(capsys, "data", "show", "clinc-mix")
    assert shown["examples"] == 3001
    assert abs(shown["stats"]["tags"]["domain"]["banking"] - 900) <= 1

    # The whole source overlaps the frozen gold: mixing it is refused, and a check quarantines the overlap.
    overlap = run_json(
        capsys, "data", "mix", "--from", "clinc@v1", "--weights", "*:1", "--total", "15100", code=1
    )
    assert "overlaps the frozen gold set clinc-gold@v1" in overlap["err"]
    checked = run_json(capsys, "data", "check", "clinc-mix")
    assert checked["counts"]["contamination"] == {}
