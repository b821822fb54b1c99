"""The monitoring station's drift tests on CLINC150: false alarms on undrifted traffic, power on
shifted traffic, time per test and peak memory.

CLINC150 "Full": 150 intents in 10 domains. The serving model's world is 8 domains (all but
`--held-out`): its reference inputs are a seeded 2,000 of 12,000 of their queries (the
station's `reference_max`), and its "release evaluation" is a held-out fifth of those training
queries, predicted by logistic regression over MiniLM embeddings fitted on the other four
fifths (labels, max-probability confidences, correctness). Traffic samples of n = 200 and 500:

- in distribution: other queries of the same 8 domains (`--repeats` seeded draws each). With
  `--split random` (the default) the 8 domains' train + val + test queries are shuffled before
  they are cut into reference and traffic, so "in distribution" is exactly that and the false-
  alarm rate measures each test's validity. With `--split clinc` the reference is CLINC's train
  split and traffic its val + test: a second collection of the same intents, which the tests
  can tell apart (see BENCHMARKS.md);
- held-out 30% / 100%: queries of the 2 held-out domains mixed in at 30%, or only those;
- out-of-scope 30%: CLINC's out-of-scope queries mixed in at 30%.

Two sampling designs:

- per repeat (the default): every repeat draws its own reference (2,000 inputs of the 12,000,
  and a release evaluation of 2,400 answers from the classifier's unseen queries, disjoint from
  the traffic sample) and its own traffic sample, and gives the tests a seed of its own. Repeats
  are independent, and the false-alarm rate is the unconditional one a permutation test
  promises: reference and traffic exchangeable, a new draw of both each time;
- `--fixed-reference`: one reference (seeded 2,000 inputs, the classifier's held-out fifth as the
  release evaluation) for every repeat, and the tests at the one seed `--seed`, as the station
  runs them (`monitoring.drift.seed`). The rate is conditional on that reference: what one
  deployment sees over many windows.

Each test runs once per sample; it fires at alpha = 0.05 alone, and the family fires when any
test fires at the Bonferroni level 0.05 / 6. Permutation tests draw ceil(10 / (0.05 / 6)) = 1,200
permutations, the station's floor at that level. Reported: false-alarm rate with a Wilson 95%
interval, detection rate per shift, ms per call, the tracemalloc peak of one call at n = 500, and
the process's peak RSS. A naive chi-square on token counts runs beside the real token test, to
show why it is not used. Lengths and tokens come from MiniLM's tokenizer.

    .venv/bin/python bench/bench_drift.py [--repeats 120] [--power-repeats 30] [--split random|clinc]
        [--fixed-reference] [--held-out travel,small_talk] [--seed 0] [--json]

Embeddings of all CLINC queries are cached in the temp folder (keyed by the texts' hash).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from sftline.evals.predict import EmbeddingPredictor
from sftline.models import materialise_embedded
from sftline.monitoring import drift
from sftline.monitoring.novel import novel_clusters

DATA = Path(__file__).resolve().parent.parent / "examples" / "clinc150"
FAMILY_ALPHA = 0.05
SIZES = (200, 500)
REFERENCE_SIZE = 2000
"""Reference inputs per draw: the station's default `reference_max`."""
SHIFTS = {"held-out 30%": ("held_out", 0.3), "held-out 100%": ("held_out", 1.0), "oos 30%": ("oos", 0.3)}
TESTS = ("input_length", "input_tokens", "embedding", "predicted_label", "confidence", "calibration")
PERMUTATIONS = math.ceil(10 / drift.bonferroni(FAMILY_ALPHA, len(TESTS)))
"""The station's floor at the per-test level 0.05 / 6: 1,200."""


@dataclass
class Corpus:
    """Every query once: its text, intent, domain ("oos" for out-of-scope), MiniLM vector and
    token ids, plus the classifier's label and confidence on it."""

    texts: list[str]
    intents: list[str]
    domains: list[str]
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    tokens: list[list[int]] = field(default_factory=list)
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0))


