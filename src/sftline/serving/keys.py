"""API keys of `sftline serve`: made here, shown once, stored only as their sha256.

A key is `sk-sftline-` and 32 random bytes (43 URL-safe characters). The record holds its sha256
and finds a presented key by that digest, so a copy of the record grants nothing, and the lookup
compares digests, not the key: how long a comparison takes can tell an attacker at most a prefix
of a digest, which brings no key with that digest any closer (sha256 is preimage resistant).
A key's scope is `serve` (inference) or `admin` (inference and the registry's writes).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.orm import Session

from sftline.data.versions import NAME_PATTERN
from sftline.errors import SftlineError
from sftline.record import queries
from sftline.record.schema import ApiKey
from sftline.record.workspace import Workspace

KEY_PREFIX = "sk-sftline-"
SCOPES = ("serve", "admin")


class ApiKeyError(SftlineError):
    """An API key cannot be made or revoked (a taken or invalid name, an unknown scope)."""


@dataclass(frozen=True)
class KeyInfo:
    """Who a verified key belongs to: what a request may do, and the actor its changes record."""

    name: str
    scope: str

    def allows(self, needed: str) -> bool:
        """Whether this key may call an endpoint that needs scope `needed` (admin may do all)."""
        return self.scope in (needed, "admin")


@dataclass(frozen=True)
class KeyEntry:
    """A key as `sftline keys list` shows it: never the key, nor its hash."""

    name: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyEntry:
        revoked = _aware(row.revoked_at) if row.revoked_at is not None else None
        return cls(row.name, row.scope, _aware(row.created_at), revoked)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scope": self.scope,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_key(key: str) -> str:
    """The sha256 hex the record stores for `key`."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(workspace: Workspace, name: str, scope: str = "serve") -> str:
    """A new key named `name`: returned here once, its sha256 recorded. Names are never reused,
    not even a revoked key's, so a name in the registry's history means one key."""
    _check(name, scope)
    key = KEY_PREFIX + secrets.token_urlsafe(32)  # 32 random bytes, 256 bits
    with workspace.record.session() as session:
        if queries.add_api_key(session, name, hash_key(key), scope) is None:
            raise ApiKeyError(
                f"an API key named {name!r} exists (a revoked key's name is not reused either); "
                "choose another name, see `sftline keys list`"
            )
    return key


def verify(source: Session | Workspace, key: str) -> KeyInfo | None:
    """Whose key `key` is, or None for an unknown or revoked one. `source` is an open session (a
    server's, per request) or a workspace (a session is opened for the lookup)."""
    if not key.startswith(KEY_PREFIX):
        return None
    if isinstance(source, Workspace):
        with source.record.session() as session:
            return _lookup(session, key)
    return _lookup(source, key)


def revoke(workspace: Workspace, name: str) -> KeyEntry:
    """Revoke the key `name`: it verifies no more. Revoking it again changes nothing."""
    with workspace.record.session() as session:
        row = queries.revoke_api_key(session, name)
        if row is None:
            raise ApiKeyError(f"no API key named {name!r}; see `sftline keys list`")
        return KeyEntry.of(row)


def list_keys(workspace: Workspace) -> list[KeyEntry]:
    """Every key, revoked ones included, by name."""
    with workspace.record.session() as session:
        return [KeyEntry.of(row) for row in queries.api_keys(session)]


def _lookup(session: Session, key: str) -> KeyInfo | None:
    row = queries.api_key_by_hash(session, hash_key(key))
    return KeyInfo(row.name, row.scope) if row is not None else None


def _check(name: str, scope: str) -> None:
    problems = []
    if not NAME_PATTERN.fullmatch(name):
        problems.append(
            f"invalid key name {name!r}: use up to 200 letters, digits, '-', '_' and '.', "
            "starting with a letter or digit"
        )
    if scope not in SCOPES:
        problems.append(f"unknown scope {scope!r}: use {' or '.join(SCOPES)}")
    if problems:
        raise ApiKeyError("; ".join(problems))


def _aware(moment: datetime) -> datetime:
    """A recorded moment in UTC (SQLite returns it without its zone)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
