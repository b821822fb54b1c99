"""The drift statistics: each test finds an obvious shift, stays quiet on samples of one source,
skips small samples, and returns JSON details; PSI, ECE and chi-square against hand or scipy
computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from sftline.monitoring import drift

ALPHA = 0.05


def bursty_texts(rng: np.random.Generator, n: int, topics: np.ndarray) -> list[list[int]]:
    """Texts that repeat their topic's tokens: occurrences within a text are far from independent."""
    texts = []
    for _ in range(n):
        topic = topics[rng.integers(len(topics))]
        texts.append([int(t) for t in rng.choice(topic, size=rng.integers(4, 16))])
    return texts


def test_bonferroni_splits_the_family_level() -> None:
    assert drift.bonferroni(0.05, 5) == 0.01
    assert drift.bonferroni(0.05, 1) == 0.05
    assert drift.bonferroni(0.06, 6) == pytest.approx(0.01, abs=1e-15)
    with pytest.raises(ValueError, match="tests must be at least 1"):
        drift.bonferroni(0.05, 0)
    with pytest.raises(ValueError, match="alpha_family"):
        drift.bonferroni(1.5, 3)


def test_psi_on_a_known_case() -> None:
    reference = np.arange(100.0)  # decile bins of 10 values each: every reference share 0.1
    current = np.r_[np.arange(10.0), np.arange(90.0, 100.0)]  # half in the first bin, half in the last
    value, bins = drift.psi(reference, current)
    eps = drift.PSI_EPSILON
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (eps - 0.1) * math.log(eps / 0.1)
    assert value == pytest.approx(expected, rel=1e-12)
    assert [b["reference"] for b in bins] == pytest.approx([0.1] * 10)
    assert [b["current"] for b in bins] == pytest.approx([0.5] + [0.0] * 8 + [0.5])
    assert bins[0]["low"] is None and bins[-1]["high"] is None and bins[0]["high"] == 9.0
    assert drift.psi(reference, reference)[0] == 0.0
    assert drift.psi(np.array([]), current) == (0.0, [])


def test_psi_merges_tied_quantiles() -> None:
    value, bins = drift.psi(np.array([1, 1, 1, 1, 2, 2, 3, 3, 3, 3]), np.array([1, 2, 3, 3]))
    assert [(b["low"], b["high"]) for b in bins] == [(None, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, None)]
    assert [b["reference"] for b in bins] == [0.4, 0.2, 0.4, 0.0]
    assert [b["current"] for b in bins] == [0.25, 0.25, 0.5, 0.0]
    assert value == pytest.approx(
        (0.25 - 0.4) * math.log(0.25 / 0.4)
        + (0.25 - 0.2) * math.log(0.25 / 0.2)
        + (0.5 - 0.4) * math.log(0.5 / 0.4)
    )


def test_ece_on_a_known_case() -> None:
    # 4 answers at 0.9 with 3 right: |0.75 - 0.9| x 4/10; 6 at 0.55 with 3 right: |0.5 - 0.55| x 6/10.
    confidences = [0.9] * 4 + [0.55] * 6
    correct = [True, True, True, False] + [True, True, True, False, False, False]
    ece, bins = drift.expected_calibration_error(confidences, correct, bins=10)
    assert ece == pytest.approx(0.15 * 0.4 + 0.05 * 0.6, abs=1e-12)
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 6, 0, 0, 0, 4]
    assert bins[9]["accuracy"] == 0.75 and bins[5]["confidence"] == pytest.approx(0.55)
    assert drift.expected_calibration_error([], [], bins=10)[0] == 0.0


def test_length_drift_needs_significance_and_size() -> None:
    rng = np.random.default_rng(0)
    reference = rng.poisson(12, 2000)
    shifted = drift.length_drift(reference, rng.poisson(20, 200), alpha=ALPHA)
    assert shifted.drifted and shifted.effect is not None and shifted.effect > 1 and shifted.test == "ks+psi"
    same = drift.length_drift(reference, rng.poisson(12, 200), alpha=ALPHA)
    assert not same.drifted and same.p_value is not None and same.p_value > ALPHA
    # 40,000 samples make a shift of 0.05 sd significant; PSI (about 0.0025) says it does not matter.
    tiny = drift.length_drift(rng.normal(0, 1, 20_000), rng.normal(0.05, 1, 20_000), alpha=ALPHA)
    assert tiny.p_value is not None and tiny.p_value < ALPHA
    assert not tiny.drifted and tiny.fires_at(ALPHA) is False and tiny.min_effect == 0.1


