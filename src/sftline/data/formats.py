"""Record formats: turn one parsed record into a canonical example, or say why not.

Each converter returns `Fields` (the example's data) or a `Rejection` (reason code, field,
detail). Reason codes are stable names that reports and tests count on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Format = Literal["chat", "prompt-completion", "alpaca", "classification", "pairs"]
FORMATS: tuple[str, ...] = ("chat", "prompt-completion", "alpaca", "classification", "pairs")

TEXT_FIELDS = ("text", "sentence", "query", "utterance", "input", "question", "prompt")
LABEL_FIELDS = ("label", "intent", "category", "class", "target", "labels")
TAG_FIELDS = ("tags", "metadata")
_MESSAGE_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "weight", "refusal"}


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    field: str
    detail: str


@dataclass(slots=True)
class Fields:
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    text: str | None = None
    label: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    record_id: str | None = None


@dataclass(frozen=True)
class FormatOptions:
    text_field: str | None = None
    label_field: str | None = None
    id_field: str = "id"
    tag_fields: tuple[str, ...] = ()


Converter = Callable[[Any, FormatOptions], "Fields | Rejection"]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _wrong_type(where: str, expected: str, value: Any) -> Rejection:
    return Rejection("wrong_type", where, f"expected {expected}, got {_type_name(value)}")


def _missing(where: str) -> Rejection:
    return Rejection("missing_field", where, f"'{where}' is required")


def _common(record: Mapping[str, Any], options: FormatOptions, fields: Fields) -> Rejection | None:
    """Id and tags, which every dict-shaped format may carry."""
    record_id = record.get(options.id_field)
    if record_id is not None:
        if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
            return _wrong_type(options.id_field, "a string or integer", record_id)
        fields.record_id = str(record_id)
    for name in TAG_FIELDS:
        if name in record and record[name] is not None:
            tags = record[name]
            if not isinstance(tags, dict):
                return _wrong_type(name, "an object of tag names to values", tags)
            for key, value in tags.items():
                if isinstance(value, (dict, list)):
                    return _wrong_type(f"{name}.{key}", "a scalar", value)
                fields.tags[str(key)] = str(value)
    for name in options.tag_fields:
        value = record.get(name)
        if value is None or value == "":
            return _missing(name)
        if isinstance(value, (dict, list)):
            return _wrong_type(name, "a scalar", value)
        fields.tags[name] = str(value)
    return None


def _content_text(content: Any, where: str) -> str | None | Rejection:
    """OpenAI content: a string, null, or a list of text parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else _type_name(part)
                return Rejection("unsupported_content", f"{where}[{index}]", f"content part of type {kind!r}")
            if not isinstance(part.get("text"), str):
                return _wrong_type(f"{where}[{index}].text", "a string", part.get("text"))
            texts.append(part["text"])
        return "".join(texts)
    return _wrong_type(where, "a string or a list of text parts", content)


def _tool_calls(calls: Any, where: str) -> list[dict[str, Any]] | Rejection:
    if not isinstance(calls, list) or not calls:
        return _wrong_type(where, "a non-empty list", calls)
    checked = []
    for index, call in enumerate(calls):
        at = f"{where}[{index}]"
        if not isinstance(call, dict):
            return _wrong_type(at, "an object", call)
        function = call.get("function")
        if not isinstance(function, dict):
            return Rejection("invalid_tool_call", f"{at}.function", "a tool call needs a 'function' object")
        name, arguments = function.get("name"), function.get("arguments")
        if not isinstance(name, str) or not name:
            return Rejection("invalid_tool_call", f"{at}.function.name", "missing or not a string")
        if isinstance(arguments, str):
            try:
                json.loads(arguments)
            except json.JSONDecodeError as exc:
                return Rejection("invalid_tool_call", f"{at}.function.arguments", f"not JSON: {exc.msg}")
        elif isinstance(arguments, dict):
            arguments = json.dumps(arguments, ensure_ascii=False)
        else:
            return _wrong_type(f"{at}.function.arguments", "a JSON string", arguments)
        entry: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
        if call.get("id") is not None:
            entry["id"] = str(call["id"])
        checked.append(entry)
    return checked


