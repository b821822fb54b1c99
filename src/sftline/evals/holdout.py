"""A model's behaviour on a holdout while it trains, measured as `sftline eval` measures it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sftline.contract.constrain import answer_constraint
from sftline.contract.spec import Contract
from sftline.evals.predict import ClassifierPredictor, GenerationPredictor, Predictor
from sftline.evals.scoring import point_metrics
from sftline.train.config import TrainConfig


def holdout_behaviour(
    model: Any,
    tokenizer: Any,
    base_path: Path,
    examples: list[Any],
    config: TrainConfig,
    contract: Contract,
    labels: list[str] | None,
    *,
    synced: bool = False,
) -> Callable[[], dict[str, float | None]]:
    """The eval station's metrics of the model in training on the holdout, by classifying or
    generating exactly as `sftline eval` does (answers constrained to the contract's labels or JSON
    schema, as its default is)."""
    predictor: Predictor
    if labels is not None:
        predictor = ClassifierPredictor(
            model, tokenizer, max_length=config.max_length or contract.limits.max_length
        )
    else:
        generator = GenerationPredictor.around(
            model,
            tokenizer,
            base_path,
            contract.system_prompt,
            max_new_tokens=config.eval_max_new_tokens or contract.limits.max_target_tokens,
            synced=synced,
        )
        generator.constraint = answer_constraint(contract, tokenizer, generator.stops, examples)
        predictor = generator
    return lambda: point_metrics(predictor.predict(examples), contract, labels)
