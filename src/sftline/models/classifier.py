"""The sequence classifier sftline trains: an encoder, pooling, dropout and a linear head.

all-MiniLM-L6-v2, the embedded encoder, was trained as a sentence encoder with mean pooling; its
BERT pooler (the [CLS] token through a dense tanh layer) was never trained for sentences. A
`BertForSequenceClassification` classifies from that pooler, so it starts from weights that carry
no sentence meaning. This head reads the same mean over the non-padding tokens the encoder was
trained to produce (BENCHMARKS.md has the ablation). Encoders trained to read [CLS] (BGE, for
one) take `pooling: cls`: the first token's last hidden state.

A saved classifier is a Hugging Face folder of the encoder (config, weights, tokenizer) with two
more files: `classifier.json` (labels, pooling, and what the run chose on its holdout: the
temperature and the abstention rule) and `classifier_head.safetensors` (the head; and with an
abstention rule on features, the class means and shared precision matrix in
`abstention.safetensors`). `is_classifier_folder` tells it from a plain encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from sftline.models.safety import SAFE_LOADING

CLASSIFIER_FILE = "classifier.json"
HEAD_FILE = "classifier_head.safetensors"
ABSTENTION_FILE = "abstention.safetensors"


def is_classifier_folder(folder: Path) -> bool:
    return (folder / CLASSIFIER_FILE).is_file()


def load_encoder(folder: Path, *, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The encoder in `folder` without a pooler where the architecture has one to leave out (the
    head reads the mean of the tokens; an unused pooler would hold parameters with no gradient)."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(folder, dtype=dtype, add_pooling_layer=False, **SAFE_LOADING)
    except TypeError:  # an architecture without the option
        return AutoModel.from_pretrained(folder, dtype=dtype, **SAFE_LOADING)


@dataclass
class ClassifierOutput:
    logits: torch.Tensor
    """(batch, labels)"""
    features: torch.Tensor
    """(batch, hidden): the pooled sentence vector the head reads."""


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of `hidden` over the positions where `mask` is 1 (in float32)."""
    weights = mask.unsqueeze(-1).to(torch.float32)
    return (hidden.to(torch.float32) * weights).sum(1) / weights.sum(1).clamp(min=1.0)


Pooling = Literal["mean", "cls"]


class SentenceClassifier(nn.Module):
    """encoder -> pooled (the mean over tokens, or the first token) -> dropout -> linear, over
    `labels`."""

    def __init__(
        self, encoder: Any, labels: list[str], *, pooling: Pooling = "mean", dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.encoder: Any = encoder
        self.labels = list(labels)
        self.pooling = pooling
        self.dropout_p = dropout
        hidden = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, len(labels))
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.head.to(next(encoder.parameters()).dtype)
        self.extra: dict[str, Any] = {}
        """What the run decided on its holdout (temperature, abstention), saved in classifier.json."""
        self.extra_tensors: dict[str, torch.Tensor] = {}
        """The abstention rule's tensors (class means, precision), saved in abstention.safetensors."""

    @property
    def config(self) -> Any:
        return self.encoder.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ClassifierOutput:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        features = mean_pool(hidden, attention_mask) if self.pooling == "mean" else hidden[:, 0].float()
        logits = self.head(self.dropout(features).to(self.head.weight.dtype))
        return ClassifierOutput(logits=logits, features=features)

    def merge_and_unload(self) -> SentenceClassifier:
        """With LoRA on the encoder: the same classifier with the adapters merged into its weights."""
        merge = getattr(self.encoder, "merge_and_unload", None)
        if callable(merge):
            self.encoder = merge()
        return self

    def save_pretrained(self, folder: Path) -> None:
        """The encoder's folder (only the adapter, while LoRA is unmerged), the head, the labels,
        and whatever the run decided (`extra`, with its tensors in abstention.safetensors)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        self.encoder.save_pretrained(folder)
        head = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(head, str(folder / HEAD_FILE))
        if self.extra_tensors:
            tensors = {k: v.detach().cpu().contiguous() for k, v in self.extra_tensors.items()}
            save_file(tensors, str(folder / ABSTENTION_FILE))
        description = {
            "format": 1,
            "pooling": self.pooling,
            "dropout": self.dropout_p,
            "labels": self.labels,
            **self.extra,
        }
        (folder / CLASSIFIER_FILE).write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, folder: Path, *, dtype: torch.dtype = torch.float32) -> SentenceClassifier:
        from safetensors.torch import load_file

        folder = Path(folder)
        description = read_description(folder)
        encoder = load_encoder(folder, dtype=dtype)
        model = cls(
            encoder,
            description["labels"],
            pooling=description.get("pooling", "mean"),
            dropout=float(description.get("dropout", 0.1)),
        )
        model.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        model.extra = {
            k: v for k, v in description.items() if k not in ("format", "pooling", "dropout", "labels")
        }
        return model


def read_description(folder: Path) -> dict[str, Any]:
    """classifier.json of a saved classifier."""
    from sftline.errors import ModelError

    try:
        description = json.loads((Path(folder) / CLASSIFIER_FILE).read_text())
    except (OSError, ValueError) as error:
        raise ModelError(
            f"{Path(folder) / CLASSIFIER_FILE}: cannot read the classifier's description ({error})"
        ) from None
    if not isinstance(description, dict) or not isinstance(description.get("labels"), list):
        raise ModelError(f"{Path(folder) / CLASSIFIER_FILE}: no 'labels' list")
    return description


def load_abstention_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    file = Path(folder) / ABSTENTION_FILE
    return load_file(str(file)) if file.is_file() else {}
