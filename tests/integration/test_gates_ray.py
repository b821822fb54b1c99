"""`--engine ray` runs the same gates on Ray Data (a local Ray instance) with the same result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray")

from sftline.cli.main import main  # noqa: E402
from sftline.config import GatesConfig  # noqa: E402
from sftline.contract.spec import Contract, OutputFormat  # noqa: E402
from sftline.data.common_text import find_common_text  # noqa: E402
from sftline.data.example import Example, Provenance  # noqa: E402
from sftline.gates.engine import LocalEngine, RayEngine  # noqa: E402
from sftline.gates.lengths import WhitespaceCounter  # noqa: E402
from sftline.gates.runner import build_gates, run_gates  # noqa: E402

CLINC = Path(__file__).resolve().parents[2] / "examples" / "clinc150"


@pytest.fixture(scope="module")
def ray_engine():  # type: ignore[no-untyped-def]
    engine = RayEngine(num_cpus=2, batch_size=256)
    yield engine
    engine.shutdown()


def sample() -> list[Example]:
    rows = json.loads((CLINC / "data_full.json").read_text())["train"][:900:3]
    rows += [
        rows[0],
        [rows[1][0], "other_label"],
        ["mail me at a.b@example.org", "pay_bill"],
        ["play some quiet jazz in the kitchen", "not_a_label"],
        [rows[2][0] + "?", rows[2][1]],
    ]
    return [
        Example(id=f"r{i}", provenance=Provenance("d.json", "0" * 64, "pairs", i + 1), text=t, label=label)
        for i, (t, label) in enumerate(rows)
    ]


def test_ray_engine_gives_the_same_result_as_local(ray_engine: RayEngine) -> None:
    examples = sample()
    labels = sorted({e.label for e in examples if e.label not in ("other_label", "not_a_label")})
    contract = Contract(task="classify", output=OutputFormat(kind="labels", labels=labels))
    gold = {
        "gold@v1": [
            Example(
                id="g", provenance=Provenance("g", "0" * 64, "pairs", 1), text=examples[5].text, label="x"
            )
        ]
    }
    common = find_common_text({"d@v1": examples, **gold}, contract.system_prompt)
    gates = build_gates(
        GatesConfig(), contract, against=gold, common=common, token_counter=WhitespaceCounter()
    )
    local = run_gates(examples, gates, engine=LocalEngine())
    distributed = run_gates(examples, gates, engine=ray_engine)
    assert [(f.example.id, f.reasons) for f in distributed.flagged] == [
        (f.example.id, f.reasons) for f in local.flagged
    ]
    assert [e.id for e in distributed.accepted] == [e.id for e in local.accepted]
    assert {r.reason for f in local.rejected for r in f.reasons} >= {
        "exact_duplicate",
        "conflicting_labels",
        "pii_email",
        "label_not_in_set",
        "contamination_exact",
        "near_duplicate",
    }
    assert distributed.reports["lengths"] == local.reports["lengths"]


@pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)
def test_cli_check_with_engine_ray(
    project_dir: Path, ray_engine: RayEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    data = project_dir / "d.jsonl"
    data.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in sample()))
    assert main(["data", "import", str(data), "--name", "d", "--json"]) == 0
    capsys.readouterr()
    assert main(["data", "check", "d", "--engine", "ray", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checked"] == summary["accepted"] + summary["quarantined"] and summary["quarantined"] >= 3
