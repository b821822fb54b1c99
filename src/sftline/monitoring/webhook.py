"""Alerts to a webhook: one JSON POST per alert that fired or resolved.

Delivery never stops monitoring: a receiver that is down, slow or refuses is recorded on the
alert (`delivery`) and the pass goes on.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

import httpx

TIMEOUT_S = 5.0


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
        return {"url": url, "error": f"{type(exc).__name__}: {exc}"[:300], "at": at}
    return {"url": url, "status": response.status_code, "at": at}
