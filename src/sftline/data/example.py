"""The canonical `Example`: every import format lands in this one shape.

An example is either a conversation (`messages`, optionally with `tools`) or a classification
pair (`text` + `label`). Its identity is content: `content_hash` is the sha256 of its canonical
JSON (messages, tools, text, label, tags), which is what versions and diffs are built from.
Provenance (file, line, file sha256) travels with it but is not part of its content.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where an example came from."""

    source: str
    """The input file's name as imported; in a dataset folder, `folder/relative/path.parquet`."""
    source_sha256: str
    """sha256 of the whole input file (as stored: a .gz file's compressed bytes)."""
    format: str
    """The import format that read it (chat, sharegpt, prompt-completion, alpaca, classification,
    pairs, text)."""
    line: int | None = None
    """1-based line in the file where the record starts; None where the file has no lines (Parquet,
    Arrow)."""
    pointer: str | None = None
    """Position inside a JSON document, e.g. `train[17]`, or a table's 0-based row, `[3]` (with the
    split of a dataset folder's shard: `train[3]`); None for line-based files."""

    @property
    def location(self) -> str:
        parts = [self.source]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.pointer:
            parts.append(self.pointer)
        return ", ".join(parts) if len(parts) > 1 else parts[0]


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    provenance: Provenance
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    text: str | None = None
    label: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> Literal["chat", "classification"]:
        return "chat" if self.messages is not None else "classification"

    def content(self) -> dict[str, Any]:
        """The part of the example that is data (no id, no provenance)."""
        return example_content(self.messages, self.tools, self.text, self.label, self.tags)

    @property
    def content_hash(self) -> str:
        return content_hash(self.content())

    @property
    def prompt(self) -> str:
        """The input side as one string: the text, or every non-assistant turn."""
        if self.messages is None:
            return self.text or ""
        return "\n".join(message_text(m) for m in self.messages if m["role"] != "assistant")

    @property
    def target(self) -> str:
        """The trained side as one string: the label, or the assistant turns."""
        if self.messages is None:
            return self.label or ""
        return "\n".join(message_text(m) for m in self.messages if m["role"] == "assistant")


def example_content(
    messages: list[dict[str, Any]] | None,
    tools: list[dict[str, Any]] | None,
    text: str | None,
    label: str | None,
    tags: dict[str, str],
) -> dict[str, Any]:
    return {"messages": messages, "tools": tools, "text": text, "label": label, "tags": tags}


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    calls = message.get("tool_calls")
    if calls:
        content += "".join(canonical_json(call) for call in calls)
    return content


def canonical_json(value: Any) -> str:
    """Stable JSON: sorted keys, no insignificant whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()
