"""What a training task gives the loop: micro-batches (`bins`), their collation and their loss.

Chat SFT packs rendered conversations padding-free and counts trained tokens; sequence
classification pads short batches of texts and counts examples. The loop itself only sees
`TaskData`: the loss of a step is always a sum over its units divided by the step's count.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from sftline.contract.mask_check import check_masks
from sftline.contract.render import RenderedExample, apply_length_policy, render_chat
from sftline.data.example import Example
from sftline.errors import TrainingError
from sftline.train.packing import Batch, loss_sum, pack_bins
from sftline.train.rows import (
    PackedRow,
    RowAttention,
    collate_rows,
    membership,
    pack_rows,
    packing_layout,
    row_attention,
    shared_prefix_groups,
)


class TaskData(Protocol):
    bins: list[list[int]]
    counts: dict[str, int]

    def collate(self, members: Sequence[int]) -> Any: ...
    def loss_sum(self, model: Any, batch: Any, device: torch.device) -> tuple[torch.Tensor, int]:
        """Summed loss over the batch's units (trained tokens or examples) and their number."""
        ...

    def n_tokens(self, batch: Any) -> int:
        """Non-padding tokens of the batch's examples (as rendered, shared prefixes counted in
        every example that has them)."""
        ...

    def n_computed_tokens(self, batch: Any) -> int:
        """Non-padding tokens the forward pass computes (a shared prefix once per row)."""
        ...

    def n_units(self, batch: Any) -> int:
        """What the loss is averaged over: trained tokens (chat) or examples (classification)."""
        ...


def _to(batch: Batch, device: torch.device) -> Batch:
    return Batch(
        batch.input_ids.to(device),
        batch.labels.to(device),
        batch.position_ids.to(device),
        None if batch.attention_mask is None else batch.attention_mask.to(device),
        batch.n_sequences,
        batch.n_trained_tokens,
        batch.n_tokens,
        batch.n_example_tokens,
    )


@dataclass
class ChatData:
    """Rendered conversations packed into rows of about `row_tokens` (behind their shared prefix
    when they have one); a micro-batch (`bins`) is the row indices whose tokens add up to at
    most `batch_tokens`."""

    sequences: list[RenderedExample]
    rows: list[PackedRow]
    bins: list[list[int]]
    counts: dict[str, int]
    pad_token_id: int = 0
    layout: dict[str, int | str] = field(default_factory=dict)
    """Rows, shared prefixes and the tokens they save (`packing_layout`)."""
    window: int | None = None
    """The models' sliding window, applied by the mask of shared-prefix rows (`row_attention`)."""

    def collate(self, members: Sequence[int]) -> Batch:
        """The micro-batch of these row indices (a `bins` entry)."""
        return self.collate_rows([self.rows[r] for r in members])

    def collate_rows(self, rows: Sequence[PackedRow]) -> Batch:
        return collate_rows(self.sequences, rows, self.pad_token_id, window=self.window)

    def loss_sum(self, model: Any, batch: Batch, device: torch.device) -> tuple[torch.Tensor, int]:
        return loss_sum(model, _to(batch, device))

    def n_tokens(self, batch: Batch) -> int:
        return batch.n_example_tokens

    def n_computed_tokens(self, batch: Batch) -> int:
        return batch.n_tokens

    def n_units(self, batch: Batch) -> int:
        return batch.n_trained_tokens


