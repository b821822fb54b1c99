"""Defaults by task: what a run trains with when the user did not say.

TrainConfig's own defaults are the chat recipe (LoRA on a causal LM, tokens per step). A sequence
classifier is another problem: a small encoder (MiniLM-L6: 22.7M parameters) with a new head,
trained on short texts, where what matters is examples per step and passes over the data. Every
setting the user did not give (pydantic's `model_fields_set`) takes the classifier recipe's
value; a given one is kept. BENCHMARKS.md has one ablation row per choice.

- method full: the whole encoder adapts; LoRA on a 22M model saves little and learned far less
  (2.7% accuracy on 77 intents with the LoRA default, issue 13).
- 32 examples per optimizer step, drawn at random: the batch of the BERT fine-tuning recipes.
- lr 2e-4 (5e-4 for LoRA), linear decay after 10% warmup, weight decay 0.01: for a 6-layer
  encoder, between BERT-base's 2e-5..5e-5 and the 1e-3 a lone head would take. Chosen on
  CLINC150's validation split (never its test split) between 1e-4 and 2e-4: the same in-scope
  accuracy (95.3%), out-of-scope recall 87% against 78% (BENCHMARKS.md).
- epochs from the data size: about TARGET_STEPS optimizer steps, at least 3 and at most 10
  passes. A fixed epoch count undertrains small datasets and spends hours on large ones.
- a holdout: `eval_on`, or a seeded, stratified share of the training data (holdout_share),
  evaluated once an epoch for the best checkpoint, then used for the temperature and the
  abstention operating point (sftline.evals.abstention).
"""

from __future__ import annotations

import math
from typing import Any

from sftline.train.config import TrainConfig

TARGET_STEPS = 2000
"""Optimizer steps a classifier's default epoch count aims at."""
MIN_EPOCHS, MAX_EPOCHS = 3, 10

CLASSIFIER = {
    "method": "full",
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "schedule": "linear",
}
CLASSIFIER_LR = {"full": 2e-4, "lora": 5e-4}


def classifier_epochs(n_examples: int, batch_size: int) -> int:
    """Passes over `n_examples` for about TARGET_STEPS steps of `batch_size`, within 3..10."""
    steps_per_epoch = max(1, math.ceil(n_examples / batch_size))
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps_per_epoch)))


def for_task(config: TrainConfig, task: str, n_examples: int) -> tuple[TrainConfig, dict[str, Any]]:
    """`config` with the task's defaults filled in where the user gave nothing, and what was
    chosen (setting -> value) for the run's record and start-up line."""
    if task != "classify":
        return config, {}
    given = config.model_fields_set
    chosen: dict[str, Any] = {k: v for k, v in CLASSIFIER.items() if k not in given}
    method = chosen.get("method", config.method)
    if "lr" not in given:
        chosen["lr"] = CLASSIFIER_LR[method]
    if "epochs" not in given and "max_steps" not in given:
        chosen["epochs"] = classifier_epochs(n_examples, config.batch_size)
    for name in ("eval_every", "save_every"):  # once an epoch
        if name not in given:
            chosen[name] = steps_per_epoch(n_examples, config)
    resolved = config.model_copy(update=chosen)
    return resolved, chosen


def steps_per_epoch(n_examples: int, config: TrainConfig) -> int:
    return max(1, math.ceil(n_examples / config.batch_size))
