"""The pair search cut into partitioned steps finds exactly the in-process pairs, and the
grouping works from the pairs alone (not an index), reading only the texts of cluster members."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sftline.data.common_text import CommonText
from sftline.data.example import Example, Provenance
from sftline.gates.engine import ExampleTexts, LocalEngine
from sftline.text import minhash, pair_search
from sftline.text.groups import near_duplicate_groups
from sftline.text.minhash import NearDuplicateIndex, ShingleSpec, SimilarPairs

CLINC = Path(__file__).resolve().parents[3] / "examples" / "clinc150" / "data_full.json"
# Exact Jaccard (char 5-grams): A~B 0.87, B~C 0.94, C~D 0.87, A~C 0.82, B~D 0.82, A~D 0.71.
CHAIN = [
    "i was charged twice for my subscription this month, please refund me",
    "i was charged twice for my subscripton this month, please refund me",
    "i was charged twice for my subscripton this month, please refund me now",
    "i was charged twice for my subscripton this month please refund me now",
]
SPEC = ShingleSpec()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """CLINC150 queries with a chain, a bucket of 150 identical texts (a star, not all pairs)
    and one-character variants spread through them."""
    train = [text for text, _ in json.loads(CLINC.read_text())["train"][::25]][:500]
    variants = [t.replace("e", "a", 1) for t in train[::40]]
    return train[:200] + CHAIN + ["what is my balance"] * 150 + train[200:] + variants


def partitioned_pairs(texts: list[str], batch: int, partitions: int) -> tuple[np.ndarray, ...]:
    """The distributed search's steps run here in turn, each partition on its own."""
    n, threshold = len(texts), 0.8
    signatures = np.empty((n, 128), np.uint32)
    entries = []
    for lo in range(0, n, batch):
        sig, keys = pair_search.signature_rows(texts[lo : lo + batch], SPEC, 128, 1, threshold)
        signatures[lo : lo + batch] = sig
        entries.append(pair_search.band_entries(np.arange(lo, lo + len(sig)), keys, partitions))
    column = {name: np.concatenate([e[name] for e in entries]) for name in entries[0]}
    shuffled = np.random.default_rng(0).permutation(column["row"].size)  # a shuffle's arrival order
    column = {name: values[shuffled] for name, values in column.items()}
    codes = []
    for part in range(partitions):
        mine = column["part"] == part
        codes.append(
            pair_search.bucket_candidates(column["band"][mine], column["key"][mine], column["row"][mine], n)
        )
    code = np.concatenate(codes)
    where = pair_search.pair_partition(code, partitions)
    sides = (signatures, signatures.astype(np.uint8))
    found = [pair_search.verified_pairs(code[where == p], n, sides, threshold) for p in range(partitions)]
    i, j, estimate = (np.concatenate(parts) for parts in zip(*found, strict=True))
    order = np.lexsort((j, i))
    return i[order], j[order], estimate[order], signatures


@pytest.mark.parametrize(("batch", "partitions"), [(37, 5), (1000, 1)])
def test_partitioned_steps_find_exactly_the_in_process_pairs(
    texts: list[str], batch: int, partitions: int
) -> None:
    index = NearDuplicateIndex.build(texts)
    expected = index.pairs()
    *found, signatures = partitioned_pairs(texts, batch, partitions)
    for mine, theirs in zip(found, expected, strict=True):
        assert mine.dtype == theirs.dtype
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(signatures, index.signatures)
    # the 150 identical texts: a star of 149 pairs from the earliest (all pairs would be 11,175)
    same = (found[0] >= 204) & (found[0] < 354)
    assert len(index.signatures) > 354 and minhash._BUCKET_ALL_PAIRS < 150
    assert set(found[0][same].tolist()) == {204} and found[1][same].tolist() == list(range(205, 354))


def test_band_entries_put_a_bucket_in_one_partition() -> None:
    # rows 10 and 11 share band 0's key 5; row 12's band 0 key is row 10's band 1 key
    keys = np.array([[5, 7], [5, 8], [7, 6]], np.uint64)
    entries = pair_search.band_entries(np.array([10, 11, 12]), keys, 16)
    assert entries["row"].tolist() == [10, 10, 11, 11, 12, 12]
    assert entries["band"].tolist() == [0, 1, 0, 1, 0, 1]
    part = entries["part"]
    assert part[0] == part[2]  # (band 0, key 5)
    # the same key in different bands is a different bucket: no candidate (10, 12)
    codes = pair_search.bucket_candidates(entries["band"], entries["key"], entries["row"], 13)
    assert codes.tolist() == [10 * 13 + 11]


def test_groups_work_from_the_pairs_and_read_only_cluster_members() -> None:
    texts = ["what time is it in tokyo", *CHAIN, "play some jazz music"]
    found = NearDuplicateIndex.build(texts).similar_pairs()
    read: list[int] = []

    class Recorded:
        def __getitem__(self, i: int) -> str:
            read.append(i)
            return texts[i]

    groups = near_duplicate_groups(found, Recorded())
    assert [(g.representative, [m for m, _ in g.members]) for g in groups] == [(1, [2, 3])]
    assert set(read) <= {1, 2, 3, 4}  # never the two texts outside the chain
    # the same pairs with a pair dropped: the chain breaks, and the groups follow the pairs given
    keep = ~((found.i == 1) & (found.j == 2)) & ~((found.i == 1) & (found.j == 3))
    fewer = SimilarPairs(found.i[keep], found.j[keep], found.estimate[keep], found.signatures, 0.8, 1, SPEC)
    assert [(g.representative, [m for m, _ in g.members]) for g in near_duplicate_groups(fewer, texts)] == [
        (2, [3, 4])
    ]


def test_similar_pairs_report_the_index_settings() -> None:
    index = NearDuplicateIndex.build(CHAIN, threshold=0.7, num_perm=64, seed=3)
    assert index.similar_pairs().params == index.params
    assert index.similar_pairs().clusters() == index.clusters() == [[0, 1, 2, 3]]


def test_local_engine_takes_texts_or_examples() -> None:
    examples = [
        Example(id=f"e{i}", provenance=Provenance("f", "0" * 64, "pairs", i + 1), text=t, label="x")
        for i, t in enumerate(CHAIN)
    ]
    options = {"threshold": 0.8, "num_perm": 128, "seed": 1, "shingle": SPEC}
    from_texts = LocalEngine().similar_pairs(CHAIN, **options)
    from_examples = LocalEngine().similar_pairs(
        ExampleTexts(examples, CommonText().compared_input), **options
    )
    for a, b in zip(
        (from_texts.i, from_texts.j, from_texts.estimate),
        (from_examples.i, from_examples.j, from_examples.estimate),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert from_texts.i.size == 5  # every pair but (0, 3)
