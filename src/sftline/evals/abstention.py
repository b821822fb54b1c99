"""When a classifier should answer the abstention label: scores, the operating point, the rule.

A classifier trained with the abstention label as one of its classes abstains when that label is
its top answer. That alone catches few out-of-scope inputs (27% on CLINC150 with MiniLM): the
out-of-scope class is small and varied. A score of how unlike the training data an input looks
catches more; three are compared on the run's holdout (higher = more likely out of scope):

- `msp`: 1 - the top in-scope probability after temperature scaling (the baseline of Hendrycks
  and Gimpel, 2017; the paper's "threshold" row);
- `energy`: -T logsumexp(in-scope logits / T) (Liu et al., 2020);
- `mahalanobis`: the smallest Mahalanobis distance of the pooled features to an in-scope class
  mean, with one covariance shared by the classes, fitted on the training data (Lee et al.,
  2018; on fine-tuned transformers, Podolskiy et al., 2021).

The operating point is set on the holdout's in-scope examples alone: the threshold lets at most
`false_abstention` of them be turned away by the score. It needs no out-of-scope examples, which
are few in most data (100 of CLINC150's 15,100 training queries), and it states the cost a user
pays in the terms they care about. Out-of-scope examples in the holdout, where there are some,
measure each score (AUROC) and pick the best one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from sftline.errors import ModelError

ScoreName = Literal["msp", "energy", "mahalanobis"]
SCORES: tuple[ScoreName, ...] = ("msp", "energy", "mahalanobis")
MIN_OUT_OF_SCOPE = 10
"""Abstention examples a holdout needs before `auto` picks a score by its AUROC there."""


@dataclass
class FeatureStats:
    """Class means of the in-scope classes and the precision matrix of their shared covariance."""

    means: np.ndarray
    """(in-scope classes, hidden)"""
    precision: np.ndarray
    """(hidden, hidden)"""

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row to its nearest class mean, shape (n,)."""
        f = np.asarray(features, dtype=np.float64)
        fp = f @ self.precision
        cross = fp @ self.means.T  # (n, classes)
        own = np.einsum("ij,ij->i", fp, f)[:, None]
        centre = np.einsum("ij,jk,ik->i", self.means, self.precision, self.means)[None, :]
        return np.asarray((own - 2 * cross + centre).min(axis=1))


def fit_feature_stats(features: np.ndarray, targets: Sequence[int], in_scope: Sequence[int]) -> FeatureStats:
    """Means per in-scope class and the pseudo-inverse of the pooled within-class covariance."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets)
    classes = [c for c in in_scope if np.any(y == c)]
    if not classes:
        raise ModelError("no in-scope training examples to fit class means on")
    means = np.stack([f[y == c].mean(axis=0) for c in classes])
    index = {c: i for i, c in enumerate(classes)}
    rows = np.array([index.get(int(t), -1) for t in y])
    keep = rows >= 0
    centred = f[keep] - means[rows[keep]]
    covariance = centred.T @ centred / max(int(keep.sum()), 1)
    return FeatureStats(means, np.linalg.pinv(covariance, hermitian=True))


def _in_scope_logits(logits: np.ndarray, in_scope: Sequence[int]) -> np.ndarray:
    return np.asarray(logits, dtype=np.float64)[:, list(in_scope)]


def score(
    name: str,
    logits: np.ndarray,
    features: np.ndarray | None,
    *,
    temperature: float,
    in_scope: Sequence[int],
    stats: FeatureStats | None,
) -> np.ndarray:
    """The out-of-scope score `name` of each example; higher means less like the training data."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if name == "msp":
        z = z - z.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return np.asarray(1.0 - probs[:, list(in_scope)].max(axis=1))
    if name == "energy":
        s = _in_scope_logits(logits, in_scope) / temperature
        top = s.max(axis=1)
        return np.asarray(-temperature * (top + np.log(np.exp(s - top[:, None]).sum(axis=1))))
    if name == "mahalanobis":
        if stats is None or features is None:
            raise ModelError("the mahalanobis score needs the classifier's features and class statistics")
        return stats.distances(features)
    raise ModelError(f"unknown abstention score {name!r}; known: {', '.join(SCORES)}")


