"""Which examples an erasure request names: `FIELD=VALUE` (equals) or `FIELD~=TEXT` (contains).

FIELD is `id` (the example's id), `label`, `text` (every string of the example's content: each
message's content and tool calls, the tools, the classification text and label) or any other
name, which is a tag key (`user_id=4711` matches examples tagged `user_id: "4711"`). `=` compares
whole values exactly; `~=` looks for TEXT inside them, ignoring case, so
`text~=alice@example.com` finds the address in any message. An example matching any of a
request's matches is erased.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sftline.data.example import Example
from sftline.errors import ErasureError

Operator = Literal["=", "~="]
CONTENT = "text"
"""The field that means every string of an example's content."""


@dataclass(frozen=True)
class ExampleMatch:
    field: str
    op: Operator
    value: str

    @classmethod
    def parse(cls, spec: str) -> ExampleMatch:
        """`FIELD=VALUE` or `FIELD~=TEXT`; neither side may be empty (an empty TEXT would match
        every example)."""
        field, sep, value = spec.partition("=")
        op: Operator = "="
        if field.endswith("~"):
            field, op = field[:-1], "~="
        field = field.strip()
        if not sep or not field or not value:
            raise ErasureError(
                f"--match {spec!r}: expected FIELD=VALUE or FIELD~=TEXT with both sides given, e.g. "
                "--match user_id=4711 or --match text~=alice@example.com"
            )
        return cls(field, op, value)

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"

    def as_record(self) -> dict[str, str]:
        """What the record keeps of the match: the value's sha256, never the value (it names the
        data subject)."""
        return {
            "field": self.field,
            "op": self.op,
            "value_sha256": hashlib.sha256(self.value.encode("utf-8")).hexdigest(),
        }

    def matches(self, example: Example) -> bool:
        return any(self._hit(value) for value in self._values(example))

    def _values(self, example: Example) -> Iterator[str]:
        if self.field == "id":
            yield example.id
        elif self.field == "label":
            if example.label is not None:
                yield example.label
        elif self.field == CONTENT:
            yield from _strings([example.messages, example.tools, example.text, example.label])
        elif self.field in example.tags:
            yield example.tags[self.field]

    def _hit(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        return self.value.casefold() in value.casefold()


def matches_any(example: Example, matches: Sequence[ExampleMatch]) -> bool:
    return any(match.matches(example) for match in matches)


def _strings(value: Any) -> Iterator[str]:
    """Every string inside `value` (dict values, list items), without recursion: content nested
    deeper than Python's stack still yields its strings."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