def load(held_out: tuple[str, ...], cut: str, seed: int) -> tuple[Corpus, dict[str, np.ndarray]]:
    """The corpus and the row indices of each pool: reference (8 domains' train), in_dist (their
    val + test), held_out (the 2 domains, every split), oos (every out-of-scope split). With
    `cut` "random", the 8 domains' 18,000 queries are shuffled (seeded) before they are cut
    into reference (12,000) and in_dist (6,000): traffic then is exchangeable with the reference."""
    data = json.loads((DATA / "data_full.json").read_text())
    domain_of = {
        intent: domain
        for domain, intents in json.loads((DATA / "domains.json").read_text()).items()
        for intent in intents
    }
    corpus = Corpus([], [], [])
    pools: dict[str, list[int]] = {"reference": [], "in_dist": [], "held_out": [], "oos": []}
    for split in ("train", "val", "test", "oos_train", "oos_val", "oos_test"):
        for text, intent in data[split]:
            domain = "oos" if split.startswith("oos") else domain_of[intent]
            if domain == "oos":
                pool = "oos"
            elif domain in held_out:
                pool = "held_out"
            else:
                pool = "reference" if split == "train" else "in_dist"
            pools[pool].append(len(corpus.texts))
            corpus.texts.append(text)
            corpus.intents.append(intent)
            corpus.domains.append(domain)
    arrays = {name: np.array(rows) for name, rows in pools.items()}
    if cut == "random":
        known = np.random.default_rng([seed, 18_000]).permutation(
            np.r_[arrays["reference"], arrays["in_dist"]]
        )
        arrays["reference"], arrays["in_dist"] = (
            known[: len(pools["reference"])],
            known[len(pools["reference"]) :],
        )
    return corpus, arrays


def embed(corpus: Corpus) -> float:
    """Vectors (cached) and token ids; returns the seconds spent embedding (0 when cached)."""
    cache_dir = Path(tempfile.gettempdir())
    key = hashlib.sha256("\n".join(corpus.texts).encode()).hexdigest()[:16]
    cached = cache_dir / f"sftline-bench-drift-minilm-{key}.npy"
    with tempfile.TemporaryDirectory() as folder:
        encoder = EmbeddingPredictor(materialise_embedded("minilm-l6", Path(folder)).path, labels=())
        ids = encoder.tokenizer(corpus.texts, add_special_tokens=False)["input_ids"]
        corpus.tokens = [list(row) for row in ids]
        if cached.exists():
            corpus.vectors = np.load(cached)
            return 0.0
        start = time.perf_counter()
        corpus.vectors = encoder.embed(corpus.texts)[0]
        seconds = time.perf_counter() - start
    np.save(cached, corpus.vectors)
    return seconds


def classify(corpus: Corpus, pools: dict[str, np.ndarray], seed: int) -> np.ndarray:
    """Fit logistic regression on 4/5 of the reference pool; predict every query. Returns the
    rows of the release evaluation set: the other fifth."""
    labels = np.array(corpus.intents)
    fit_rows, eval_rows = train_test_split(
        pools["reference"], test_size=0.2, stratify=labels[pools["reference"]], random_state=seed
    )
    model = LogisticRegression(C=10.0, max_iter=300).fit(corpus.vectors[fit_rows], labels[fit_rows])
    proba = model.predict_proba(corpus.vectors)
    corpus.predicted = model.classes_[proba.argmax(axis=1)]
    corpus.confidence = proba.max(axis=1)
    return np.sort(eval_rows)


@dataclass(frozen=True)
class Sample:
    """One repeat's draw: the reference inputs, the release evaluation's rows, the traffic rows,
    and the seed the tests run at."""

    reference: np.ndarray
    evaluation: np.ndarray
    current: np.ndarray
    seed: int


def fixed_sample(
    reference: np.ndarray, evaluation: np.ndarray, seed: int
) -> Callable[[np.ndarray, np.random.Generator], Sample]:
    """The old design: the same reference and evaluation for every traffic sample, and the
    tests at one seed, as the station runs them."""
    return lambda current, rng: Sample(reference, evaluation, current, seed)


