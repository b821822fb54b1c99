"""Padding-free packing without cross-contamination, and the loss arithmetic of an optimizer step.

A packed row holds several rendered sequences end to end (`sftline.train.rows` lays rows out and
collates them; a micro-batch is several rows). Nothing is padded but a row's end; what keeps the
sequences apart is `position_ids`, which restart at 0 for every sequence. With
`attention_mask=None` and no KV cache, transformers (5.x,
`masking_utils.find_packed_sequence_indices`) turns those restarts into a block-diagonal causal
mask, so a token attends only to earlier tokens of its own sequence. Verified for Llama with the
`eager` and `sdpa` attention implementations (forward and backward) and `flex_attention`
(forward only: flex has no CPU backward); see tests/unit/train/test_packing.py.

One trap: the model builds a `DynamicCache` whenever `use_cache` is true, which is the config
default in train mode too, and a cache switches the packed-sequence detection off. The packed
row then gets one causal mask across all its sequences, silently. `batch_logits` therefore
always passes `use_cache=False`.

Labels are shifted here, once, per sequence: `labels[t]` is the target for `logits[t]`, and the
last position of every sequence is -100, so no sequence learns to predict the next one's first
token. The model is never given labels (HF would shift them a second time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from sftline.errors import TrainingError

IGNORE_INDEX = -100

# Attention implementations that confine a packed row to its sequences from `position_ids` alone.
# eager, sdpa: block-diagonal mask from masking_utils (verified on CPU, forward and backward).
# flex_attention: the same mask as a BlockMask (verified forward on CPU; flex has no CPU backward).
# flash_attention_2/3: varlen kernels with cu_seqlens from position_ids
# (modeling_flash_attention_utils.prepare_fa_kwargs_from_position_ids; code read, not run here).
PACKING_ATTENTION = frozenset({"eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3"})
# Attention implementations that apply a 4D boolean attention_mask as given (shared-prefix rows,
# `sftline.train.rows`); FlashAttention takes none and flex wants a BlockMask.
MASK_ATTENTION = frozenset({"eager", "sdpa"})


class TrainingSequence(Protocol):
    """A rendered sequence (`sftline.contract.render.RenderedExample` has this shape).

    `labels` has the length of `input_ids` and is NOT shifted: -100 where there is no loss,
    otherwise the token id itself.
    """

    @property
    def input_ids(self) -> list[int]: ...
    @property
    def labels(self) -> list[int]: ...
    @property
    def example_id(self) -> str: ...


@dataclass
class Batch:
    """One micro-batch, ready for a forward pass."""

    input_ids: torch.Tensor
    """(1, T) packed, or (B, L) padded; int64."""
    labels: torch.Tensor
    """Shifted targets, same shape: labels[t] is the target for logits[t]; -100 = no loss."""
    position_ids: torch.Tensor
    """Same shape; restart at 0 for every sequence."""
    attention_mask: torch.Tensor | None
    """None for packed batches (padding-free); (B, L) 0/1 for padded ones."""
    n_sequences: int
    n_trained_tokens: int
    """Count of labels != -100: the denominator of the per-token loss."""
    n_tokens: int
    """Non-padding tokens: what the forward pass computes."""
    n_example_tokens: int
    """Tokens of the batch's examples as rendered: n_tokens plus the repeats a shared prefix
    saves (`sftline.train.rows`)."""


def pack_bins(
    lengths: Sequence[int], max_tokens: int, *, names: Sequence[str] | None = None
) -> list[list[int]]:
    """First-fit-decreasing packing of sequence indices into bins of at most `max_tokens` tokens.

    Sequences are placed longest first (ties by index), each into the earliest-opened bin with
    room. Bins come back in the order they were opened, members in the order they were placed.
    Deterministic: the result depends only on `lengths` and `max_tokens`. `names` (for example
    the example ids) only make errors easier to act on.
    """
    if max_tokens < 1:
        raise TrainingError(f"max_tokens must be at least 1, got {max_tokens}")
    for index, length in enumerate(lengths):
        if not 1 <= length <= max_tokens:
            name = f" ({names[index]})" if names is not None else ""
            raise TrainingError(
                f"sequence {index}{name} has {length} tokens; a packed bin holds 1 to {max_tokens} "
                "(raise the batch token budget or truncate/drop sequences before packing)"
            )
    n = len(lengths)
    # A max-tree over the remaining room of n potential bins (one per sequence at most).
    # Unopened bins have full room, so "the leftmost bin with room" is exactly first fit,
    # opening a new bin only when no open one fits: O(n log n) instead of O(n * bins).
    size = 1
    while size < n:
        size *= 2
    room = [0] * (2 * size)
    room[size : size + n] = [max_tokens] * n
    for node in range(size - 1, 0, -1):
        room[node] = max(room[2 * node], room[2 * node + 1])
    bins: list[list[int]] = []
    for index in sorted(range(n), key=lambda i: (-lengths[i], i)):
        length = lengths[index]
        node = 1
        while node < size:
            node = 2 * node if room[2 * node] >= length else 2 * node + 1
        slot = node - size
        if slot == len(bins):
            bins.append([])
        bins[slot].append(index)
        room[node] -= length
        node //= 2
        while node:
            room[node] = max(room[2 * node], room[2 * node + 1])
            node //= 2
    return bins


def shifted_labels(sequence: TrainingSequence) -> list[int]:
    """Validate one sequence and return its labels shifted left by one, -100 at the end."""
    ids, labels = sequence.input_ids, sequence.labels
    if not ids:
        raise TrainingError(f"example {sequence.example_id} rendered to an empty sequence")
    if len(labels) != len(ids):
        raise TrainingError(
            f"example {sequence.example_id}: {len(labels)} labels for {len(ids)} input ids; they must match"
        )
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE_INDEX and label != token:
            raise TrainingError(
                f"example {sequence.example_id}: a label ({label}) differs from its token ({token}); "
                "labels must be -100 or the token itself, unshifted"
            )
    return list(labels[1:]) + [IGNORE_INDEX]


def collate_padded(sequences: Sequence[TrainingSequence], indices: Sequence[int], pad_token_id: int) -> Batch:
    """One row per sequence, right-padded to the longest: the unpacked reference."""
    if not indices:
        raise TrainingError("a micro-batch needs at least one sequence")
    picked = [sequences[i] for i in indices]
    width = max(len(s.input_ids) for s in picked)
    input_ids, labels, masks = [], [], []
    for sequence in picked:
        pad = width - len(sequence.input_ids)
        input_ids.append(list(sequence.input_ids) + [pad_token_id] * pad)
        labels.append(shifted_labels(sequence) + [IGNORE_INDEX] * pad)
        masks.append([1] * len(sequence.input_ids) + [0] * pad)
    label_tensor = torch.tensor(labels, dtype=torch.long)
    tokens = sum(len(s.input_ids) for s in picked)
    return Batch(
        input_ids=torch.tensor(input_ids, dtype=torch.long),
        labels=label_tensor,
        position_ids=torch.arange(width, dtype=torch.long).expand(len(picked), width).clone(),
        attention_mask=torch.tensor(masks, dtype=torch.long),
        n_sequences=len(picked),
        n_trained_tokens=int((label_tensor != IGNORE_INDEX).sum()),
        n_tokens=tokens,
        n_example_tokens=tokens,
    )


def _attention_mask(model: Any, batch: Batch) -> torch.Tensor | None:
    """The batch's mask as the model's attention takes it; refuses a packed row on an attention
    implementation that would mix its sequences."""
    mask = batch.attention_mask
    if mask is None and batch.n_sequences <= batch.input_ids.shape[0]:
        return None
    if mask is not None and mask.ndim != 4:
        return mask  # the padded reference: one sequence per row, a 2D padding mask
    inner = getattr(model, "module", model)  # DistributedDataParallel keeps the model in .module
    implementation = getattr(getattr(inner, "config", None), "_attn_implementation", None)
    if mask is not None and implementation == "eager":
        # eager adds the mask to the scores: 0 where allowed, the dtype's minimum elsewhere.
        dtype = inner.dtype if isinstance(getattr(inner, "dtype", None), torch.dtype) else torch.float32
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            ~mask, torch.finfo(dtype).min
        )
    if mask is not None and implementation not in MASK_ATTENTION:
        raise TrainingError(
            f"shared-prefix rows need an attention implementation that takes a 4D mask "
            f"({', '.join(sorted(MASK_ATTENTION))}), not {implementation!r}; set prefix_sharing: false"
        )
    if mask is None and implementation not in PACKING_ATTENTION:
        raise TrainingError(
            f"attention implementation {implementation!r} cannot keep packed sequences apart; "
            f"load the model with attn_implementation set to one of {sorted(PACKING_ATTENTION)}"
        )
    return mask


def batch_logits(model: Any, batch: Batch, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, T, vocab) for a batch, or (B, len(positions), vocab) at the given positions only;
    packed rows attend only within each sequence."""
    mask = _attention_mask(model, batch)
    # use_cache=False: a KV cache turns transformers' packed-sequence masking off (module docstring).
    extra = {} if positions is None else {"logits_to_keep": positions}
    output = model(
        input_ids=batch.input_ids,
        position_ids=batch.position_ids,
        attention_mask=mask,
        use_cache=False,
        **extra,
    )
    return output.logits


