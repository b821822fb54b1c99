"""Each metric against a small case worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import scoreatpercentile

from sftline.evals import metrics as m


def point(metric: m.Metric, n: int) -> float:
    return float(metric(np.ones((1, n)))[0])


def test_mean_of_with_and_without_where() -> None:
    values = [1.0, 2.0, 3.0, 6.0]
    assert point(m.mean_of(values), 4) == pytest.approx(3.0)  # 12 / 4
    assert point(m.mean_of(values, where=[True, False, True, False]), 4) == pytest.approx(2.0)  # (1+3)/2
    # example 1 drawn twice, example 2 never: (2*1 + 3 + 6) / 4
    assert m.mean_of(values)(np.array([[2.0, 0.0, 1.0, 1.0]]))[0] == pytest.approx(11 / 4)
    assert math.isnan(point(m.mean_of(values, where=[False] * 4), 4))


def test_precision_recall() -> None:
    # TP = 1 (example 0), FP = 1 (example 3), FN = 2 (examples 1, 2)
    precision, recall = m.precision_recall([1, 1, 1, 0], [1, 0, 0, 1])
    assert point(precision, 4) == pytest.approx(1 / 2)
    assert point(recall, 4) == pytest.approx(1 / 3)


def test_precision_recall_zero_denominators_are_nan() -> None:
    nothing_predicted, _ = m.precision_recall([1, 0], [0, 0])
    _, nothing_actual = m.precision_recall([0, 0], [1, 0])
    assert math.isnan(point(nothing_predicted, 2))
    assert math.isnan(point(nothing_actual, 2))


def test_macro_f1() -> None:
    # a: TP=1 FN=1 -> 2/3; b: TP=2 FP=1 -> 4/5; mean = 11/15
    assert point(m.macro_f1(["a", "a", "b", "b"], ["a", "b", "b", "b"]), 4) == pytest.approx(11 / 15)


def test_macro_f1_invalid_prediction_is_a_miss_and_no_class() -> None:
    # a: TP=1 FN=1 -> 2/3; b: 1; "zzz" is not a label and adds no class; mean = 5/6
    assert point(m.macro_f1(["a", "a", "b"], ["a", "zzz", "b"]), 3) == pytest.approx(5 / 6)


def test_macro_f1_averages_over_the_targets_labels_only() -> None:
    # c is predicted but no example has it: a miss for b, no class of its own; mean of a=1, b=0
    assert point(m.macro_f1(["a", "b"], ["a", "c"]), 2) == pytest.approx(1 / 2)
    # No answer at all: a miss for b, a false positive for nobody; mean of a=1, b=0
    assert point(m.macro_f1(["a", "b"], ["a", None]), 2) == pytest.approx(1 / 2)
    # A false positive for a label that is a target elsewhere counts: a: TP=1 FP=1 -> 2/3; b: 0
    assert point(m.macro_f1(["a", "b"], ["a", "a"]), 2) == pytest.approx(1 / 3)


def test_macro_f1_leaves_out_a_class_absent_from_a_replicate() -> None:
    f1 = m.macro_f1(["a", "b", "c"], ["a", "b", "a"])
    weights = np.array(
        [
            [1.0, 1.0, 1.0],  # a: TP=1 FP=1 -> 2/3; b: 1; c: FN=1 -> 0; mean = 5/9
            [1.0, 1.0, 0.0],  # c neither occurs nor is predicted: mean of a=1, b=1
            [0.0, 0.0, 2.0],  # only c drawn: a and b have no targets (left out); c: FN=2 -> 0
            [0.0, 0.0, 0.0],  # nothing drawn: undefined
        ]
    )
    values = f1(weights)
    np.testing.assert_allclose(values[:3], [5 / 9, 1.0, 0.0])
    assert math.isnan(values[3])


def test_calibration_error_over_three_populated_bins() -> None:
    # 15 bins of width 1/15: 0.95 -> bin 14, 0.5 -> bin 7, 0.1 -> bin 1.
    # Sum of (correct - confidence) per bin: bin 14: 0.05 - 0.95 = -0.9; bin 7: 0.5 + 0.5 = 1.0;
    # bin 1: -0.1. ECE = (0.9 + 1.0 + 0.1) / 5 = 0.4
    ece = m.calibration_error([0.95, 0.95, 0.5, 0.5, 0.1], [1, 0, 1, 1, 0])
    assert point(ece, 5) == pytest.approx(0.4)


def test_confidence_one_goes_into_the_last_bin() -> None:
    assert m.bin_of(np.array([0.0, 0.94, 1.0])).tolist() == [0, 14, 14]
    # 1.0 shares bin 14 with 0.94: |(0 - 1.0) + (1 - 0.94)| / 2 = 0.47
    # (a bin of its own would give (1.0 + 0.06) / 2 = 0.53)
    assert point(m.calibration_error([1.0, 0.94], [0, 1]), 2) == pytest.approx(0.47)


def test_reliability_bins() -> None:
    rows = m.reliability([0.95, 0.95, 0.5, 1.0], [1, 0, 1, 1])
    assert len(rows) == 15
    assert rows[0] == {"low": 0.0, "high": 1 / 15, "count": 0, "confidence": None, "accuracy": None}
    assert rows[7]["count"] == 1 and rows[7]["accuracy"] == 1.0
    # bin 14 holds 0.95, 0.95 and 1.0: mean confidence 2.9 / 3, accuracy 2 / 3
    assert rows[14]["count"] == 3 and rows[14]["high"] == 1.0
    assert rows[14]["confidence"] == pytest.approx(2.9 / 3)
    assert rows[14]["accuracy"] == pytest.approx(2 / 3)


def test_bootstrap_weights() -> None:
    weights = m.bootstrap_weights(7, replicates=50, seed=3)
    assert weights.shape == (51, 7)
    assert (weights[0] == 1).all()
    assert (weights.sum(axis=1) == 7).all()
    np.testing.assert_array_equal(weights, m.bootstrap_weights(7, replicates=50, seed=3))
    assert not np.array_equal(weights, m.bootstrap_weights(7, replicates=50, seed=4))
    assert m.bootstrap_weights(0, replicates=5).shape == (6, 0)


def test_summarise_is_a_percentile_interval_over_defined_replicates() -> None:
    # replicates 0.4 and 0.6 (NaN dropped); 2.5th percentile = 0.4 + 0.025 * 0.2 = 0.405
    result = m.summarise(np.array([0.5, np.nan, 0.4, 0.6]), n=9)
    assert result == m.Estimate(0.5, pytest.approx(0.405), pytest.approx(0.595), 9)


def test_estimate_is_the_point_and_the_percentiles_of_resampled_means() -> None:
    values = [0.3, 1.9, 2.2, 0.7, 5.1, 3.3, 0.2, 4.4, 1.0, 2.8]  # sum 21.9
    weights = m.bootstrap_weights(10, replicates=500)
    result = m.estimate(m.mean_of(values), weights)
    # The same resamples by hand: each row's draws as a list of examples, then plain means.
    means = [float(np.mean(np.repeat(values, row.astype(int)))) for row in weights[1:]]
    low, high = scoreatpercentile(means, [2.5, 97.5])
    assert result == m.Estimate(pytest.approx(2.19), pytest.approx(low), pytest.approx(high), 10)
    assert low < 2.19 < high


def test_estimate_is_none_when_undefined() -> None:
    never = m.mean_of([1, 0], where=[False, False])
    assert m.estimate(never, m.bootstrap_weights(2, replicates=20)).as_dict() == {
        "value": None,
        "low": None,
        "high": None,
        "n": 2,
    }
    # defined at the point but in no replicate: no interval
    assert m.summarise(np.array([0.5, np.nan]), n=1) == m.Estimate(0.5, None, None, 1)


def test_paired_difference_of_identical_models() -> None:
    rate = m.mean_of([1, 0, 1, 1, 0])
    diff = m.paired_difference(rate, rate, m.bootstrap_weights(5, replicates=200))
    assert (diff.delta, diff.low, diff.high, diff.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert diff.baseline == diff.candidate == pytest.approx(0.6)


def test_paired_difference_of_a_candidate_better_everywhere() -> None:
    baseline, candidate = m.mean_of([0] * 20), m.mean_of([1] * 20)
    diff = m.paired_difference(baseline, candidate, m.bootstrap_weights(20, replicates=200))
    assert (diff.delta, diff.low, diff.high) == (1.0, 1.0, 1.0)
    # no replicate at or below zero: the smallest p 200 replicates can show, 2 / 200
    assert diff.p_value == pytest.approx(2 / 200)


def test_mcnemar_exact() -> None:
    baseline = [True, False, False, False, False, False, True, False]
    candidate = [False, True, True, True, True, True, True, False]
    # b = 1 (example 0), c = 5 (examples 1-5): p = 2 * (C(6,0) + C(6,1)) / 2^6 = 2 * 7 / 64
    assert m.mcnemar(baseline, candidate) == {
        "baseline_only": 1,
        "candidate_only": 5,
        "p_value": pytest.approx(0.21875),
    }


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [
        (0, 0, 1.0),  # no discordant pairs
        (0, 10, 2 / 1024),  # 2 * C(10,0) / 2^10
        (3, 10, 352 / 1024),  # 2 * (1 + 10 + 45 + 120) / 2^10
        (2, 4, 1.0),  # 2 * (1 + 4 + 6) / 16 > 1, capped
    ],
)
def test_binomial_two_sided(k: int, n: int, p: float) -> None:
    assert m.binomial_two_sided(k, n) == pytest.approx(p)


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    probs = m.softmax(logits, temperature)
    return float(-np.log(probs[np.arange(len(targets)), targets]).mean())


def test_fit_temperature_recovers_the_scale() -> None:
    rng = np.random.default_rng(0)
    calibrated = rng.normal(scale=2.0, size=(4000, 5))
    targets = np.array([rng.choice(5, p=p) for p in m.softmax(calibrated)])
    overconfident = 3 * calibrated
    fitted = m.fit_temperature(overconfident, targets)
    assert fitted == pytest.approx(3.0, rel=0.05)
    # The minimum of the same likelihood found by scipy's bounded Brent search over T itself.
    reference = minimize_scalar(
        lambda t: nll(overconfident, targets, t),
        bounds=(0.1, 10.0),
        method="bounded",
        options={"xatol": 1e-9},
    )
    assert fitted == pytest.approx(reference.x, rel=1e-5)


def test_fit_temperature_without_examples_is_one() -> None:
    assert m.fit_temperature(np.zeros((0, 3)), []) == 1.0


def test_softmax() -> None:
    # e^0 : e^ln3 = 1 : 3
    np.testing.assert_allclose(m.softmax(np.array([0.0, math.log(3)])), [1 / 4, 3 / 4])
    # T = 2 halves the logits: [0, ln 9] / 2 = [0, ln 3]
    np.testing.assert_allclose(m.softmax(np.array([0.0, math.log(9)]), temperature=2), [1 / 4, 3 / 4])
    np.testing.assert_allclose(m.softmax(np.array([[1000.0, 1000.0], [0.0, 0.0]])), [[0.5, 0.5]] * 2)
