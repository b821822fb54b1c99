"""Benchmark: sftline's numpy MinHash/LSH near-duplicate clusters vs a plain datasketch loop.

    python bench/bench_near_duplicates.py                      # CLINC150 train queries (15,000)
    python bench/bench_near_duplicates.py --synthetic 1000000  # synthetic support queries

Reports records/s of both on the same rows (datasketch only on the first `--baseline-rows`, it
is slow), peak RSS, and recall against exact Jaccard: of all pairs among the baseline rows whose
exact Jaccard (same shingles) is >= threshold, the fraction each method puts in one cluster
(ours also in the clusters of the full run); and the flagged rows whose exact Jaccard with their
cluster's representative is below threshold - 0.1 (chains, or estimates that came out high).

The gate's flags are measured twice on the baseline rows, as union-find clusters flag them (every
member but the earliest, the gate before issue 14) and as the gate flags them now (groups without
chains, `sftline.text.groups`): precision is the share of flags whose exact Jaccard with their
representative is >= threshold, recall the share of exact pairs (>= threshold) of which at least
one text is flagged (a pair left with both texts kept is a near duplicate the gate missed).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from rich.console import Console
from rich.progress import track

from sftline.text.groups import near_duplicate_groups
from sftline.text.minhash import NearDuplicateIndex, exact_jaccard, shingles

T = TypeVar("T")
CLINC = Path(__file__).resolve().parents[1] / "examples" / "clinc150" / "data_full.json"

_SLOTS = {
    "p": ["router", "laptop", "phone", "smart watch", "vacuum", "blender", "printer", "camera",
          "headphones", "tablet", "speaker", "monitor", "keyboard", "coffee maker", "drone",
          "e-reader", "projector", "doorbell", "thermostat", "gaming console", "mouse", "charger",
          "scanner", "fridge", "microwave", "air fryer", "hair dryer", "tv", "webcam", "scooter"],
    "d": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
          "yesterday", "last week", "two days ago", "this morning", "last night"],
    "l": ["premium", "basic", "family", "student", "annual", "monthly", "pro", "business"],
    "a": ["open settings", "log in", "upload a photo", "check out", "pair it", "update it",
          "change the language", "add a card", "scroll down", "turn on dark mode"],
    "c": ["boston", "austin", "denver", "seattle", "miami", "chicago", "portland", "atlanta",
          "phoenix", "dallas", "detroit", "houston", "tampa", "reno", "omaha", "tucson"],
    "n": ["anna", "ben", "carla", "dev", "emma", "farid", "grace", "hugo", "ines", "jamal",
          "kai", "lena", "marco", "nina", "omar", "priya", "quinn", "rosa", "sam", "tomas"],
    "s": ["blinking", "overheating", "beeping", "frozen", "stuck", "slow", "dead", "noisy",
          "offline", "flickering", "leaking", "rebooting"],
}  # fmt: skip
_TEMPLATES = [  # each: a 5-6 digit number {o} and three word slots, so accidental twins are rare
    "where is order {o} for {n}, it was due {d} in {c}",
    "{n} was charged twice for the {p} on {d}, ref {o}",
    "my {p} is {s} since {d}, serial {o}",
    "reset the {l} password for {n}, {p} account {o}",
    "can {n} return the {s} {p} from order {o}",
    "{p} app is {s} when i {a}, code {o}",
    "ship order {o} to {n} in {c} not {d}",
    "card declined for the {l} {p} bundle {o} on {d}",
    "{n} wants to cancel {l} plan {o} before {d}",
    "refund for the {p} order {o} from {c} on {d}",
    "the {p} arrived {s} in {c}, order {o}",
    "discount on {l} for {n}, customer {o}, owns a {p}",
    "error {o} when i {a} on the {p} in {c}",
    "tracking {o} to {c} is {s} since {d}",
    "move {n} account {o} from {l} to {l2}",
]
_EXTRA_WORDS = ["please", "thanks", "asap", "again", "really", "now", "today", "urgently"]
_OPENERS = ["", "", "", "hi ", "hello ", "hey ", "urgent: ", "help: ", "please "]
_CLOSERS = ["", "", "", " thanks", " please", " asap", "?", "!", " :("]


def clinc_queries(rows: int) -> list[str]:
    train = json.loads(CLINC.read_text())["train"]
    return [text for text, _ in train][:rows]


def _perturb(text: str, rng: np.random.RandomState) -> str:
    """A near-duplicate: a typo, a punctuation change, an added, dropped or swapped word."""
    kind = rng.randint(5)
    words = text.split(" ")
    if kind == 0:  # typo: one character replaced
        i = rng.randint(len(text))
        return text[:i] + "qwertyuiopasdfghjklzxcvbnm"[rng.randint(26)] + text[i + 1 :]
    if kind == 1:  # punctuation
        return text.replace(",", "") if "," in text else text + "?"
    if kind == 2:  # one extra word
        words.insert(rng.randint(len(words) + 1), _EXTRA_WORDS[rng.randint(len(_EXTRA_WORDS))])
    elif kind == 3 and len(words) > 4:  # one word dropped
        del words[rng.randint(len(words))]
    else:  # two neighbouring words swapped
        i = rng.randint(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def synthetic_queries(n: int, seed: int = 0) -> tuple[list[str], list[tuple[int, int]]]:
    """n support-like queries, ~5% of them planted near-duplicates of an earlier one.

    Returns the texts and the planted (original, copy) index pairs.
    """
    rng = np.random.RandomState(seed)
    texts: list[str] = []
    planted: list[tuple[int, int]] = []
    planted_flags = rng.random_sample(n) < 0.05
    for k in _progress(range(n), "generating texts"):
        if planted_flags[k] and k > 0:
            source = int(rng.randint(k))
            texts.append(_perturb(texts[source], rng))
            planted.append((source, k))
            continue
        template = _TEMPLATES[rng.randint(len(_TEMPLATES))]
        fill = {slot: words[rng.randint(len(words))] for slot, words in _SLOTS.items()}
        fill["l2"] = _SLOTS["l"][rng.randint(len(_SLOTS["l"]))]
        text = template.format(o=rng.randint(10_000, 1_000_000), **fill)
        opener, closer = _OPENERS[rng.randint(len(_OPENERS))], _CLOSERS[rng.randint(len(_CLOSERS))]
        texts.append(opener + text + closer)
    return texts, planted


def _progress(items: Iterable[T], label: str, total: int | None = None) -> Iterable[T]:
    """A transient progress bar on stderr, so that --json output stays clean."""
    return track(items, label, total=total, transient=True, console=Console(stderr=True))


def _shingle_bytes(shingle: str | tuple[str, ...]) -> bytes:
    return shingle.encode() if isinstance(shingle, str) else ("\x00w" + " ".join(shingle)).encode()


def datasketch_roots(texts: Sequence[str], threshold: float, num_perm: int, seed: int) -> list[int]:
    """The baseline: MinHash + MinHashLSH query-then-insert per text, verify, union-find."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    parent = list(range(len(texts)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    minhashes: list[MinHash] = []
    for k, text in enumerate(_progress(texts, "datasketch loop")):
        m = MinHash(num_perm=num_perm, seed=seed)
        for shingle in shingles(text):
            m.update(_shingle_bytes(shingle))
        for other in lsh.query(m):
            if m.jaccard(minhashes[other]) >= threshold:
                a, b = root(other), root(k)
                parent[max(a, b)] = min(a, b)
        lsh.insert(k, m)
        minhashes.append(m)
    return [root(k) for k in range(len(texts))]


