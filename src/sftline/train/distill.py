"""Distillation: the student learns the teacher's next-token distribution on the trained tokens.

loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T), summed over
trained tokens, with both distributions softened by temperature T (the T^2 keeps the gradient
scale independent of T, as in Hinton et al., 2015). The teacher runs frozen on the same packed
batch and must share the student's tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from sftline.errors import TrainingError
from sftline.models.safety import SAFE_LOADING
from sftline.train.packing import IGNORE_INDEX, Batch, batch_logits
from sftline.train.tasks import ChatData, _to


def distill_loss_sum(
    student: Any, teacher: Any, batch: Batch, *, alpha: float, temperature: float
) -> tuple[torch.Tensor, int]:
    positions = (batch.labels != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
    labels = batch.labels[:, positions]
    trained = labels != IGNORE_INDEX
    student_logits = batch_logits(student, batch, positions)[trained].float()
    with torch.no_grad():
        teacher_logits = batch_logits(teacher, batch, positions)[trained].float()
    ce = F.cross_entropy(student_logits, labels[trained], reduction="sum")
    kl = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        log_target=True,
        reduction="sum",
    )
    return alpha * ce + (1 - alpha) * temperature**2 * kl, batch.n_trained_tokens


@dataclass
class DistillChatData(ChatData):
    """Chat data whose loss mixes cross-entropy with the teacher's distribution."""

    teacher: Any = None
    alpha: float = 0.5
    temperature: float = 2.0

    @classmethod
    def from_chat(cls, chat: ChatData, teacher: Any, *, alpha: float, temperature: float) -> DistillChatData:
        shared = {f.name: getattr(chat, f.name) for f in fields(ChatData)}
        return cls(**shared, teacher=teacher, alpha=alpha, temperature=temperature)

    def loss_sum(self, model: Any, batch: Batch, device: torch.device) -> tuple[torch.Tensor, int]:
        return distill_loss_sum(
            model, self.teacher, _to(batch, device), alpha=self.alpha, temperature=self.temperature
        )


def load_teacher(path: Any, student_tokenizer: Any, device: torch.device) -> Any:
    """The teacher, frozen in eval mode; refused if its vocabulary differs from the student's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    teacher_tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise TrainingError(
            f"teacher {path} has another tokenizer than the student; distillation needs the same"
        )
    teacher = AutoModelForCausalLM.from_pretrained(path, **SAFE_LOADING)
    teacher = teacher.to(device).eval()  # type: ignore[arg-type]
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher
