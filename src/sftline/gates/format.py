"""Targets checked against the contract: a label in the label set, JSON valid against the schema."""

from __future__ import annotations

import json
from collections.abc import Sequence

from jsonschema import Draft202012Validator

from sftline.config import Contract
from sftline.data.example import Example
from sftline.gates.base import Flag, GateOutcome


class FormatGate:
    name = "format"

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        output = contract.output
        self.labels = set(output.labels or [])
        self.validator = Draft202012Validator(output.json_schema) if output.json_schema is not None else None

    def _answers(self, example: Example) -> list[tuple[str, str]]:
        """(field, answer) pairs to check: the label, or each assistant turn's content."""
        if example.messages is None:
            return [("label", example.label or "")]
        return [
            (f"messages[{i}].content", m.get("content") or "")
            for i, m in enumerate(example.messages)
            if m["role"] == "assistant" and not m.get("tool_calls")
        ]

    def _problem(self, answer: str) -> tuple[str, str] | None:
        kind = self.contract.output.kind
        if kind == "labels" and self.labels:
            if answer.strip() not in self.labels:
                return (
                    "label_not_in_set",
                    f"{answer.strip()[:60]!r} is not one of the {len(self.labels)} contract labels",
                )
        elif kind == "json_schema" and self.validator is not None:
            try:
                value = json.loads(answer)
            except json.JSONDecodeError as exc:
                return "invalid_json_target", f"not JSON: {exc.msg} at column {exc.colno}"
            error = next(iter(sorted(self.validator.iter_errors(value), key=lambda e: list(e.path))), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                return "schema_violation", f"at {where}: {error.message[:200]}"
        return None

    def _active(self) -> bool:
        kind = self.contract.output.kind
        return not (kind == "text" or (kind == "labels" and not self.labels))

    def features(self, batch: Sequence[Example]) -> list[tuple[str, str] | None]:
        """(reason, detail) of each example's first problem, or None."""
        if not self._active():
            return [None] * len(batch)
        problems: list[tuple[str, str] | None] = []
        for example in batch:
            found = None
            for field, answer in self._answers(example):
                problem = self._problem(answer)
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
        if not self._active():
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
