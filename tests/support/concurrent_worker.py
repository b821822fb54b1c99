"""One process of the concurrency test: wait for the start signal, then run `sftline` commands.

    python -m tests.support.concurrent_worker GO_FILE RESULTS_FILE COMMANDS_JSON

Every process imports sftline first and then waits for GO_FILE, so the commands of all the
processes start together instead of one process start-up apart. Each command runs in-process with
`--json`; RESULTS_FILE gets one JSON line per command: its arguments, exit code and output.
"""

from __future__ import annotations

import io
import json
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

from sftline.cli.main import main

START_TIMEOUT_S = 120


def run(go: Path, results: Path, commands: list[list[str]]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no start signal at {go}")
        time.sleep(0.002)
    with results.open("w", encoding="utf-8") as out:
        for args in commands:
            captured = io.StringIO()
            with redirect_stdout(captured):
                code = main([*args, "--json"])
            text = captured.getvalue()
            try:
                output = json.loads(text)
            except json.JSONDecodeError:
                output = {"unparsed": text}
            out.write(json.dumps({"args": args, "code": code, "output": output}) + "\n")
            out.flush()


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]))
