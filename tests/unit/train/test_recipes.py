"""The classifier recipe's defaults, and that a setting the user gives always wins."""

from __future__ import annotations

import pytest

from sftline.train.config import TrainConfig
from sftline.train.recipes import classifier_epochs, for_task


def test_classifier_defaults_are_pinned() -> None:
    config, chosen = for_task(TrainConfig(base="minilm-l6", data="d"), "classify", 13_590)
    assert (config.method, config.lr, config.batch_size) == ("full", 2e-4, 32)
    assert (config.weight_decay, config.warmup_ratio, config.schedule) == (0.01, 0.1, "linear")
    assert config.label_smoothing == 0.0
    assert (config.holdout_share, config.false_abstention, config.abstention_score) == (0.1, 0.01, "auto")
    assert config.epochs == 5  # 425 steps an epoch: ceil(2000 / 425)
    assert config.eval_every == config.save_every == 425
    assert set(chosen) == {"method", "lr", "weight_decay", "warmup_ratio", "schedule", "epochs"} | {
        "eval_every",
        "save_every",
    }


@pytest.mark.parametrize(("n", "epochs"), [(100, 10), (5_000, 10), (20_000, 4), (64_000, 3), (10**6, 3)])
def test_epochs_aim_at_about_2000_steps_within_3_to_10(n: int, epochs: int) -> None:
    assert classifier_epochs(n, 32) == epochs


def test_given_settings_win_and_lora_gets_its_own_lr() -> None:
    given = TrainConfig(base="minilm-l6", data="d", method="lora", epochs=2, weight_decay=0.0)
    config, chosen = for_task(given, "classify", 1_000)
    assert (config.method, config.lr, config.epochs, config.weight_decay) == ("lora", 5e-4, 2, 0.0)
    assert "epochs" not in chosen and "method" not in chosen
    explicit_lr = TrainConfig(base="minilm-l6", data="d", lr=3e-5)
    assert for_task(explicit_lr, "classify", 1_000)[0].lr == 3e-5
    assert for_task(TrainConfig(base="m", data="d", max_steps=7), "classify", 1_000)[0].epochs == 1.0


def test_chat_keeps_its_own_defaults() -> None:
    config = TrainConfig(base="smollm2-135m-instruct", data="d")
    assert for_task(config, "chat", 10_000) == (config, {})
    assert (config.method, config.lr) == ("lora", 2e-4)
