"""Greedy generation's per-example facts, through a scripted language model (no weights)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from sftline.data.example import Example, Provenance
from sftline.evals.predict import GenerationPredictor

PAD, STOP, A = 0, 1, 2
VOCAB = 4


class StubTokenizer:
    """Every character of a prompt is token `a`; the chat template joins the turns' contents."""

    chat_template = "stub"
    is_fast = True
    pad_token_id = PAD

    def apply_chat_template(self, messages: list[dict[str, Any]], **_: Any) -> str:
        return "".join(message["content"] for message in messages)

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict[str, list[list[int]]]:
        return {"input_ids": [[A] * len(text) for text in texts]}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join("a" for token in ids if token == A)


class ScriptedLM(torch.nn.Module):
    """Greedy decoding over scripted float32 logits: step t's logits are `logits[t]` for every row."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # where `generate` runs
        self.logits = logits

    def generate(
        self, input_ids: torch.Tensor, max_new_tokens: int, logits_processor: Any, **_: Any
    ) -> torch.Tensor:
        ids = input_ids
        for step in self.logits[:max_new_tokens]:
            scores = step.expand(len(ids), -1).clone()
            for processor in logits_processor:
                scores = processor(ids, scores)
            ids = torch.cat([ids, scores.argmax(dim=-1, keepdim=True)], dim=1)
            if (ids[:, -1] == STOP).all():
                break
        return ids


def scripted_logits(probabilities: np.ndarray) -> torch.Tensor:
    """Per step, logits under which token `a` (then the stop token, at the last step) has the given
    probability and the three other tokens share the rest: logit log(3p / (1 - p)) against 0."""
    logits = np.zeros((len(probabilities), VOCAB))
    picked = np.full(len(probabilities), A)
    picked[-1] = STOP
    logits[np.arange(len(probabilities)), picked] = np.log(3 * probabilities / (1 - probabilities))
    return torch.tensor(logits, dtype=torch.float32)


def sequence_log_probability(logits: torch.Tensor) -> float:
    """sum over steps of log softmax(logits)[arg-max], in float64 (scipy, not the code under test)."""
    z = logits.numpy().astype(np.float64)
    return math.fsum((z.max(axis=1) - logsumexp(z, axis=1)).tolist())


@pytest.mark.parametrize("max_new_tokens", [256, 150], ids=["stopped", "cut-off"])
def test_a_long_answers_confidence_does_not_underflow(max_new_tokens: int) -> None:
    # 200 steps at p in [0.3, 0.6]: e^-159 (150 of them e^-119), below float32's smallest (e^-103).
    probabilities = np.random.default_rng(0).uniform(0.3, 0.6, size=200)
    logits = scripted_logits(probabilities)
    example = Example(
        "ex",
        Provenance(source="chat.jsonl", source_sha256="0" * 64, format="chat"),
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"}],
    )
    predictor = GenerationPredictor(
        ScriptedLM(logits), StubTokenizer(), None, [STOP], max_new_tokens=max_new_tokens
    )
    [output] = predictor.predict([example])

    scored = min(max_new_tokens, 200)  # a stopped answer's stop token counts
    expected = math.exp(sequence_log_probability(logits[:scored]))
    assert np.float32(np.prod(probabilities[:scored].astype(np.float32))) == 0  # float32 cannot hold it
    assert output.confidence is not None and output.confidence > 0
    assert output.confidence == pytest.approx(expected, rel=1e-12, abs=0)
    # The mean log-probability per scored token, as `Output.confidence` documents it.
    per_token = math.log(output.confidence) / (output.output_tokens + output.finished)
    assert per_token == pytest.approx(sequence_log_probability(logits[:scored]) / scored, rel=1e-12)
    assert (output.output_tokens, output.finished) == (min(max_new_tokens, 199), max_new_tokens > 200)
    assert output.output == "a" * output.output_tokens
