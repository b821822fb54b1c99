"""Word n-grams as short digests: the shared-run test for leakage between texts."""

from __future__ import annotations

import hashlib

NGRAM_WORDS = 13  # words in a shared run that counts as leakage (the usual benchmark-leakage test)


def word_ngrams(words: list[str], n: int) -> set[bytes]:
    """8-byte digests of every run of `n` words."""
    return {
        hashlib.blake2b(" ".join(words[i : i + n]).encode(), digest_size=8).digest()
        for i in range(len(words) - n + 1)
    }
