"""Record formats: turn one parsed record into a canonical example, or say why not.

Each converter returns `Fields` (the example's data) or a `Rejection` (reason code, field,
detail). Reason codes are stable names that reports and tests count on. `Fields.unkept` names the
keys a record carried that the example does not keep, for the import summary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sftline.data.messages import (
    Rejection,
    check_each,
    check_message,
    check_messages,
    embedded_json,
    message_unkept_keys,
    missing,
    require_assistant,
    unkept_keys,
    wrong_type,
)
from sftline.data.sharegpt import sharegpt_turn

Format = Literal["chat", "sharegpt", "prompt-completion", "alpaca", "classification", "pairs", "text"]
FORMATS: tuple[str, ...] = (
    "chat",
    "sharegpt",
    "prompt-completion",
    "alpaca",
    "classification",
    "pairs",
    "text",
)

TEXT_FIELDS = ("text", "sentence", "query", "utterance", "input", "question", "prompt")
LABEL_FIELDS = ("label", "intent", "category", "class", "target", "labels")
TAG_FIELDS = ("tags", "metadata")


@dataclass(slots=True)
class Fields:
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    text: str | None = None
    label: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    record_id: str | None = None
    unkept: list[str] = field(default_factory=list)
    """Keys the record carried that the example does not keep: `source`, `messages[].refusal`."""


@dataclass(frozen=True)
class FormatOptions:
    text_field: str | None = None
    label_field: str | None = None
    id_field: str = "id"
    tag_fields: tuple[str, ...] = ()


Converter = Callable[[Any, FormatOptions], "Fields | Rejection"]


def _common(
    record: Mapping[str, Any], options: FormatOptions, fields: Fields, used: tuple[str, ...]
) -> Fields | Rejection:
    """Id and tags, which every dict-shaped format may carry; `used` are the format's own keys."""
    record_id = record.get(options.id_field)
    if record_id is not None:
        if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
            return wrong_type(options.id_field, "a string or integer", record_id)
        if isinstance(record_id, str) and not record_id.strip():
            return Rejection("empty_id", options.id_field, "the id is blank; give one or leave the field out")
        fields.record_id = str(record_id)
    for name in TAG_FIELDS:
        if name in record and record[name] is not None:
            tags = record[name]
            if not isinstance(tags, dict):
                return wrong_type(name, "an object of tag names to values", tags)
            for key, value in tags.items():
                if isinstance(value, (dict, list)):
                    return wrong_type(f"{name}.{key}", "a scalar", value)
                fields.tags[str(key)] = str(value)
    for name in options.tag_fields:
        value = record.get(name)
        if value is None or value == "":
            return missing(name)
        if isinstance(value, (dict, list)):
            return wrong_type(name, "a scalar", value)
        fields.tags[name] = str(value)
    kept = (*used, options.id_field, *TAG_FIELDS, *options.tag_fields)
    fields.unkept = unkept_keys(record, kept) + fields.unkept
    return fields


def _require_dict(record: Any) -> Mapping[str, Any] | Rejection:
    if not isinstance(record, dict):
        return wrong_type("(record)", "an object", record)
    return record


def _check_tools(tools: Any, where: str) -> list[dict[str, Any]] | Rejection:
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        return wrong_type(where, "a list of tool objects", tools)
    for index, tool in enumerate(tools):
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return Rejection(
                "invalid_tool", f"{where}[{index}].function.name", "a tool needs a function name"
            )
    return tools


def convert_chat(record: Any, options: FormatOptions) -> Fields | Rejection:
    checked = _require_dict(record)
    if isinstance(checked, Rejection):
        return checked
    if "messages" not in checked:
        return missing("messages")
    messages = check_messages(checked["messages"], "messages")
    if isinstance(messages, Rejection):
        return messages
    fields = Fields(messages=messages, unkept=message_unkept_keys(checked["messages"], messages, "messages"))
    if checked.get("tools") is not None:
        tools = _check_tools(checked["tools"], "tools")
        if isinstance(tools, Rejection):
            return tools
        fields.tools = tools
    return _common(checked, options, fields, ("messages", "tools"))


