"""Metrics over per-example outcomes, each with a bootstrap interval.

Every metric is computed from per-example arrays and a weight matrix `W` of shape (B, n): row `b`
says how often each example was drawn in bootstrap replicate `b`. The point estimate is the row of
ones. A replicate of any metric is then a few matrix products, and a paired comparison applies the
same rows to both models' outcomes, which is what makes it paired.

Undefined values (a rate over no examples, F1 of a class that neither occurs nor is predicted) are
NaN and are left out of averages; a metric that is undefined overall is reported as `None`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

N_BOOTSTRAP = 1000
CONFIDENCE = 0.95
ECE_BINS = 15

Metric = Callable[[np.ndarray], np.ndarray]
"""W (B, n) -> the metric's value in each of the B replicates, shape (B,)."""


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def mean_of(values: Sequence[float] | np.ndarray, where: Sequence[bool] | np.ndarray | None = None) -> Metric:
    """The mean of `values` (booleans give a rate), over the examples `where` is true."""
    v = np.asarray(values, dtype=np.float64)
    mask = np.ones_like(v) if where is None else np.asarray(where, dtype=np.float64)
    return lambda w: _ratio(w @ (v * mask), w @ mask)


def precision_recall(
    actual: Sequence[bool] | np.ndarray, predicted: Sequence[bool] | np.ndarray
) -> tuple[Metric, Metric]:
    """Precision and recall of a yes/no decision (for example "abstained" against "should have")."""
    a = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    both = a * p
    return (lambda w: _ratio(w @ both, w @ p)), (lambda w: _ratio(w @ both, w @ a))


def macro_f1(targets: Sequence[str], predictions: Sequence[str | None]) -> Metric:
    """F1 per label, averaged over the labels that occur as targets (in each bootstrap replicate:
    those drawn at least once as a target).

    F1 = 2 TP / (2 TP + FP + FN). A prediction of anything else (an invalid answer, which a
    generative model can produce in any number of spellings, or a label no example has) is a miss
    for its target's class and adds no class of its own, so the average does not depend on how
    many different wrong strings a model produced, and a slice is scored on its own labels.
    """
    labels = sorted(set(targets))
    index = {label: i for i, label in enumerate(labels)}
    n, k = len(targets), len(labels)
    truth = np.zeros((n, k))
    guess = np.zeros((n, k))
    truth[np.arange(n), [index[t] for t in targets]] = 1
    for row, p in enumerate(predictions):
        if p is not None and p in index:
            guess[row, index[p]] = 1
    hits = truth * guess

    def f1(w: np.ndarray) -> np.ndarray:
        tp = w @ hits
        fp = w @ guess - tp
        support = w @ truth
        per_label = np.where(support > 0, _ratio(2 * tp, tp + fp + support), np.nan)
        defined = ~np.isnan(per_label)
        return _ratio(np.where(defined, per_label, 0).sum(axis=1), defined.sum(axis=1).astype(float))

    return f1


def calibration_error(
    confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, n_bins: int = ECE_BINS
) -> Metric:
    """Expected calibration error over `n_bins` equal-width confidence bins:
    sum over bins of (examples in bin / all) x |accuracy in bin - mean confidence in bin|."""
    conf = np.asarray(confidence, dtype=np.float64)
    gap = np.asarray(correct, dtype=np.float64) - conf
    members = np.zeros((len(conf), n_bins))
    members[np.arange(len(conf)), bin_of(conf, n_bins)] = 1
    weighted_gap = members * gap[:, None]
    return lambda w: _ratio(np.abs(w @ weighted_gap).sum(axis=1), w.sum(axis=1))


