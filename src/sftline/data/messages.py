"""Chat messages: check one OpenAI-format message and return its canonical form, or say why not.

Every record format that holds a conversation (chat, prompt-completion, ShareGPT) ends in these
checks, so a bad turn gets the same reason code and a field path into the record whatever the
format. A check keeps what the canonical `Example` can hold; `unkept_keys` names the rest, which
the importer reports instead of dropping silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sftline.data.record_limits import parse_json


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    field: str
    detail: str


def embedded_json(text: str, where: str, reason: str) -> Any | Rejection:
    """A JSON value held in a string (tool call arguments, a `tools` list), bounded like a record.

    Text that is not JSON is rejected with `reason`; a value too deep, a lone surrogate or a number
    out of range with the `record_limits` reason.
    """
    value, problem = parse_json(text)
    if problem is None:
        return value
    bad, inner, detail = problem
    if bad == "invalid_json":
        return Rejection(reason, where, f"not JSON: {detail}")
    return Rejection(bad, where, f"{detail} (at {inner})" if inner else detail)


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def wrong_type(where: str, expected: str, value: Any) -> Rejection:
    return Rejection("wrong_type", where, f"expected {expected}, got {type_name(value)}")


def missing(where: str) -> Rejection:
    return Rejection("missing_field", where, f"'{where}' is required")


def unkept_keys(source: Mapping[str, Any], kept: Iterable[str], prefix: str = "") -> list[str]:
    """`prefix + key` for each key of `source` with a value that is not among `kept`.

    A key whose value is null carries nothing, so it is not reported.
    """
    kept = set(kept)
    return [f"{prefix}{key}" for key, value in source.items() if key not in kept and value is not None]


def message_unkept_keys(
    sources: list[Any],
    canonical: list[dict[str, Any]],
    prefix: str,
    renamed: Mapping[str, str] | None = None,
) -> list[str]:
    """Keys of each source message that its canonical form does not keep, as `prefix[].key`.

    `renamed` maps a source key to the canonical key it became (ShareGPT's `from` -> `role`).
    """
    renamed = renamed or {}
    unkept: list[str] = []
    for source, message in zip(sources, canonical, strict=True):
        if not isinstance(source, Mapping):
            continue
        kept = [key for key in source if renamed.get(key, key) in message]
        unkept += unkept_keys(source, kept, f"{prefix}[].")
    return unkept


def _content_text(content: Any, where: str) -> str | None | Rejection:
    """OpenAI content: a string, null, or a list of text parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type_name(part)
                return Rejection("unsupported_content", f"{where}[{index}]", f"content part of type {kind!r}")
            if not isinstance(part.get("text"), str):
                return wrong_type(f"{where}[{index}].text", "a string", part.get("text"))
            texts.append(part["text"])
        return "".join(texts)
    return wrong_type(where, "a string or a list of text parts", content)


def check_tool_calls(calls: Any, where: str) -> list[dict[str, Any]] | Rejection:
    if not isinstance(calls, list) or not calls:
        return wrong_type(where, "a non-empty list", calls)
    checked = []
    for index, call in enumerate(calls):
        at = f"{where}[{index}]"
        if not isinstance(call, dict):
            return wrong_type(at, "an object", call)
        function = call.get("function")
        if not isinstance(function, dict):
            return Rejection("invalid_tool_call", f"{at}.function", "a tool call needs a 'function' object")
        name, arguments = function.get("name"), function.get("arguments")
        if not isinstance(name, str) or not name:
            return Rejection("invalid_tool_call", f"{at}.function.name", "missing or not a string")
        if isinstance(arguments, str):
            parsed = embedded_json(arguments, f"{at}.function.arguments", "invalid_tool_call")
            if isinstance(parsed, Rejection):
                return parsed
        elif isinstance(arguments, dict):
            arguments = json.dumps(arguments, ensure_ascii=False)
        else:
            return wrong_type(f"{at}.function.arguments", "a JSON string", arguments)
        entry: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
        if call.get("id") is not None:
            entry["id"] = str(call["id"])
        checked.append(entry)
    return checked


def check_message(message: Any, where: str) -> dict[str, Any] | Rejection:
    """Validate one OpenAI-format chat message and return its canonical form."""
    if not isinstance(message, dict):
        return wrong_type(where, "an object", message)
    if "role" not in message:
        return missing(f"{where}.role")
    role = message["role"]
    if not isinstance(role, str):
        return wrong_type(f"{where}.role", "a string", role)
    role = "system" if role == "developer" else role
    if role not in ("system", "user", "assistant", "tool"):
        return Rejection(
            "unknown_role", f"{where}.role", f"role {role!r} is not system, user, assistant or tool"
        )
    content = _content_text(message.get("content"), f"{where}.content")
    if isinstance(content, Rejection):
        return content
    canonical: dict[str, Any] = {"role": role, "content": content}
    if message.get("tool_calls") is not None:
        if role != "assistant":
            return Rejection("invalid_tool_call", f"{where}.tool_calls", f"a {role} turn cannot call tools")
        calls = check_tool_calls(message["tool_calls"], f"{where}.tool_calls")
        if isinstance(calls, Rejection):
            return calls
        canonical["tool_calls"] = calls
    empty = content is None or not content.strip()
    if role == "assistant" and empty and "tool_calls" not in canonical:
        return Rejection("empty_assistant", f"{where}.content", "the assistant turn is empty")
    if role != "assistant" and empty:
        return Rejection("empty_content", f"{where}.content", f"the {role} turn is empty")
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            return missing(f"{where}.tool_call_id")
        canonical["tool_call_id"] = call_id
    if message.get("name") is not None:
        if not isinstance(message["name"], str):
            return wrong_type(f"{where}.name", "a string", message["name"])
        canonical["name"] = message["name"]
    if message.get("weight") is not None:  # null: a table's struct column where a turn has none
        if message["weight"] not in (0, 1) or isinstance(message["weight"], bool):
            return wrong_type(f"{where}.weight", "0 or 1", message["weight"])
        if role == "assistant":
            canonical["weight"] = int(message["weight"])
    return canonical


def check_messages(messages: Any, where: str) -> list[dict[str, Any]] | Rejection:
    if not isinstance(messages, list):
        return wrong_type(where, "a list of messages", messages)
    if not messages:
        return Rejection("empty_messages", where, "the conversation has no messages")
    checked = check_each(messages, where)
    return checked if isinstance(checked, Rejection) else require_assistant(checked, where)


def check_each(messages: list[Any], where: str) -> list[dict[str, Any]] | Rejection:
    """Every message checked (`where[i]`), or the first one's rejection."""
    checked = []
    for index, message in enumerate(messages):
        result = check_message(message, f"{where}[{index}]")
        if isinstance(result, Rejection):
            return result
        checked.append(result)
    return checked


def require_assistant(messages: list[dict[str, Any]], where: str) -> list[dict[str, Any]] | Rejection:
    if not any(m["role"] == "assistant" for m in messages):
        return Rejection("no_assistant_turn", where, "no assistant turn to learn from")
    return messages