def check_message(message: Any, where: str) -> dict[str, Any] | Rejection:
    """Validate one OpenAI-format chat message and return its canonical form."""
    if not isinstance(message, dict):
        return _wrong_type(where, "an object", message)
    if "role" not in message:
        return _missing(f"{where}.role")
    role = message["role"]
    if not isinstance(role, str):
        return _wrong_type(f"{where}.role", "a string", role)
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
        calls = _tool_calls(message["tool_calls"], f"{where}.tool_calls")
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
            return _missing(f"{where}.tool_call_id")
        canonical["tool_call_id"] = call_id
    if message.get("name") is not None:
        if not isinstance(message["name"], str):
            return _wrong_type(f"{where}.name", "a string", message["name"])
        canonical["name"] = message["name"]
    if "weight" in message:
        if message["weight"] not in (0, 1) or isinstance(message["weight"], bool):
            return _wrong_type(f"{where}.weight", "0 or 1", message["weight"])
        if role == "assistant":
            canonical["weight"] = int(message["weight"])
    return canonical


def check_messages(messages: Any, where: str) -> list[dict[str, Any]] | Rejection:
    if not isinstance(messages, list):
        return _wrong_type(where, "a list of messages", messages)
    if not messages:
        return Rejection("empty_messages", where, "the conversation has no messages")
    checked = []
    for index, message in enumerate(messages):
        result = check_message(message, f"{where}[{index}]")
        if isinstance(result, Rejection):
            return result
        checked.append(result)
    if not any(m["role"] == "assistant" for m in checked):
        return Rejection("no_assistant_turn", where, "no assistant turn to learn from")
    return checked


def _require_dict(record: Any) -> Mapping[str, Any] | Rejection:
    if not isinstance(record, dict):
        return _wrong_type("(record)", "an object", record)
    return record


def convert_chat(record: Any, options: FormatOptions) -> Fields | Rejection:
    checked = _require_dict(record)
    if isinstance(checked, Rejection):
        return checked
    if "messages" not in checked:
        return _missing("messages")
    messages = check_messages(checked["messages"], "messages")
    if isinstance(messages, Rejection):
        return messages
    fields = Fields(messages=messages)
    tools = checked.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            return _wrong_type("tools", "a list of tool objects", tools)
        for index, tool in enumerate(tools):
            function = tool.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                return Rejection(
                    "invalid_tool", f"tools[{index}].function.name", "a tool needs a function name"
                )
        fields.tools = tools
    return _common(checked, options, fields) or fields


def _side(value: Any, where: str, role: str) -> list[dict[str, Any]] | Rejection:
    """One side of a prompt-completion record: a string, or (TRL's conversational form) messages."""
    if isinstance(value, str):
        message = check_message({"role": role, "content": value}, where)
        if isinstance(message, Rejection):
            return Rejection(message.reason, where, message.detail)
        return [message]
    if isinstance(value, list):
        checked = []
        for index, message in enumerate(value):
            result = check_message(message, f"{where}[{index}]")
            if isinstance(result, Rejection):
                return result
            checked.append(result)
        if not checked:
            return Rejection("empty_content" if role == "user" else "empty_assistant", where, "empty")
        return checked
    return _wrong_type(where, "a string or a list of messages", value)


def convert_prompt_completion(record: Any, options: FormatOptions) -> Fields | Rejection:
    checked = _require_dict(record)
    if isinstance(checked, Rejection):
        return checked
    for name in ("prompt", "completion"):
        if name not in checked:
            return _missing(name)
    prompt = _side(checked["prompt"], "prompt", "user")
    if isinstance(prompt, Rejection):
        return prompt
    completion = _side(checked["completion"], "completion", "assistant")
    if isinstance(completion, Rejection):
        return completion
    if not any(m["role"] == "assistant" for m in completion):
        return Rejection("no_assistant_turn", "completion", "the completion has no assistant turn")
    fields = Fields(messages=prompt + completion)
    return _common(checked, options, fields) or fields


