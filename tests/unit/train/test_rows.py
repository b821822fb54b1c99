"""Shared-prefix rows: which sequences share a prefix, and the loss and gradients they give."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from sftline.errors import TrainingError
from sftline.train.packing import IGNORE_INDEX, collate_padded, loss_sum
from sftline.train.rows import PackedRow, collate_rows, shareable_length, shared_prefix_groups
from tests.unit.train.test_packing import VOCAB, Rendered, _model, assert_same_loss_and_grads

PAD = 0


def _with_prefix(rng: random.Random, prefix: list[int], rest: int, prompt: int, name: str) -> Rendered:
    """`prefix`, then `rest` random tokens of which the first `prompt` are untrained."""
    tail = [rng.randrange(1, VOCAB) for _ in range(rest)]
    ids = prefix + tail
    return Rendered(ids, [IGNORE_INDEX] * (len(prefix) + prompt) + tail[prompt:], name)


def _two_system_prompts() -> list[Rendered]:
    """Six sequences behind one 12-token prefix, three behind another of 9, two with neither."""
    rng = random.Random(3)
    first = [rng.randrange(1, VOCAB) for _ in range(12)]
    second = [rng.randrange(1, VOCAB) for _ in range(9)]
    sequences = [_with_prefix(rng, first, rng.randrange(4, 12), 2, f"a{i}") for i in range(6)]
    sequences += [_with_prefix(rng, second, rng.randrange(4, 12), 1, f"b{i}") for i in range(3)]
    sequences += [_with_prefix(rng, [], rng.randrange(6, 14), 3, f"c{i}") for i in range(2)]
    return sequences


def test_groups_find_each_system_prompt_and_leave_the_rest() -> None:
    sequences = _two_system_prompts()
    groups = shared_prefix_groups(sequences)
    # The first group also takes the untrained token after the prefix when the members share it
    # by chance; here the random tails differ at their first token.
    assert [(g.prefix, g.members) for g in groups] == [(12, (0, 1, 2, 3, 4, 5)), (9, (6, 7, 8))]


def test_a_prefix_stops_before_the_first_trained_token() -> None:
    ids = list(range(1, 21))
    early = Rendered(ids, [IGNORE_INDEX] * 6 + ids[6:], "early")  # token 6 is trained
    late = [Rendered(ids, [IGNORE_INDEX] * 15 + ids[15:], f"late{i}") for i in range(3)]
    assert shareable_length(early) == 5 and shareable_length(late[0]) == 14
    groups = shared_prefix_groups([early, *late])
    # At least half (two) reach 14 tokens; `early` shares only 5, below the minimum of 8.
    assert [(g.prefix, g.members) for g in groups] == [(14, (1, 2, 3))]
    assert shared_prefix_groups([early, *late], min_tokens=16) == []


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_prefix_rows_give_the_loss_and_gradients_of_the_examples_alone(attn: str) -> None:
    model, sequences = _model(attn), _two_system_prompts()
    groups = shared_prefix_groups(sequences)
    rows = [
        PackedRow(groups[0].members[:4], groups[0].prefix),
        PackedRow(groups[1].members, groups[1].prefix),
        PackedRow(groups[0].members[4:] + (9, 10), 0),  # no prefix: the plain packed path, same batch
    ]
    batch = collate_rows(sequences, rows, PAD)
    assert batch.attention_mask is not None and batch.attention_mask.shape[1] == 1
    assert batch.n_example_tokens == sum(len(s.input_ids) for s in sequences)
    assert batch.n_tokens == batch.n_example_tokens - 3 * 12 - 2 * 9  # each prefix laid out once per row
    reference = collate_padded(sequences, range(len(sequences)), PAD)

    assert_same_loss_and_grads(model, batch, reference)


def test_a_member_without_the_prefix_is_refused() -> None:
    sequences = _two_system_prompts()
    with pytest.raises(TrainingError, match="does not start with its row's 12-token"):
        collate_rows(sequences, [PackedRow((0, 6), 12)], PAD)


def test_flash_attention_cannot_take_a_prefix_row() -> None:
    sequences = _two_system_prompts()
    batch = collate_rows(sequences, [PackedRow((0, 1), 12)], PAD)
    fake = SimpleNamespace(config=SimpleNamespace(_attn_implementation="flash_attention_2"))
    with pytest.raises(TrainingError, match="prefix_sharing: false"):
        loss_sum(fake, batch)
