"""Who may press the dashboard's buttons: sessions, sign-in with an admin key, and CSRF checks.

The dashboard reads without signing in. Its writes (promote, rollback) act as an `admin`-scope API
key of `sftline keys`, as serving's /v1/admin endpoints do, so the registry's history names the
key. The key is pasted once into the sign-in form; the server keeps only its sha256 in a
server-side session, and the browser holds nothing but a random session id in an HttpOnly,
SameSite=Strict cookie. Every write re-checks the key against `api_keys`, so a key revoked while
someone is signed in stops working at once.

Every POST carries the session's CSRF token in a hidden field (compared in constant time) and must
come from this dashboard's own origin (the Origin header, or Referer when a browser sends no
Origin). SameSite=Strict already keeps the cookie off cross-site requests; the token and the
origin check are the defence for browsers or proxies that do not honour it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from sftline.record import queries
from sftline.serving.keys import KEY_PREFIX, hash_key

COOKIE = "sftline_ui"
IDLE_SECONDS = 8 * 3600
"""A session unused this long is forgotten (the key must be pasted again)."""
MAX_SESSIONS = 10_000
"""Sessions kept at most; the least recently used go first (a flood of anonymous visits cannot
grow the server's memory without bound)."""


@dataclass(frozen=True)
class Flash:
    """A message shown once, on the next page: the outcome of a promotion or rollback."""

    kind: str
    """`ok` or `error`."""
    text: str
    details: tuple[str, ...] = ()


@dataclass
class UiSession:
    """One browser's session: its CSRF token, the admin key it signed in with (as sha256), and a
    message to show once on the next page (the outcome of a promotion)."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    key_hash: str | None = None
    key_name: str | None = None
    flash: list[Flash] = field(default_factory=list)
    used_at: float = field(default_factory=time.monotonic)

    def say(self, kind: str, text: str, details: tuple[str, ...] = ()) -> None:
        self.flash.append(Flash(kind, text, details))


class Sessions:
    """The server-side session store of one dashboard process (in memory: a restart signs
    everyone out, which is what a restarted admin console should do)."""

    def __init__(self) -> None:
        self._by_id: dict[str, UiSession] = {}

    def get(self, session_id: str | None) -> UiSession | None:
        found = self._by_id.get(session_id or "")
        if found is None:
            return None
        if time.monotonic() - found.used_at > IDLE_SECONDS:
            del self._by_id[session_id or ""]
            return None
        found.used_at = time.monotonic()
        return found

    def new(self) -> tuple[str, UiSession]:
        """A fresh session under a new random id (a sign-in always starts one, so an id a visitor
        had before signing in is worth nothing after)."""
        if len(self._by_id) >= MAX_SESSIONS:
            oldest = min(self._by_id, key=lambda k: self._by_id[k].used_at)
            del self._by_id[oldest]
        session_id = secrets.token_urlsafe(32)
        self._by_id[session_id] = UiSession()
        return session_id, self._by_id[session_id]

    def drop(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)


def admin_key_name(record: Session, key: str) -> str | None:
    """The name of `key` when it is a live admin key, else None (unknown, revoked or `serve`)."""
    key = key.strip()
    if not key.startswith(KEY_PREFIX):
        return None
    row = queries.api_key_by_hash(record, hash_key(key))
    return row.name if row is not None and row.scope == "admin" else None


def still_admin(record: Session, ui_session: UiSession) -> bool:
    """Whether the key this session signed in with is still a live admin key."""
    if ui_session.key_hash is None:
        return False
    row = queries.api_key_by_hash(record, ui_session.key_hash)
    return row is not None and row.scope == "admin"


def csrf_ok(ui_session: UiSession | None, token: str | None) -> bool:
    return ui_session is not None and token is not None and secrets.compare_digest(ui_session.csrf, token)


def same_origin(origin: str | None, referer: str | None, own: str) -> bool:
    """Whether a POST came from `own` (scheme://host[:port] the request was addressed to): its
    Origin header, or without one its Referer's origin, must equal it. A POST with neither is
    refused; every browser that runs the dashboard's forms sends Origin."""
    source = origin if origin and origin != "null" else None
    if source is None and referer:
        parts = urlsplit(referer)
        source = f"{parts.scheme}://{parts.netloc}"
    return source is not None and source.rstrip("/") == own.rstrip("/")