def fresh_sample(
    pools: dict[str, np.ndarray], evaluation: np.ndarray
) -> Callable[[np.ndarray, np.random.Generator], Sample]:
    """A new reference for every traffic sample: 2,000 inputs of the reference pool, and as many
    evaluation answers as the release evaluation holds, from the queries the classifier never
    saw (the evaluation fifth and the in-distribution pool) less the traffic sample; the tests
    at a seed of the repeat's own."""
    unseen = np.r_[evaluation, pools["in_dist"]]

    def sample(current: np.ndarray, rng: np.random.Generator) -> Sample:
        reference = np.sort(rng.choice(pools["reference"], size=REFERENCE_SIZE, replace=False))
        answers = np.sort(rng.choice(np.setdiff1d(unseen, current), size=evaluation.size, replace=False))
        return Sample(reference, answers, current, int(rng.integers(2**31)))

    return sample


Test = Callable[[Sample], drift.DriftResult]
"""One test on a repeat's draw."""


def tests_for(corpus: Corpus) -> dict[str, Test]:
    """The six tests (at alpha 0.05, 1,200 permutations, defaults otherwise) and the naive token
    chi-square."""
    lengths = np.array([len(t) for t in corpus.tokens])
    intents = np.array(corpus.intents)
    correct = corpus.predicted == intents

    def tokens(rows: np.ndarray) -> list[list[int]]:
        return [corpus.tokens[i] for i in rows]

    return {
        "input_length": lambda s: drift.length_drift(lengths[s.reference], lengths[s.current], alpha=0.05),
        "input_tokens": lambda s: drift.token_drift(
            tokens(s.reference), tokens(s.current), alpha=0.05, seed=s.seed, permutations=PERMUTATIONS
        ),
        "embedding": lambda s: drift.embedding_drift(
            corpus.vectors[s.reference],
            corpus.vectors[s.current],
            alpha=0.05,
            seed=s.seed,
            permutations=PERMUTATIONS,
        ),
        "predicted_label": lambda s: drift.label_drift(
            list(corpus.predicted[s.evaluation]),
            list(corpus.predicted[s.current]),
            alpha=0.05,
            seed=s.seed,
            permutations=PERMUTATIONS,
        ),
        "confidence": lambda s: drift.confidence_drift(
            corpus.confidence[s.evaluation], corpus.confidence[s.current], alpha=0.05
        ),
        "calibration": lambda s: drift.calibration_drift(
            corpus.confidence[s.evaluation],
            correct[s.evaluation],
            corpus.confidence[s.current],
            correct[s.current],
            alpha=0.05,
            seed=s.seed,
            permutations=PERMUTATIONS,
        ),
        "tokens_naive_chi2": lambda s: naive_token_chi2(tokens(s.reference), tokens(s.current)),
    }


def run_all(
    tests: dict[str, Test], sample: Sample, times: dict[tuple[str, int], list[float]]
) -> dict[str, drift.DriftResult]:
    results = {}
    for name, test in tests.items():
        start = time.perf_counter()
        results[name] = test(sample)
        times.setdefault((name, len(sample.current)), []).append(time.perf_counter() - start)
    return results


def naive_token_chi2(
    ref_tokens: list[list[int]], cur_tokens: list[list[int]], top_k: int = 200
) -> drift.DriftResult:
    """What token_drift does not do: chi-square homogeneity on token occurrence counts, as if each
    token were an independent draw (reference's top_k tokens plus "other")."""
    ref_counts = np.bincount(np.concatenate([np.array(t, dtype=int) for t in ref_tokens if t]), minlength=1)
    vocabulary = np.argsort(-ref_counts, kind="stable")[:top_k]
    column = np.full(max(ref_counts.size, 1 + max((max(t) for t in cur_tokens if t), default=0)), top_k)
    column[vocabulary] = np.arange(top_k)
    table = np.zeros((2, top_k + 1))
    for row, texts in enumerate((ref_tokens, cur_tokens)):
        for t in texts:
            np.add.at(table[row], column[np.array(t, dtype=int)], 1)
    table = table[:, table.sum(axis=0) > 0]
    statistic, p, _, _ = stats.chi2_contingency(table, correction=False)
    return drift.DriftResult("tokens_naive_chi2", "chi2", float(statistic), float(p), 0.05, None, 0, 0, {})


