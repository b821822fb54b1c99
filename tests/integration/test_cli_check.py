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

    rows = run_json(capsys, "data", "rejects", "support@v1")["rows"]
    caught = {row["example_id"]: [r["reason"] for r in row["reasons"]] for row in rows}
    for example_id, reason in expected.items():
        assert reason in caught.get(example_id, []), (example_id, caught.get(example_id))
    # Every gate saw every example: the duplicates of a kept row are near duplicates of it too.
    assert caught["bad0"] == ["exact_duplicate", "near_duplicate"]
    assert caught["bad1"] == ["conflicting_labels", "near_duplicate"]
    # The only clean rows hit are the planted rows' partners (the conflict and near-duplicate originals).
    clean_hits = {k: v for k, v in caught.items() if k.startswith("r")}
    assert clean_hits == {"r1": ["conflicting_labels"]}
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
    near = run_json(capsys, "data", "rejects", "support@v1", "--reason", "near_duplicate")["rows"]
    assert [row["example_id"] for row in near] == ["bad0", "bad1", "bad2"]
    assert [row["reasons"][-1]["related"] for row in near] == [["r0"], ["r1"], ["r2"]]

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


SYSTEM = (
    "You are the support assistant of a bank and a travel agency. "
    "Reply with the customer's intent as a JSON object."
)  # 21 words: through it every query shared 13-word runs with every eval row


def chat_line(query: str, answer: str, system: str | None = SYSTEM, **record: str) -> str:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
    return json.dumps({**record, "messages": messages}) + "\n"


def intent(label: str, **extra: str) -> str:
    return json.dumps({"intent": label, **extra})


def test_openai_chats_sharing_a_system_message_compare_their_queries(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every record carries the same system message, and so does the eval set: clean rows stay
    clean, planted defects get every reason, and the rows are listed with file and line."""
    train, test = clinc_rows("train", 150), clinc_rows("test", 60)
    planted = [
        ("pii_contaminated_email", test[0][0], intent(test[0][1], contact="jane.doe@example.com")),
        ("pii_contaminated_ssn", test[1][0], intent(test[1][1], ssn="123-45-6789")),
        ("pii_not_json", "where is my refund", "Email me at jane.doe@example.com about it"),
        ("no_intent_key", "what is my balance today", json.dumps({"label": "balance"})),
    ]
    lines = [chat_line(q, intent(label), id=f"clean{i}") for i, (q, label) in enumerate(train)]
    lines += [chat_line(query, answer, id=name) for name, query, answer in planted]
    data = project_dir / "chats.jsonl"
    data.write_text("".join(lines))
    (project_dir / "eval.jsonl").write_text("".join(chat_line(q, intent(label)) for q, label in test))
    run_json(capsys, "data", "import", str(data), "--name", "chats")
    run_json(capsys, "data", "import", str(project_dir / "eval.jsonl"), "--name", "chats-eval")

    gates = project_dir / "gates.yaml"
    gates.write_text("format: {action: warn}\n")
    summary = run_json(capsys, "data", "check", "chats", "--against", "chats-eval", "--config", str(gates))
    shared = "system message shared by 100% of {}'s records (1 text, 21 words) left out of the compared text"
    assert [entry["why"] for entry in summary["left_out"]] == [
        shared.format("chats@v1"),
        shared.format("chats-eval@v1"),
    ]
    rows = run_json(capsys, "data", "rejects", "chats@v1")["rows"]
    by_id = {row["example_id"]: row for row in rows}
    assert sorted(by_id) == sorted(name for name, _, _ in planted)  # no clean row is flagged
    reasons = {i: [(r["reason"], r["action"]) for r in row["reasons"]] for i, row in by_id.items()}
    assert reasons == {
        "pii_contaminated_email": [("contamination_exact", "block"), ("pii_email", "block")],
        "pii_contaminated_ssn": [("contamination_exact", "block"), ("pii_ssn", "block")],
        "pii_not_json": [("pii_email", "block"), ("breaks_inferred_format", "warn")],
        "no_intent_key": [("breaks_inferred_format", "warn")],
    }
    assert summary["quarantined"] == 3 and summary["warned"] == 1
    assert summary["checked"] == summary["accepted"] + summary["quarantined"] == len(lines)
    assert summary["counts"]["pii"] == {
        "pii_email": {"blocked": 2, "warned": 0, "redacted": 0},
        "pii_ssn": {"blocked": 1, "warned": 0, "redacted": 0},
    }
    assert summary["counts"]["contamination"] == {
        "contamination_exact": {"blocked": 2, "warned": 0, "redacted": 0}
    }
    assert summary["counts"]["format"] == {
        "breaks_inferred_format": {"blocked": 0, "warned": 2, "redacted": 0}
    }

    row = by_id["pii_contaminated_email"]
    assert {k: row[k] for k in ("file", "line", "pointer", "field", "location", "action")} == {
        "file": "chats.jsonl",
        "line": 151,
        "pointer": None,
        "field": "messages[1]",
        "location": "chats.jsonl, line 151",
        "action": "block",
    }
    assert row["suggested_label"] is None and row["label_confidence"] is None
    first = row["reasons"][0]
    assert (first["gate"], first["field"]) == ("contamination", "messages[1]")
    assert first["detail"].startswith("exact match with chats-eval@v1 example ")
    assert len(first["related"]) == 1 and first["related"][0].startswith("chats-eval@v1:")
    assert by_id["no_intent_key"]["action"] == "warn"
    assert by_id["no_intent_key"]["reasons"][0]["detail"] == (
        "messages[2].content: no key 'intent', which 95%+ of the JSON answers have"
    )
    assert by_id["pii_not_json"]["reasons"][1]["detail"] == (
        "messages[2].content: not a JSON object, as 99.4% of the answers are"
    )
    report = json.loads((project_dir / ".sftline" / "objects" / summary["report_object"]).read_text())
    assert [r["example_id"] for r in report["flagged"]] == [r["example_id"] for r in rows]
    assert report["flagged"][0].keys() == {k for k in rows[0] if k != "example"}
    assert report["gates"]["format"]["inferred"]["kind"] == "json_object"

    pii = run_json(capsys, "data", "rejects", "chats@v1", "--reason", "pii_email")["rows"]
    assert [r["example_id"] for r in pii] == ["pii_contaminated_email", "pii_not_json"]
    warned = run_json(capsys, "data", "rejects", "chats@v1", "--action", "warn")["rows"]
    assert [r["example_id"] for r in warned] == ["no_intent_key"]
    blocked = run_json(
        capsys, "data", "rejects", "chats@v1", "--action", "block", "--reason", "breaks_inferred_format"
    )
    assert [r["example_id"] for r in blocked["rows"]] == ["pii_not_json"]

    # Without the system message the same rows are flagged: it is left out, whatever it says.
    bare = project_dir / "bare.jsonl"
    bare.write_text("".join(chat_line(q, intent(label), system=None) for q, label in train))
    (project_dir / "bare-eval.jsonl").write_text(
        "".join(chat_line(q, intent(label), None) for q, label in test)
    )
    run_json(capsys, "data", "import", str(bare), "--name", "bare")
    run_json(capsys, "data", "import", str(project_dir / "bare-eval.jsonl"), "--name", "bare-eval")
    run_json(capsys, "data", "check", "bare", "--against", "bare-eval")
    assert run_json(capsys, "data", "rejects", "bare@v1")["rows"] == []
