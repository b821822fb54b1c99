"""Label noise: examples whose label disagrees with what the rest of the data says about similar
inputs, found by confident learning.

Each example's input (less the shared text, `sftline.data.common_text`) is embedded with a
sentence encoder (the embedded MiniLM, mean-pooled); a multinomial logistic regression trained
on K-1 folds gives every example out-of-fold probabilities over the labels; cleanlab's
`find_label_issues` then estimates the confident joint of given and true labels from them and
flags the examples it counts as mislabelled. The cut-off is cleanlab's own (how many examples
of each given label the confident joint says belong to another), not a top-k chosen here.

Each flag carries the suggested label (the arg-max of the out-of-fold probabilities) and
`label_confidence`, that suggestion's out-of-fold probability; the detail also gives the given
label's (its self-confidence).

It applies to classification examples and to chat examples whose one answer comes from a label
set: the contract's (`output.kind: labels`), or the one the format gate infers from free-text
answers (`sftline.contract.inferred`). Other answers (free text, JSON) are not judged, and the
report says why. Labels with fewer than `folds` examples are left out: a fold would hold none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from cleanlab.filter import find_label_issues
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from sftline.contract.inferred import infer_output
from sftline.contract.spec import Contract
from sftline.data.common_text import CommonText
from sftline.data.example import Example
from sftline.gates.base import Flag, GateOutcome, answer_fields

Encode = Callable[[Sequence[str]], np.ndarray]
"""Texts -> unit-length sentence embeddings, one row per text (float32)."""

INVERSE_REGULARISATION = 30.0
"""LogisticRegression's C. Unit-length 384-dim embeddings have small feature values; at C=1 the
probabilities stay flat (the arg-max is right but every self-confidence is low). On CLINC150
with 2% flipped (bench/bench_label_noise.py), C=30 against C=10: out-of-fold accuracy 0.945 vs
0.948, recall 0.857 vs 0.833 at precision 0.774 vs 0.760."""
FILTER_BY = "prune_by_class"
"""cleanlab's choice of which examples to flag: per given label, as many as the confident joint
says belong to another label, those with the lowest margin. On the same benchmark at C=30:
recall 0.857 / precision 0.774 against 0.823 / 0.802 for `prune_by_noise_rate` and 0.810 / 0.865
for `both`."""


def labelled(examples: Sequence[Example], contract: Contract) -> tuple[list[str | None], str]:
    """Each example's label (None where it has none the gate can judge) and where the labels come
    from; all None with the reason when the gate does not apply."""
    if all(e.messages is None for e in examples):
        return [e.label or None for e in examples], "classification labels"
    answers = [[a.strip() for _, a in answer_fields(e)] for e in examples]
    if contract.output.kind == "labels":
        label_set = set(contract.output.labels or [])
        source = "the contract's label set"
    elif contract.output.kind == "text":
        inferred = infer_output([a for pairs in answers for a in pairs])
        if inferred is None or inferred.kind != "labels":
            return [None] * len(examples), "the answers are free text, not labels"
        label_set, source = set(inferred.labels), "the label set inferred from the answers"
    else:
        return [None] * len(examples), f"the contract's output is {contract.output.kind}, not labels"
    labels = [
        pairs[0] if len(pairs) == 1 and (not label_set or pairs[0] in label_set) else None
        for pairs in answers
    ]
    return labels, source


def out_of_fold_probabilities(
    vectors: np.ndarray, targets: np.ndarray, n_labels: int, *, folds: int, seed: int
) -> np.ndarray:
    """(n, n_labels) probabilities, each row from a model that did not see that example."""
    probs = np.zeros((len(targets), n_labels))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held in splitter.split(vectors, targets):
        model = LogisticRegression(C=INVERSE_REGULARISATION, max_iter=1000)
        model.fit(vectors[train], targets[train])
        probs[np.ix_(held, model.classes_)] = model.predict_proba(vectors[held])
    return probs


class LabelNoiseGate:
    name = "label_noise"

    def __init__(
        self,
        encode: Encode,
        contract: Contract,
        *,
        folds: int = 5,
        seed: int = 0,
        common: CommonText | None = None,
    ) -> None:
        self.encode, self.contract, self.folds, self.seed = encode, contract, folds, seed
        self.common = common or CommonText()

    def check(self, examples: Sequence[Example]) -> GateOutcome:
        outcome = GateOutcome(self.name)
        labels, source = labelled(examples, self.contract)
        counts = Counter(label for label in labels if label is not None)
        kept_labels = sorted(label for label, n in counts.items() if n >= self.folds)
        left_out = sorted(label for label, n in counts.items() if n < self.folds)
        judged = [i for i, label in enumerate(labels) if label in set(kept_labels)]
        if len(kept_labels) < 2:
            why = source if not counts else f"fewer than 2 labels with at least {self.folds} examples"
            outcome.report = {"checked": False, "why": why}
            return outcome
        index = {label: k for k, label in enumerate(kept_labels)}
        targets = np.array([index[labels[i]] for i in judged])  # type: ignore[index]
        vectors = self.encode([self.common.compared_input(examples[i]) for i in judged])
        probs = out_of_fold_probabilities(
            vectors, targets, len(kept_labels), folds=self.folds, seed=self.seed
        )
        issues = find_label_issues(
            targets, probs, filter_by=FILTER_BY, return_indices_ranked_by="self_confidence"
        )
        for position in sorted(int(p) for p in issues):
            example = examples[judged[position]]
            given, best = targets[position], int(probs[position].argmax())
            detail = (
                f"label {kept_labels[given]!r} (p={probs[position, given]:.2f}); the examples "
                f"like it say {kept_labels[best]!r} (p={probs[position, best]:.2f})"
            )
            field = "label" if example.messages is None else answer_fields(example)[0][0]
            outcome.flags.append(
                Flag(
                    example.id,
                    "label_noise",
                    detail,
                    field=field,
                    suggested_label=kept_labels[best],
                    label_confidence=round(float(probs[position, best]), 4),
                )
            )
        outcome.report = self._report(source, judged, kept_labels, left_out, targets, probs, len(issues))
        return outcome

    def _report(
        self,
        source: str,
        judged: list[int],
        kept_labels: list[str],
        left_out: list[str],
        targets: np.ndarray,
        probs: np.ndarray,
        n_flagged: int,
    ) -> dict[str, Any]:
        return {
            "checked": True,
            "labels_from": source,
            "judged": len(judged),
            "labels": len(kept_labels),
            "labels_left_out": left_out,
            "out_of_fold_accuracy": round(float((probs.argmax(1) == targets).mean()), 4),
            "n_flagged": n_flagged,
            "params": {
                "encoder": "mean-pooled sentence embeddings",
                "model": f"logistic regression (C={INVERSE_REGULARISATION})",
                "folds": self.folds,
                "seed": self.seed,
                "cut_off": f"cleanlab find_label_issues (confident joint, {FILTER_BY})",
                "label_confidence": "out-of-fold probability of the suggested label",
            },
        }
