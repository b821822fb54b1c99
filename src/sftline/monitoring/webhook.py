"""Alerts to a webhook: one JSON POST per alert that fired or resolved.

Delivery never stops monitoring and never waits long: the POSTs go out in parallel, each on its
own thread, and whatever has not answered within `DEADLINE_S` is recorded as timed out. What
happened is recorded on the alert (`delivery`) with the receiver's host only: a chat webhook's
URL is itself the secret, so the record never holds it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx

TIMEOUT_S = 5.0
"""Per connect, read and write."""
DEADLINE_S = 10.0
"""For all of one pass's deliveries together."""


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def deliver(url: str, token_env: str | None, payload: dict[str, Any]) -> dict[str, Any]:
    """POST `payload`; what happened, as recorded on the alert."""
    headers = {"user-agent": "sftline-monitor"}
    token = os.environ.get(token_env) if token_env else None
    if token:
        headers["authorization"] = f"Bearer {token}"
    at = datetime.now(timezone.utc).isoformat()
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return {"to": _host(url), "error": type(exc).__name__, "at": at}
    return {"to": _host(url), "status": response.status_code, "at": at}


def deliver_all(
    url: str | None,
    token_env: str | None,
    payloads: Sequence[dict[str, Any]],
    *,
    deadline_s: float = DEADLINE_S,
) -> list[dict[str, Any]]:
    """Each payload POSTed on its own daemon thread; [] when there is no URL or nothing to send."""
    if not url or not payloads:
        return []
    results: list[dict[str, Any] | None] = [None] * len(payloads)

    def send(index: int, payload: dict[str, Any]) -> None:
        results[index] = deliver(url, token_env, payload)

    threads = [threading.Thread(target=send, args=(i, p), daemon=True) for i, p in enumerate(payloads)]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline_s
    for thread in threads:
        thread.join(timeout=max(end - time.monotonic(), 0.0))
    at = datetime.now(timezone.utc).isoformat()
    return [
        r if r is not None else {"to": _host(url), "error": f"no answer within {deadline_s:g}s", "at": at}
        for r in results
    ]
