"""Limits on what an input file and one record in it may hold, so hostile input is refused cleanly.

Python's `json` accepts values that fail later, far from the line they came from: a lone surrogate
(`"\\ud800"`) cannot be encoded to UTF-8 when the example is stored; an integer of more than 4,300
digits cannot be turned back into a string; an array nested 100,000 deep exhausts the recursion of
`json` itself, and ~1,000 deep that of any recursive walker downstream (a chat template rendering
`tools`, `json.dumps`); NaN and 1e999 are JSON to no one but Python. Every parsed record is held to
these limits before a format sees it, and one that breaks them is quarantined with a reason:

- `invalid_unicode`: a string or key holding a lone surrogate (from a `\\udXXX` escape).
- `too_deep`: arrays and objects nested deeper than `MAX_DEPTH`.
- `number_too_large`: an integer outside the 64-bit range (`INT_MIN`..`INT_MAX`).
- `invalid_number`: NaN, Infinity, or a float literal that overflows to infinity (`1e999`).
- `record_too_large`: a line, JSON item or CSV row longer than `MAX_RECORD_SIZE`.

Whole files are bounded too: `MAX_INPUT_BYTES` for a file and for what a gzip file holds, and only
regular files are read (`/dev/zero`, a pipe or a socket would be read without end).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

MAX_INPUT_BYTES = 2 * 1024**3
"""2 GiB: a file is read whole, and its records as Python objects take several times its size in
memory; a larger file is best split and imported in parts (`--append`)."""
MAX_RECORD_SIZE = 16 * 1024**2
"""16 MiB (bytes of a JSONL line; characters of a JSON item or a CSV row): 30 times a 128k-token
conversation (~4 bytes a token), while one `json.loads` of it stays a few hundred MB at most."""
MAX_DEPTH = 64
"""Nesting levels of arrays and objects in one record (`{"messages": [{...}]}` is 3). Real records
nest under ~15 (a JSON schema in `tools` included); 64 keeps every recursive walker downstream far
below Python's recursion limit of 1,000 frames."""
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
"""Integers must fit 64 bits (signed or unsigned), what Arrow, Parquet and SQLite hold."""
TOO_DEEP = f"arrays and objects nested deeper than {MAX_DEPTH}"
FIELD_KEEP = 200  # characters of a field path kept in a problem

Problem = tuple[str, str, str]
"""(reason, field, detail), as a `RawRecord` carries it."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_RAW_SURROGATE = re.compile("[\udc80-\udcff]")
"""What `surrogateescape` decoding makes of a byte that is not UTF-8."""
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"(?:\s*:)?|[\[\]{},]')
"""A JSON string (with the ':' after it, when it is a key), a bracket or a comma."""


def has_surrogate(text: str) -> bool:
    return not text.isascii() and bool(_SURROGATE.search(text))


def has_undecodable_bytes(text: str) -> bool:
    """True if `text`, decoded with `surrogateescape`, came from bytes that are not UTF-8."""
    return not text.isascii() and bool(_RAW_SURROGATE.search(text))


def printable(text: str) -> str:
    """`text` with every surrogate replaced by U+FFFD, so it can be stored and printed."""
    return _SURROGATE.sub("\ufffd", text) if has_surrogate(text) else text


class _NumberOutOfBounds(ValueError):
    """Raised by `DECODER` for a number a record may not hold; `PLACING_DECODER` then finds its field."""


def _checked_int(literal: str) -> int:
    if len(literal) > len(str(INT_MIN)):  # `int()` of over 4,300 digits would raise, slowly
        raise _NumberOutOfBounds(literal[:20])
    value = int(literal)
    if not INT_MIN <= value <= INT_MAX:
        raise _NumberOutOfBounds(literal)
    return value


def _checked_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NumberOutOfBounds(literal[:20])
    return value


def _no_constant(literal: str) -> float:
    raise _NumberOutOfBounds(literal)


@dataclass(frozen=True, slots=True)
class HugeInteger:
    """What `PLACING_DECODER` makes of an integer literal longer than 64 bits allow."""

    digits: int


def _placed_int(literal: str) -> int | HugeInteger:
    digits = len(literal.lstrip("-"))
    return HugeInteger(digits) if digits > len(str(INT_MAX)) else int(literal)


DECODER = json.JSONDecoder(parse_int=_checked_int, parse_float=_checked_float, parse_constant=_no_constant)
"""`json`'s decoder, raising (a `ValueError`) at a number out of bounds as soon as it reads one."""
PLACING_DECODER = json.JSONDecoder(parse_int=_placed_int)
"""Every number kept (an integer too long as a `HugeInteger`): for the rare value `DECODER` refused
for a number, so that `value_problem` names its field, and for checking a document's grammar."""


