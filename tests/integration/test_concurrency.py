"""Processes importing, appending and splitting the same names at once, on SQLite and PostgreSQL.

Four processes start together; each appends its own files to `app` (a name that does not exist
yet) and splits `app` after every append, so appends race appends (and the creation of `app`),
splits race splits on `app-train`/`app-gold`, and splits read a version an append is replacing.
Then the record must be consistent: every dataset's versions numbered 1..n, each version's parent
the one before it and its changelog a diff from that parent, and every appended example in the
newest version of `app`, once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.stations.versions import load_examples

PROCESSES = 4
ROUNDS = 3  # appends (each followed by a split) per process
EXAMPLES_PER_FILE = 5
REPO = Path(__file__).resolve().parents[2]
# The one line a loser may end with, when it cannot retry onto the new head.
CHANGED_MEANWHILE = re.compile(r"^app-[a-z]+ changed meanwhile \(now v\d+\); run again$")
SAME_SPLIT_RUNNING = re.compile(r"^split app@v\d+ is already running ")


def write_appendix(path: Path, worker: int, round_: int) -> list[str]:
    """A file of examples no other file has; returns their ids."""
    ids = [f"w{worker}-r{round_}-{k}" for k in range(EXAMPLES_PER_FILE)]
    lines = [
        json.dumps(
            {
                "id": example_id,
                "messages": [
                    {"role": "user", "content": f"question {example_id}"},
                    {"role": "assistant", "content": f"answer {example_id}"},
                ],
            }
        )
        for example_id in ids
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ids


def run_together(project: Path, commands: list[list[list[str]]]) -> list[list[dict]]:
    """Start one process per command list, release them at once, return each one's results."""
    go = project / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    processes = []
    for index, worker_commands in enumerate(commands):
        results = project / f"results-{index}.jsonl"
        stderr = (project / f"stderr-{index}.txt").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.concurrent_worker", str(go), str(results)]
            + [json.dumps(worker_commands)],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        processes.append((process, results, stderr))
    go.touch()
    outcomes = []
    for index, (process, results, stderr) in enumerate(processes):
        assert process.wait(timeout=600) == 0, (project / f"stderr-{index}.txt").read_text()
        stderr.close()
        errors = (project / f"stderr-{index}.txt").read_text()
        assert "Traceback" not in errors and "IntegrityError" not in errors, errors
        outcomes.append([json.loads(line) for line in results.read_text().splitlines()])
    return outcomes


def assert_record_consistent(project: Path, appended: set[str]) -> None:
    with Workspace.find(project) as workspace, workspace.record.session() as session:
        names = [dataset.name for dataset in queries.datasets(session)]
        assert names == sorted(set(names))
        assert {"app", "app-train", "app-gold"} <= set(names)
        for name in names:
            versions = queries.list_versions(session, name)
            assert [v.number for v in versions] == list(range(1, len(versions) + 1)), name
            assert versions[0].parent_id is None
            for parent, version in pairwise(versions):
                assert version.parent_id == parent.id, version.ref
                assert version.changelog["parent"] == f"v{parent.number}", version.ref
                before = {e.id: e.content_hash for e in load_examples(workspace, parent)}
                after = {e.id: e.content_hash for e in load_examples(workspace, version)}
                new, gone = after.keys() - before.keys(), before.keys() - after.keys()
                edited = sum(before[i] != after[i] for i in after.keys() & before.keys())
                # the diff pairs a removal and an addition at the same place into one change
                paired = len(new) - version.changelog["added"]
                assert paired == len(gone) - version.changelog["removed"] >= 0, version.ref
                assert version.changelog["changed"] == edited + paired, version.ref
        apps = queries.list_versions(session, "app")
        newest = [e.id for e in load_examples(workspace, apps[-1])]
        assert sorted(newest) == sorted(appended)
        # appends only: one version per file, each adding its examples to the one before
        assert [v.n_examples for v in apps] == [EXAMPLES_PER_FILE * v.number for v in apps]
        assert len(apps) == PROCESSES * ROUNDS


def test_concurrent_appends_and_splits_lose_nothing_and_keep_one_history(project_dir: Path) -> None:
    appended: set[str] = set()
    commands = []
    for worker in range(PROCESSES):
        worker_commands = []
        for round_ in range(ROUNDS):
            path = project_dir / f"w{worker}-r{round_}.jsonl"
            appended.update(write_appendix(path, worker, round_))
            worker_commands.append(["data", "import", path.name, "--name", "app", "--append"])
            worker_commands.append(["data", "split", "app"])
        commands.append(worker_commands)

    outcomes = run_together(project_dir, commands)

    for worker_results in outcomes:
        assert len(worker_results) == 2 * ROUNDS
        for result in worker_results:
            output = result["output"]
            if result["args"][1] == "import":  # an append never gives up: it retries onto the new head
                assert result["code"] == 0, output
                assert output["created_version"] and output["accepted"] == EXAMPLES_PER_FILE, output
            elif result["code"] != 0:  # a split may lose to another split, and says so in one line
                error = output["error"]
                assert CHANGED_MEANWHILE.match(error) or SAME_SPLIT_RUNNING.match(error), error
    assert_record_consistent(project_dir, appended)
