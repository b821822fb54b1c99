"""Near-duplicate search over texts: MinHash signatures, LSH banding, union-find clusters.

datasketch (`MinHash`, `MinHashLSH`) is the reference implementation and the benchmark's
baseline; this module computes the same kind of signatures with numpy instead. At 1M short
texts the per-document Python calls dominate a datasketch loop (one `MinHash` object, ~40
`update` calls, one `insert` and one `query` per text, each a few numpy calls on arrays of 128),
while the arithmetic itself is only ~40 shingles x 128 permutations = 5k multiply-adds per text:
the loop manages ~1.4k texts/s, this module ~50-90k texts/s (bench/bench_near_duplicates.py).
Here every step works on a whole chunk of documents at once:

1. normalise, concatenate the chunk and read its code points as one uint32 array;
2. hash every shingle with a rolling polynomial over that array, masking windows that cross a
   document boundary: character n-grams for short texts, word n-grams for longer ones;
3. signatures: `num_perm` universal hashes `(a*h + b) mod (2^61 - 1)` of every shingle (uint64
   arithmetic, as datasketch), reduced to a per-document minimum with `np.minimum.reduceat`, of
   which the low 32 bits are kept (uint32);
4. LSH: each band of `rows` signature values hashes to one uint64; candidates are documents that
   share a band hash (found by sorting, never all pairs), verified by estimated Jaccard (the
   fraction of equal signature values) and joined by union-find.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sftline.errors import ConfigError
from sftline.text.normalize import normalize_text

_MERSENNE = np.uint64((1 << 61) - 1)
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the rolling hashes (2^64 / golden ratio)
_LENGTH_SALT = np.uint64(0xD6E8FEB86659FD93)  # separates whole short texts from full windows
_MODE_SALT = {"char": np.uint64(0x243F6A8885A308D3), "word": np.uint64(0x13198A2E03707344)}
_CHUNK_DOCS = 4096  # documents per chunk: ~4096 x 40 chars x 8 bytes = 1.3 MB per uint64 array
_CHUNK_CHARS = 1 << 21  # and <= ~2M characters (+ one document): ~10 uint64 arrays = ~170 MB
_BLOCK_BYTES = 4 << 20  # permutation block: 2 uint64 buffers of (perms x shingles) in ~4 MB (cache)
_BUCKET_ALL_PAIRS = 64  # a bucket up to this size gives all its pairs (<= 2016), larger a star
_PAIR_BATCH = 1 << 14  # pairs verified at once: 16,384 x 2 rows x 512 bytes = 16 MB gathered
# Chunks run on threads: numpy's elementwise loops release the GIL (normalisation and reduceat
# do not), which gave ~1.3x on 2 cores.
_WORKERS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class ShingleSpec:
    """How a text becomes a set of shingles."""

    char_ngram: int = 5
    """Characters per shingle for short texts (CLINC150 intents are ~8 words)."""
    word_ngram: int = 3
    """Words per shingle for longer texts."""
    short_words: int = 40
    """Texts with fewer words than this are shingled by characters, the rest by words. 40, not
    ~12: at the switch two near-identical texts get different shingle kinds (Jaccard 0), and
    word 3-grams miss one-typo edits of 12-20 word texts."""


def shingles(text: str, **shingle_options: int) -> set[str | tuple[str, ...]]:
    """The shingle set of one text, as strings (character n-grams) or word tuples.

    The reference for what the vectorised hashing sees; a text shorter than the shingle size is
    one shingle.
    """
    spec = ShingleSpec(**shingle_options)
    norm = normalize_text(text)
    words = norm.split(" ") if norm else []
    if len(words) >= max(spec.short_words, 1):
        k = spec.word_ngram
        return {tuple(words[i : i + k]) for i in range(max(len(words) - k + 1, 1))}
    k = spec.char_ngram
    return {norm[i : i + k] for i in range(max(len(norm) - k + 1, 1))}


def exact_jaccard(a: str, b: str, **shingle_options: int) -> float:
    """Jaccard similarity of the two texts' shingle sets."""
    sa, sb = shingles(a, **shingle_options), shingles(b, **shingle_options)
    return len(sa & sb) / len(sa | sb)


