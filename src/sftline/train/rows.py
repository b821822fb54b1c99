"""The rows of a micro-batch: packed sequences, behind a shared prefix when they have one.

Every rendered example of a contract starts with the same tokens: the chat template's header,
the contract's system prompt, the opening of the user turn (24 of the 45 tokens of a CLINC150
query under SmolLM2's template). Under causal attention a token's hidden states depend only on
the tokens before it, so those tokens' activations are the same in every example. A
prefix-shared row lays the prefix out once and the members' remaining tokens ("suffixes") after
it; each suffix attends to the prefix and to itself:

    row:       [ prefix | suffix 1 | suffix 2 | ... | padding ]
    positions:   0..P-1   P..len1-1  P..len2-1
    suffix k attends to: the prefix, and the earlier tokens of suffix k

Every member then sees exactly the context it has alone, at the same positions, so its logits
are those of the unpacked example and the loss and gradients are the same sums (the prefix's
gradient arrives once per member, through the attention of each suffix). The prefix carries no
labels: a prefix ends before every member's first trained token, and the first suffix token is
itself untrained, so no prefix position predicts anything. What changes is the work: a row of
CLINC150 queries computes about half of the tokens its examples have. Loss and gradient
equality are tested against the unpacked examples (tests/unit/train/test_rows.py).

The row needs a mask no position-id restart can express, so it goes to the model as a 4D
boolean `attention_mask` (batch, 1, query, key), which transformers passes to eager and sdpa
attention as it is. FlashAttention's variable-length kernels take no such mask; rows without a
prefix still go through the position-id path that they, sdpa and eager all understand.

Since transformers uses a 4D mask as given, a model's sliding window (Mistral, Phi-3) reaches the
row only through the mask: it hides the keys at `window` or more positions behind the query,
counted in the example's own positions, as the window does for the example alone. One mask
serves every layer, so a model whose layers attend through different windows (Gemma 2/3
alternate sliding and global layers) gets no prefix sharing, unless no example is long enough
for the difference to show (`row_attention`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sftline.errors import TrainingError
from sftline.train.packing import IGNORE_INDEX, Batch, TrainingSequence, pack_bins, shifted_labels

MIN_SHARED_PREFIX = 8
"""Shorter common prefixes are not worth a custom mask."""
SAMPLE = 256
"""Sequences the candidate prefix is read from (evenly spaced; every sequence is then compared)."""


@dataclass(frozen=True)
class PackedRow:
    """Sequence indices laid end to end in one row; with `prefix` > 0 their first `prefix`
    tokens (identical in all of them) are laid out once, before the members' suffixes."""

    members: tuple[int, ...]
    prefix: int = 0

    def computed_tokens(self, lengths: Sequence[int]) -> int:
        """Tokens the row holds (what the forward pass computes), padding aside."""
        return self.prefix + sum(lengths[m] - self.prefix for m in self.members)


@dataclass(frozen=True)
class PrefixGroup:
    """Sequences whose first `prefix` tokens are identical and untrained."""

    prefix: int
    members: tuple[int, ...]


def shareable_length(sequence: TrainingSequence) -> int:
    """The longest prefix this sequence can share: tokens 1..P must be untrained (a prefix
    position predicts the next token, so it must have no target) and a suffix must remain."""
    for index, label in enumerate(sequence.labels):
        if index >= 1 and label != IGNORE_INDEX:
            return index - 1
    return len(sequence.input_ids) - 1