def exact_pairs(texts: Sequence[str], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) of `texts` whose exact shingle Jaccard is >= threshold.

    Prefix filtering (AllPairs): with shingles ordered rarest first, J(A, B) >= t needs
    |A & B| >= ceil(t * |A|), so A's first |A| - ceil(t * |A|) + 1 shingles must meet B's. Only
    pairs that share a prefix shingle are compared; the result is exact.
    """
    sets = [shingles(text) for text in texts]
    frequency = Counter(s for shingle_set in sets for s in shingle_set)
    rank = {s: r for r, (s, _) in enumerate(sorted(frequency.items(), key=lambda kv: kv[1]))}
    seen: dict[int, list[int]] = defaultdict(list)
    found: list[tuple[int, int]] = []
    for k, shingle_set in enumerate(_progress(sets, "exact Jaccard pairs")):
        ordered = sorted(rank[s] for s in shingle_set)
        prefix = ordered[: len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1]
        candidates = {other for r in prefix for other in seen[r]}
        for r in prefix:
            seen[r].append(k)
        for other in sorted(candidates):
            union = len(sets[other] | shingle_set)
            if len(sets[other] & shingle_set) >= threshold * union - 1e-9:
                found.append((other, k))
    pairs = np.array(found, dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def loose_flags(texts: Sequence[str], roots: np.ndarray, below: float) -> int:
    """Flagged texts whose exact Jaccard with their cluster's representative is < `below`."""
    flagged = np.flatnonzero(roots != np.arange(len(roots)))
    return sum(exact_jaccard(texts[k], texts[roots[k]]) < below for k in flagged.tolist())


