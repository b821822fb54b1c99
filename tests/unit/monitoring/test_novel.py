"""novel_clusters: a planted topic comes back as one group with its texts and words; inputs like
the reference form no group; empty input gives no groups."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sftline.monitoring.novel import novel_clusters


def test_novel_clusters_finds_a_planted_topic() -> None:
    rng = np.random.default_rng(8)
    centres = rng.normal(size=(5, 32))
    reference = np.repeat(centres, 80, axis=0) + rng.normal(scale=0.15, size=(400, 32))
    known = np.repeat(centres, 20, axis=0) + rng.normal(scale=0.15, size=(100, 32))
    planted = rng.normal(size=32) + rng.normal(scale=0.15, size=(20, 32))
    current = np.vstack([known, planted])
    texts = [f"book a flight number {i}" for i in range(100)] + [
        f"refund my crypto wallet {i}" for i in range(20)
    ]
    reference_texts = [f"book a flight number {i}" for i in range(400)]
    clusters = novel_clusters(reference, current, texts, reference_texts=reference_texts)
    assert clusters[0]["indices"] == list(range(100, 120))
    assert clusters[0]["size"] == 20 and clusters[0]["share"] == pytest.approx(20 / 120)
    assert len(clusters[0]["examples"]) == 5 and all("crypto" in t for t in clusters[0]["examples"])
    assert clusters[0]["top_words"] == ["crypto", "my", "refund", "wallet"]  # in all 20, no reference text
    assert all(set(c["indices"]).isdisjoint(range(100, 120)) for c in clusters[1:])
    json.dumps(clusters, allow_nan=False)
    # Without the planted topic: only the scattered 5% of known inputs, no group like it.
    assert max(c["size"] for c in novel_clusters(reference, known, texts[:100])) <= 2


def test_novel_clusters_on_empty_input_is_empty() -> None:
    assert novel_clusters(np.zeros((0, 8)), np.zeros((0, 8)), []) == []
    with pytest.raises(ValueError, match="2 current vectors but 1 texts"):
        novel_clusters(np.ones((5, 8)), np.ones((2, 8)), ["one"])
