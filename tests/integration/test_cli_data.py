"""`sftline init` and `sftline data ...` end to end, in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftline.cli.main import main
from tests.support.cli import run_json

CLINC = Path(__file__).resolve().parents[2] / "examples" / "clinc150"


def write_chats(path: Path, answers: list[str]) -> None:
    lines = [
        json.dumps(
            {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": a}]}
        )
        for i, a in enumerate(answers)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_reimport_is_the_same_version_and_a_one_line_change_is_a_new_one(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = project_dir / "support.jsonl"
    write_chats(data, ["alpha", "beta", "gamma", "delta"])
    first = run_json(capsys, "data", "import", str(data), "--name", "support")
    assert first["read"] == first["accepted"] == 4 and first["created_version"]
    again = run_json(capsys, "data", "import", str(data), "--name", "support")
    assert not again["created_version"]
    assert again["version"]["content_hash"] == first["version"]["content_hash"]
    assert again["version"]["ref"] == "support@v1"

    write_chats(data, ["alpha", "beta", "GAMMA, edited", "delta"])
    second = run_json(capsys, "data", "import", str(data), "--name", "support")
    assert second["created_version"] and second["version"]["ref"] == "support@v2"
    assert second["version"]["content_hash"] != first["version"]["content_hash"]
    assert second["diff"] == {"added": 0, "removed": 0, "changed": 1}

    diff = run_json(capsys, "data", "diff", "support@v1", "support@v2")
    assert (diff["added"], diff["removed"], diff["changed"]) == (0, 0, 1)
    change = diff["changed_examples"][0]
    assert change["fields"] == ["messages"]
    assert change["after"]["provenance"] == "support.jsonl, line 3"
    after = change["after"]
    assert (after["file"], after["line"], after["pointer"]) == ("support.jsonl", 3, None)
    assert change["before"]["messages"][1]["content"] == "gamma"
    assert change["after"]["messages"][1]["content"] == "GAMMA, edited"

    versions = run_json(capsys, "data", "versions", "support")
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["parent"] == "v1"
    assert versions[1]["changelog"]["summary"] == "+0 added, -0 removed, ~1 changed"


def test_import_summary_counts_add_up_and_bad_lines_are_listed(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = project_dir / "mixed.jsonl"
    data.write_bytes(
        b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
        b"{not json\n"
        b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}\n'
    )
    summary = run_json(capsys, "data", "import", str(data), "--name", "mixed")
    assert summary["read"] == summary["accepted"] + summary["quarantined"] == 3
    assert summary["reasons"] == {"invalid_json": 1, "empty_assistant": 1}
    assert [(q["line"], q["reason"]) for q in summary["quarantine"]] == [
        (2, "invalid_json"),
        (3, "empty_assistant"),
    ]

    capsys.readouterr()
    assert main(["data", "import", str(data), "--name", "mixed2"]) == 0
    human = capsys.readouterr().out
    assert "read 3 = accepted 1 + quarantined 2" in human
    assert "mixed.jsonl:line 2: invalid_json" in human


def test_an_import_that_accepts_nothing_leaves_no_dataset_and_a_blank_id_is_refused(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    turn = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    data = project_dir / "blank_ids.jsonl"
    data.write_text(
        json.dumps({"id": "", "messages": turn}) + "\n" + json.dumps({"id": " ", "messages": turn}) + "\n"
    )
    failed = run_json(capsys, "data", "import", str(data), "--name", "blank", code=1)
    assert failed["err"].strip().splitlines()[-1] == (
        f"error: {data}: no record was accepted (2 quarantined); nothing versioned"
    )
    assert [(q["line"], q["reason"], q["field"]) for q in failed["out"]["quarantine"]] == [
        (1, "empty_id", "id"),
        (2, "empty_id", "id"),
    ]
    assert failed["out"]["import_id"] is None and failed["out"]["quarantine_object"] is not None
    assert run_json(capsys, "data", "list") == []  # no empty dataset left behind

    write_chats(project_dir / "good.jsonl", ["fine"])
    run_json(capsys, "data", "import", "good.jsonl", "--name", "blank")
    again = run_json(capsys, "data", "import", str(data), "--name", "blank", "--append", code=1)
    assert again["out"]["import_id"] is not None  # recorded against the dataset that exists
    assert [d["name"] for d in run_json(capsys, "data", "list")] == ["blank"]
    assert [v["version"] for v in run_json(capsys, "data", "versions", "blank")] == [1]


def test_a_name_with_a_trailing_newline_is_refused(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_chats(project_dir / "good.jsonl", ["fine"])
    assert main(["data", "import", "good.jsonl", "--name", "app\n"]) == 1
    assert "invalid dataset name 'app\\n'" in capsys.readouterr().err
    run_json(capsys, "data", "import", "good.jsonl", "--name", "app")
    assert main(["data", "show", "app\n"]) == 1
    assert "invalid dataset name 'app\\n'" in capsys.readouterr().err


def test_export_round_trips_to_the_same_content(
    project_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = project_dir / "support.jsonl"
    write_chats(data, ["one", "two", "three"])
    first = run_json(capsys, "data", "import", str(data), "--name", "support", "--tag", "channel=web")
    for suffix in (".jsonl", ".parquet"):
        out = tmp_path / f"export{suffix}"
        exported = run_json(capsys, "data", "export", "support@v1", "--out", str(out))
        assert exported["examples"] == 3
        back = run_json(capsys, "data", "import", str(out), "--name", f"back{suffix[1:]}")
        assert back["version"]["content_hash"] == first["version"]["content_hash"]
        assert back["unkept_keys"] == {}  # an export carries nothing an example does not keep


def test_import_detects_hugging_face_folders_gzip_and_sharegpt(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    features = {
        "text": {"dtype": "string", "_type": "Value"},
        "label": {"names": ["neg", "pos"], "_type": "ClassLabel"},
    }
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    shards = {"train-00000-of-00002": [("great", 1), ("awful", 0)], "train-00001-of-00002": [("meh", 7)]}
    for name, rows in shards.items():
        (project_dir / "reviews" / "data").mkdir(parents=True, exist_ok=True)
        data = pa.table({"text": [t for t, _ in rows], "label": [label for _, label in rows]})
        pq.write_table(
            data.replace_schema_metadata(metadata), project_dir / "reviews" / "data" / f"{name}.parquet"
        )

    summary = run_json(capsys, "data", "import", str(project_dir / "reviews"), "--name", "reviews")
    assert (summary["container"], summary["format"]) == ("hf-parquet", "classification")
    assert summary["read"] == summary["accepted"] + summary["quarantined"] == 3
    assert [(q["source"], q["line"], q["pointer"], q["reason"]) for q in summary["quarantine"]] == [
        ("reviews/data/train-00001-of-00002.parquet", None, "train[0]", "unknown_class_label")
    ]
    assert sorted(summary["files"]) == [
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
    ]
    again = run_json(capsys, "data", "import", str(project_dir / "reviews"), "--name", "reviews")
    assert again["station"] == "cached"
    shown = run_json(capsys, "data", "show", "reviews", "--head", "2")
    assert shown["stats"]["labels"] == {"pos": 1, "neg": 1}
    assert shown["head"][0]["provenance"] == "reviews/data/train-00000-of-00002.parquet, train[0]"

    chats = project_dir / "chats.jsonl.gz"
    record = {
        "conversations": [{"from": "human", "value": "hi", "lang": "en"}, {"from": "gpt", "value": "hello"}]
    }
    chats.write_bytes(gzip.compress((json.dumps(record) + "\n").encode()))
    capsys.readouterr()
    assert main(["data", "import", str(chats), "--name", "chats"]) == 0
    human = capsys.readouterr().out
    assert "detected format: sharegpt" in human
    assert "keys not kept (records that carry them): conversations[].lang (1)" in human

    corpus = project_dir / "corpus.jsonl"
    corpus.write_text(json.dumps({"body": "A whole document to train on."}) + "\n")
    text = run_json(
        capsys, "data", "import", str(corpus), "--name", "corpus", "--format", "text", "--text-field", "body"
    )
    assert (text["format"], text["accepted"]) == ("text", 1)


def test_clinc150_import_with_domains(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = run_json(
        capsys,
        "data",
        "import",
        str(CLINC / "data_full.json"),
        "--name",
        "clinc150",
        "--split",
        "train",
        "--split",
        "oos_train",
        "--label-groups",
        f"domain={CLINC / 'domains.json'}",
    )
    assert summary["format"] == "pairs"
    assert summary["read"] == summary["accepted"] == 15100
    assert summary["skipped_splits"] == {"oos_val": 100, "val": 3000, "oos_test": 1000, "test": 4500}
    shown = run_json(capsys, "data", "show", "clinc150", "--head", "1")
    assert shown["stats"]["tags"]["domain"]["banking"] == 1500
    assert len(shown["stats"]["tags"]["domain"]) == 10
    assert shown["stats"]["labels"]["oos"] == 100
    assert len(shown["stats"]["labels"]) == 151
    assert shown["head"][0]["provenance"].startswith("data_full.json, line ")


def test_list_and_errors(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_json(capsys, "data", "list") == []
    capsys.readouterr()
    assert main(["data", "show", "ghost"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "error: no dataset named 'ghost'; import one with `sftline data import`"
    ]
    assert main(["--debug", "data", "show", "ghost"]) == 1
    assert "Traceback" in capsys.readouterr().err
    assert main(["data", "import", str(project_dir), "--name", "x"]) == 1
    assert "is a directory" in capsys.readouterr().err


def test_init_writes_the_project_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = run_json(
        capsys,
        "init",
        str(tmp_path / "p"),
        "--task",
        "classify",
        "--labels",
        "a,b,oos",
        "--abstention",
        "oos",
    )
    root = Path(info["root"])
    assert sorted(p.name for p in root.iterdir()) == [".sftline", "sftline.yaml"]
    assert sorted(p.name for p in (root / ".sftline").iterdir()) == ["cache", "objects", "record.db"]
    capsys.readouterr()
    assert main(["init", str(tmp_path / "p")]) == 1
    assert "already exists" in capsys.readouterr().err
