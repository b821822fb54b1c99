"""The contract's label set, as classifiers and label contracts use it."""

from __future__ import annotations

from collections.abc import Sequence

from sftline.data.example import Example


def label_set(
    examples: Sequence[Example], contract_labels: Sequence[str] | None, abstention: str | None
) -> list[str]:
    """The classifier's labels: the contract's set when it has one, else the data's, sorted;
    the abstention label is always among them."""
    labels = list(contract_labels) if contract_labels else sorted({str(e.label) for e in examples if e.label})
    if abstention and abstention not in labels:
        labels.append(abstention)
    return labels