def convert_alpaca(record: Any, options: FormatOptions) -> Fields | Rejection:
    checked = _require_dict(record)
    if isinstance(checked, Rejection):
        return checked
    for name in ("instruction", "output"):
        if name not in checked:
            return _missing(name)
    for name in ("instruction", "input", "output", "system"):
        if checked.get(name) is not None and not isinstance(checked[name], str):
            return _wrong_type(name, "a string", checked[name])
    instruction, output = checked["instruction"], checked["output"]
    if not instruction.strip():
        return Rejection("empty_content", "instruction", "the instruction is empty")
    if not output.strip():
        return Rejection("empty_assistant", "output", "the output is empty")
    extra = (checked.get("input") or "").strip()
    user = f"{instruction}\n\n{extra}" if extra else instruction
    messages: list[dict[str, Any]] = []
    if (checked.get("system") or "").strip():
        messages.append({"role": "system", "content": checked["system"]})
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    fields = Fields(messages=messages)
    return _common(checked, options, fields) or fields


def pick_field(names: Mapping[str, Any] | list[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {name.lower(): name for name in names}
    return next((lowered[c] for c in candidates if c in lowered), None)


def _label_value(value: Any, where: str) -> str | Rejection:
    if value is None or (isinstance(value, str) and not value.strip()):
        return Rejection("empty_label", where, "the label is empty")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return _wrong_type(where, "a string or integer label", value)
    return str(value).strip()


def _text_value(value: Any, where: str) -> str | Rejection:
    if value is None:
        return _missing(where)
    if not isinstance(value, str):
        return _wrong_type(where, "a string", value)
    if not value.strip():
        return Rejection("empty_text", where, "the text is empty")
    return value


def convert_classification(record: Any, options: FormatOptions) -> Fields | Rejection:
    checked = _require_dict(record)
    if isinstance(checked, Rejection):
        return checked
    text_field = options.text_field or pick_field(checked, TEXT_FIELDS) or "text"
    label_field = options.label_field or pick_field(checked, LABEL_FIELDS) or "label"
    if text_field not in checked:
        return _missing(text_field)
    if label_field not in checked:
        return _missing(label_field)
    text = _text_value(checked[text_field], text_field)
    if isinstance(text, Rejection):
        return text
    label = _label_value(checked[label_field], label_field)
    if isinstance(label, Rejection):
        return label
    fields = Fields(text=text, label=label)
    return _common(checked, options, fields) or fields


def convert_pairs(record: Any, options: FormatOptions) -> Fields | Rejection:
    """`[text, label]` pairs, as in CLINC150's data_full.json."""
    if not isinstance(record, list) or len(record) != 2:
        return _wrong_type("(record)", "a [text, label] pair", record)
    text = _text_value(record[0], "[0]")
    if isinstance(text, Rejection):
        return text
    label = _label_value(record[1], "[1]")
    if isinstance(label, Rejection):
        return label
    return Fields(text=text, label=label)


CONVERTERS: dict[str, Converter] = {
    "chat": convert_chat,
    "prompt-completion": convert_prompt_completion,
    "alpaca": convert_alpaca,
    "classification": convert_classification,
    "pairs": convert_pairs,
}


def detect_one(value: Any, options: FormatOptions) -> str | None:
    """The format a single record looks like, or None."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        return "pairs"
    if not isinstance(value, dict):
        return None
    keys = {k.lower() for k in value}
    if "messages" in keys:
        return "chat"
    if {"prompt", "completion"} <= keys:
        return "prompt-completion"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    has_text = options.text_field in value if options.text_field else pick_field(value, TEXT_FIELDS)
    has_label = options.label_field in value if options.label_field else pick_field(value, LABEL_FIELDS)
    if has_text and has_label:
        return "classification"
    return None
