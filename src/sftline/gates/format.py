"""Targets checked against the contract: a label in the label set, JSON valid against the schema."""

from __future__ import annotations

from collections.abc import Sequence

from sftline.contract.spec import Contract
from sftline.contract.validate import OutputValidator
from sftline.data.example import Example
from sftline.gates.base import Flag, GateOutcome


class FormatGate:
    name = "format"

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.validator = OutputValidator(contract)

    def _answers(self, example: Example) -> list[tuple[str, str]]:
        """(field, answer) pairs to check: the label, or each assistant turn's content."""
        if example.messages is None:
            return [("label", example.label or "")]
        return [
            (f"messages[{i}].content", m.get("content") or "")
            for i, m in enumerate(example.messages)
            if m["role"] == "assistant" and not m.get("tool_calls")
        ]

    def features(self, batch: Sequence[Example]) -> list[tuple[str, str] | None]:
        """(reason, detail) of each example's first problem, or None."""
        if not self.validator.active:
            return [None] * len(batch)
        problems: list[tuple[str, str] | None] = []
        for example in batch:
            found = None
            for field, answer in self._answers(example):
                problem = self.validator.problem(answer)
                if problem is not None:
                    found = (problem[0], f"{field}: {problem[1]}")
                    break
            problems.append(found)
        return problems

    def check(self, examples: Sequence[Example]) -> GateOutcome:
        return self.decide(examples, self.features(examples))

    def decide(self, examples: Sequence[Example], problems: Sequence[tuple[str, str] | None]) -> GateOutcome:
        outcome = GateOutcome(self.name)
        kind = self.contract.output.kind
        if not self.validator.active:
            outcome.report = {
                "checked": False,
                "why": f"the contract's output kind is {kind!r} with no label set"
                if kind == "labels"
                else "the contract's output is free text",
            }
            return outcome
        for example, problem in zip(examples, problems, strict=True):
            if problem is not None:
                outcome.flags.append(Flag(example.id, problem[0], problem[1]))
        outcome.report = {"checked": True, "output_kind": kind}
        return outcome
