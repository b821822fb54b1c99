"""The near-duplicate pair search of `NearDuplicateIndex.pairs()`, cut into steps that run on
separate workers with a shuffle between them (`sftline.gates.engine.RayEngine` wires them into
Ray Data). Each step is plain numpy on one batch or one partition, so the steps can be checked
here, in process, against the one-process search.

1. `signature_rows`: per batch of texts, each row's MinHash signature and band keys.
2. `band_entries`: each (band, key, row) becomes one entry, with a partition number that
   depends on (band, key) only, so every member of a bucket lands in the same partition.
3. `bucket_candidates`: per partition, the buckets' candidate pairs by the same rule as in
   process (`minhash.bucket_run_pairs`), as codes i * n + j; with `pair_partition` each code
   goes to the partition its value hashes to, so a pair found in several bands meets itself.
4. `verified_pairs`: per partition, the distinct codes verified against the signatures.

The candidate set is the one-process set exactly: a bucket is a (band, key) and each is whole in
one partition, with its members sorted as the in-process stable sort leaves them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sftline.text.minhash import (
    ShingleSpec,
    bucket_run_pairs,
    distinct,
    minhash_signatures,
    optimal_bands,
    partition_of,
    verify_pairs,
)

_BAND_SALT = np.uint64(0x452821E638D01377)  # separates equal keys of different bands


def signature_rows(
    texts: Sequence[str], spec: ShingleSpec, num_perm: int, seed: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(signatures docs x num_perm uint32, band keys docs x bands uint64) of one batch, computed
    on one thread: a worker holds one CPU."""
    bands, rows = optimal_bands(threshold, num_perm)
    sig, keys = minhash_signatures(texts, spec, num_perm, seed, bands, rows, threads=1)
    return sig, np.ascontiguousarray(keys.T)


def band_entries(rows: np.ndarray, keys: np.ndarray, partitions: int) -> dict[str, np.ndarray]:
    """One entry per (row, band): columns part, band, key, row. `keys` is docs x bands."""
    bands = keys.shape[1]
    band = np.tile(np.arange(bands, dtype=np.uint16), len(rows))
    key = keys.reshape(-1)
    return {
        "part": partition_of(key ^ (band.astype(np.uint64) * _BAND_SALT), partitions),
        "band": band,
        "key": key,
        "row": np.repeat(rows.astype(np.int64), bands),
    }


def bucket_candidates(band: np.ndarray, key: np.ndarray, row: np.ndarray, n: int) -> np.ndarray:
    """Candidate pair codes (i * n + j, i < j) of the buckets whose entries are given, in any
    order; every bucket's entries must all be here."""
    order = np.lexsort((row, key, band))  # by bucket, each bucket's rows ascending
    band, key, row = band[order], key[order], row[order]
    if row.size < 2:
        return np.empty(0, np.int64)
    new = np.r_[True, (band[1:] != band[:-1]) | (key[1:] != key[:-1])]
    i, j = bucket_run_pairs(np.flatnonzero(new), row)
    return distinct(i * n + j)


def pair_partition(codes: np.ndarray, partitions: int) -> np.ndarray:
    """The partition a pair code goes to (int32)."""
    return partition_of(codes, partitions)


def verified_pairs(
    codes: np.ndarray, n: int, sides: tuple[np.ndarray, np.ndarray], threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, estimated Jaccard) of the distinct codes whose estimate is >= threshold; `sides` is
    (signatures, their low bytes) of the whole corpus."""
    codes = distinct(codes)
    return verify_pairs(sides, sides, codes // n, codes % n, threshold)
