"""An answer checked against the contract's output format: a label of the set, or JSON valid
against the schema. Gates check training targets with it; serving checks generated answers."""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator

from sftline.contract.spec import Contract


class OutputValidator:
    """`problem(answer)` gives `(reason, detail)` for an answer the contract rejects, else None."""

    def __init__(self, contract: Contract) -> None:
        output = contract.output
        self.kind = output.kind
        self.labels = set(output.labels or [])
        self.validator = Draft202012Validator(output.json_schema) if output.json_schema is not None else None

    @property
    def active(self) -> bool:
        """False when there is nothing to check: free text, or a label contract with no set yet."""
        return not (self.kind == "text" or (self.kind == "labels" and not self.labels))

    def problem(self, answer: str) -> tuple[str, str] | None:
        if self.kind == "labels" and self.labels:
            if answer.strip() not in self.labels:
                return (
                    "label_not_in_set",
                    f"{answer.strip()[:60]!r} is not one of the {len(self.labels)} contract labels",
                )
        elif self.kind == "json_schema" and self.validator is not None:
            try:
                value = json.loads(answer)
            except json.JSONDecodeError as exc:
                return "invalid_json_target", f"not JSON: {exc.msg} at column {exc.colno}"
            error = next(iter(sorted(self.validator.iter_errors(value), key=lambda e: list(e.path))), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                return "schema_violation", f"at {where}: {error.message[:200]}"
        return None
