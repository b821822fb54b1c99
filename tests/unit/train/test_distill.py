"""Distillation: KL to the teacher on trained tokens, mixed with cross-entropy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from sftline.errors import TrainingError
from sftline.train.config import TrainConfig
from sftline.train.distill import DistillChatData, distill_loss_sum, load_teacher
from sftline.train.trainer import build_model, prepare, train_loop
from tests.support.ddp_data import examples
from tests.support.tiny_models import make_tiny_chat_model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("distill")
    return make_tiny_chat_model(root / "teacher", hidden=64, seed=0), make_tiny_chat_model(
        root / "student", seed=1
    )


def kl_to_teacher(student: torch.nn.Module, teacher: torch.nn.Module, data: DistillChatData) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for members in data.bins:
            value, n = distill_loss_sum(student, teacher, data.collate(members), alpha=0.0, temperature=1.0)
            total, count = total + float(value), count + n
    return total / count


def test_pure_kl_training_moves_the_student_towards_the_teacher(
    models: tuple[Path, Path], tmp_path: Path
) -> None:
    teacher_dir, student_dir = models
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    config = TrainConfig(
        base="student",
        data="d",
        method="full",
        max_steps=15,
        batch_tokens=256,
        lr=3e-3,
        seed=0,
        save_every=100,
        teacher="teacher",
        distill_alpha=0.0,
        distill_temperature=1.0,
    )
    chat = prepare(tokenizer, examples(), config, system_prompt=None, max_length=512)
    teacher = load_teacher(teacher_dir, tokenizer, torch.device("cpu"))
    data = DistillChatData.from_chat(chat, teacher, alpha=0.0, temperature=1.0)
    student = build_model(student_dir, config, torch.device("cpu"))
    before = kl_to_teacher(student, teacher, data)
    assert kl_to_teacher(teacher, teacher, data) == pytest.approx(0.0, abs=1e-6)
    train_loop(student, data, config, checkpoints=tmp_path / "ck", device=torch.device("cpu"))
    assert kl_to_teacher(student, teacher, data) < 0.8 * before


def test_alpha_one_is_plain_cross_entropy(models: tuple[Path, Path]) -> None:
    from sftline.train.packing import loss_sum

    teacher_dir, student_dir = models
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    config = TrainConfig(base="student", data="d", batch_tokens=256)
    chat = prepare(tokenizer, examples()[:8], config, system_prompt=None, max_length=512)
    student = build_model(student_dir, config.model_copy(update={"method": "full"}), torch.device("cpu"))
    teacher = load_teacher(teacher_dir, tokenizer, torch.device("cpu"))
    batch = chat.collate(chat.bins[0])
    mixed, n = distill_loss_sum(student, teacher, batch, alpha=1.0, temperature=2.0)
    plain, m = loss_sum(student, batch)
    assert n == m and torch.allclose(mixed, plain)


def test_a_teacher_with_another_tokenizer_is_refused(models: tuple[Path, Path], tmp_path: Path) -> None:
    teacher_dir, _ = models
    other = AutoTokenizer.from_pretrained(teacher_dir)
    other.add_tokens(["<extra_token>"])
    with pytest.raises(TrainingError, match="another tokenizer"):
        load_teacher(teacher_dir, other, torch.device("cpu"))
