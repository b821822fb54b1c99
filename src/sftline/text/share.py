"""A stable place in [0, 1) for a string: the first 8 bytes of its sha256, as a fraction.

Every "a share of them, the same ones each time" choice uses it: the canary's users, the
prediction log's sample, the review queue's audit sample (each salts its key when its choice must
not coincide with another's)."""

from __future__ import annotations

import hashlib


def stable_share(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
