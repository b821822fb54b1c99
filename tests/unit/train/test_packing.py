from __future__ import annotations

import random
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from sftline.errors import TrainingError
from sftline.train.packing import (
    IGNORE_INDEX,
    Batch,
    batch_logits,
    collate_padded,
    loss_sum,
    pack_bins,
    step_loss,
    tokens_per_step_note,
)
from sftline.train.rows import collate_packed

PAD = 0
VOCAB = 256


@dataclass
class Rendered:
    """Same fields as sftline.contract.render.RenderedExample."""

    input_ids: list[int]
    labels: list[int]
    example_id: str


def _sequence(rng: random.Random, length: int, prompt: int, name: str) -> Rendered:
    ids = [rng.randrange(1, VOCAB) for _ in range(length)]
    return Rendered(ids, [IGNORE_INDEX] * prompt + ids[prompt:], name)


def _sequences() -> list[Rendered]:
    """8 sequences of different lengths, each with a masked prompt of a different size."""
    rng = random.Random(7)
    shapes = [(9, 4), (5, 1), (13, 10), (7, 2), (3, 1), (11, 3), (6, 5), (8, 2)]  # (length, prompt tokens)
    return [_sequence(rng, n, p, f"ex{i}") for i, (n, p) in enumerate(shapes)]


def _model(attn_implementation: str = "sdpa") -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=512,
        attn_implementation=attn_implementation,
    )
    return LlamaForCausalLM(config).to(torch.float32).eval()


