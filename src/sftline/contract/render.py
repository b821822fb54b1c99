"""Render examples with the base model's own chat template, and build the loss mask.

Training must see exactly the text serving will produce: the tokenizer's chat template, the
contract's system prompt, the template's special tokens. The mask is found without knowing the
template: for each assistant turn `i`, `messages[:i]` rendered with the generation prompt is where
the reply starts, and `messages[:i+1]` rendered is where the turn ends; both must be prefixes of
the whole rendering. Tokens whose characters lie inside such a span are trained, everything else
is labelled -100. The span includes the end-of-turn token, so the model learns to stop.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, cast

from rich.text import Text

from sftline.data.example import Example
from sftline.errors import TrainingError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
"""The label of an untrained token (what torch's cross-entropy ignores)."""
TRAINED_STYLE = "bold green"
PROMPT_STYLE = "dim"

LengthPolicy = Literal["drop", "truncate-prompt"]


@dataclass(frozen=True, slots=True)
class TurnSpan:
    """The tokens one message rendered to: `input_ids[start:end]`."""

    role: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class RenderedExample:
    """One example as the model sees it in training."""

    example_id: str
    input_ids: list[int]
    labels: list[int]
    """Same length as `input_ids`: -100 where no loss, else the token id itself (not shifted)."""
    text: str
    """The whole rendered string (before any left truncation; see `n_truncated`)."""
    turns: tuple[TurnSpan, ...] = ()
    """Which tokens belong to which message (for inspection; `mask_check.check_masks` checks labels
    against the messages themselves, not against these spans)."""
    n_truncated: int = 0
    """Tokens cut from the left of the prompt by `apply_length_policy`."""

    @property
    def n_trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def as_messages(example: Example, system_prompt: str | None) -> list[dict[str, Any]]:
    """The messages to render: a classification pair becomes user text -> assistant label.

    The system prompt is prepended when set and the example has no system turn of its own.
    `content: None` (a tool-call turn) becomes "" and tool-call `arguments` given as a JSON string
    become objects, which is what chat templates (and servers such as vLLM) expect.
    """
    if example.messages is None:
        if example.text is None or example.label is None:
            raise TrainingError(f"example {example.id}: a classification example needs both text and label")
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": example.text},
            {"role": "assistant", "content": example.label},
        ]
    else:
        messages = [_normalise(message) for message in example.messages]
    if system_prompt and not any(message["role"] == "system" for message in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def render_chat(
    tokenizer: PreTrainedTokenizerBase, example: Example, *, system_prompt: str | None = None
) -> RenderedExample:
    """Render `example` with the tokenizer's chat template and label its assistant turns."""
    _require_chat_tokenizer(tokenizer)
    messages = as_messages(example, system_prompt)
    tools = example.tools or None
    full = _render(tokenizer, example.id, messages, tools, generation_prompt=False)

    boundaries = [0]  # character offset where each message's rendering starts, then len(full)
    trained: list[tuple[int, int]] = []  # character spans, in order
    for index, message in enumerate(messages):
        through = (
            full
            if index == len(messages) - 1
            else _render(tokenizer, example.id, messages[: index + 1], tools, generation_prompt=False)
        )
        _require_prefix(through, full, example.id, f"messages[:{index + 1}]")
        if message["role"] == "assistant" and message.get("weight", 1) != 0:
            prompt = _render(tokenizer, example.id, messages[:index], tools, generation_prompt=True)
            _require_prefix(prompt, through, example.id, f"messages[:{index}] with the generation prompt")
            start = len(prompt)
            # The span stops before the whitespace after the turn, so the end-of-turn token
            # (ChatML `<|im_end|>`) is the last trained token and the "\n" the template writes after
            # it is not: serving stops at that token (an eos id) and never samples the "\n"; the
            # template writes it before the next turn, so training it would only teach a token
            # the model never has to produce.
            end = max(start, len(through.rstrip()))
            _require_tool_calls_rendered(tokenizer, example.id, index, message, full[start:end])
            trained.append((start, end))
        boundaries.append(len(through))

    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    input_ids: list[int] = list(encoding["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(pair) for pair in encoding["offset_mapping"]]
    labels = _labels(input_ids, offsets, trained)
    roles = [message["role"] for message in messages]
    return RenderedExample(
        example_id=example.id,
        input_ids=input_ids,
        labels=labels,
        text=full,
        turns=_turn_spans(offsets, boundaries, roles),
    )


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, generation_config: Any = None) -> set[int]:
    """Token ids that end a reply: the tokenizer's eos plus a generation config's `eos_token_id`.

    `generation_config` may be a `GenerationConfig`, any object with `eos_token_id`, or a mapping;
    its `eos_token_id` may be an int or a list (Llama 3 lists `<|eot_id|>` and `<|eom_id|>`).
    """
    ids = _as_ids(getattr(tokenizer, "eos_token_id", None))
    if generation_config is not None:
        if isinstance(generation_config, Mapping):
            ids |= _as_ids(generation_config.get("eos_token_id"))
        else:
            ids |= _as_ids(getattr(generation_config, "eos_token_id", None))
    if not ids:
        raise TrainingError(
            f"tokenizer {_tokenizer_name(tokenizer)} defines no eos token, so no reply can end; "
            "set `eos_token` on the tokenizer or pass the model's generation_config"
        )
    return ids


def apply_length_policy(
    rendered: Sequence[RenderedExample], max_length: int, policy: LengthPolicy
) -> tuple[list[RenderedExample], dict[str, int]]:
    """Make every example fit in `max_length` tokens.

    "drop" drops longer examples. "truncate-prompt" cuts tokens from the left of the prompt, never
    a trained token and never all of the prompt before the first trained token; an example that
    still does not fit is dropped. Counts: "kept" (returned, truncated ones included), "dropped",
    "truncated".
    """
    if max_length < 2:
        raise TrainingError(f"max_length must be at least 2 tokens, got {max_length}")
    if policy not in ("drop", "truncate-prompt"):
        raise TrainingError(f"unknown length policy {policy!r}; use 'drop' or 'truncate-prompt'")
    kept: list[RenderedExample] = []
    dropped = truncated = 0
    for item in rendered:
        length = len(item.input_ids)
        if length <= max_length:
            kept.append(item)
            continue
        cut = length - max_length
        first_trained = next(
            (index for index, label in enumerate(item.labels) if label != IGNORE_INDEX), length
        )
        # Keep at least one prompt token before the first trained one: a trained token needs context.
        if policy == "truncate-prompt" and cut < first_trained:
            kept.append(_drop_left(item, cut))
            truncated += 1
        else:
            dropped += 1
    return kept, {"kept": len(kept), "dropped": dropped, "truncated": truncated}


def mask_spans(tokenizer: PreTrainedTokenizerBase, rendered: RenderedExample) -> list[tuple[bool, str]]:
    """The rendered example as (trained, text) runs in order: what `--show-masks` colours and the
    dashboard marks up."""
    return [
        (
            is_trained,
            cast(
                str,
                tokenizer.decode(
                    rendered.input_ids[start:end],
                    skip_special_tokens=False,
                    clean_up_tokenization_spaces=False,
                ),
            ),
        )
        for is_trained, start, end in _runs(rendered.labels)
    ]


def format_masks(tokenizer: PreTrainedTokenizerBase, rendered: RenderedExample) -> Text:
    """The rendered example with trained spans in bold green and the prompt dimmed."""
    text = Text()
    for is_trained, piece in mask_spans(tokenizer, rendered):
        text.append(piece, style=TRAINED_STYLE if is_trained else PROMPT_STYLE)
    return text


def _normalise(message: Mapping[str, Any]) -> dict[str, Any]:
    normal = dict(message)
    if normal.get("content") is None:
        normal["content"] = ""
    calls = normal.get("tool_calls")
    if calls:
        normal["tool_calls"] = [_normalise_call(call) for call in calls]
    return normal


def _normalise_call(call: Mapping[str, Any]) -> dict[str, Any]:
    normal = dict(call)
    function = normal.get("function")
    if isinstance(function, Mapping) and isinstance(function.get("arguments"), str):
        try:
            arguments = json.loads(function["arguments"])
        except json.JSONDecodeError:
            return normal  # not JSON: the template renders the string as given
        normal["function"] = {**function, "arguments": arguments}
    return normal


def _require_chat_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    name = _tokenizer_name(tokenizer)
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingError(
            f"tokenizer {name} has no chat template, so examples cannot be rendered as serving will; "
            "use an instruct/chat base model (e.g. smollm2-135m-instruct), or add a template to the "
            "model folder (chat_template.jinja, or `chat_template` in tokenizer_config.json)"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise TrainingError(
            f"tokenizer {name} is a slow (Python) tokenizer; loss masks need character offsets, "
            "which only fast tokenizers give: add tokenizer.json to the model folder"
        )


def _render(
    tokenizer: PreTrainedTokenizerBase,
    example_id: str,
    messages: list[dict[str, Any]],
    tools: list[Any] | None,
    *,
    generation_prompt: bool,
) -> str:
    try:
        rendered = tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as exc:  # a template can fail in any way (raise_exception, None + str, ...)
        raise TrainingError(
            f"example {example_id}: the chat template of {_tokenizer_name(tokenizer)} cannot render it: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(rendered, str):
        raise TrainingError(f"apply_chat_template returned {type(rendered).__name__}, expected a string")
    return rendered


def _require_prefix(part: str, whole: str, example_id: str, what: str) -> None:
    if not whole.startswith(part):
        raise TrainingError(
            f"example {example_id}: the chat template is not prefix-consistent (rendering {what} is not "
            "a prefix of the full conversation; the template rewrites earlier turns), so assistant "
            "spans cannot be located; render such conversations one assistant turn per example"
        )


def _require_tool_calls_rendered(
    tokenizer: PreTrainedTokenizerBase, example_id: str, index: int, message: Mapping[str, Any], span: str
) -> None:
    for call in message.get("tool_calls") or ():
        function = call.get("function")
        name = function.get("name") if isinstance(function, Mapping) else call.get("name")
        if name and name not in span:
            raise TrainingError(
                f"example {example_id}: the chat template of {_tokenizer_name(tokenizer)} drops the tool "
                f"call {name!r} of message {index} (it renders as {span!r}); use a base model whose "
                "template supports tool calls"
            )


def _labels(input_ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Label the tokens whose characters lie inside one of `spans` (sorted, disjoint)."""
    labels = [IGNORE_INDEX] * len(input_ids)
    span_index = 0
    for token_index, (start, end) in enumerate(offsets):
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        if span_index == len(spans):
            break
        span_start, span_end = spans[span_index]
        if end > start and span_start <= start and end <= span_end:
            labels[token_index] = input_ids[token_index]
    return labels


def _turn_spans(
    offsets: list[tuple[int, int]], boundaries: list[int], roles: list[str]
) -> tuple[TurnSpan, ...]:
    """Token ranges per message; a token belongs to the message its first character is in."""
    owners = [min(bisect.bisect_right(boundaries, start) - 1, len(roles) - 1) for start, _ in offsets]
    turns: list[TurnSpan] = []
    token = 0
    while token < len(owners):
        end = token
        while end < len(owners) and owners[end] == owners[token]:
            end += 1
        turns.append(TurnSpan(roles[owners[token]], token, end))
        token = end
    return tuple(turns)


def _runs(labels: Sequence[int]) -> list[tuple[bool, int, int]]:
    """Maximal runs of trained / untrained tokens as (trained, start, end)."""
    runs: list[tuple[bool, int, int]] = []
    start = 0
    for index in range(1, len(labels) + 1):
        if index == len(labels) or (labels[index] != IGNORE_INDEX) != (labels[start] != IGNORE_INDEX):
            runs.append((labels[start] != IGNORE_INDEX, start, index))
            start = index
    return runs


def _drop_left(item: RenderedExample, cut: int) -> RenderedExample:
    turns = tuple(
        TurnSpan(turn.role, max(0, turn.start - cut), turn.end - cut) for turn in item.turns if turn.end > cut
    )
    return replace(
        item,
        input_ids=item.input_ids[cut:],
        labels=item.labels[cut:],
        turns=turns,
        n_truncated=item.n_truncated + cut,
    )


def _as_ids(value: int | Sequence[int] | None) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(token) for token in value}


def _tokenizer_name(tokenizer: PreTrainedTokenizerBase) -> str:
    return repr(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def render_prompt(
    tokenizer: PreTrainedTokenizerBase, example: Example, *, system_prompt: str | None = None
) -> tuple[str, str]:
    """The prompt a served model sees for the example's last assistant turn, and that turn's text.

    The prompt is the conversation before the turn rendered with the generation prompt: exactly
    where `render_chat` starts the trained span, so evaluation asks what training taught.
    """
    _require_chat_tokenizer(tokenizer)
    messages = as_messages(example, system_prompt)
    last = max((i for i, message in enumerate(messages) if message["role"] == "assistant"), default=None)
    if last is None:
        raise TrainingError(f"example {example.id}: no assistant turn to evaluate")
    prompt = _render(tokenizer, example.id, messages[:last], example.tools or None, generation_prompt=True)
    reply = messages[last]
    target = reply.get("content") or ""
    if not target and reply.get("tool_calls"):
        target = json.dumps(reply["tool_calls"], sort_keys=True)
    return prompt, str(target)