def loss_sum(model: Any, batch: Batch) -> tuple[torch.Tensor, int]:
    """Summed token cross-entropy over labels != -100 (fp32) and the number of those tokens.

    Divide by the optimizer step's token count, not this batch's, before `backward()`: see
    `step_loss`.
    """
    # The LM head runs only where some row has a label: with short answers after long prompts
    # (classification-style SFT) that skips most of the vocab-sized matmul and its backward.
    positions = (batch.labels != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
    logits = batch_logits(model, batch, positions)
    labels = batch.labels[:, positions]
    trained = labels != IGNORE_INDEX
    total = F.cross_entropy(logits[trained].float(), labels[trained], reduction="sum")
    return total, batch.n_trained_tokens


def step_loss(micro_losses: Sequence[tuple[torch.Tensor, int]]) -> torch.Tensor:
    """Per-token mean loss of an optimizer step: sum of the micro-batch sums / sum of their counts.

    Under gradient accumulation this weights every trained token equally. The mean of
    micro-batch means would give a token in a micro-batch with few trained tokens more weight.
    Example: sums 10 over 2 tokens and 30 over 30 tokens -> 40 / 32 = 1.25 per token, whereas
    (5 + 1) / 2 = 3.0. To backward per micro-batch instead of keeping every graph, divide each
    sum by the step's total count (known from `Batch.n_trained_tokens` before any forward).
    Across processes, all-reduce both the sums and the counts before dividing.
    """
    count = sum(n for _, n in micro_losses)
    if count == 0:
        raise TrainingError("the optimizer step has no trained tokens (every label is -100)")
    return torch.stack([total for total, _ in micro_losses]).sum() / count


def tokens_per_step_note(micro_batch_tokens: int, accumulation: int, world_size: int = 1) -> str:
    """The tokens-per-optimizer-step arithmetic as one line, for logs and run records."""
    for name, value in (
        ("micro_batch_tokens", micro_batch_tokens),
        ("accumulation", accumulation),
        ("world_size", world_size),
    ):
        if value < 1:
            raise TrainingError(f"{name} must be at least 1, got {value}")
    processes = "process" if world_size == 1 else "processes"
    total = micro_batch_tokens * accumulation * world_size
    return (
        f"{micro_batch_tokens:,} tokens per micro-batch x {accumulation} accumulation x "
        f"{world_size} {processes} = {total:,} tokens per optimizer step"
    )