def test_confidence_drift() -> None:
    rng = np.random.default_rng(1)
    reference = rng.beta(8, 2, 1000)
    assert drift.confidence_drift(reference, rng.beta(2, 2, 200), alpha=ALPHA).drifted
    assert not drift.confidence_drift(reference, rng.beta(8, 2, 200), alpha=ALPHA).drifted


def test_token_drift() -> None:
    rng = np.random.default_rng(2)
    topics = rng.integers(0, 500, size=(20, 8))
    reference = bursty_texts(rng, 1000, topics)
    same = drift.token_drift(reference, bursty_texts(rng, 200, topics), alpha=ALPHA, permutations=200)
    assert not same.drifted and same.test == "js_permutation"
    new_topics = rng.integers(500, 1000, size=(5, 8))
    shifted = drift.token_drift(
        reference,
        bursty_texts(rng, 140, topics) + bursty_texts(rng, 60, new_topics),
        alpha=ALPHA,
        permutations=200,
    )
    assert shifted.drifted and shifted.p_value == pytest.approx(1 / 201)
    assert shifted.effect is not None and same.effect is not None and shifted.effect > same.effect


def test_token_drift_holds_its_level_where_naive_chi_square_does_not() -> None:
    """Same source, bursty texts: the permutation test fires at most about alpha of the time; a
    chi-square on token counts (occurrences taken as independent) fires on most samples."""
    rng = np.random.default_rng(3)
    topics = rng.integers(0, 300, size=(30, 6))
    ours = naive = 0
    for seed in range(30):
        reference, current = bursty_texts(rng, 200, topics), bursty_texts(rng, 50, topics)
        ours += drift.token_drift(reference, current, alpha=ALPHA, permutations=100, seed=seed).drifted
        table = np.array(
            [np.bincount(np.concatenate(sample), minlength=300) for sample in (reference, current)],
            dtype=float,
        )
        naive += stats.chi2_contingency(table[:, table.sum(axis=0) > 0], correction=False)[1] < ALPHA
    assert ours <= 4  # 30 x 0.05 = 1.5 expected; P(binomial(30, 0.05) > 4) = 0.016
    assert naive >= 20


def test_label_drift_asymptotic_matches_scipy() -> None:
    reference = ["a"] * 300 + ["b"] * 200 + ["c"] * 100
    current = ["a"] * 40 + ["b"] * 40 + ["c"] * 40
    result = drift.label_drift(reference, current, alpha=ALPHA)
    statistic, p, dof, _ = stats.chi2_contingency([[300, 200, 100], [40, 40, 40]], correction=False)
    assert result.test == "chi2" and dof == 2
    assert result.statistic == pytest.approx(statistic, rel=1e-12)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert result.drifted
    assert [m["label"] for m in result.details["moved"]][:1] == ["a"]


def test_label_drift_sparse_uses_permutations() -> None:
    rng = np.random.default_rng(4)
    labels = [f"intent_{i}" for i in range(120)]
    reference = list(rng.choice(labels, 2000))
    same = drift.label_drift(reference, list(rng.choice(labels, 200)), alpha=ALPHA)
    assert same.test == "chi2_permutation" and not same.drifted
    shifted = drift.label_drift(reference, list(rng.choice(labels[:30], 200)), alpha=ALPHA)
    assert shifted.drifted and shifted.effect is not None and shifted.effect > 0.4
    single = drift.label_drift(["a"] * 50, ["a"] * 50, alpha=ALPHA)
    assert single.p_value == 1.0 and not single.drifted


def test_embedding_drift() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(400, 32))
    same = drift.embedding_drift(reference, rng.normal(size=(150, 32)), alpha=ALPHA, permutations=100)
    assert not same.drifted and same.test == "mmd_permutation"
    assert abs(same.details["auc"] - 0.5) < 0.1
    moved = rng.normal(size=(150, 32)) + 0.5
    shifted = drift.embedding_drift(reference, moved, alpha=ALPHA, permutations=100)
    assert shifted.drifted and shifted.effect is not None and shifted.effect > 0.3
    capped = drift.embedding_drift(reference, moved, alpha=ALPHA, permutations=20, max_per_side=100, seed=3)
    assert (capped.n_reference, capped.n_current) == (100, 100)
    again = drift.embedding_drift(reference, moved, alpha=ALPHA, permutations=20, max_per_side=100, seed=3)
    assert again == capped  # deterministic at a seed
    with pytest.raises(ValueError, match="dimensions"):
        drift.embedding_drift(reference, rng.normal(size=(50, 16)), alpha=ALPHA)


