"""Benchmark: the gates on OpenAI-format chats whose records all share one system message.

    python bench/bench_gates_chat.py              # CLINC150 train (15,100) checked against test (5,500)
    python bench/bench_gates_chat.py --system ""  # the same chats with no system message
    python bench/bench_gates_chat.py --json       # one JSON object
    PYTHONPATH=/tmp/before/src python bench/bench_gates_chat.py   # another checkout's sftline

CLINC150 rendered as OpenAI fine-tuning records (a system message, the query as the user turn,
`{"intent": LABEL}` as the assistant turn): train + oos_train is imported and checked with
`sftline data check --against` the test + oos_test set, in a fresh project made by `sftline
init` (the defaults a user gets: a chat contract with free-text output, every gate at its
default). Prints, for each gate, the share of the checked rows it flagged (blocked or warned),
and the share quarantined, the time of the `data check` command and the peak RSS of the largest
sftline process (init, the imports, the check).

The CLI runs in a subprocess with this process's environment, so PYTHONPATH chooses the sftline
that is measured (the "before" column of BENCHMARKS.md is a worktree of the previous commit).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

CLINC = Path(__file__).resolve().parents[1] / "examples" / "clinc150" / "data_full.json"
SYSTEM = (
    "You are the support assistant of a bank and a travel agency. "
    "Reply with the customer's intent as a JSON object."
)  # 21 words: longer than a 13-word n-gram, as most real system messages are


def chat_record(query: str, label: str, system: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [
        {"role": "user", "content": query},
        {"role": "assistant", "content": json.dumps({"intent": label})},
    ]
    return {"messages": messages}


def write_jsonl(path: Path, rows: list[list[str]], system: str) -> None:
    path.write_text("".join(json.dumps(chat_record(q, label, system)) + "\n" for q, label in rows))


def sftline(project: Path, *args: str) -> Any:
    """`sftline ARGS --json` in a subprocess; its parsed stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "sftline", *args, "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "SFTLINE_PROGRESS_SECONDS": "3600"},
    )
    output = json.loads(done.stdout) if done.stdout.strip() else {"error": done.stderr[-2000:]}
    if "error" in output:
        raise RuntimeError(f"sftline {' '.join(args)} failed: {output['error']}")
    return output


def flagged_by_gate(rows: list[dict[str, Any]], report: dict[str, Any]) -> dict[str, set[str]]:
    """gate -> ids of the rows it flagged, from `data rejects --json` (and, for sftline before
    issue 14, the report's warnings: its rejects listed blocked rows only, one gate each)."""
    by_gate: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        for reason in row.get("reasons") or [{"gate": row["gate"]}]:
            by_gate[reason["gate"]].add(row["example_id"])
    for warning in report.get("warnings", []):
        by_gate[warning["gate"]].add(warning["example_id"])
    return by_gate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=0, help="train rows to check (default: all)")
    parser.add_argument("--system", default=SYSTEM, help="the system message of every record ('': none)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    data = json.loads(CLINC.read_text())
    train = data["train"] + data["oos_train"]
    train = train[: args.rows] if args.rows else train
    test = data["test"] + data["oos_test"]
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder) / "proj"
        project.mkdir()
        sftline(project, "init")
        write_jsonl(project / "train.jsonl", train, args.system)
        write_jsonl(project / "test.jsonl", test, args.system)
        sftline(project, "data", "import", "train.jsonl", "--name", "clinc-chat")
        sftline(project, "data", "import", "test.jsonl", "--name", "clinc-chat-test")
        start = time.perf_counter()
        summary = sftline(project, "data", "check", "clinc-chat@v1", "--against", "clinc-chat-test@v1")
        seconds = time.perf_counter() - start
        # the largest of the finished sftline processes; KiB on Linux
        peak_rss_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        listed = sftline(project, "data", "rejects", "clinc-chat@v1")
        report = json.loads((project / ".sftline" / "objects" / summary["report_object"]).read_text())
    rows = listed.get("rows", listed.get("rejects", []))
    checked = summary["checked"]
    by_gate = flagged_by_gate(rows, report)
    result = {
        "sftline": subprocess.run(
            [sys.executable, "-c", "import sftline; print(sftline.__file__)"], capture_output=True, text=True
        ).stdout.strip(),
        "system_words": len(args.system.split()),
        "checked": checked,
        "against": len(test),
        "quarantined_share": round(summary["quarantined"] / checked, 4),
        "flagged_share_by_gate": {
            gate: round(len(by_gate.get(gate, ())) / checked, 4) for gate in summary["counts"]
        },
        "counts": summary["counts"],
        "left_out": report.get("left_out", []),
        "check_seconds": round(seconds, 1),
        "peak_rss_gib": round(peak_rss_gib, 2),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"sftline: {result['sftline']}")
    print(f"checked {checked:,} rows against {len(test):,}: quarantined {result['quarantined_share']:.1%}")
    for gate, share in result["flagged_share_by_gate"].items():
        print(f"  {gate:<17} {share:7.2%} of the rows flagged")
    for entry in result["left_out"]:
        print(f"  left out: {entry['why']}")
    print(f"check: {seconds:.1f} s, peak RSS {peak_rss_gib:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