def shared_prefix_groups(
    sequences: Sequence[TrainingSequence], *, min_tokens: int = MIN_SHARED_PREFIX
) -> list[PrefixGroup]:
    """Groups of sequences with a common untrained prefix of at least `min_tokens` tokens.

    The first group is the longest prefix at least half of the sequences share; then the same
    is asked of the rest, until what remains shares nothing of that size. A mixture of two
    system prompts gives two groups; sequences in no group are packed as they are. Deterministic.
    """
    limits = [shareable_length(s) for s in sequences]
    remaining = list(range(len(sequences)))
    groups: list[PrefixGroup] = []
    while len(remaining) >= 2:
        step = max(1, len(remaining) // SAMPLE)
        candidate = _majority_prefix([sequences[i].input_ids for i in remaining[::step]])
        if len(candidate) < min_tokens:
            break
        common = [_common_length(sequences[i].input_ids, candidate, limits[i]) for i in remaining]
        # The longest length that at least half of the remaining sequences (and two) reach.
        need = max(2, (len(remaining) + 1) // 2)
        prefix = sorted(common, reverse=True)[need - 1]
        if prefix < min_tokens:
            break
        pairs = list(zip(remaining, common, strict=True))
        groups.append(PrefixGroup(prefix, tuple(i for i, n in pairs if n >= prefix)))
        remaining = [i for i, n in pairs if n < prefix]
    return groups


def _majority_prefix(sample: Sequence[Sequence[int]]) -> list[int]:
    """Token by token, the most common next token while at least half of the sample agrees.

    The candidate may run past where some sequences' trained tokens start: `_common_length`
    bounds each sequence by its own `shareable_length`."""
    need = max(2, (len(sample) + 1) // 2)
    group = list(sample)
    prefix: list[int] = []
    position = 0
    while True:
        counts = Counter(ids[position] for ids in group if len(ids) > position + 1)
        if not counts:
            return prefix
        token, count = min(counts.items(), key=lambda item: (-item[1], item[0]))
        if count < need:
            return prefix
        group = [ids for ids in group if len(ids) > position + 1 and ids[position] == token]
        prefix.append(token)
        position += 1


def _common_length(ids: Sequence[int], candidate: Sequence[int], limit: int) -> int:
    """The largest L <= limit with ids[:L] == candidate[:L] (binary search; prefix equality is
    monotone in L, and each comparison runs in C)."""
    low, high = 0, min(limit, len(candidate), len(ids) - 1)
    ids = ids if isinstance(ids, list) else list(ids)  # list == tuple is False
    candidate = candidate if isinstance(candidate, list) else list(candidate)
    while low < high:
        middle = (low + high + 1) // 2
        if ids[:middle] == candidate[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def membership(groups: Sequence[PrefixGroup], n: int) -> list[int]:
    """Each of `n` sequences' group index, -1 for none."""
    group_of = [-1] * n
    for index, group in enumerate(groups):
        for member in group.members:
            group_of[member] = index
    return group_of


def pack_rows(
    lengths: Sequence[int],
    members: Sequence[int],
    groups: Sequence[PrefixGroup],
    group_of: Sequence[int],
    *,
    row_tokens: int,
) -> list[PackedRow]:
    """One micro-batch's sequences (`members`, indices into `lengths`) laid out in rows of at
    most `row_tokens` computed tokens (or one longer sequence), first fit decreasing: each
    group's members behind its prefix (`group_of` from `membership`), then the rest as they are."""
    by_group: dict[int, list[int]] = {}
    for member in members:
        by_group.setdefault(group_of[member], []).append(member)
    rows: list[PackedRow] = []
    left = by_group.pop(-1, [])
    for index, mine in sorted(by_group.items()):
        if len(mine) < 2:
            left += mine  # one sequence alone shares nothing
            continue
        prefix = groups[index].prefix
        suffixes = [lengths[m] - prefix for m in mine]
        room = max(row_tokens - prefix, max(suffixes))
        rows += [PackedRow(tuple(mine[i] for i in row), prefix) for row in pack_bins(suffixes, room)]
    if left:
        plain = [lengths[m] for m in left]
        packed = pack_bins(plain, max(row_tokens, max(plain)))
        rows += [PackedRow(tuple(left[i] for i in row)) for row in packed]
    return rows


def packing_layout(
    rows: Sequence[PackedRow], groups: Sequence[PrefixGroup], lengths: Sequence[int], *, unshared: str = ""
) -> dict[str, int | str]:
    """What the packing did, in counts: rows, examples behind a shared prefix, the longest
    prefix, and the tokens the examples hold against those the rows compute; with `unshared`
    (`RowAttention.unshared`), why the model took prefix sharing off."""
    reason: dict[str, int | str] = {"prefix_sharing_off": unshared} if unshared else {}
    return reason | {
        "rows": len(rows),
        "examples": len(lengths),
        "prefix_groups": len(groups),
        "shared_prefix_examples": sum(len(row.members) for row in rows if row.prefix),
        "shared_prefix_tokens": max((group.prefix for group in groups), default=0),
        "example_tokens": sum(lengths),
        "computed_tokens": sum(row.computed_tokens(lengths) for row in rows),
    }


@dataclass(frozen=True)
class RowAttention:
    """What the 4D mask of a shared-prefix row adds for the models that read it (the trained
    model, and a distillation teacher): their sliding window, or why one mask cannot serve them."""

    window: int | None = None
    """A query at position p sees only keys at positions > p - window (transformers'
    `sliding_window_overlay`); None when no layer's window is shorter than the longest example."""
    unshared: str = ""
    """Why one mask cannot serve every layer, so prefix sharing is off; empty when it can."""


def row_attention(model_configs: Sequence[Any], longest: int) -> RowAttention:
    """The window a shared-prefix mask applies for these models (transformers configs), when no
    example is longer than `longest` tokens.

    A window hides keys only from a query `window` or more positions later, so one of at least
    `longest` tokens never hides anything and is left out. The same window on every layer
    (Mistral, Phi-3: `sliding_window` without `layer_types`) goes into the mask. Layers that
    differ (`layer_types` mixing sliding_attention with full_attention: Gemma 2/3, GPT-OSS, Qwen2
    with max_window_layers) would need a mask per layer, and other kinds of attention (chunked,
    linear) one this mask does not describe: prefix sharing is then off, with the reason.
    """
    windows: dict[int | None, set[str]] = {}
    for config in model_configs:
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        name = str(getattr(text, "model_type", "") or type(text).__name__)
        window = getattr(text, "sliding_window", None)
        kinds = set(getattr(text, "layer_types", None) or ())
        if not kinds:
            kinds = {"full_attention" if window is None else "sliding_attention"}
        others = sorted(kinds - {"full_attention", "sliding_attention"})
        if others:
            return RowAttention(
                unshared=f"{name} has {', '.join(others)} layers, which a 4D attention mask does not describe"
            )
        for kind in kinds:
            binds = kind == "sliding_attention" and window is not None and window < longest
            windows.setdefault(window if binds else None, set()).add(name)
    if len(windows) <= 1:
        return RowAttention(window=next(iter(windows), None))
    described = [
        "global attention" if window is None else f"a sliding window of {window} tokens"
        for window in sorted(windows, key=lambda w: -1 if w is None else w)
    ]
    names = " and ".join(sorted(set().union(*windows.values())))
    return RowAttention(
        unshared=f"the layers of {names} attend through {' and '.join(described)}, and examples reach "
        f"{longest} tokens: one 4D attention mask cannot serve every layer"
    )


def collate_packed(sequences: Sequence[TrainingSequence], indices: Sequence[int]) -> Batch:
    """The chosen sequences end to end in one (1, T) row, kept apart by position ids alone."""
    return collate_rows(sequences, [PackedRow(tuple(indices))], pad_token_id=0)  # one row: no padding


def collate_rows(
    sequences: Sequence[TrainingSequence],
    rows: Sequence[PackedRow],
    pad_token_id: int,
    *,
    window: int | None = None,
) -> Batch:
    """Rows in one (B, L) micro-batch, padded at their ends to the longest.

    Without a prefix in any row, sequences are kept apart by position ids that restart at 0
    (attention_mask None: the padding-free path of transformers, flash varlen included; the
    model applies its own sliding window there). With one, the batch carries the 4D boolean
    mask described in the module docstring, narrowed to the model's sliding `window`
    (`row_attention`); the padding at a row's end is then a segment of its own that nothing
    real attends to.
    """
    if not rows or any(not row.members for row in rows):
        raise TrainingError("a micro-batch needs at least one sequence in every row")
    laid = [_lay_out(sequences, row) for row in rows]
    width = max(len(ids) for ids, _, _, _ in laid)
    input_ids, labels, positions, segments = [], [], [], []
    for ids, row_labels, row_positions, row_segments in laid:
        pad = width - len(ids)
        input_ids.append(ids + [pad_token_id] * pad)
        labels.append(row_labels + [IGNORE_INDEX] * pad)
        positions.append(row_positions + list(range(pad)))
        segments.append(row_segments + [-1] * pad)
    label_tensor = torch.tensor(labels, dtype=torch.long)
    mask = None
    if any(row.prefix for row in rows):
        segment = torch.tensor(segments, dtype=torch.long)
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        same = segment[:, :, None] == segment[:, None, :]
        to_prefix = (segment[:, None, :] == 0).expand(-1, width, -1)  # segment 0: a row's prefix
        allowed = causal & (same | to_prefix)
        if window is not None:
            # Positions restart in every member, so a suffix token at position p and the prefix
            # and suffix keys it sees lie as far apart as in the example alone.
            position = torch.tensor(positions, dtype=torch.long)
            allowed &= position[:, None, :] > position[:, :, None] - window
        mask = allowed[:, None]
    return Batch(
        input_ids=torch.tensor(input_ids, dtype=torch.long),
        labels=label_tensor,
        position_ids=torch.tensor(positions, dtype=torch.long),
        attention_mask=mask,
        n_sequences=sum(len(row.members) for row in rows),
        n_trained_tokens=int((label_tensor != IGNORE_INDEX).sum()),
        n_tokens=sum(len(ids) for ids, _, _, _ in laid),
        n_example_tokens=sum(len(sequences[m].input_ids) for row in rows for m in row.members),
    )


def _lay_out(
    sequences: Sequence[TrainingSequence], row: PackedRow
) -> tuple[list[int], list[int], list[int], list[int]]:
    """One row's input ids, shifted labels, position ids and segment ids (0 = the prefix,
    k = the k-th member, numbered from 1)."""
    p = row.prefix
    first = sequences[row.members[0]].input_ids
    ids, labels, positions, segments = list(first[:p]), [IGNORE_INDEX] * p, list(range(p)), [0] * p
    for k, member in enumerate(row.members, start=1):
        sequence = sequences[member]
        shifted = shifted_labels(sequence)
        if p and (sequence.input_ids[:p] != first[:p] or any(t != IGNORE_INDEX for t in shifted[:p])):
            raise TrainingError(
                f"example {sequence.example_id} does not start with its row's {p}-token untrained prefix"
            )
        n = len(sequence.input_ids)
        if n <= p:
            raise TrainingError(f"example {sequence.example_id} has no tokens after its row's prefix")
        ids += sequence.input_ids[p:]
        labels += shifted[p:]
        positions += range(p, n)
        segments += [k] * (n - p)
    return ids, labels, positions, segments
