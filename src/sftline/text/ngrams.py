"""Word n-grams as short digests: the shared-run test for leakage between texts."""

from __future__ import annotations

import hashlib
from collections import Counter

NGRAM_WORDS = 13  # words in a shared run that counts as leakage (the usual benchmark-leakage test)
MAX_NGRAM_SHARE = 0.01
"""An n-gram in more than 1% of the reference texts (and in at least 2) is common phrasing, not
evidence of leakage: an eval set's own template or instruction is in nearly all of its texts, a
stock phrase of the domain in a few percent, while a leaked example's 13-word run is in one or
two. On fewer than 200 reference texts, any n-gram two of them share is common."""


def common_ngrams(documents: Counter[bytes], n_texts: int) -> set[bytes]:
    """The n-grams of `documents` (n-gram -> texts that have it) that are common phrasing."""
    most = max(1.0, MAX_NGRAM_SHARE * n_texts)
    return {gram for gram, count in documents.items() if count > most}


def word_ngrams(words: list[str], n: int) -> set[bytes]:
    """8-byte digests of every run of `n` words."""
    return {
        hashlib.blake2b(" ".join(words[i : i + n]).encode(), digest_size=8).digest()
        for i in range(len(words) - n + 1)
    }
