"""ShareGPT turns (`{"from": "human", "value": ...}`) as checked OpenAI-format chat messages.

Speakers map to roles through `SHAREGPT_ROLES`; LLaMA-Factory's tool turns become a tool call
(`function_call`) and its result (`observation`), paired by generated call ids. A rejection names
the turn's own keys (`conversations[1].from`, `.value`), not the canonical ones.
"""

from __future__ import annotations

from typing import Any

from sftline.data.messages import Rejection, check_message, embedded_json, missing, wrong_type

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}
"""ShareGPT speakers (`from`, lower-cased) -> roles. `function_call` and `observation` are
LLaMA-Factory's tool-call and tool-result turns."""


def _function_calls(value: Any, where: str, turn: int) -> list[dict[str, Any]] | Rejection:
    """A ShareGPT `function_call` turn's value: `{"name", "arguments"}` or a list of them, as JSON."""
    if isinstance(value, str):
        value = embedded_json(value, where, "invalid_tool_call")
        if isinstance(value, Rejection):
            return value
    calls = value if isinstance(value, list) else [value]
    if not calls or not all(isinstance(call, dict) for call in calls):
        return wrong_type(where, 'a {"name", "arguments"} object or a list of them', value)
    return [
        {"id": f"call_{turn}_{index}", "type": "function", "function": call}
        for index, call in enumerate(calls)
    ]


def sharegpt_turn(turn: Any, where: str, index: int, pending: list[str]) -> dict[str, Any] | Rejection:
    """One ShareGPT turn (`from`/`value`, or `role`/`content`) as a checked chat message.

    `pending` holds the ids of tool calls not yet answered; an `observation` turn answers the first.
    """
    if not isinstance(turn, dict):
        return wrong_type(where, "an object", turn)
    speaker_key, text_key = (
        ("role", "content") if "from" not in turn and "role" in turn else ("from", "value")
    )
    if speaker_key not in turn:
        return missing(f"{where}.{speaker_key}")
    speaker = turn[speaker_key]
    if not isinstance(speaker, str):
        return wrong_type(f"{where}.{speaker_key}", "a string", speaker)
    role = SHAREGPT_ROLES.get(speaker.lower())
    if role is None:
        known = ", ".join(SHAREGPT_ROLES)
        return Rejection("unknown_role", f"{where}.{speaker_key}", f"{speaker!r} is not one of {known}")
    message = {key: value for key, value in turn.items() if key not in (speaker_key, text_key)}
    message.update(role=role, content=turn.get(text_key))
    if speaker.lower() == "function_call":
        calls = _function_calls(turn.get(text_key), f"{where}.{text_key}", index)
        if isinstance(calls, Rejection):
            return calls
        message.update(content=None, tool_calls=calls)
        pending.extend(call["id"] for call in calls)
    elif role == "tool" and message.get("tool_call_id") is None:
        if not pending:
            detail = f"a {speaker!r} turn answers no function_call turn before it"
            return Rejection("invalid_tool_call", f"{where}.{speaker_key}", detail)
        message["tool_call_id"] = pending.pop(0)
    result = check_message(message, where)
    if isinstance(result, Rejection):
        renamed = {
            f"{where}.role": f"{where}.{speaker_key}",
            f"{where}.content": f"{where}.{text_key}",
            f"{where}.tool_calls": f"{where}.{text_key}",
        }
        prefix = next((old for old in renamed if result.field.startswith(old)), None)
        if prefix is not None:
            return Rejection(result.reason, renamed[prefix] + result.field[len(prefix) :], result.detail)
    return result