def test_calibration_drift_fires_when_calibration_worsens_only() -> None:
    rng = np.random.default_rng(6)
    ref_conf = rng.uniform(0.5, 1, 1000)
    ref_ok = rng.random(1000) < ref_conf  # calibrated
    cur_conf = rng.uniform(0.5, 1, 200)
    worse = drift.calibration_drift(
        ref_conf, ref_ok, cur_conf, rng.random(200) < cur_conf - 0.25, alpha=ALPHA
    )
    assert worse.drifted and worse.effect is not None and worse.effect > 0.15
    assert worse.details["ece_current"] - worse.details["ece_reference"] == pytest.approx(worse.effect)
    same = drift.calibration_drift(ref_conf, ref_ok, cur_conf, rng.random(200) < cur_conf, alpha=ALPHA)
    assert not same.drifted
    # The reference overconfident, the current calibrated: better calibration is no alarm.
    better = drift.calibration_drift(
        ref_conf, rng.random(1000) < ref_conf - 0.25, cur_conf, cur_conf > 0, alpha=ALPHA
    )
    assert not better.drifted


@pytest.mark.parametrize(
    "call",
    [
        lambda: drift.length_drift(np.arange(100), np.arange(12), alpha=ALPHA),
        lambda: drift.confidence_drift(np.linspace(0, 1, 100), np.linspace(0, 1, 12), alpha=ALPHA),
        lambda: drift.token_drift([[1, 2]] * 100, [[1]] * 12, alpha=ALPHA),
        lambda: drift.label_drift(["a"] * 100, ["a"] * 12, alpha=ALPHA),
        lambda: drift.embedding_drift(np.ones((100, 4)), np.ones((12, 4)), alpha=ALPHA),
        lambda: drift.calibration_drift(
            np.full(100, 0.9), [True] * 100, np.full(12, 0.9), [True] * 12, alpha=ALPHA
        ),
    ],
)
def test_small_current_samples_are_skipped(call) -> None:
    result = call()
    assert result.skipped == "12 current samples; 30 needed"
    assert result.p_value is None and not result.drifted and not result.fires_at(1.0)
    json.dumps(result.to_dict())


def test_empty_inputs_are_skipped_not_crashed() -> None:
    assert drift.length_drift([], [], alpha=ALPHA).skipped == "0 reference samples; 30 needed"
    assert (
        drift.embedding_drift(np.zeros((0, 8)), np.array([]), alpha=ALPHA).skipped
        == "0 reference samples; 30 needed"
    )
    assert drift.token_drift([], [], alpha=ALPHA).skipped == "0 reference samples; 30 needed"
    assert drift.token_drift([[]] * 40, [[1]] * 40, alpha=ALPHA).skipped == "the reference has no tokens"
    assert drift.calibration_drift([], [], [], [], alpha=ALPHA).skipped == "0 reference samples; 30 needed"


def test_details_are_json() -> None:
    rng = np.random.default_rng(7)
    results = [
        drift.length_drift(rng.poisson(10, 100), rng.poisson(12, 100), alpha=ALPHA),
        drift.token_drift(
            [list(rng.integers(0, 50, 5)) for _ in range(60)],
            [list(rng.integers(0, 60, 5)) for _ in range(60)],
            alpha=ALPHA,
        ),
        drift.label_drift(list(rng.integers(0, 5, 100)), list(rng.integers(0, 6, 100)), alpha=ALPHA),
        drift.embedding_drift(
            rng.normal(size=(60, 8)), rng.normal(size=(60, 8)), alpha=ALPHA, permutations=20
        ),
        drift.calibration_drift(
            rng.random(60), rng.random(60) < 0.5, rng.random(60), rng.random(60) < 0.5, alpha=ALPHA
        ),
    ]
    for result in results:
        text = json.dumps(result.to_dict(), allow_nan=False)
        assert json.loads(text)["name"] == result.name
    assert isinstance(results[1].details["moved"][0]["token"], int)  # numpy ints come back as ints
    assert isinstance(results[2].details["moved"][0]["label"], int)
