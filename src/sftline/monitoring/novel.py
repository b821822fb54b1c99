"""New topics in recent traffic: groups of current inputs unlike anything in the reference (the
serving model's training inputs). Not a test with a level, a description for the report and the
dashboard: what the traffic asks that the training data never did, with examples and the words
that set each group apart. The monitoring station calls it beside the drift tests
(`sftline.monitoring.drift`), on the same embeddings."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from sftline.monitoring.drift import finite_rows

WORD = re.compile(r"[a-z0-9']+")
"""A word for `top_words`: lower-case letters, digits and apostrophes."""


def novel_clusters(
    reference_vectors: np.ndarray,
    current_vectors: np.ndarray,
    current_texts: Sequence[str],
    *,
    threshold: float | None = None,
    max_clusters: int = 8,
    examples: int = 5,
    seed: int = 0,
    reference_texts: Sequence[str] | None = None,
    link_similarity: float | None = None,
    min_size: int = 2,
    words: int = 8,
    probe: int = 2000,
) -> list[dict[str, Any]]:
    """Groups of current inputs unlike anything in the reference: what the traffic asks that the
    training data never did.

    An input is novel when its nearest reference neighbour (cosine) is less similar than
    `threshold`; by default the 5th percentile of the reference's own nearest-neighbour
    similarity (leave one out, for a seeded sample of `probe` reference rows), so about 5% of
    inputs like the reference count as novel by chance, scattered; a new topic shows as a group.

    Novel inputs are grouped by average-linkage agglomerative clustering on cosine distance, cut
    where a group's members are on average less similar to one another than `link_similarity`:
    by default midway between a random pair of reference inputs (their median similarity) and
    `threshold`, so that a group holds one topic, and inputs that merely share the language do
    not join. The nearest-neighbour threshold itself would be too strict a cut: the average pair
    of a topic is less alike than each input and its nearest neighbour.

    Returned: the `max_clusters` largest groups of at least `min_size` inputs (a lone input is no
    topic), largest first, each with `size`, `share` of the current sample, `indices` into it,
    `similarity` (the mean nearest-reference similarity), `examples` (the texts nearest its
    centre), `top_words` (the words most over-represented in it against `reference_texts`, or
    the rest of the current texts), `novel` (novel inputs in all) and `threshold`."""
    ref, cur = _unit(finite_rows(reference_vectors)), _unit(finite_rows(current_vectors))
    if len(cur) != len(current_texts):
        raise ValueError(f"{len(cur)} current vectors but {len(current_texts)} texts")
    if len(ref) < 2 or len(cur) == 0:
        return []
    sample = np.sort(np.random.default_rng(seed).choice(len(ref), size=min(probe, len(ref)), replace=False))
    if threshold is None:
        threshold = float(np.quantile(_nearest_similarity(ref[sample], ref, exclude=sample), 0.05))
    if link_similarity is None:
        pairs = ref[sample[:500]] @ ref[sample[:500]].T  # 500 rows: 124,750 pairs
        typical = float(np.median(pairs[np.triu_indices(len(pairs), 1)]))
        link_similarity = (typical + threshold) / 2
    nearest = _nearest_similarity(cur, ref)
    far = np.flatnonzero(nearest < threshold)
    if far.size < max(min_size, 1):
        return []
    groups = np.zeros(far.size, dtype=int)
    if far.size > 1:
        groups = AgglomerativeClustering(
            n_clusters=None,
            distance_threshold=max(1 - link_similarity, 1e-9),
            metric="cosine",
            linkage="average",
        ).fit_predict(cur[far])
    members_of = sorted((far[groups == g] for g in range(groups.max() + 1)), key=lambda m: (-m.size, m[0]))
    kept = [members for members in members_of if members.size >= min_size][:max_clusters]
    if reference_texts is not None:
        background = list(reference_texts)
    else:
        rest = np.setdiff1d(np.arange(len(cur)), far)
        background = [current_texts[i] for i in (rest if rest.size else range(len(cur)))]
    background_df = _document_frequency(background)
    found = []
    for members in kept:
        centre = cur[members].mean(axis=0)
        closest = members[np.argsort(-(cur[members] @ centre), kind="stable")[:examples]]
        found.append(
            {
                "size": int(members.size),
                "share": members.size / len(cur),
                "indices": [int(i) for i in members],
                "similarity": float(nearest[members].mean()),
                "examples": [current_texts[i] for i in closest],
                "top_words": _over_represented(
                    [current_texts[i] for i in members], background_df, len(background), words
                ),
                "novel": int(far.size),
                "threshold": threshold,
            }
        )
    return found


def _nearest_similarity(
    queries: np.ndarray, ref: np.ndarray, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Each query's highest cosine similarity to a reference row (unit rows), in blocks of 512
    queries (512 x 10,000 similarities: 40 MB); `exclude[i]` is query i's own reference row."""
    best = np.empty(len(queries))
    for start in range(0, len(queries), 512):
        block = queries[start : start + 512] @ ref.T
        if exclude is not None:
            block[np.arange(len(block)), exclude[start : start + 512]] = -np.inf
        best[start : start + 512] = block.max(axis=1)
    return best


def _document_frequency(texts: Sequence[str]) -> Counter[str]:
    return Counter(word for text in texts for word in set(WORD.findall(text.lower())))


def _over_represented(
    texts: Sequence[str], background: Counter[str], n_background: int, top: int
) -> list[str]:
    """Words by the log ratio of their text share in `texts` to that in the background, smoothed
    by half a text; a word must be in two texts of the group (one when the group is one text)."""
    own = _document_frequency(texts)
    least = 2 if len(texts) > 1 else 1
    score = {
        word: math.log((count + 0.5) / (len(texts) + 1))
        - math.log((background[word] + 0.5) / (n_background + 1))
        for word, count in own.items()
        if count >= least
    }
    return sorted(score, key=lambda w: (-score[w], w))[:top]


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)
