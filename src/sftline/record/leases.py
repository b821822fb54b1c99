"""Leases of running work: who holds it (pid, host) and when it last said so (heartbeat).

A row with status `running` belongs to a live process as long as its heartbeat is fresh. Only a
stale lease (no heartbeat for `STALE_AFTER`, or a pid that no longer exists on this host) makes
the row `interrupted`, and only writers mark it: a reader such as `sftline runs list` computes
the status it shows without writing, so a read-only open never writes and a `data list` in
another shell never marks a live run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

HEARTBEAT_SECONDS = float(os.environ.get("SFTLINE_HEARTBEAT_SECONDS", "10"))
"""How often a holder renews its lease."""
STALE_AFTER = timedelta(seconds=max(6 * HEARTBEAT_SECONDS, 30.0))
"""A lease not renewed for this long is stale (six missed heartbeats, at least 30 s)."""


class Leased(Protocol):
    status: str
    pid: int | None
    host: str | None
    heartbeat_at: datetime | None


def hostname() -> str:
    return socket.gethostname()


def take(row: Leased) -> None:
    """Mark `row` as held by this process, now."""
    row.pid, row.host, row.heartbeat_at = os.getpid(), hostname(), datetime.now(timezone.utc)


def _pid_alive(pid: int) -> bool:
    """Whether `pid` runs on this host. A zombie (killed, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        # /proc/PID/stat: "pid (comm) state ..."; comm may hold spaces and parentheses.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal test above is all there is
    return state not in ("Z", "X")


def is_stale(row: Leased, now: datetime | None = None) -> bool:
    """Whether a `running` row's holder is gone: a dead pid on this host, or no fresh heartbeat."""
    if row.status != "running":
        return False
    if row.host == hostname() and row.pid is not None and not _pid_alive(row.pid):
        return True
    if row.heartbeat_at is None:
        return True
    beat = row.heartbeat_at if row.heartbeat_at.tzinfo else row.heartbeat_at.replace(tzinfo=timezone.utc)
    return (now or datetime.now(timezone.utc)) - beat > STALE_AFTER


def shown_status(row: Leased) -> str:
    """The status a reader reports: `interrupted` for a stale `running` row, without writing it."""
    return "interrupted" if is_stale(row) else row.status


@contextmanager
def heartbeat(renew: Callable[[], Any], every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Call `renew()` every `every` seconds on a daemon thread while the block runs.

    `renew` opens its own session (a thread must not share the caller's). A failed renewal is
    retried at the next beat: a busy record must not kill the work it tracks.
    """
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            with contextlib.suppress(Exception):  # retried at the next beat
                renew()

    thread = threading.Thread(target=beat, name="sftline-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 5)