def auroc(in_scope_scores: np.ndarray, out_of_scope_scores: np.ndarray) -> float | None:
    """P(an out-of-scope example scores above an in-scope one), ties counted half (Mann-Whitney)."""
    if not len(in_scope_scores) or not len(out_of_scope_scores):
        return None
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(out_of_scope_scores, in_scope_scores, alternative="two-sided").statistic
    return float(u) / (len(in_scope_scores) * len(out_of_scope_scores))


def threshold_for(in_scope_scores: np.ndarray, false_abstention: float) -> float:
    """The score above which at most `false_abstention` of `in_scope_scores` lie."""
    s = np.sort(np.asarray(in_scope_scores, dtype=np.float64))[::-1]
    if not len(s):
        raise ModelError("the holdout has no in-scope examples to set the abstention threshold on")
    allowed = min(math.floor(false_abstention * len(s)), len(s) - 1)
    return float(s[allowed])  # strictly above it: at most `allowed` of them (fewer on ties)


@dataclass(frozen=True)
class AbstentionRule:
    """Answer `label` when the top label is `label`, or when `score` is above `threshold`."""

    label: str
    score: ScoreName
    threshold: float
    false_abstention: float

    def abstain(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def choose_rule(
    logits: np.ndarray,
    features: np.ndarray | None,
    targets: Sequence[int],
    labels: Sequence[str],
    abstention: str,
    *,
    temperature: float,
    stats: FeatureStats | None,
    false_abstention: float,
    choice: str = "auto",
) -> tuple[AbstentionRule, dict[str, Any]]:
    """The rule for the holdout (`logits`, `features`, `targets` are its examples) and a report of
    every score on it: AUROC against the abstention examples, threshold, in-scope accuracy and
    abstention recall under that score's rule.

    `choice` names a score, or `auto`: the highest AUROC when the holdout holds at least
    MIN_OUT_OF_SCOPE abstention examples, else `msp`."""
    abstain_id = list(labels).index(abstention)
    in_scope = [i for i in range(len(labels)) if i != abstain_id]
    y = np.asarray(targets)
    is_out = y == abstain_id
    top = np.asarray(logits).argmax(axis=1)
    names = [s for s in SCORES if s != "mahalanobis" or (stats is not None and features is not None)]
    report: dict[str, Any] = {
        "in_scope": int((~is_out).sum()),
        "out_of_scope": int(is_out.sum()),
        "scores": {},
    }
    for name in names:
        s = score(name, logits, features, temperature=temperature, in_scope=in_scope, stats=stats)
        threshold = threshold_for(s[~is_out], false_abstention)
        answered_abstain = (top == abstain_id) | (s > threshold)
        correct_in = (~answered_abstain) & (top == y) & ~is_out
        report["scores"][name] = {
            "auroc": auroc(s[~is_out], s[is_out]),
            "threshold": threshold,
            "in_scope_accuracy": float(correct_in.sum() / max(int((~is_out).sum()), 1)),
            "abstention_recall": float(answered_abstain[is_out].mean()) if is_out.any() else None,
        }
    if choice == "auto" and is_out.sum() >= MIN_OUT_OF_SCOPE:
        measured = {n: r["auroc"] for n, r in report["scores"].items()}
        chosen = max(measured, key=lambda n: measured[n])
        report["chosen_by"] = "the highest AUROC on the holdout"
    elif choice == "auto":
        chosen = "msp"
        report["chosen_by"] = f"msp: the holdout has fewer than {MIN_OUT_OF_SCOPE} abstention examples"
    else:
        if choice not in report["scores"]:
            available = ", ".join(report["scores"])
            raise ModelError(f"abstention score {choice!r} is not available; available: {available}")
        chosen = choice
        report["chosen_by"] = "the run's settings"
    rule = AbstentionRule(abstention, chosen, report["scores"][chosen]["threshold"], false_abstention)  # type: ignore[arg-type]
    return rule, report