def prepare_chat(
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    batch_tokens: int,
    length_policy: str,
    system_prompt: str | None,
    max_length: int,
    row_tokens: int = 1024,
    prefix_sharing: bool = True,
    model_configs: Sequence[Any] = (),
) -> ChatData:
    """`model_configs`: the transformers configs of the models that read the rows (the trained
    model, a distillation teacher); their attention decides whether prefix sharing can stay on."""
    rendered = [render_chat(tokenizer, e, system_prompt=system_prompt) for e in examples]
    kept, counts = apply_length_policy(rendered, max_length, length_policy)  # type: ignore[arg-type]
    if not kept:
        raise TrainingError(f"no example fits max_length {max_length} (policy {length_policy})")
    check_masks(tokenizer, kept, examples)
    lengths = [len(s.input_ids) for s in kept]
    # Micro-batches hold at most batch_tokens tokens of examples (or one longer example), chosen
    # whatever the layout: prefix sharing changes how a micro-batch is computed, never what it holds.
    micro_batches = pack_bins(lengths, max(batch_tokens, max(lengths)))
    attention = row_attention(model_configs, max(lengths)) if prefix_sharing else RowAttention()
    groups = shared_prefix_groups(kept) if prefix_sharing and not attention.unshared else []
    group_of = membership(groups, len(kept))
    rows: list[PackedRow] = []
    bins: list[list[int]] = []
    for members in micro_batches:
        laid_out = pack_rows(lengths, members, groups, group_of, row_tokens=min(row_tokens, batch_tokens))
        bins.append(list(range(len(rows), len(rows) + len(laid_out))))
        rows += laid_out
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    layout = packing_layout(rows, groups, lengths, unshared=attention.unshared)
    return ChatData(kept, rows, bins, counts, int(pad or 0), layout, attention.window)


@dataclass
class ClassifierData:
    """Tokenised texts with label ids in batches: seeded random ones of `batch_size` examples for
    training (each an optimizer step), or by length, so padding stays small, for a holdout."""

    input_ids: list[list[int]]
    labels: list[int]
    bins: list[list[int]]
    counts: dict[str, int]
    pad_token_id: int
    label_smoothing: float = 0.0

    def collate(self, members: Sequence[int]) -> dict[str, torch.Tensor]:
        width = max(len(self.input_ids[i]) for i in members)
        ids = torch.full((len(members), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(members), width), dtype=torch.long)
        for row, i in enumerate(members):
            sequence = self.input_ids[i]
            ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = 1
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": torch.tensor([self.labels[i] for i in members], dtype=torch.long),
        }

    def loss_sum(
        self, model: Any, batch: dict[str, torch.Tensor], device: torch.device
    ) -> tuple[torch.Tensor, int]:
        logits = model(
            input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
        ).logits
        labels = batch["labels"].to(device)
        loss = F.cross_entropy(logits.float(), labels, reduction="sum", label_smoothing=self.label_smoothing)
        return loss, int(labels.numel())

    def n_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())

    def n_computed_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return self.n_tokens(batch)

    def n_units(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["labels"].numel())


def prepare_classifier(
    tokenizer: Any,
    examples: Sequence[Example],
    labels: Sequence[str],
    *,
    max_length: int,
    batch_size: int | None = None,
    batch_tokens: int = 8192,
    seed: int = 0,
    label_smoothing: float = 0.0,
) -> ClassifierData:
    """Texts tokenised (truncated to `max_length`, counted) with their label ids. With
    `batch_size`, batches of that many examples in a seeded random order (the training steps;
    the trainer shuffles their order every epoch); without, batches by length whose padded size
    stays within `batch_tokens` (a holdout)."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({str(e.label) for e in examples if e.label not in index})
    if unknown:
        raise TrainingError(f"labels not in the label set: {', '.join(unknown[:10])}")
    texts = [e.prompt for e in examples]
    full = tokenizer(texts)["input_ids"]
    truncated = sum(1 for ids in full if len(ids) > max_length)
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"] if truncated else full
    bins: list[list[int]] = []
    if batch_size is not None:
        order = list(range(len(encoded)))
        random.Random(seed).shuffle(order)
        bins = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    else:
        current: list[int] = []
        for i in sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i)):
            # Padded cost of a batch = its longest sequence x its size; keep it within batch_tokens.
            if current and len(encoded[i]) * (len(current) + 1) > batch_tokens:
                bins.append(current)
                current = []
            current.append(i)
        if current:
            bins.append(current)
    return ClassifierData(
        list(encoded),
        [index[str(e.label)] for e in examples],
        bins,
        {"kept": len(encoded), "dropped": 0, "truncated": truncated},
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        label_smoothing,
    )
