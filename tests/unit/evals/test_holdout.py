"""The holdout behaviour measured while training generates as `sftline eval` does: constrained."""

from __future__ import annotations

import json
from pathlib import Path

from sftline.contract.spec import Contract
from sftline.data.example import Example, Provenance
from sftline.evals.holdout import holdout_behaviour
from sftline.train.config import TrainConfig
from tests.support.clinc import CLINC
from tests.support.tiny_models import make_tiny_bpe_tokenizer, tiny_causal_lm


def test_a_generating_run_measures_its_holdout_with_constrained_answers(tmp_path: Path) -> None:
    rows = json.loads(CLINC.read_text())["train"][:1500]
    tokenizer = make_tiny_bpe_tokenizer([text for text, _ in rows] + [label for _, label in rows])
    holdout = [
        Example(f"h{i}", Provenance("h.jsonl", "0" * 64, "classification", i + 1), text=text, label=label)
        for i, (text, label) in enumerate(rows[::150])
    ]
    config = TrainConfig(base="tiny", data="intents", eval_max_new_tokens=12)
    contract = Contract(task="chat", output={"kind": "labels"}, abstention="oos")
    model = tiny_causal_lm(tokenizer, hidden=64)
    # `tmp_path` has no generation config: the tokenizer's eos alone ends an answer.
    measure = holdout_behaviour(model, tokenizer, tmp_path, holdout, config, contract, None)
    metrics = measure()
    # Unconstrained, the random model's compliance is 0 (tests/unit/contract/test_constrain.py).
    assert metrics["label_compliance"] == 1.0 and metrics["stop_rate"] == 1.0
