"""The CLI leaves through `exit_process`: what the interpreter's exit would do for the user
(threads finished, atexit handlers run, output flushed, the exit code kept), without the
finalization where Arrow's thread pools can abort a finished process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from sftline.cli.main import exit_process

    def late_writer():
        time.sleep(0.3)
        sys.stdout.write("thread finished\\n")

    atexit.register(lambda: sys.stdout.write("atexit ran\\n"))
    threading.Thread(target=late_writer).start()
    sys.stdout.write("no newline flushed yet")
    sys.stdout.write("\\n")
    sys.stderr.write("to stderr")
    exit_process(3)
    """
)


def test_exit_process_finishes_threads_runs_atexit_flushes_and_keeps_the_code() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == ["no newline flushed yet", "thread finished", "atexit ran"]
    assert done.stderr == "to stderr"


def test_the_sftline_command_leaves_through_it_with_its_output() -> None:
    command = [sys.executable, "-m", "sftline", "--version"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.split()[0]) == (0, "sftline")
    assert done.stderr == ""