def _sharegpt_tools(tools: Any) -> list[dict[str, Any]] | Rejection:
    """`tools` as a list or a JSON string of them; LLaMA-Factory's bare functions get wrapped."""
    if isinstance(tools, str):
        if not tools.strip():
            return []
        tools = embedded_json(tools, "tools", "invalid_tool")
        if isinstance(tools, Rejection):
            return tools
    if isinstance(tools, list):
        tools = [
            {"type": "function", "function": tool}
            if isinstance(tool, dict) and "function" not in tool
            else tool
            for tool in tools
        ]
    return _check_tools(tools, "tools")


def convert_sharegpt(record: Any, options: FormatOptions) -> Fields | Rejection:
    """`{"conversations": [{"from": "human", "value": ...}, ...], "system"?, "tools"?}`."""
    checked = _require_dict(record)
    if isinstance(checked, Rejection):
        return checked
    key = "conversations" if "conversations" in checked or "messages" not in checked else "messages"
    if key not in checked:
        return missing(key)
    turns = checked[key]
    if not isinstance(turns, list):
        return wrong_type(key, "a list of turns", turns)
    if not turns:
        return Rejection("empty_messages", key, "the conversation has no turns")
    messages: list[dict[str, Any]] = []
    pending: list[str] = []
    for index, turn in enumerate(turns):
        message = sharegpt_turn(turn, f"{key}[{index}]", index, pending)
        if isinstance(message, Rejection):
            return message
        messages.append(message)
    unkept = message_unkept_keys(turns, messages, key, {"from": "role", "value": "content"})
    system = checked.get("system")
    if system is not None and not isinstance(system, str):
        return wrong_type("system", "a string", system)
    if system and system.strip():
        if messages[0]["role"] == "system":
            unkept.append("system")  # the conversation's own system turn wins
        else:
            messages.insert(0, {"role": "system", "content": system})
    checked_messages = require_assistant(messages, key)
    if isinstance(checked_messages, Rejection):
        return checked_messages
    fields = Fields(messages=checked_messages, unkept=unkept)
    if checked.get("tools") is not None:
        tools = _sharegpt_tools(checked["tools"])
        if isinstance(tools, Rejection):
            return tools
        fields.tools = tools or None
    return _common(checked, options, fields, (key, "system", "tools"))


def _side(value: Any, where: str, role: str) -> list[dict[str, Any]] | Rejection:
    """One side of a prompt-completion record: a string, or (TRL's conversational form) messages."""
    if isinstance(value, str):
        message = check_message({"role": role, "content": value}, where)
        if isinstance(message, Rejection):
            return Rejection(message.reason, where, message.detail)
        return [message]
    if isinstance(value, list):
        checked = check_each(value, where)
        if isinstance(checked, Rejection):
            return checked
        if not checked:
            return Rejection("empty_content" if role == "user" else "empty_assistant", where, "empty")
        return checked
    return wrong_type(where, "a string or a list of messages", value)


def convert_prompt_completion(record: Any, options: FormatOptions) -> Fields | Rejection:
    checked = _require_dict(record)
    if isinstance(checked, Rejection):
        return checked
    for name in ("prompt", "completion"):
        if name not in checked:
            return missing(name)
    prompt = _side(checked["prompt"], "prompt", "user")
    if isinstance(prompt, Rejection):
        return prompt
    completion = _side(checked["completion"], "completion", "assistant")
    if isinstance(completion, Rejection):
        return completion
    if not any(m["role"] == "assistant" for m in completion):
        return Rejection("no_assistant_turn", "completion", "the completion has no assistant turn")
    unkept = []
    for name, side in (("prompt", prompt), ("completion", completion)):
        if isinstance(checked[name], list):
            unkept += message_unkept_keys(checked[name], side, name)
    fields = Fields(messages=prompt + completion, unkept=unkept)
    return _common(checked, options, fields, ("prompt", "completion"))


def _alpaca_history(history: Any) -> list[dict[str, Any]] | Rejection:
    """LLaMA-Factory's `history`: earlier `[instruction, response]` turns, oldest first."""
    if not isinstance(history, list):
        return wrong_type("history", "a list of [instruction, response] pairs", history)
    messages: list[dict[str, Any]] = []
    for index, pair in enumerate(history):
        if not isinstance(pair, list) or len(pair) != 2:
            return wrong_type(f"history[{index}]", "an [instruction, response] pair", pair)
        for position, role in enumerate(("user", "assistant")):
            message = check_message({"role": role, "content": pair[position]}, "")
            if isinstance(message, Rejection):
                return Rejection(message.reason, f"history[{index}][{position}]", message.detail)
            messages.append(message)
    return messages


