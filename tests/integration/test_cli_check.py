"""`sftline data check` / `data rejects` on planted defects, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_json

CLINC = Path(__file__).resolve().parents[2] / "examples" / "clinc150"


def clinc_rows(split: str, count: int) -> list[list[str]]:
    data = json.loads((CLINC / "data_full.json").read_text())
    return data[split][:: max(1, len(data[split]) // count)][:count]


@pytest.fixture
def planted(project_dir: Path) -> tuple[Path, Path, dict[str, str]]:
    """A classification file of real CLINC150 queries with one of each defect planted."""
    rows = clinc_rows("train", 120)
    gold_rows = clinc_rows("test", 30)
    expected: dict[str, str] = {}
    base = rows[0]
    planted_rows = [
        ([base[0].upper() + "  ", base[1]], "exact_duplicate"),
        ([rows[1][0], "a_different_intent"], "conflicting_labels"),
        ([rows[2][0].replace(" ", "  ") + " please", rows[2][1]], "near_duplicate"),
        ([gold_rows[0][0], gold_rows[0][1]], "contamination_exact"),
        (["send the receipt to jane.doe@example.com", "pay_bill"], "pii_email"),
        (["my card 4111 1111 1111 1111 was declined", "card_declined"], "pii_credit_card"),
        (["what is my balance", "not_a_label"], "label_not_in_set"),
    ]
    lines = [{"id": f"r{i}", "text": t, "label": label} for i, (t, label) in enumerate(rows)]
    for i, ((text, label), reason) in enumerate(planted_rows):
        lines.append({"id": f"bad{i}", "text": text, "label": label})
        expected[f"bad{i}"] = reason
    data = project_dir / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in lines))
    gold = project_dir / "gold.jsonl"
    gold.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in gold_rows))
    labels = sorted(
        {label for _, label in rows + gold_rows} | {"a_different_intent", "card_declined", "pay_bill"}
    )
    config = project_dir / "sftline.yaml"
    text = config.read_text().replace("task: chat", "task: classify").replace("kind: text", "kind: labels")
    text = text.replace("    # labels:", f"    labels: {json.dumps(labels)}\n    # labels:", 1)
    config.write_text(text)
    return data, gold, expected


def test_check_catches_every_planted_defect_and_passes_clean_rows(
    project_dir: Path,
    planted: tuple[Path, Path, dict[str, str]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    data, gold, expected = planted
    run_json(capsys, "data", "import", str(data), "--name", "support")
    run_json(capsys, "data", "import", str(gold), "--name", "support-gold")
    html = tmp_path / "report.html"
    summary = run_json(capsys, "data", "check", "support", "--against", "support-gold", "--html", str(html))

    rejects = run_json(capsys, "data", "rejects", "support@v1")["rejects"]
    caught = {r["example_id"]: r["reason"] for r in rejects}
    for example_id, reason in expected.items():
        assert caught.get(example_id) == reason, (example_id, caught.get(example_id))
    # The only clean rows hit are the planted rows' partners (the conflict and near-duplicate originals).
    clean_hits = {k: v for k, v in caught.items() if k.startswith("r")}
    assert clean_hits == {"r1": "conflicting_labels"}
    assert summary["status"] == "passed"
    assert summary["checked"] == summary["accepted"] + summary["quarantined"] == 127
    assert summary["created_version"] and summary["version"]["ref"] == "support@v2"
    assert summary["version"]["examples"] == summary["accepted"]

    versions = run_json(capsys, "data", "versions", "support")
    assert versions[1]["parent"] == "v1" and versions[1]["created_by"] == "check"
    assert versions[1]["provenance"]["checked"] == "support@v1"
    assert versions[0]["examples"] == 127  # nothing deleted from the source version

    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "contamination" in page.lower()
    near = run_json(capsys, "data", "rejects", "support@v1", "--reason", "near_duplicate")["rejects"]
    assert [r["example_id"] for r in near] == ["bad2"] and near[0]["related"] == ["r2"]

    again = run_json(capsys, "data", "check", "support", "--against", "support-gold")
    assert again["quarantined"] == 0 and not again["created_version"]


def test_balance_block_fails_the_check_and_creates_no_version(
    project_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = project_dir / "skewed.jsonl"
    rows = [{"text": f"what is my balance number {i}", "label": "balance"} for i in range(60)]
    rows.append({"text": "i lost my card yesterday", "label": "lost_card"})
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gates = tmp_path / "gates.yaml"
    gates.write_text("balance: {action: block, min_share: 0.05}\nnear_duplicates: {action: off}\n")
    run_json(capsys, "data", "import", str(data), "--name", "skewed")
    summary = run_json(capsys, "data", "check", "skewed", "--config", str(gates), code=1)["out"]
    assert summary["status"] == "failed" and summary["version"] is None
    assert any("label=lost_card" in f for f in summary["failures"])
    assert len(run_json(capsys, "data", "versions", "skewed")) == 1
