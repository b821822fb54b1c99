"""A run that learned nothing says so; one that learned does not."""

from __future__ import annotations

import math

import pytest

from sftline.train.diagnose import learning_warnings, prior_loss


def steps(*losses: float) -> list[dict[str, float]]:
    return [{"step": i + 1, "loss": loss} for i, loss in enumerate(losses)]


def test_prior_loss_is_the_entropy_of_the_labels() -> None:
    assert prior_loss([0, 1, 2, 3] * 5) == pytest.approx(math.log(4))
    assert prior_loss([0, 0, 0, 1]) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


def test_a_classifier_stuck_at_the_label_prior_is_reported() -> None:
    labels = list(range(77)) * 10  # ln 77 = 4.34
    stuck = learning_warnings(steps(4.40, 4.35, 4.31, 4.29, 4.28), train_labels=labels)
    assert len(stuck) == 1 and "4.2800" in stuck[0] and "label prior (4.3438)" in stuck[0]
    assert learning_warnings(steps(4.4, 3.0, 1.2, 0.4, 0.3), train_labels=labels) == []


def test_label_smoothing_raises_the_floor_the_loss_is_measured_from() -> None:
    labels = list(range(150)) * 4
    # With 0.1 smoothing a perfect classifier's loss stays near 0.1 ln 150 = 0.50: 0.9 has learned.
    assert learning_warnings(steps(5.0, 2.0, 0.9), train_labels=labels, label_smoothing=0.1) == []
    assert learning_warnings(steps(5.0, 4.9, 4.8), train_labels=labels, label_smoothing=0.1)


def test_chat_compares_with_its_first_steps_and_the_holdout_with_chance() -> None:
    assert learning_warnings(steps(2.0, 2.1, 1.9, 1.95, 1.9, 1.92)) != []
    assert learning_warnings(steps(2.0, 2.1, 1.9, 1.2, 0.8, 0.7)) == []
    assert learning_warnings(steps(2.0, 1.0)) == []  # too few steps to tell
    holdout = [0] * 30 + [1] * 10  # chance: 75%
    labels = [0, 1] * 50
    at_chance = learning_warnings(
        steps(0.7, 0.1), train_labels=labels, holdout_accuracy=0.75, holdout_labels=holdout
    )
    assert len(at_chance) == 1 and "30 of 40) is not above chance (75.0%" in at_chance[0]
    # 34 of 40 against 75%: p = 0.096, not yet evidence; 37 of 40: p = 0.005.
    for accuracy, warned in [(0.85, True), (0.925, False)]:
        found = learning_warnings(
            steps(0.7, 0.1), train_labels=labels, holdout_accuracy=accuracy, holdout_labels=holdout
        )
        assert bool(found) == warned