def bin_of(confidence: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """The bin of each confidence: [0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1]."""
    return np.minimum((np.clip(confidence, 0, 1) * n_bins).astype(int), n_bins - 1)


def reliability(
    confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, n_bins: int = ECE_BINS
) -> list[dict[str, float | int | None]]:
    """Per bin: its range, how many examples, their mean confidence and their accuracy."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    bins = bin_of(conf, n_bins)
    rows: list[dict[str, float | int | None]] = []
    for b in range(n_bins):
        members = bins == b
        count = int(members.sum())
        rows.append(
            {
                "low": b / n_bins,
                "high": (b + 1) / n_bins,
                "count": count,
                "confidence": float(conf[members].mean()) if count else None,
                "accuracy": float(ok[members].mean()) if count else None,
            }
        )
    return rows


def bootstrap_weights(n: int, *, replicates: int = N_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """(1 + replicates, n): the first row is all ones (the point estimate), then multinomial
    resamples of n examples with replacement."""
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, np.full(n, 1 / n), size=replicates) if n else np.zeros((replicates, 0))
    return np.vstack([np.ones((1, n)), draws]).astype(np.float64)


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def summarise(values: np.ndarray, n: int, confidence: float = CONFIDENCE) -> Estimate:
    """values[0] is the point estimate, values[1:] the replicates: a percentile interval."""
    point = _finite(values[0])
    replicates = values[1:][~np.isnan(values[1:])]
    if point is None or not len(replicates):
        return Estimate(point, None, None, n)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Estimate(point, float(low), float(high), n)


def estimate(metric: Metric, weights: np.ndarray) -> Estimate:
    return summarise(metric(weights), weights.shape[1])


@dataclass(frozen=True)
class Difference:
    """candidate - baseline on the same examples, with a paired bootstrap interval and p-value."""

    baseline: float | None
    candidate: float | None
    delta: float | None
    low: float | None
    high: float | None
    p_value: float | None
    n: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "delta": self.delta,
            "low": self.low,
            "high": self.high,
            "p_value": self.p_value,
            "n": self.n,
        }


def paired_difference(
    baseline: Metric, candidate: Metric, weights: np.ndarray, confidence: float = CONFIDENCE
) -> Difference:
    """The two metrics on the same bootstrap rows. The p-value is the two-sided share of
    replicates on the far side of zero (the smallest p a finite bootstrap can show is 2/B)."""
    a, b = baseline(weights), candidate(weights)
    delta = summarise(b - a, weights.shape[1], confidence)
    p_value = None
    replicates = (b - a)[1:]
    replicates = replicates[~np.isnan(replicates)]
    if delta.value is not None and len(replicates):
        below = float((replicates <= 0).mean())
        above = float((replicates >= 0).mean())
        p_value = min(1.0, max(2 * min(below, above), 2 / len(replicates)))
    return Difference(
        _finite(a[0]), _finite(b[0]), delta.value, delta.low, delta.high, p_value, weights.shape[1]
    )


def mcnemar(baseline_correct: Sequence[bool], candidate_correct: Sequence[bool]) -> dict[str, float | int]:
    """McNemar's exact test on paired right/wrong outcomes.

    `b`: baseline right and candidate wrong; `c`: baseline wrong and candidate right. Under the null
    hypothesis (no difference) the discordant pairs split 50/50, so p = P(Binomial(b + c, 1/2) is at
    least as uneven as observed), two-sided.
    """
    base = np.asarray(baseline_correct, dtype=bool)
    cand = np.asarray(candidate_correct, dtype=bool)
    b = int((base & ~cand).sum())
    c = int((~base & cand).sum())
    return {"baseline_only": b, "candidate_only": c, "p_value": binomial_two_sided(min(b, c), b + c)}


def binomial_two_sided(k: int, n: int) -> float:
    """P(X <= k) + P(X >= n - k) for X ~ Binomial(n, 1/2), with k <= n / 2; 1 when n is 0."""
    if n == 0:
        return 1.0
    log_half = n * math.log(0.5)
    tail = sum(math.exp(_log_comb(n, i) + log_half) for i in range(k + 1))
    return min(1.0, 2 * tail)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fit_temperature(logits: np.ndarray, targets: Sequence[int] | np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T).

    NLL is convex in 1/T, so it is unimodal in log(1/T): a golden-section search over
    log(1/T) in [-5, 5] finds it to 1e-6 without gradients or randomness.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets, dtype=int)
    if not len(z):
        return 1.0
    picked = z[np.arange(len(z)), y]

    def nll(u: float) -> float:
        beta = math.exp(u)
        scaled = beta * z
        top = scaled.max(axis=1)
        return float((top + np.log(np.exp(scaled - top[:, None]).sum(axis=1)) - beta * picked).mean())

    lo, hi = -5.0, 5.0
    ratio = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    f1, f2 = nll(x1), nll(x2)
    while hi - lo > 1e-6:
        if f1 < f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - ratio * (hi - lo)
            f1 = nll(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + ratio * (hi - lo)
            f2 = nll(x2)
    return 1 / math.exp((lo + hi) / 2)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
