"""Drift statistics: is recent traffic still like the data the serving model was trained and
evaluated on? Pure functions over arrays; the monitoring station reads the record and calls them.

The reference is the serving model's training inputs (token lengths, token ids, embeddings) and
its predictions on the release evaluation set (labels, confidences, correctness); the current
sample is the logged predictions of recent traffic. Each test returns a `DriftResult` and says
`drifted` only when its p-value is below the level it was given, so a family of tests run at
`bonferroni(family_level, tests)` each fires on undrifted traffic at most `family_level` of the
time. Every test is valid at any sample size, either exactly (permutation tests: under "no
drift" the two samples are exchangeable, so the observed statistic is one draw among the
permuted ones) or conservatively (Kolmogorov-Smirnov on tied values, chi-square only where every
expected count is at least 5). Under `min_samples` on either side a test is skipped and says why.

A large sample makes a trivial shift significant, so the distribution tests on one number
(lengths, confidences) also need the population stability index to reach `min_psi` (0.1, the
usual "moderate shift" line) before they fire: significant and large enough to matter.

Randomness (subsamples, permutations) comes from `seed`; the same inputs and seed give the same
result. `details` holds only JSON types, for the report and the dashboard's charts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from sftline.evals.metrics import calibration_error, reliability

PSI_EPSILON = 1e-4
"""The share given to an empty bin, so that PSI stays finite (ln(share / epsilon) is at most 9.2)."""
PERMUTATION_BATCH = 250
"""Permutations drawn at once: a (250, n) matrix of sample labels, 2 MB per 1,000 examples."""


@dataclass(frozen=True)
class DriftResult:
    """One drift test of one signal."""

    name: str
    """The signal: "input_length", "input_tokens", "embedding", "predicted_label", "confidence",
    "calibration"."""
    test: str
    """The test: "ks+psi", "js_permutation", "mmd_permutation", "chi2", "chi2_permutation",
    "ece_permutation"."""
    statistic: float
    """The test statistic (KS D, JS distance, MMD², chi², ECE change); 0.0 when skipped."""
    p_value: float | None
    """None when skipped."""
    alpha: float
    """The level this test was run at."""
    effect: float | None
    """How large the shift is: PSI for one-number distributions, Jensen-Shannon distance for
    tokens and labels, out-of-fold AUC - 0.5 of a classifier telling the samples apart for
    embeddings, current ECE - reference ECE for calibration."""
    n_reference: int
    n_current: int
    details: dict[str, Any] = field(default_factory=dict)
    """JSON types only: bins with both shares, the tokens or labels that moved the most."""
    skipped: str | None = None
    """Why the test did not run (e.g. "12 current samples; 30 needed"); None when it ran."""
    min_effect: float | None = None
    """The floor the effect must reach as well (`min_psi`); None where none applies."""

    def fires_at(self, alpha: float) -> bool:
        """Whether this result says "drifted" at level `alpha`: one run of a test serves both its
        own level and the family's."""
        if self.skipped is not None or self.p_value is None:
            return False
        floor_met = self.min_effect is None or (self.effect is not None and self.effect >= self.min_effect)
        return self.p_value < alpha and floor_met

    @property
    def drifted(self) -> bool:
        """p_value < alpha and, where a floor applies (PSI), the effect reached it."""
        return self.fires_at(self.alpha)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"drifted": self.drifted}


