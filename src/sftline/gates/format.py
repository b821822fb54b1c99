"""Targets checked against the contract: a label in the label set, JSON valid against the schema.

When the contract's output is free text, the answers' own shape is checked instead if nearly
all of them have one (JSON objects, or a closed set of labels: `sftline.contract.inferred`);
the answers that break it are flagged `breaks_inferred_format`, and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from sftline.contract.inferred import InferredOutput, infer_output
from sftline.contract.spec import Contract
from sftline.contract.validate import OutputValidator
from sftline.data.example import Example
from sftline.gates.base import Flag, GateOutcome, answer_fields

Problem = tuple[str, str, str]
"""(reason, detail, field)."""


class FormatGate:
    name = "format"

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.validator = OutputValidator(contract)

    @property
    def infers(self) -> bool:
        """Free text: the answers' shape is read from the data."""
        return self.contract.output.kind == "text"

    def features(self, batch: Sequence[Example]) -> list[Problem | list[tuple[str, str]] | None]:
        """Per example: its first problem against the contract (or None); with free-text
        output, its (field, answer) pairs, for the shape to be inferred from all of them."""
        if self.infers:
            return [answer_fields(example) for example in batch]
        if not self.validator.active:
            return [None] * len(batch)
        problems: list[Problem | list[tuple[str, str]] | None] = []
        for example in batch:
            found = None
            for field, answer in answer_fields(example):
                problem = self.validator.problem(answer)
                if problem is not None:
                    found = (problem[0], f"{field}: {problem[1]}", field)
                    break
            problems.append(found)
        return problems

    def check(self, examples: Sequence[Example]) -> GateOutcome:
        return self.decide(examples, self.features(examples))

    def decide(
        self, examples: Sequence[Example], features: Sequence[Problem | list[tuple[str, str]] | None]
    ) -> GateOutcome:
        outcome = GateOutcome(self.name)
        kind = self.contract.output.kind
        if self.infers:
            answers = [pairs for pairs in features if isinstance(pairs, list)]
            inferred = infer_output([answer for pairs in answers for _, answer in pairs])
            if inferred is None:
                outcome.report = {
                    "checked": False,
                    "why": "the contract's output is free text, and the answers have no common shape",
                }
                return outcome
            for example, pairs in zip(examples, answers, strict=True):
                broken = _first_problem(inferred, pairs)
                if broken is not None:
                    outcome.flags.append(Flag(example.id, broken[0], broken[1], field=broken[2]))
            outcome.report = {
                "checked": True,
                "output_kind": kind,
                "inferred": inferred.to_json(),
                "why": inferred.why,
            }
            return outcome
        if not self.validator.active:
            outcome.report = {
                "checked": False,
                "why": f"the contract's output kind is {kind!r} with no label set",
            }
            return outcome
        for example, problem in zip(examples, features, strict=True):
            if isinstance(problem, tuple):
                outcome.flags.append(Flag(example.id, problem[0], problem[1], field=problem[2]))
        outcome.report = {"checked": True, "output_kind": kind}
        return outcome


def _first_problem(inferred: InferredOutput, pairs: list[tuple[str, str]]) -> Problem | None:
    for field, answer in pairs:
        detail = inferred.problem(answer)
        if detail is not None:
            return "breaks_inferred_format", f"{field}: {detail}", field
    return None