def flag_quality(
    texts: Sequence[str], flags: dict[int, int], pairs: tuple[np.ndarray, np.ndarray], threshold: float
) -> tuple[float, float]:
    """(precision, recall) of flags {member: representative} against exact Jaccard."""
    precise = sum(exact_jaccard(texts[m], texts[r]) >= threshold - 1e-9 for m, r in flags.items())
    i, j = pairs
    resolved = sum(a in flags or b in flags for a, b in zip(i.tolist(), j.tolist(), strict=True))
    precision = precise / len(flags) if flags else float("nan")
    return round(precision, 4), round(resolved / i.size, 4) if i.size else float("nan")


def cluster_roots(index: NearDuplicateIndex) -> np.ndarray:
    roots = np.arange(len(index.signatures))
    for group in index.clusters():
        roots[group] = group[0]
    return roots


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=15_000, help="CLINC150 train queries to use")
    parser.add_argument("--synthetic", type=int, help="generate N synthetic queries instead")
    parser.add_argument("--baseline-rows", type=int, help="rows for datasketch (min(rows, 20,000))")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1, help="MinHash seed (both methods)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if args.synthetic:
        texts, planted = synthetic_queries(args.synthetic)
        source = f"synthetic ({len(planted):,} planted near-duplicates)"
    else:
        texts, planted = clinc_queries(args.rows), []
        source = "CLINC150 train"
    n_base = min(args.baseline_rows or min(len(texts), 20_000), len(texts))
    opts = {"threshold": args.threshold, "num_perm": args.num_perm, "seed": args.seed}

    start = time.perf_counter()
    index = NearDuplicateIndex.build(texts, **opts)
    roots = cluster_roots(index)
    ours_s = time.perf_counter() - start
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    start = time.perf_counter()
    groups = near_duplicate_groups(index.similar_pairs(), texts)
    groups_s = time.perf_counter() - start

    start = time.perf_counter()
    subset_index = NearDuplicateIndex.build(texts[:n_base], **opts)
    subset_roots = cluster_roots(subset_index)
    ours_base_s = time.perf_counter() - start
    start = time.perf_counter()
    base_roots = np.array(datasketch_roots(texts[:n_base], **opts))
    base_s = time.perf_counter() - start

    i, j = exact_pairs(texts[:n_base], args.threshold)

    def recall(r: np.ndarray) -> float:
        return round(float(np.mean(r[i] == r[j])), 4) if i.size else float("nan")

    loose = args.threshold - 0.1
    chained = {k: int(subset_roots[k]) for k in np.flatnonzero(subset_roots != np.arange(n_base)).tolist()}
    subset_groups = near_duplicate_groups(subset_index.similar_pairs(), texts[:n_base])
    grouped = {m: g.representative for g in subset_groups for m, _ in g.members}
    chained_quality = flag_quality(texts[:n_base], chained, (i, j), args.threshold)
    grouped_quality = flag_quality(texts[:n_base], grouped, (i, j), args.threshold)
    result = {
        "source": source, "rows": len(texts), "baseline_rows": n_base,
        "bands": index.bands, "rows_per_band": index.rows,
        "ours_seconds": round(ours_s, 2), "ours_records_per_s": round(len(texts) / ours_s),
        "ours_subset_records_per_s": round(n_base / ours_base_s),
        "datasketch_seconds": round(base_s, 2), "datasketch_records_per_s": round(n_base / base_s),
        "speedup_same_rows": round(base_s / ours_base_s, 1),
        "peak_rss_mib_after_ours": round(rss_mib),
        "peak_rss_mib_at_end": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "clusters": int(np.sum(np.bincount(roots) >= 2)),
        "flagged": int(np.sum(roots != np.arange(len(roots)))),
        "exact_pairs_in_baseline_rows": int(i.size),
        "ours_recall": recall(subset_roots), "datasketch_recall": recall(base_roots),
        "ours_recall_in_full_run": recall(roots),
        "ours_flags_jaccard_lt_t-0.1": loose_flags(texts[:n_base], subset_roots, loose),
        "gate_groups_seconds": round(groups_s, 2),
        "gate_flagged": sum(len(g.members) for g in groups),
        "gate_union_find_precision": chained_quality[0], "gate_union_find_recall": chained_quality[1],
        "gate_no_chain_precision": grouped_quality[0], "gate_no_chain_recall": grouped_quality[1],
        "datasketch_flags_jaccard_lt_t-0.1": loose_flags(texts[:n_base], base_roots, loose),
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>36}: {value:,}" if isinstance(value, int) else f"{key:>36}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