@functools.lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, false_negative_weight: float = 0.9) -> tuple[int, int]:
    """(bands, rows) minimising weighted false-positive + false-negative probability.

    datasketch's `_optimal_param`: a pair of similarity s becomes a candidate with probability
    1 - (1 - s^rows)^bands; integrate that below the threshold (false positives) and its
    complement above it (false negatives), here on a 1,001-point trapezoid grid. Every candidate
    is verified afterwards, so a false positive costs one signature comparison while a false
    negative is lost: the default weighs false negatives 0.9 (datasketch: 0.5). At 0.8 and 128
    permutations that gives 14 bands x 9 rows: a pair at Jaccard 0.8 becomes a candidate with
    probability 0.87, at 0.85 0.97 (datasketch's 9 x 13: 0.40 and 0.69).
    """
    combos = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    b, r = zip(*combos, strict=True)
    bands, rows = np.array(b, float)[:, None], np.array(r, float)[:, None]

    def area(lo: float, hi: float, above: bool) -> np.ndarray:
        s = np.linspace(lo, hi, 1001)
        p = 1.0 - (1.0 - s**rows) ** bands
        y = 1.0 - p if above else p
        return (y[:, 1:] + y[:, :-1]).sum(axis=1) * (s[1] - s[0]) / 2

    error = (1.0 - false_negative_weight) * area(0.0, threshold, False) + (
        false_negative_weight * area(threshold, 1.0, True)
    )
    best = int(np.argmin(error))  # first minimum: the order datasketch scans in
    return b[best], r[best]


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every input bit affects every output bit."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def partition_of(values: np.ndarray, partitions: int) -> np.ndarray:
    """A partition in [0, partitions) for each value (int32), from all of its mixed bits: values
    that differ in any bit spread evenly, whatever their pattern."""
    return (_mix64(values.astype(np.uint64)) % np.uint64(partitions)).astype(np.int32)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """starts[k], starts[k] + 1, ..., starts[k] + counts[k] - 1 for every k, concatenated."""
    shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return shift + np.arange(int(counts.sum()))


def distinct(codes: np.ndarray) -> np.ndarray:
    """Sorted distinct values. (np.unique on 5M int64 takes ~4.6 s in numpy 2.4; this ~0.1 s.)"""
    codes = np.sort(codes)
    return codes[np.r_[True, codes[1:] != codes[:-1]]] if codes.size else codes