def draw(
    pools: dict[str, np.ndarray], n: int, shift: tuple[str, float] | None, rng: np.random.Generator
) -> np.ndarray:
    if shift is None:
        return rng.choice(pools["in_dist"], size=n, replace=False)
    pool, share = shift
    shifted = round(n * share)
    return np.r_[
        rng.choice(pools["in_dist"], size=n - shifted, replace=False),
        rng.choice(pools[pool], size=shifted, replace=False),
    ]


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate k / n (95% by default)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fired(results: dict[str, drift.DriftResult], name: str) -> bool:
    if name == "family":
        level = drift.bonferroni(FAMILY_ALPHA, len(TESTS))
        return any(results[t].fires_at(level) for t in TESTS)
    return results[name].fires_at(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=120, help="in-distribution samples per size")
    parser.add_argument("--power-repeats", type=int, default=30, help="shifted samples per shift and size")
    parser.add_argument("--held-out", default="travel,small_talk", help="the 2 domains outside the reference")
    parser.add_argument(
        "--split",
        choices=("random", "clinc"),
        default="random",
        help="random: reference and traffic from one shuffled pool (a true null); clinc: train vs val + test",
    )
    parser.add_argument(
        "--fixed-reference",
        action="store_true",
        help="one reference and one test seed for every repeat (what one deployment sees); "
        "default: a new reference, traffic sample and seed per repeat",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    command = "  ".join(["$", ".venv/bin/python", "bench/bench_drift.py", *sys.argv[1:]])
    torch.set_num_threads(1)
    with threadpool_limits(1):
        return bench(args, command)


def bench(args: argparse.Namespace, command: str) -> int:
    wall = time.perf_counter()
    corpus, pools = load(tuple(args.held_out.split(",")), args.split, args.seed)
    embed_s = embed(corpus)
    rss_encoder = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    evaluation = classify(corpus, pools, args.seed)
    classify_s = time.perf_counter() - start
    reference_rows = np.sort(
        np.random.default_rng(args.seed).choice(pools["reference"], size=REFERENCE_SIZE, replace=False)
    )
    if args.fixed_reference:
        sample_of = fixed_sample(reference_rows, evaluation, args.seed)
    else:
        sample_of = fresh_sample(pools, evaluation)
    tests = tests_for(corpus)
    intents = np.array(corpus.intents)
    times: dict[tuple[str, int], list[float]] = {}
    names = (*TESTS, "family", "tokens_naive_chi2")
    false_alarms = {(name, n): 0 for name in names for n in SIZES}
    detections = {(name, n, shift): 0 for name in names for n in SIZES for shift in SHIFTS}
    p_values: dict[str, list[float]] = {name: [] for name in (*TESTS, "tokens_naive_chi2")}
    for n in SIZES:
        for r in range(args.repeats):
            rng = np.random.default_rng([args.seed, n, r])
            results = run_all(tests, sample_of(draw(pools, n, None, rng), rng), times)
            for name in names:
                false_alarms[name, n] += fired(results, name)
            for name in p_values:
                p_values[name].append(results[name].p_value or 1.0)
        for shift, spec in SHIFTS.items():
            for r in range(args.power_repeats):
                rng = np.random.default_rng([args.seed, n, r, 1 + len(shift)])
                results = run_all(tests, sample_of(draw(pools, n, spec, rng), rng), times)
                for name in names:
                    detections[name, n, shift] += fired(results, name)
    loop_s = time.perf_counter() - start - classify_s

    peaks = {}
    rng = np.random.default_rng([args.seed, 9])
    sample = sample_of(draw(pools, 500, None, rng), rng)
    for name, test in tests.items():
        tracemalloc.start()
        test(sample)
        peaks[name] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    clusters = novelty(corpus, pools, args.seed)
    report = {
        "command": command,
        "design": "fixed reference" if args.fixed_reference else "per repeat",
        "permutations": PERMUTATIONS,
        "repeats": args.repeats,
        "power_repeats": args.power_repeats,
        "held_out": args.held_out,
        "split": args.split,
        "embed_s": round(embed_s, 1),
        "classifier_s": round(classify_s, 1),
        "classifier_eval_accuracy": float(np.mean(corpus.predicted[evaluation] == intents[evaluation])),
        "tests_s": round(loop_s, 1),
        "wall_s": round(time.perf_counter() - wall, 1),
        "peak_rss_mb_after_encoder": round(rss_encoder),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rows": [],
        "novel_clusters": clusters,
    }
    for name in names:
        row: dict[str, Any] = {"test": name}
        for n in SIZES:
            k = false_alarms[name, n]
            low, high = wilson(k, args.repeats)
            row[f"false_alarm_{n}"] = {"rate": k / args.repeats, "low": low, "high": high}
            for shift in SHIFTS:
                row[f"power_{n}_{shift}"] = (
                    detections[name, n, shift] / args.power_repeats if args.power_repeats else None
                )
            if name != "family":
                row[f"ms_{n}"] = 1000 * float(np.mean(times[name, n]))
        if name in p_values:
            row["p_below_0.05"] = float(np.mean(np.array(p_values[name]) < 0.05))
        row["peak_mb"] = peaks.get(name)
        report["rows"].append(row)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


def novelty(corpus: Corpus, pools: dict[str, np.ndarray], seed: int) -> list[dict[str, Any]]:
    """novel_clusters on one held-out-30% sample of 500: size, purity (share of held-out texts)."""
    rows = draw(pools, 500, SHIFTS["held-out 30%"], np.random.default_rng([seed, 7]))
    start = time.perf_counter()
    found = novel_clusters(
        corpus.vectors[pools["reference"]],
        corpus.vectors[rows],
        [corpus.texts[i] for i in rows],
        reference_texts=[corpus.texts[i] for i in pools["reference"]],
        seed=seed,
    )
    seconds = time.perf_counter() - start
    held = set(pools["held_out"].tolist())
    return [
        {
            "size": c["size"],
            "held_out_share": float(np.mean([rows[i] in held for i in c["indices"]])),
            "domains": sorted({corpus.domains[rows[i]] for i in c["indices"]}),
            "top_words": c["top_words"][:5],
            "example": c["examples"][0],
            "novel": c["novel"],
            "threshold": round(c["threshold"], 3),
            "seconds": round(seconds, 2),
        }
        for c in found
    ]


def print_report(report: dict[str, Any]) -> None:
    print(report["command"], f"(split: {report['split']}, design: {report['design']})")
    print(
        f"embedding {report['embed_s']} s, classifier {report['classifier_s']} s "
        f"(eval accuracy {report['classifier_eval_accuracy']:.3f}), tests {report['tests_s']} s, "
        f"wall {report['wall_s']} s, peak RSS {report['peak_rss_mb']} MB"
    )
    print()
    header = "| test | false alarms n=200 | false alarms n=500 | " + " | ".join(
        f"{shift} n={n}" for n in SIZES for shift in SHIFTS
    )
    print(header + " | ms n=200 | ms n=500 | peak MB |")
    print("|---" * (header.count("|") + 3) + "|")
    for row in report["rows"]:
        cells = [row["test"]]
        for n in SIZES:
            fa = row[f"false_alarm_{n}"]
            cells.append(f"{fa['rate']:.3f} [{fa['low']:.3f}, {fa['high']:.3f}]")
        cells += [
            "-" if row[f"power_{n}_{shift}"] is None else f"{row[f'power_{n}_{shift}']:.2f}"
            for n in SIZES
            for shift in SHIFTS
        ]
        cells += [f"{row[f'ms_{n}']:.0f}" if f"ms_{n}" in row else "-" for n in SIZES]
        cells.append(f"{row['peak_mb']:.0f}" if row["peak_mb"] is not None else "-")
        print("| " + " | ".join(cells) + " |")
    print()
    for cluster in report["novel_clusters"]:
        print(cluster)


if __name__ == "__main__":
    raise SystemExit(main())
