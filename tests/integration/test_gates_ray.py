"""`--engine ray` runs the same gates on Ray Data (a local Ray instance) with the same result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

from sftline.cli.main import main  # noqa: E402
from sftline.config import GatesConfig  # noqa: E402
from sftline.contract.spec import Contract, OutputFormat  # noqa: E402
from sftline.data.common_text import CommonText, find_common_text  # noqa: E402
from sftline.data.example import Example, Provenance  # noqa: E402
from sftline.data.parquet_io import write_examples  # noqa: E402
from sftline.gates.contamination import ContaminationGate  # noqa: E402
from sftline.gates.engine import ExampleTexts, LocalEngine, RayEngine  # noqa: E402
from sftline.gates.lengths import WhitespaceCounter  # noqa: E402
from sftline.gates.near_duplicates import NearDuplicateGate  # noqa: E402
from sftline.gates.runner import build_gates, run_gates  # noqa: E402
from sftline.text.groups import near_duplicate_groups  # noqa: E402
from sftline.text.minhash import _BUCKET_ALL_PAIRS, ShingleSpec  # noqa: E402

CLINC = Path(__file__).resolve().parents[2] / "examples" / "clinc150"
# Under pytest-xdist every test of this module runs on one worker: one local Ray instance at a time.
pytestmark = pytest.mark.xdist_group("ray")


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
    for gate in ("lengths", "near_duplicates", "contamination"):
        assert distributed.reports[gate] == local.reports[gate]


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


# Exact Jaccard (char 5-grams): A~B 0.87, B~C 0.94, C~D 0.87, A~C 0.82, B~D 0.82, A~D 0.71.
CHAIN = [
    "i was charged twice for my subscription this month, please refund me",
    "i was charged twice for my subscripton this month, please refund me",
    "i was charged twice for my subscripton this month, please refund me now",
    "i was charged twice for my subscripton this month please refund me now",
]
LONG = (
    "the customer reports that the mobile banking application crashes every time they try to "
    "upload a photo of a cheque for deposit after the latest update and support has asked them "
    "to reinstall the application and clear the cache before trying again tomorrow morning"
)


def near_examples() -> list[Example]:
    """~900 CLINC queries with a chain, a bucket of 100 identical texts (larger than the
    all-pairs limit: a star), one-character variants, and a long text."""
    train = [text for text, _ in json.loads((CLINC / "data_full.json").read_text())["train"][::20]][:700]
    texts = train[:300] + CHAIN + ["what is my balance"] * 100 + train[300:]
    texts += [t.replace("e", "a", 1) for t in train[::30]] + ["i was told that " + LONG[4:200]]
    return [
        Example(id=f"n{i}", provenance=Provenance("d.json", "0" * 64, "pairs", i + 1), text=t, label="x")
        for i, t in enumerate(texts)
    ]


def test_ray_similar_pairs_are_the_local_pairs_from_texts_and_from_a_parquet_file(
    ray_engine: RayEngine, tmp_path: Path
) -> None:
    examples = near_examples()
    texts = [e.text or "" for e in examples]
    path = tmp_path / "version.parquet"
    write_examples(examples, path)
    options = {"threshold": 0.8, "num_perm": 128, "seed": 1, "shingle": ShingleSpec()}
    local = LocalEngine().similar_pairs(texts, **options)
    assert _BUCKET_ALL_PAIRS < 100 and list(range(304, 404)) in local.clusters()  # the star
    assert [300, 301, 302, 303] in local.clusters()  # the chain
    expected_groups = near_duplicate_groups(local, texts)
    for source in (texts, ExampleTexts(examples, CommonText().compared_input, path)):
        found = ray_engine.similar_pairs(source, **options)
        for mine, theirs in (
            (found.i, local.i),
            (found.j, local.j),
            (found.estimate, local.estimate),
            (found.signatures, local.signatures),
        ):
            assert mine.dtype == theirs.dtype
            np.testing.assert_array_equal(mine, theirs)
        assert near_duplicate_groups(found, texts) == expected_groups


def test_a_parquet_file_without_every_example_is_refused(ray_engine: RayEngine, tmp_path: Path) -> None:
    examples = near_examples()[:200]
    write_examples(examples[:-1], tmp_path / "short.parquet")
    texts = ExampleTexts(examples, CommonText().compared_input, tmp_path / "short.parquet")
    with pytest.raises(ValueError, match="199 of 200"):
        ray_engine.similar_pairs(texts, threshold=0.8, num_perm=128, seed=1, shingle=ShingleSpec())


def test_near_duplicate_and_contamination_gates_on_ray_give_the_local_outcome(
    ray_engine: RayEngine, tmp_path: Path
) -> None:
    examples = near_examples()
    path = tmp_path / "version.parquet"
    write_examples(examples, path)
    near = NearDuplicateGate()
    local = near.check(examples, blocked={"n300"})
    distributed = near.check(examples, blocked={"n300"}, engine=ray_engine, source=path)
    assert distributed.flags == local.flags and distributed.report == local.report
    # the chain: n300 is blocked elsewhere, so n301 represents and all three others are within 0.8
    assert ("n301", ["n301", "n300", "n302", "n303"]) in [
        (c["representative"], c["members"]) for c in local.report["clusters"]
    ]

    provenance = Provenance("g.json", "0" * 64, "pairs", 1)
    gold = [Example(id=f"g{k}", provenance=provenance, text=examples[k].text, label="x") for k in (5, 6)]
    gold += [Example(id="g2", provenance=provenance, text=(examples[7].text or "") + "!", label="x")]
    gold += [Example(id="g3", provenance=provenance, text=LONG, label="x")]
    contamination = ContaminationGate({"gold@v1": gold})
    local = contamination.check(examples)
    distributed = contamination.decide(examples, ray_engine.map(contamination.features, examples))
    assert distributed.flags == local.flags and distributed.report == local.report
    assert {f.reason for f in local.flags} == {
        "contamination_exact",
        "contamination_near",
        "contamination_ngram",
    }