def _window_hashes(values: np.ndarray, lengths: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Rolling polynomial hash of every k-window of `values` that stays inside one document.

    `values` (uint64) holds the documents back to back, `lengths` their sizes. A document shorter
    than k (even empty) gives one hash of all of it. Returns (hashes in document order, count
    per document); every count is >= 1.
    """
    ends = np.cumsum(lengths)
    starts = ends - lengths
    whole = np.zeros(lengths.size, np.uint64)  # hash of each document shorter than k
    window = values.copy()  # window[i] hashes values[i : i + width], width = 1 first
    for width in range(1, k):
        done = np.flatnonzero(lengths == width)
        whole[done] = window[starts[done]]
        window = window[:-1] * _BASE + values[width:]
    short = lengths < k
    counts = np.where(short, 1, lengths - k + 1)
    hashes = np.empty(int(counts.sum()), np.uint64)
    slot_short = np.repeat(short, counts)
    if window.size:
        doc = np.repeat(np.arange(lengths.size), lengths)[: window.size]
        hashes[~slot_short] = window[np.arange(window.size) + k <= ends[doc]]
    hashes[slot_short] = whole[short] + lengths[short].astype(np.uint64) * _LENGTH_SALT
    return hashes, counts


def _word_hashes(cp: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One uint64 hash per word of normalised documents (single spaces, no edge spaces)."""
    space = cp == 32
    new_word = np.zeros(cp.size, bool)
    new_word[np.cumsum(lengths) - lengths] = True
    new_word[1:] |= space[:-1]
    chars, new_word = cp[~space].astype(np.uint64), new_word[~space]
    word_starts = np.flatnonzero(new_word)
    sizes = np.diff(np.append(word_starts, chars.size))
    position = np.arange(chars.size) - np.repeat(word_starts, sizes)
    # sum over the word of mix(code point, position in word): order-sensitive, one reduceat
    return np.add.reduceat(_mix64(chars | (position.astype(np.uint64) << 32)), word_starts)


def _shingle_hashes(texts: Sequence[str], spec: ShingleSpec) -> tuple[np.ndarray, ...]:
    """32-bit shingle hashes of a chunk: (doc order, hashes, count per doc in that order)."""
    norm = [normalize_text(t) for t in texts]
    lengths = np.fromiter(map(len, norm), np.int64, len(norm))
    cp = np.frombuffer("".join(norm).encode("utf-32-le", "surrogatepass"), "<u4")
    ends = np.cumsum(lengths)
    spaces = np.concatenate([[0], np.cumsum(cp == 32)])
    n_words = np.where(lengths > 0, spaces[ends] - spaces[ends - lengths] + 1, 0)
    by_word = n_words >= max(spec.short_words, 1)
    parts = []
    for mode, docs in (("char", ~by_word), ("word", by_word)):
        if not docs.any():
            continue
        part_cp = cp[np.repeat(docs, lengths)]
        if mode == "char":
            values, sizes, k = _mix64(part_cp.astype(np.uint64)), lengths[docs], spec.char_ngram
        else:
            values, sizes, k = _word_hashes(part_cp, lengths[docs]), n_words[docs], spec.word_ngram
        hashes, counts = _window_hashes(values, sizes, k)
        hashes = _mix64(hashes ^ _MODE_SALT[mode]) >> np.uint64(32)  # keep 32 bits
        parts.append((np.flatnonzero(docs), hashes, counts))
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # RandomState: its stream is frozen across numpy versions, so signatures stay reproducible.
    # a and b are uniform below p, as in datasketch. (a must be: with a < 2^32, a*h + b stays
    # below p for h < 2^29 and the permutation keeps the order of h, so every permutation
    # picks the same minimum.)
    rng = np.random.RandomState(seed)
    a = rng.randint(1, int(_MERSENNE), size=num_perm, dtype=np.uint64)
    b = rng.randint(0, int(_MERSENNE), size=num_perm, dtype=np.uint64)
    return a, b


def _minhash(hashes: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(docs x num_perm) uint32: the low 32 bits of each document's minimum permuted hash."""
    starts = np.cumsum(counts) - counts
    out = np.empty((counts.size, a.size), np.uint32)
    block = int(np.clip(_BLOCK_BYTES // (16 * max(hashes.size, 1)), 1, a.size))
    buf, low = np.empty((block, hashes.size), np.uint64), np.empty((block, hashes.size), np.uint64)
    for p0 in range(0, a.size, block):
        p1 = min(p0 + block, a.size)
        x, lo = buf[: p1 - p0], low[: p1 - p0]
        # (a*h + b) wraps mod 2^64 first, exactly as datasketch's uint64 arithmetic does
        np.multiply(a[p0:p1, None], hashes[None, :], out=x)
        np.add(x, b[p0:p1, None], out=x)
        # then mod p = 2^61 - 1 by one Mersenne fold: x = hi * 2^61 + lo = hi + lo (mod p). The
        # result is >= p only when lo > p - 8 (probability ~2^-58); it is left unreduced there.
        np.bitwise_and(x, _MERSENNE, out=lo)
        np.right_shift(x, np.uint64(61), out=x)
        np.add(x, lo, out=x)
        out[:, p0:p1] = np.minimum.reduceat(x, starts, axis=1).T.astype(np.uint32)
    return out


def _band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(bands x docs) uint64: each band's `rows` signature values hashed to one key."""
    powers = np.cumprod(np.full(rows, _BASE, np.uint64))
    values = sig[:, : bands * rows].reshape(len(sig), bands, rows).astype(np.uint64)
    return _mix64(np.ascontiguousarray((values * powers).sum(axis=2).T))


def minhash_signatures(
    texts: Sequence[str],
    spec: ShingleSpec,
    num_perm: int,
    seed: int,
    bands: int,
    rows: int,
    *,
    threads: int = _WORKERS,
) -> tuple[np.ndarray, np.ndarray]:
    """Signatures (docs x num_perm uint32) and band keys (bands x docs uint64), by chunks.

    `threads`: chunks at once; a worker process given one CPU of a cluster passes 1."""
    a, b = _permutations(num_perm, seed)
    sig = np.empty((len(texts), num_perm), np.uint32)
    keys = np.empty((bands, len(texts)), np.uint64)
    ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)))
    # a chunk ends every _CHUNK_DOCS documents and where the text crosses a _CHUNK_CHARS multiple
    marks = np.arange(_CHUNK_CHARS, ends[-1] if ends.size else 0, _CHUNK_CHARS)
    by_chars = np.searchsorted(ends, marks)
    cuts = np.union1d(np.arange(0, len(texts), _CHUNK_DOCS), by_chars[by_chars > 0]).tolist()

    def run(lo: int, hi: int) -> None:
        order, hashes, counts = _shingle_hashes(texts[lo:hi], spec)
        sig[lo + order] = _minhash(hashes, counts, a, b)
        keys[:, lo:hi] = _band_keys(sig[lo:hi], bands, rows)

    with ThreadPoolExecutor(max(min(threads, len(cuts)), 1)) as pool:
        list(pool.map(run, cuts, cuts[1:] + [len(texts)]))
    return sig, keys


def equal_counts(left: np.ndarray, right: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Number of equal signature values of each pair (left[i], right[j])."""
    out = np.empty(i.size, np.int64)
    for s in range(0, i.size, _PAIR_BATCH):
        equal = left[i[s : s + _PAIR_BATCH]] == right[j[s : s + _PAIR_BATCH]]
        out[s : s + _PAIR_BATCH] = np.count_nonzero(equal, axis=1)
    return out


def verify_pairs(
    left: tuple[np.ndarray, np.ndarray],
    right: tuple[np.ndarray, np.ndarray],
    i: np.ndarray,
    j: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j, estimated Jaccard) whose estimated Jaccard is >= threshold.

    `left` and `right` are (signatures, their low bytes). The low bytes go first: a quarter of the
    random memory reads, and since equal values have equal low bytes their count is an upper
    bound, so the cut drops no pair the full comparison would keep.
    """
    need = math.ceil(threshold * left[0].shape[1] - 1e-9)  # e.g. 0.8 x 128 -> 103 equal values
    rough = equal_counts(left[1], right[1], i, j) >= need
    i, j = i[rough], j[rough]
    count = equal_counts(left[0], right[0], i, j)
    keep = count >= need
    return i[keep], j[keep], count[keep] / left[0].shape[1]


def _bucket_pairs(keys: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i < j) from one band: documents with equal keys (`keys` sorted)."""
    if keys.size < 2:
        return order[:0], order[:0]
    return bucket_run_pairs(np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]), order)


def bucket_run_pairs(run_starts: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs from buckets laid out as runs: `order` holds documents bucket by bucket,
    each bucket's in ascending order, and `run_starts` where each bucket begins.

    A bucket of up to _BUCKET_ALL_PAIRS documents gives all its pairs, a larger one a star to its
    first (earliest) member. Both the in-process search and a distributed one call this, so their
    candidates are the same pairs by construction.
    """
    sizes = np.diff(np.r_[run_starts, order.size]).astype(np.int64)
    big, small = sizes > _BUCKET_ALL_PAIRS, (sizes >= 2) & (sizes <= _BUCKET_ALL_PAIRS)
    # a huge bucket links every member to its first (earliest) member only
    left = [np.repeat(order[run_starts[big]], sizes[big] - 1)]
    right = [order[_ranges(run_starts[big] + 1, sizes[big] - 1)]]
    pos = _ranges(run_starts[small], sizes[small])
    end = np.repeat(run_starts[small] + sizes[small], sizes[small])
    gap = 1
    while pos.size:  # all pairs of a small bucket, by their distance inside the sorted run
        pos, end = pos[pos + gap < end], end[pos + gap < end]
        left.append(order[pos])
        right.append(order[pos + gap])
        gap += 1
    return np.concatenate(left), np.concatenate(right)


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Union-find of the edges (i, j): each node's root, the smallest index in its component."""
    parent = np.arange(n)
    while True:
        ri, rj = parent[i], parent[j]
        differ = ri != rj
        if not differ.any():
            return parent
        i, j, ri, rj = i[differ], j[differ], ri[differ], rj[differ]
        np.minimum.at(parent, np.maximum(ri, rj), np.minimum(ri, rj))  # hook the larger root
        while not np.array_equal(grand := parent[parent], parent):  # pointer jumping
            parent = grand


def check_settings(threshold: float, num_perm: int, spec: ShingleSpec) -> None:
    problems = [] if 0.0 < threshold <= 1.0 else [f"threshold must be in (0, 1], got {threshold}"]
    problems += [] if num_perm >= 2 else [f"num_perm must be >= 2, got {num_perm}"]
    problems += [f"{k} must be >= 1, got {v}" for k, v in asdict(spec).items() if v < 1]
    if problems:
        raise ConfigError("near-duplicate settings: " + "; ".join(problems))


@dataclass(frozen=True, eq=False)
class SimilarPairs:
    """Verified near-duplicate pairs of a corpus, however they were searched (in process by
    `NearDuplicateIndex`, or on workers by `sftline.gates.engine.RayEngine`): what a grouping of
    them needs, without the band keys a search needed."""

    i: np.ndarray
    j: np.ndarray
    """The pairs (i[k], j[k]), i < j, sorted by (i, j)."""
    estimate: np.ndarray
    """Each pair's estimated Jaccard (the fraction of equal signature values)."""
    signatures: np.ndarray
    """(docs x num_perm) uint32, for estimates between members of a component."""
    threshold: float
    seed: int
    shingle: ShingleSpec

    @property
    def n(self) -> int:
        return len(self.signatures)

    @property
    def params(self) -> dict[str, Any]:
        num_perm = self.signatures.shape[1]
        bands, rows = optimal_bands(self.threshold, num_perm)
        return {"threshold": self.threshold, "num_perm": num_perm, "bands": bands, "rows": rows,
                "seed": self.seed, **asdict(self.shingle)}  # fmt: skip

    def clusters(self) -> list[list[int]]:
        """Groups of >= 2 near-duplicates (union-find components), each sorted, the list sorted
        by first member."""
        root = _components(self.n, self.i, self.j)
        members = np.flatnonzero(np.bincount(root, minlength=len(root))[root] >= 2)
        members = members[np.argsort(root[members], kind="stable")]
        cuts = np.flatnonzero(np.diff(root[members])) + 1
        return [group.tolist() for group in np.split(members, cuts)] if members.size else []


@dataclass(frozen=True, eq=False)
class NearDuplicateIndex:
    """MinHash signatures of a corpus plus its LSH band keys, reusable to query other texts."""

    signatures: np.ndarray
    """(docs x num_perm) uint32."""
    band_keys: np.ndarray
    """(bands x docs) uint64, each band sorted."""
    band_order: np.ndarray
    """(bands x docs) document index of each sorted key (stable: equal keys in input order)."""
    threshold: float
    num_perm: int
    bands: int
    rows: int
    shingle: ShingleSpec
    seed: int

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        *,
        num_perm: int = 128,
        threshold: float = 0.8,
        char_ngram: int = 5,
        word_ngram: int = 3,
        short_words: int = 40,
        seed: int = 1,
    ) -> NearDuplicateIndex:
        spec = ShingleSpec(char_ngram, word_ngram, short_words)
        check_settings(threshold, num_perm, spec)
        bands, rows = optimal_bands(threshold, num_perm)
        sig, keys = minhash_signatures(texts, spec, num_perm, seed, bands, rows)
        order = np.argsort(keys, axis=1, kind="stable")
        sorted_keys = np.take_along_axis(keys, order, axis=1)
        return cls(sig, sorted_keys, order, threshold, num_perm, bands, rows, spec, seed)

    @functools.cached_property
    def low_bytes(self) -> np.ndarray:
        """The low byte of every signature value, for the first verification pass."""
        return self.signatures.astype(np.uint8)

    @property
    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "num_perm": self.num_perm, "bands": self.bands,
                "rows": self.rows, "seed": self.seed, **asdict(self.shingle)}  # fmt: skip

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Verified near-duplicate pairs inside the corpus: (i, j, estimated Jaccard), i < j."""
        n = len(self.signatures)
        bands = zip(self.band_keys, self.band_order, strict=True)
        found = [_bucket_pairs(keys, order) for keys, order in bands]
        codes = distinct(np.concatenate([i * n + j for i, j in found] + [np.empty(0, int)]))
        i, j = codes // max(n, 1), codes % max(n, 1)
        sides = (self.signatures, self.low_bytes)
        return verify_pairs(sides, sides, i, j, self.threshold)

    def similar_pairs(self) -> SimilarPairs:
        """`pairs()` with the signatures and settings they were found with."""
        return SimilarPairs(*self.pairs(), self.signatures, self.threshold, self.seed, self.shingle)

    def clusters(self) -> list[list[int]]:
        """Groups of >= 2 near-duplicates, each sorted, the list sorted by first member."""
        return self.similar_pairs().clusters()

    def query(self, texts: Sequence[str]) -> list[list[tuple[int, float]]]:
        """For each text, the corpus indices with estimated Jaccard >= threshold, best first."""
        spec, n = self.shingle, len(self.signatures)
        sig, keys = minhash_signatures(texts, spec, self.num_perm, self.seed, self.bands, self.rows)
        found: list[list[tuple[int, float]]] = []
        for lo in range(0, len(texts), _CHUNK_DOCS):
            batch = keys[:, lo : lo + _CHUNK_DOCS]
            codes = [np.empty(0, np.int64)]
            bands = zip(self.band_keys, self.band_order, strict=True)
            for band, (sorted_keys, order) in enumerate(bands):
                first = np.searchsorted(sorted_keys, batch[band], "left")
                count = np.searchsorted(sorted_keys, batch[band], "right") - first
                q = np.repeat(np.arange(batch.shape[1]), count)
                codes.append(q * n + order[_ranges(first, count)])
            code = distinct(np.concatenate(codes))
            q, c = code // max(n, 1), code % max(n, 1)
            theirs = (sig[lo : lo + _CHUNK_DOCS], sig[lo : lo + _CHUNK_DOCS].astype(np.uint8))
            mine = (self.signatures, self.low_bytes)
            q, c, score = verify_pairs(theirs, mine, q, c, self.threshold)
            rank = np.lexsort((c, -score, q))
            hits: list[list[tuple[int, float]]] = [[] for _ in range(batch.shape[1])]
            for qi, ci, s in zip(*(x[rank].tolist() for x in (q, c, score)), strict=True):
                hits[qi].append((ci, s))
            found += hits
        return found


def near_duplicate_clusters(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    seed: int = 1,
    **shingle_options: int,
) -> list[list[int]]:
    """Clusters (>= 2 members, each sorted, sorted by first member) of near-duplicate texts."""
    index = NearDuplicateIndex.build(
        texts, num_perm=num_perm, threshold=threshold, seed=seed, **shingle_options
    )
    return index.clusters()
