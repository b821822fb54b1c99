"""The abstention operating point is chosen on the holdout, and scores are what they say."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from sftline.errors import ModelError
from sftline.evals.abstention import auroc, choose_rule, fit_feature_stats, score, threshold_for


def test_threshold_turns_away_at_most_the_allowed_share_of_in_scope() -> None:
    scores = np.arange(200, dtype=float)  # 200 in-scope examples
    for share, allowed in [(0.0, 0), (0.01, 2), (0.05, 10), (0.333, 66)]:
        threshold = threshold_for(scores, share)
        assert int((scores > threshold).sum()) == allowed
    with pytest.raises(ModelError):
        threshold_for(np.array([]), 0.01)


def test_auroc_matches_counting_pairs() -> None:
    rng = np.random.default_rng(0)
    inside, outside = rng.normal(0, 1, 40), rng.normal(1, 1, 15)
    pairs = [(o > i) + 0.5 * (o == i) for o in outside for i in inside]
    assert auroc(inside, outside) == pytest.approx(np.mean(pairs))
    assert auroc(inside, np.array([])) is None


def test_mahalanobis_distance_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 5))
    targets = rng.integers(0, 3, 300)
    stats = fit_feature_stats(features, targets, [0, 1, 2])
    x = rng.normal(size=(4, 5))
    direct = [min(float((v - m) @ stats.precision @ (v - m)) for m in stats.means) for v in x]
    np.testing.assert_allclose(stats.distances(x), direct, rtol=1e-9)


def _holdout(n_in: int, n_out: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Logits over labels [a, b, c, oos]: in-scope rows confident in their own label, out-of-scope
    rows flat (so every score separates them), with 2 features that do not separate anything."""
    rng = np.random.default_rng(seed)
    targets = list(rng.integers(0, 3, n_in)) + [3] * n_out
    logits = rng.normal(0, 0.3, (n_in + n_out, 4))
    for row, target in enumerate(targets[:n_in]):
        logits[row, target] += 4.0
    logits[:, 3] -= 2.0  # the oos class is never the top answer here
    features = rng.normal(size=(n_in + n_out, 2))
    return logits, features, targets


def test_auto_picks_the_best_score_on_the_holdout_and_its_threshold_is_the_in_scope_quantile() -> None:
    logits, features, targets = _holdout(300, 30)
    stats = fit_feature_stats(features[:300], targets[:300], [0, 1, 2])
    labels = ["a", "b", "c", "oos"]
    rule, report = choose_rule(
        logits, features, targets, labels, "oos", temperature=1.0, stats=stats, false_abstention=0.02
    )
    # Features carry no signal here, the logits do: mahalanobis loses, a logit score wins.
    assert report["scores"]["mahalanobis"]["auroc"] < 0.7
    assert rule.score in ("msp", "energy") and report["scores"][rule.score]["auroc"] > 0.95
    chosen = score(rule.score, logits, features, temperature=1.0, in_scope=[0, 1, 2], stats=stats)
    assert int((chosen[:300] > rule.threshold).sum()) <= 6  # 2% of 300 in-scope
    assert report["scores"][rule.score]["abstention_recall"] > 0.9
    assert (rule.label, rule.false_abstention) == ("oos", 0.02)


def test_auto_falls_back_to_msp_without_enough_abstention_examples_and_a_named_score_is_kept() -> None:
    logits, features, targets = _holdout(300, 5)
    on_holdout = functools.partial(
        choose_rule, logits, features, targets, ["a", "b", "c", "oos"], "oos", temperature=1.0, stats=None
    )
    rule, report = on_holdout(false_abstention=0.01)
    assert rule.score == "msp" and "fewer than 10" in report["chosen_by"]
    assert "mahalanobis" not in report["scores"]  # no feature statistics to compute it from
    assert on_holdout(false_abstention=0.01, choice="energy")[0].score == "energy"
    with pytest.raises(ModelError, match="not available"):
        on_holdout(false_abstention=0.01, choice="mahalanobis")