def convert_alpaca(record: Any, options: FormatOptions) -> Fields | Rejection:
    checked = _require_dict(record)
    if isinstance(checked, Rejection):
        return checked
    for name in ("instruction", "output"):
        if name not in checked:
            return missing(name)
    for name in ("instruction", "input", "output", "system"):
        if checked.get(name) is not None and not isinstance(checked[name], str):
            return wrong_type(name, "a string", checked[name])
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
    if checked.get("history") is not None:
        history = _alpaca_history(checked["history"])
        if isinstance(history, Rejection):
            return history
        messages += history
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    fields = Fields(messages=messages)
    return _common(checked, options, fields, ("instruction", "input", "output", "system", "history"))


def pick_field(names: Mapping[str, Any] | list[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {name.lower(): name for name in names}
    return next((lowered[c] for c in candidates if c in lowered), None)


def _label_value(value: Any, where: str) -> str | Rejection:
    if value is None or (isinstance(value, str) and not value.strip()):
        return Rejection("empty_label", where, "the label is empty")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return wrong_type(where, "a string or integer label", value)
    return str(value).strip()


def _text_value(value: Any, where: str) -> str | Rejection:
    if value is None:
        return missing(where)
    if not isinstance(value, str):
        return wrong_type(where, "a string", value)
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
        return missing(text_field)
    if label_field not in checked:
        return missing(label_field)
    text = _text_value(checked[text_field], text_field)
    if isinstance(text, Rejection):
        return text
    label = _label_value(checked[label_field], label_field)
    if isinstance(label, Rejection):
        return label
    fields = Fields(text=text, label=label)
    return _common(checked, options, fields, (text_field, label_field))


def convert_pairs(record: Any, options: FormatOptions) -> Fields | Rejection:
    """`[text, label]` pairs, as in CLINC150's data_full.json."""
    if not isinstance(record, list) or len(record) != 2:
        return wrong_type("(record)", "a [text, label] pair", record)
    text = _text_value(record[0], "[0]")
    if isinstance(text, Rejection):
        return text
    label = _label_value(record[1], "[1]")
    if isinstance(label, Rejection):
        return label
    return Fields(text=text, label=label)


def convert_text(record: Any, options: FormatOptions) -> Fields | Rejection:
    """`{"text": ...}`: the whole text is trained, as one assistant turn with no prompt.

    This is Axolotl's `completion` type and TRL's language-modelling `text` column, kept inside
    the chat contract: the turn is rendered with the chat template like every other example.
    """
    checked = _require_dict(record)
    if isinstance(checked, Rejection):
        return checked
    text_field = options.text_field or "text"
    text = _text_value(checked.get(text_field), text_field)
    if isinstance(text, Rejection):
        return text
    fields = Fields(messages=[{"role": "assistant", "content": text}])
    return _common(checked, options, fields, (text_field,))


CONVERTERS: dict[str, Converter] = {
    "chat": convert_chat,
    "sharegpt": convert_sharegpt,
    "prompt-completion": convert_prompt_completion,
    "alpaca": convert_alpaca,
    "classification": convert_classification,
    "pairs": convert_pairs,
    "text": convert_text,
}


def _is_sharegpt_turn(turn: Any) -> bool:
    return isinstance(turn, dict) and "from" in turn and "role" not in turn


def detect_one(value: Any, options: FormatOptions) -> str | None:
    """The format a single record looks like, or None."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        return "pairs"
    if not isinstance(value, dict):
        return None
    keys = {k.lower() for k in value}
    if "conversations" in value:
        return "sharegpt"
    if "messages" in keys:
        messages = value.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        return "sharegpt" if _is_sharegpt_turn(first) else "chat"
    if {"prompt", "completion"} <= keys:
        return "prompt-completion"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    has_text = options.text_field in value if options.text_field else pick_field(value, TEXT_FIELDS)
    has_label = options.label_field in value if options.label_field else pick_field(value, LABEL_FIELDS)
    if has_text and has_label:
        return "classification"
    if "text" in value and not has_label:
        return "text"
    return None