def bonferroni(alpha_family: float, tests: int) -> float:
    """The level for each of `tests` tests so that the chance any of them fires when nothing
    drifted stays at most `alpha_family` (the union bound; it holds whatever the tests' mutual
    dependence, which here is strong: lengths, tokens and embeddings see the same texts)."""
    if not 0 < alpha_family < 1:
        raise ValueError(f"alpha_family must be in (0, 1), got {alpha_family}")
    if tests < 1:
        raise ValueError(f"tests must be at least 1, got {tests}")
    return alpha_family / tests


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> tuple[float, list[dict[str, Any]]]:
    """Population stability index over `bins` quantile bins of the reference:
    sum over bins of (current share - reference share) x ln(current share / reference share).

    The inner edges are reference values at its quantiles (ties merge bins, so a few-valued
    signal such as a length gets fewer), bins are (low, high] with open outer ends, and an empty
    bin counts as `PSI_EPSILON`. Returns the index and the bins for a chart: `low` and `high`
    (None for the open ends), `reference` and `current` shares. Empty input: (0.0, [])."""
    ref, cur = _finite(reference), _finite(current)
    if ref.size == 0 or cur.size == 0:
        return 0.0, []
    # The i-th edge is the ceil(i n / bins)-th smallest value, in integers: float quantile
    # levels (0.30000000000000004) would move an edge by one value.
    ordered = np.sort(ref)
    inner = np.unique(ordered[[(i * ref.size + bins - 1) // bins - 1 for i in range(1, bins)]])
    k = inner.size + 1
    ref_share = np.bincount(np.searchsorted(inner, ref, side="left"), minlength=k) / ref.size
    cur_share = np.bincount(np.searchsorted(inner, cur, side="left"), minlength=k) / cur.size
    r = np.where(ref_share > 0, ref_share, PSI_EPSILON)
    c = np.where(cur_share > 0, cur_share, PSI_EPSILON)
    value = float(np.sum((c - r) * np.log(c / r)))
    edges: list[float | None] = [None, *(float(e) for e in inner), None]
    table = [
        {
            "low": edges[i],
            "high": edges[i + 1],
            "reference": float(ref_share[i]),
            "current": float(cur_share[i]),
        }
        for i in range(k)
    ]
    return value, table


def length_drift(
    reference_lengths: Sequence[float] | np.ndarray,
    current_lengths: Sequence[float] | np.ndarray,
    *,
    alpha: float,
    min_psi: float = 0.1,
    min_samples: int = 30,
) -> DriftResult:
    """Input lengths in tokens: two-sample Kolmogorov-Smirnov, and PSI of at least `min_psi`.

    KS compares the whole distribution (not just the mean) and needs no binning. Lengths are
    integers and KS p-values assume continuous data; with ties they are conservative (too large),
    so the level still holds."""
    return _ks_psi("input_length", reference_lengths, current_lengths, alpha, min_psi, min_samples)


def confidence_drift(
    reference_conf: Sequence[float] | np.ndarray,
    current_conf: Sequence[float] | np.ndarray,
    *,
    alpha: float,
    min_psi: float = 0.1,
    min_samples: int = 30,
) -> DriftResult:
    """The model's confidence in its answers: KS and PSI, as `length_drift`. Confidences pile up
    near 1, so the top quantile bins merge; PSI then has fewer, wider bins at the top."""
    return _ks_psi("confidence", reference_conf, current_conf, alpha, min_psi, min_samples)


def _ks_psi(
    name: str,
    reference: Sequence[float] | np.ndarray,
    current: Sequence[float] | np.ndarray,
    alpha: float,
    min_psi: float,
    min_samples: int,
) -> DriftResult:
    ref, cur = _finite(reference), _finite(current)
    if reason := _too_small(ref.size, cur.size, min_samples):
        return _skipped(name, "ks+psi", alpha, ref.size, cur.size, reason)
    ks = stats.ks_2samp(ref, cur)
    index, table = psi(ref, cur)
    p = float(ks.pvalue)
    return DriftResult(
        name=name,
        test="ks+psi",
        statistic=float(ks.statistic),
        p_value=p,
        alpha=alpha,
        effect=index,
        n_reference=ref.size,
        n_current=cur.size,
        details={"bins": table, "reference": _summary(ref), "current": _summary(cur)},
        min_effect=min_psi,
    )


def token_drift(
    reference_tokens: Sequence[Sequence[str | int]],
    current_tokens: Sequence[Sequence[str | int]],
    *,
    alpha: float,
    top_k: int = 200,
    min_samples: int = 30,
    permutations: int = 1000,
    seed: int = 0,
    max_per_side: int = 5000,
) -> DriftResult:
    """Which tokens the inputs use: a permutation test on the Jensen-Shannon distance between the
    two samples' token frequencies, over the `top_k` most frequent tokens plus one "other" bucket.

    Why not chi-square: a chi-square test of homogeneity on token counts treats every occurrence
    as an independent draw, but the tokens of one text come together (a text about a refund
    brings "refund", "money" and "back"), so it fires far too often; counting the texts that hold
    each token instead makes the K columns overlap (one text is in many), which breaks it too.
    The unit that is independent is the text, so the test permutes texts: it pools both samples,
    draws the current sample's size of texts at random as a pseudo current sample, and counts how
    often the pseudo distance is at least the observed one. The vocabulary is chosen from the
    pooled counts, which no permutation changes, so the test is exact at any sample size.

    The distance (base 2, in [0, 1]) is also the effect. Two samples of the same source are
    never at distance 0; `details["null_mean"]` is what that noise alone gives at these sizes.
    Larger samples are cut to `max_per_side` texts, seeded."""
    name, test = "input_tokens", "js_permutation"
    rng = np.random.default_rng(seed)
    ref = _subsample(list(reference_tokens), max_per_side, rng)
    cur = _subsample(list(current_tokens), max_per_side, rng)
    if reason := _too_small(len(ref), len(cur), min_samples):
        return _skipped(name, test, alpha, len(ref), len(cur), reason)
    pooled = Counter(token for text in (*ref, *cur) for token in text)
    vocabulary = [t for t, _ in sorted(pooled.items(), key=lambda kv: (-kv[1], str(kv[0])))[:top_k]]
    column = {t: i for i, t in enumerate(vocabulary)}
    other = len(vocabulary)
    counts = np.zeros((len(ref) + len(cur), other + 1))
    for row, text in enumerate((*ref, *cur)):
        for token in text:
            counts[row, column.get(token, other)] += 1
    ref_total, cur_total = counts[: len(ref)].sum(), counts[len(ref) :].sum()
    if ref_total == 0 or cur_total == 0:
        empty = "the reference" if ref_total == 0 else "the current sample"
        return _skipped(name, test, alpha, len(ref), len(cur), f"{empty} has no tokens")

    def distances(current_rows: np.ndarray) -> np.ndarray:
        current_counts = current_rows @ counts
        return _js_distance(counts.sum(axis=0) - current_counts, current_counts)

    observed, null = _permute(len(ref), len(cur), distances, permutations, rng)
    ref_share = counts[: len(ref)].sum(axis=0) / ref_total
    cur_share = counts[len(ref) :].sum(axis=0) / cur_total
    moved = np.argsort(-np.abs(cur_share[:other] - ref_share[:other]), kind="stable")[:20]
    p = _permutation_p(observed, null)
    return DriftResult(
        name=name,
        test=test,
        statistic=observed,
        p_value=p,
        alpha=alpha,
        effect=observed,
        n_reference=len(ref),
        n_current=len(cur),
        details={
            "permutations": len(null),
            "seed": seed,
            "null_mean": float(np.mean(null)),
            "vocabulary": len(vocabulary),
            "other_share": {"reference": float(ref_share[other]), "current": float(cur_share[other])},
            "moved": [
                {
                    "token": _json_key(vocabulary[i]),
                    "reference": float(ref_share[i]),
                    "current": float(cur_share[i]),
                }
                for i in moved
            ],
        },
    )


def label_drift(
    reference_labels: Sequence[Hashable],
    current_labels: Sequence[Hashable],
    *,
    alpha: float,
    min_samples: int = 30,
    permutations: int = 1000,
    seed: int = 0,
) -> DriftResult:
    """Predicted labels: a chi-square test of homogeneity on the 2 x K table of label counts.

    Each prediction is one draw, so the counts are multinomial and the test is the right one.
    Its chi-square p-value is asymptotic and holds only when every expected count is at least 5;
    with many labels and a few hundred requests most are not (120 labels, 200 requests: 1.7
    each), and pooling the rare ones would pool nearly all of them. Then the p-value comes from
    permutations instead (the statistic's distribution with the labels shuffled between the
    samples, which keeps the margins): exact at any counts, and `test` says "chi2_permutation".
    The effect is the Jensen-Shannon distance (base 2) between the two label distributions."""
    name = "predicted_label"
    if reason := _too_small(len(reference_labels), len(current_labels), min_samples):
        return _skipped(name, "chi2", alpha, len(reference_labels), len(current_labels), reason)
    labels = sorted(
        set(reference_labels) | set(current_labels), key=lambda label: (label is None, str(label))
    )
    index = {label: i for i, label in enumerate(labels)}
    codes = np.array([index[label] for label in (*reference_labels, *current_labels)])
    n_ref, n_cur = len(reference_labels), len(current_labels)
    onehot = np.zeros((codes.size, len(labels)))
    onehot[np.arange(codes.size), codes] = 1
    column_total = onehot.sum(axis=0)
    expected_cur = column_total * n_cur / codes.size
    expected_ref = column_total - expected_cur

    def chi2(current_rows: np.ndarray) -> np.ndarray:
        observed_cur = current_rows @ onehot
        observed_ref = column_total - observed_cur
        return np.sum((observed_cur - expected_cur) ** 2 / expected_cur, axis=1) + np.sum(
            (observed_ref - expected_ref) ** 2 / expected_ref, axis=1
        )

    ref_counts, cur_counts = onehot[:n_ref].sum(axis=0), onehot[n_ref:].sum(axis=0)
    statistic = float(chi2(np.r_[np.zeros(n_ref), np.ones(n_cur)][None, :])[0])
    details: dict[str, Any] = {
        "labels": len(labels),
        "min_expected": float(min(expected_cur.min(), expected_ref.min())),
    }
    if len(labels) < 2:
        test, p = "chi2", 1.0
    elif min(expected_cur.min(), expected_ref.min()) >= 5:
        test, p = "chi2", float(stats.chi2.sf(statistic, len(labels) - 1))
    else:
        test = "chi2_permutation"
        observed, null = _permute(n_ref, n_cur, chi2, permutations, np.random.default_rng(seed))
        p = _permutation_p(observed, null)
        details.update(permutations=len(null), seed=seed)
    ref_share, cur_share = ref_counts / n_ref, cur_counts / n_cur
    moved = np.argsort(-np.abs(cur_share - ref_share), kind="stable")[:20]
    details["moved"] = [
        {"label": _json_key(labels[i]), "reference": float(ref_share[i]), "current": float(cur_share[i])}
        for i in moved
    ]
    return DriftResult(
        name=name,
        test=test,
        statistic=statistic,
        p_value=p,
        alpha=alpha,
        effect=float(_js_distance(ref_counts[None, :], cur_counts[None, :])[0]),
        n_reference=n_ref,
        n_current=n_cur,
        details=details,
    )


def embedding_drift(
    reference_vectors: np.ndarray,
    current_vectors: np.ndarray,
    *,
    alpha: float,
    permutations: int = 200,
    seed: int = 0,
    max_per_side: int = 1000,
    min_samples: int = 30,
    folds: int = 5,
) -> DriftResult:
    """Input embeddings: a permutation test on the maximum mean discrepancy (MMD²) with an RBF
    kernel, and the out-of-fold ROC AUC of a classifier telling the samples apart as the effect.

    A domain classifier (logistic regression, stratified k-fold, AUC) is the readable measure: 0.5
    means the samples cannot be told apart. As the test it costs a k-fold fit per permutation:
    0.15-0.5 s for 1,000 x 384 against 500 x 384 on one core, so 30-100 s for 200 permutations.
    MMD² with a kernel on the pooled sample is computed once; every permutation is then a
    matrix product (s'Ks, s = +1/m for current rows, -1/n for reference rows), and 200 of them
    cost about as much as one classifier fit. With an RBF kernel MMD is zero only when the
    distributions are equal, so it sees any shift the classifier could. The bandwidth is the
    median pairwise distance of the pooled sample (the median heuristic), which no permutation
    changes, so the test stays exact. The classifier is fitted once, on the real labels, for the
    effect alone (AUC - 0.5). Each side is cut to `max_per_side` rows, seeded."""
    name, test = "embedding", "mmd_permutation"
    rng = np.random.default_rng(seed)
    ref = _subsample_rows(finite_rows(reference_vectors), max_per_side, rng)
    cur = _subsample_rows(finite_rows(current_vectors), max_per_side, rng)
    if reason := _too_small(len(ref), len(cur), min_samples):
        return _skipped(name, test, alpha, len(ref), len(cur), reason)
    if ref.shape[1] != cur.shape[1]:
        raise ValueError(f"reference vectors have {ref.shape[1]} dimensions, current {cur.shape[1]}")
    pooled = np.vstack([ref, cur])
    squared = np.sum(pooled**2, axis=1)
    distance2 = np.maximum(squared[:, None] + squared[None, :] - 2 * pooled @ pooled.T, 0)
    median2 = float(np.median(distance2[np.triu_indices(len(pooled), 1)]))
    bandwidth2 = median2 if median2 > 0 else 1.0
    kernel = np.exp(-distance2 / (2 * bandwidth2))
    n_ref, n_cur = len(ref), len(cur)

    def mmd2(current_rows: np.ndarray) -> np.ndarray:
        signs = current_rows / n_cur - (1 - current_rows) / n_ref
        return np.einsum("bi,bi->b", signs @ kernel, signs)

    observed, null = _permute(n_ref, n_cur, mmd2, permutations, rng)
    auc = _domain_auc(ref, cur, folds, seed)
    p = _permutation_p(observed, null)
    return DriftResult(
        name=name,
        test=test,
        statistic=observed,
        p_value=p,
        alpha=alpha,
        effect=auc - 0.5,
        n_reference=n_ref,
        n_current=n_cur,
        details={
            "auc": auc,
            "bandwidth": math.sqrt(bandwidth2),
            "null_mean": float(np.mean(null)),
            "permutations": len(null),
            "seed": seed,
        },
    )


def _domain_auc(ref: np.ndarray, cur: np.ndarray, folds: int, seed: int) -> float:
    """Out-of-fold ROC AUC of logistic regression telling current rows (1) from reference (0)."""
    target = np.r_[np.zeros(len(ref)), np.ones(len(cur))]
    k = max(2, min(folds, len(ref), len(cur)))
    scores = cross_val_predict(
        LogisticRegression(max_iter=1000),
        np.vstack([ref, cur]),
        target,
        cv=StratifiedKFold(k, shuffle=True, random_state=seed),
        method="decision_function",
    )
    return float(roc_auc_score(target, scores))


def expected_calibration_error(
    confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, bins: int = 10
) -> tuple[float, list[dict[str, Any]]]:
    """ECE over `bins` equal-width bins (the evaluation station's own computation,
    `sftline.evals.metrics.calibration_error`), and the bins of a reliability diagram: range,
    count, mean confidence, accuracy. No examples: (0.0, the empty bins)."""
    conf = np.asarray(confidences, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    table = reliability(conf, ok, bins)
    if conf.size == 0:
        return 0.0, table
    return float(calibration_error(conf, ok, bins)(np.ones((1, conf.size)))[0]), table


def calibration_drift(
    ref_confidences: Sequence[float] | np.ndarray,
    ref_correct: Sequence[bool] | np.ndarray,
    cur_confidences: Sequence[float] | np.ndarray,
    cur_correct: Sequence[bool] | np.ndarray,
    *,
    alpha: float,
    bins: int = 10,
    min_samples: int = 30,
    permutations: int = 1000,
    seed: int = 0,
) -> DriftResult:
    """Has the model's calibration got worse: a one-sided permutation test on ECE(current) -
    ECE(at evaluation), permuting (confidence, correct) pairs between the two samples.

    ECE is biased upward, and more so the smaller the sample: 200 perfectly calibrated answers
    show an ECE of several points by chance alone, so comparing the two ECEs directly (or a
    bootstrap interval of one) would fire on sample size. Permuting keeps both sample sizes, so
    the null distribution carries the same bias, and the test is exact. One-sided because better
    calibration calls for nothing. The effect is the ECE change (current - reference). The
    current sample's correctness comes from feedback labels, so it is usually the smaller one."""
    name, test = "calibration", "ece_permutation"
    ref_conf, cur_conf = (
        np.asarray(ref_confidences, dtype=np.float64),
        np.asarray(cur_confidences, dtype=np.float64),
    )
    ref_ok, cur_ok = np.asarray(ref_correct, dtype=bool), np.asarray(cur_correct, dtype=bool)
    if ref_conf.shape != ref_ok.shape or cur_conf.shape != cur_ok.shape:
        raise ValueError("each sample needs one correctness value per confidence")
    if reason := _too_small(ref_conf.size, cur_conf.size, min_samples):
        return _skipped(name, test, alpha, ref_conf.size, cur_conf.size, reason)
    ece = calibration_error(np.r_[ref_conf, cur_conf], np.r_[ref_ok, cur_ok], bins)

    def ece_change(current_rows: np.ndarray) -> np.ndarray:
        return ece(current_rows) - ece(1 - current_rows)

    observed, null = _permute(
        ref_conf.size, cur_conf.size, ece_change, permutations, np.random.default_rng(seed)
    )
    ref_ece, ref_table = expected_calibration_error(ref_conf, ref_ok, bins)
    cur_ece, cur_table = expected_calibration_error(cur_conf, cur_ok, bins)
    p = _permutation_p(observed, null)
    return DriftResult(
        name=name,
        test=test,
        statistic=observed,
        p_value=p,
        alpha=alpha,
        effect=observed,
        n_reference=ref_conf.size,
        n_current=cur_conf.size,
        details={
            "ece_reference": ref_ece,
            "ece_current": cur_ece,
            "accuracy_reference": float(ref_ok.mean()),
            "accuracy_current": float(cur_ok.mean()),
            "reliability_reference": ref_table,
            "reliability_current": cur_table,
            "null_mean": float(np.mean(null)),
            "permutations": len(null),
            "seed": seed,
        },
    )


def _permute(
    n_ref: int,
    n_cur: int,
    statistic: Any,
    permutations: int,
    rng: np.random.Generator,
) -> tuple[float, np.ndarray]:
    """The statistic on the real split and on `permutations` random ones. `statistic` maps a
    (B, n_ref + n_cur) 0/1 matrix (1: a current row) to B values."""
    labels = np.r_[np.zeros(n_ref), np.ones(n_cur)]
    observed = float(statistic(labels[None, :])[0])
    null = []
    for start in range(0, permutations, PERMUTATION_BATCH):
        batch = min(PERMUTATION_BATCH, permutations - start)
        null.append(statistic(rng.permuted(np.tile(labels, (batch, 1)), axis=1)))
    return observed, np.concatenate(null) if null else np.zeros(0)


def _permutation_p(observed: float, null: np.ndarray) -> float:
    """(1 + permuted values at least the observed one) / (1 + permutations): the observed split
    counts as one of the permutations, which keeps the test exact (and p > 0). Values within
    1e-12 (relative) count as equal, so rounding in the matrix products cannot decide a tie."""
    tolerance = 1e-12 * max(1.0, abs(observed))
    return float((1 + np.sum(null >= observed - tolerance)) / (1 + null.size))


def _js_distance(p_counts: np.ndarray, q_counts: np.ndarray) -> np.ndarray:
    """Row-wise Jensen-Shannon distance (base 2, in [0, 1]) between count vectors."""
    p = p_counts / p_counts.sum(axis=1, keepdims=True)
    q = q_counts / q_counts.sum(axis=1, keepdims=True)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    return np.sqrt(np.maximum((kl_p + kl_q) / 2, 0.0))


def _too_small(n_ref: int, n_cur: int, min_samples: int) -> str | None:
    if n_ref < min_samples:
        return f"{n_ref} reference samples; {min_samples} needed"
    if n_cur < min_samples:
        return f"{n_cur} current samples; {min_samples} needed"
    return None


def _skipped(name: str, test: str, alpha: float, n_ref: int, n_cur: int, reason: str) -> DriftResult:
    return DriftResult(name, test, 0.0, None, alpha, None, n_ref, n_cur, {}, skipped=reason)


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def finite_rows(vectors: np.ndarray) -> np.ndarray:
    """A (n, d) float64 matrix without non-finite rows; no rows at all: shape (0, 0)."""
    array = np.asarray(vectors, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, array.shape[-1] if array.ndim == 2 else 0))
    if array.ndim != 2:
        raise ValueError(f"expected a 2-d array of vectors, got shape {array.shape}")
    return array[np.isfinite(array).all(axis=1)]


def _subsample(items: list[Any], size: int, rng: np.random.Generator) -> list[Any]:
    if len(items) <= size:
        return items
    return [items[i] for i in np.sort(rng.choice(len(items), size=size, replace=False))]


def _subsample_rows(rows: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if len(rows) <= size:
        return rows
    return rows[np.sort(rng.choice(len(rows), size=size, replace=False))]


def _summary(values: np.ndarray) -> dict[str, float]:
    p50, p90, p99 = np.quantile(values, [0.5, 0.9, 0.99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def _json_key(value: Any) -> Any:
    """A token or label as a JSON value: numpy scalars become Python ones, others stay if JSON
    has them (str, int, float, bool, None) and become their str() otherwise."""
    if isinstance(value, np.generic):
        return value.item()
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)