def _field(keys: list[Any]) -> str:
    """`messages[0].content` from the keys `["messages", 0, "content"]`."""
    field = "".join(f"[{key}]" if isinstance(key, int) else f".{printable(str(key))}" for key in keys)
    field = field.removeprefix(".")
    return field if len(field) <= FIELD_KEEP else field[:FIELD_KEEP] + "..."


def _keys(path: tuple[Any, ...] | None) -> list[Any]:
    """The keys of the linked path `((None, "messages"), 0)`, outermost first."""
    keys = []
    while path is not None:
        path, key = path
        keys.append(key)
    return keys[::-1]


def _scalar_problem(value: Any) -> tuple[str, str] | None:
    """(reason, detail) for a string or number a record may not hold."""
    if isinstance(value, str):
        if has_surrogate(value):
            return "invalid_unicode", "a lone surrogate (a \\udXXX escape) is not a character"
    elif isinstance(value, HugeInteger):
        return "number_too_large", f"an integer of {value.digits:,} digits is outside 64 bits"
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            return "number_too_large", f"the integer {value} is outside 64 bits"
    elif isinstance(value, float) and not math.isfinite(value):
        return "invalid_number", f"{value} is not a JSON number"
    return None


def value_problem(value: Any) -> Problem | None:
    """The first thing in a parsed record that it may not hold (see the module docstring), or None.

    Walks without recursion, so the depth it bounds cannot overflow the walk itself.
    """
    scalar = _scalar_problem(value)
    if scalar is not None:
        return scalar[0], "", scalar[1]
    stack: list[tuple[Any, int, tuple[Any, ...] | None]] = [(value, 1, None)]
    while stack:
        node, depth, path = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            return "too_deep", _field(_keys(path)), TOO_DEEP
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(key, str) and has_surrogate(key):
                return "invalid_unicode", _field(_keys((path, key))), "a key holds a lone surrogate"
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1, (path, key)))
                continue
            scalar = _scalar_problem(item)
            if scalar is not None:
                return scalar[0], _field(_keys((path, key))), scalar[1]
    return None


def text_problem(value: Any, text: str) -> Problem | None:
    """`value_problem` of a value `DECODER` read from `text` (so its numbers are in bounds).

    The walk is skipped where `text` cannot hold a problem: too few brackets to nest too deep, no
    surrogate escape, no surrogate character.
    """
    if (
        text.count("[") + text.count("{") > MAX_DEPTH
        or ("\\u" in text and _SURROGATE_ESCAPE.search(text))
        or has_surrogate(text)
    ):
        return value_problem(value)
    return None


def deep_field(text: str) -> str:
    """The field of the first array or object nested deeper than `MAX_DEPTH` in the JSON `text`,
    found by matching brackets: for a record too deep for `json` to parse at all."""
    keys: list[Any] = []  # per open array or object: the index or key of the value being read
    for token in JSON_TOKEN.finditer(text):
        mark = token.group()
        if mark in ("[", "{"):
            if len(keys) >= MAX_DEPTH:
                return _field(keys)
            keys.append(0 if mark == "[" else "")
        elif mark in ("]", "}"):
            if keys:
                keys.pop()
        elif mark == ",":
            if keys and isinstance(keys[-1], int):
                keys[-1] += 1
        elif mark.endswith(":") and keys:
            try:
                keys[-1] = json.loads(mark[:-1].rstrip())
            except ValueError:
                keys[-1] = mark[1:-1].rstrip().removesuffix('"')
    return ""


def json_problem(error: ValueError | RecursionError, text: str) -> Problem:
    """What `json` raising `error` means for the record it was reading from `text`."""
    if isinstance(error, json.JSONDecodeError):
        return "invalid_json", "", f"{error.msg} at column {error.colno}"
    if isinstance(error, RecursionError):
        return "too_deep", deep_field(text), TOO_DEEP
    if isinstance(error, _NumberOutOfBounds):
        try:
            placed = value_problem(PLACING_DECODER.decode(text))
        except (ValueError, RecursionError) as exc:  # the text goes wrong after the number
            return json_problem(exc, text)
        if placed is not None:
            return placed
    return "invalid_json", "", str(error)


def parse_json(text: str) -> tuple[Any, Problem | None]:
    """A JSON value held to these limits: (value, None), or (None, the problem)."""
    try:
        value = DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        return None, json_problem(exc, text)
    problem = text_problem(value, text)
    return (None, problem) if problem is not None else (value, None)


def too_large(size: int, unit: str = "characters") -> Problem:
    return "record_too_large", "", f"{size:,} {unit} long; a record may hold {MAX_RECORD_SIZE:,}"
