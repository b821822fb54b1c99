"""Did the run learn anything? Checks at the end of a run, said loudly when they fail.

A run can finish "completed" having learned nothing: a classifier whose loss ends at the loss of
always predicting the label prior (ln 77 = 4.34 for 77 balanced intents: a run ended at 4.28 and
scored 2.7%), or a chat run whose loss never left its first steps' level. The checks compare:

- the final training loss (the mean of the last tenth of the steps) with the loss of predicting
  the label prior (classifiers: the entropy of the training labels) or with the first steps' loss
  (chat), and warn when it fell by less than MIN_DROP of it;
- the holdout's accuracy with chance (the share of its most common label), for classifiers: it
  warns unless a one-sided binomial test puts the accuracy above chance at the 5% level.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

MIN_DROP = 0.1
"""The final loss must be at least this share below its reference."""
FIRST_STEPS = 3


def prior_loss(labels: Sequence[int]) -> float:
    """Cross-entropy of always predicting the label frequencies: their entropy, in nats."""
    counts = Counter(labels)
    n = sum(counts.values())
    return -sum(c / n * math.log(c / n) for c in counts.values())


def _final_loss(history: Sequence[dict[str, Any]]) -> float:
    tail = history[-max(1, len(history) // 10) :]
    return sum(h["loss"] for h in tail) / len(tail)


def learning_warnings(
    history: Sequence[dict[str, Any]],
    *,
    train_labels: Sequence[int] | None = None,
    label_smoothing: float = 0.0,
    holdout_accuracy: float | None = None,
    holdout_labels: Sequence[int] | None = None,
) -> list[str]:
    """Warnings (empty when the run moved): see the module docstring. `train_labels` and the
    holdout arguments are a classifier's."""
    warnings: list[str] = []
    if not history:
        return warnings
    final = _final_loss(history)
    if train_labels:
        reference = prior_loss(train_labels)
        what = "the loss of predicting the label prior"
        # Smoothed targets keep the loss above 0 even when every answer is right.
        floor = label_smoothing * math.log(max(len(set(train_labels)), 2))
        moved = final <= floor + (1 - MIN_DROP) * (reference - floor)
    else:
        if len(history) <= FIRST_STEPS:
            return warnings
        first = history[:FIRST_STEPS]
        reference = sum(h["loss"] for h in first) / len(first)
        what = f"the first {FIRST_STEPS} steps' loss"
        moved = final <= (1 - MIN_DROP) * reference
    if not moved:
        warnings.append(
            f"the model learned little: the final training loss {final:.4f} is within "
            f"{MIN_DROP:.0%} of {what} ({reference:.4f}); try a higher lr, more epochs or steps, "
            "or method full, and check the data's labels"
        )
    if holdout_accuracy is not None and holdout_labels:
        from scipy.stats import binomtest

        n = len(holdout_labels)
        chance = max(Counter(holdout_labels).values()) / n
        correct = round(holdout_accuracy * n)
        if binomtest(correct, n, chance, alternative="greater").pvalue > 0.05:
            warnings.append(
                f"holdout accuracy {holdout_accuracy:.1%} ({correct} of {n}) is not above chance "
                f"({chance:.1%}: always answering the most common label; binomial test, 5% level)"
            )
    return warnings