def _grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_loss_and_grads(model: torch.nn.Module, batch: Batch, reference: Batch) -> None:
    """`batch` gives the summed loss, the count and every gradient of `reference` (each example
    alone in a padded row), to 1e-5."""
    shared, count = loss_sum(model, batch)
    alone, alone_count = loss_sum(model, reference)
    assert count == alone_count == reference.n_trained_tokens
    torch.testing.assert_close(shared, alone, rtol=1e-5, atol=1e-5)
    expected, got = _grads(model, alone), _grads(model, shared)
    assert expected.keys() == got.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packed_loss_and_gradients_match_the_padded_reference(attn: str) -> None:
    model, sequences = _model(attn), _sequences()
    everything = range(len(sequences))
    packed_sum, packed_count = loss_sum(model, collate_packed(sequences, everything))
    padded_sum, padded_count = loss_sum(model, collate_padded(sequences, everything, PAD))

    # 9+5+13+7+3+11+6+8 = 62 tokens; trained = (length - prompt) per sequence, the first
    # token's own label is never a target: 5+4+3+5+2+8+1+6 = 34
    assert packed_count == padded_count == 34
    torch.testing.assert_close(packed_sum, padded_sum, rtol=1e-5, atol=1e-5)

    packed_grads = _grads(model, packed_sum / packed_count)
    padded_grads = _grads(model, padded_sum / padded_count)
    assert packed_grads.keys() == padded_grads.keys() and len(packed_grads) > 0
    for name, grad in packed_grads.items():
        torch.testing.assert_close(grad, padded_grads[name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_changing_one_packed_sequence_leaves_the_others_untouched(attn: str) -> None:
    model, sequences = _model(attn), _sequences()
    a, b, c = sequences[0], sequences[1], sequences[2]
    new_ids = [(t + 17) % VOCAB or 1 for t in a.input_ids]
    new_labels = [IGNORE_INDEX if x == IGNORE_INDEX else t for x, t in zip(a.labels, new_ids, strict=True)]
    changed_a = Rendered(new_ids, new_labels, a.example_id)

    with torch.no_grad():
        before = batch_logits(model, collate_packed([a, b, c], [0, 1, 2]))[0]
        after = batch_logits(model, collate_packed([changed_a, b, c], [0, 1, 2]))[0]
        alone_b = batch_logits(model, collate_packed([b], [0]))[0]

    n_a, n_b = len(a.input_ids), len(b.input_ids)
    assert not torch.allclose(before[:n_a], after[:n_a])  # A itself did change
    assert torch.equal(before[n_a:], after[n_a:])  # B and C: bit for bit
    torch.testing.assert_close(before[n_a : n_a + n_b], alone_b, rtol=1e-5, atol=1e-5)


def test_gradient_accumulation_weights_every_trained_token_equally() -> None:
    model, sequences = _model(), _sequences()
    micro_batches = [[0, 1], [2, 3], [4, 5], [6, 7]]  # trained tokens 9, 8, 10, 7
    with torch.no_grad():
        micro = [loss_sum(model, collate_packed(sequences, m)) for m in micro_batches]
        whole_sum, whole_count = loss_sum(model, collate_packed(sequences, range(len(sequences))))

    assert len({n for _, n in micro}) > 1
    accumulated = step_loss(micro)
    torch.testing.assert_close(accumulated, whole_sum / whole_count, rtol=1e-5, atol=1e-5)
    mean_of_means = torch.stack([total / n for total, n in micro]).mean()
    assert abs(float(mean_of_means) - float(accumulated)) > 1e-4


def test_step_loss_arithmetic_and_empty_step() -> None:
    # sums 10 over 2 tokens and 30 over 30 tokens: 40 / 32 per token, not (5 + 1) / 2
    assert float(step_loss([(torch.tensor(10.0), 2), (torch.tensor(30.0), 30)])) == 1.25
    with pytest.raises(TrainingError, match="no trained tokens"):
        step_loss([(torch.tensor(0.0), 0)])


def test_labels_are_shifted_per_sequence_with_minus_100_at_each_end() -> None:
    sequences = _sequences()[:3]
    batch = collate_packed(sequences, [0, 1, 2])
    ids, labels = batch.input_ids[0].tolist(), batch.labels[0].tolist()
    positions = batch.position_ids[0].tolist()
    assert batch.attention_mask is None and batch.n_sequences == 3 and batch.n_tokens == 9 + 5 + 13
    assert positions == list(range(9)) + list(range(5)) + list(range(13))

    ends = [8, 13, 26]
    assert [labels[e] for e in ends] == [IGNORE_INDEX] * 3
    for t, label in enumerate(labels):
        if label != IGNORE_INDEX:
            assert t not in ends and label == ids[t + 1]
    assert batch.n_trained_tokens == sum(label != IGNORE_INDEX for label in labels) == 5 + 4 + 3

    padded = collate_padded(sequences, [0, 1, 2], PAD)
    assert padded.input_ids.shape == (3, 13) and padded.attention_mask.sum().item() == padded.n_tokens == 27
    assert padded.labels[1, 4:].tolist() == [IGNORE_INDEX] * 9


def test_collate_rejects_bad_sequences() -> None:
    with pytest.raises(TrainingError, match="bad1: 2 labels for 3 input ids"):
        collate_packed([Rendered([5, 6, 7], [5, 6], "bad1")], [0])
    with pytest.raises(TrainingError, match="bad2: a label"):
        collate_packed([Rendered([5, 6, 7], [IGNORE_INDEX, 7, IGNORE_INDEX], "bad2")], [0])  # already shifted
    with pytest.raises(TrainingError, match="bad3 rendered to an empty sequence"):
        collate_packed([Rendered([], [], "bad3")], [0])
    with pytest.raises(TrainingError, match="at least one sequence"):
        collate_packed(_sequences(), [])


def test_packed_rows_refuse_an_attention_implementation_that_would_mix_them() -> None:
    fake = SimpleNamespace(config=SimpleNamespace(_attn_implementation="paged|sdpa"))
    with pytest.raises(TrainingError, match="'paged|sdpa' cannot keep packed sequences apart"):
        loss_sum(fake, collate_packed(_sequences(), [0, 1]))


def test_pack_bins_first_fit_decreasing() -> None:
    # placed 0(5), 2(4), 3(3), 1(2) -> bin of 2, 4(1) -> bin of 0
    assert pack_bins([5, 2, 4, 3, 1], 6) == [[0, 4], [2, 1], [3]]
    assert pack_bins([3, 3, 3], 6) == [[0, 1], [2]]  # ties by index
    assert pack_bins([], 8) == []

    rng = random.Random(3)
    lengths = [rng.randint(1, 512) for _ in range(2_000)]
    bins = pack_bins(lengths, 1_024)
    assert bins == pack_bins(list(lengths), 1_024)
    assert max(sum(lengths[i] for i in b) for b in bins) <= 1_024
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    # FFD uses at most 11/9 of the optimum + 1 bins; the optimum needs at least ceil(total / capacity)
    assert len(bins) <= 11 / 9 * -(-sum(lengths) // 1_024) + 1


def test_pack_bins_names_an_oversize_sequence() -> None:
    with pytest.raises(TrainingError, match="sequence 1 has 9 tokens"):
        pack_bins([4, 9, 2], 8)
    with pytest.raises(TrainingError, match=r"sequence 1 \(ex1\) has 9 tokens"):
        pack_bins([4, 9, 2], 8, names=["ex0", "ex1", "ex2"])


def test_tokens_per_step_note() -> None:
    assert tokens_per_step_note(8_192, 4) == (
        "8,192 tokens per micro-batch x 4 accumulation x 1 process = 32,768 tokens per optimizer step"
    )
    note = tokens_per_step_note(512, 16, world_size=8)
    assert note.endswith("8 processes = 65,536 tokens per optimizer step")
    with pytest.raises(TrainingError, match="accumulation must be at least 1"):
        tokens_per_step_note(512, 0)
