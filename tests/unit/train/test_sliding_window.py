"""Shared-prefix rows under sliding-window attention: the window goes into the row's 4D mask, and
models whose layers attend through different windows get no prefix sharing, with the reason."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from sftline.train.packing import collate_padded, loss_sum
from sftline.train.rows import PackedRow, RowAttention, collate_rows, row_attention, shared_prefix_groups
from sftline.train.tasks import prepare_chat
from tests.support.clinc import CLINC_SYSTEM_PROMPT, clinc_chats
from tests.support.tiny_models import make_tiny_chat_model
from tests.unit.train.test_packing import VOCAB, assert_same_loss_and_grads
from tests.unit.train.test_rows import PAD, _two_system_prompts

WINDOW = 4


def _mistral_config(vocab: int, attn_implementation: str = "sdpa") -> Any:
    from transformers import MistralConfig

    return MistralConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        sliding_window=WINDOW,
        attn_implementation=attn_implementation,
    )


def _mistral(config: Any) -> torch.nn.Module:
    from transformers import MistralForCausalLM

    torch.manual_seed(0)
    return MistralForCausalLM(config).to(torch.float32).eval()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_prefix_rows_under_a_sliding_window_give_the_loss_and_gradients_of_the_examples_alone(
    attn: str,
) -> None:
    config = _mistral_config(VOCAB, attn)
    model, sequences = _mistral(config), _two_system_prompts()
    # Prefixes of 12 and 9 tokens and suffixes of 4 to 11: every window of 4 hides some context.
    longest = max(len(s.input_ids) for s in sequences)
    attention = row_attention([config], longest)
    assert attention == RowAttention(window=WINDOW)
    groups = shared_prefix_groups(sequences)
    rows = [
        PackedRow(groups[0].members[:4], groups[0].prefix),
        PackedRow(groups[1].members, groups[1].prefix),
        PackedRow(groups[0].members[4:] + (9, 10), 0),  # no prefix: the same mask, the same window
    ]
    batch = collate_rows(sequences, rows, PAD, window=attention.window)
    # The reference: each example alone in a padded row, the window applied by transformers itself.
    reference = collate_padded(sequences, range(len(sequences)), PAD)

    assert_same_loss_and_grads(model, batch, reference)


def test_the_window_hides_keys_window_positions_back_in_the_members_own_positions() -> None:
    sequences = _two_system_prompts()
    row = PackedRow((6, 7), 9)  # a 9-token prefix, then the two members' suffixes
    plain = collate_rows(sequences, [row], PAD).attention_mask
    windowed = collate_rows(sequences, [row], PAD, window=WINDOW).attention_mask
    assert plain is not None and windowed is not None
    suffix = len(sequences[6].input_ids) - 9
    second = 9 + suffix  # the second member's first token: position 9, as in its own example
    # It sees the prefix (positions 0..8) and itself without a window; with one, positions 6..9.
    assert plain[0, 0, second].nonzero().squeeze(-1).tolist() == [*range(9), second]
    assert windowed[0, 0, second].nonzero().squeeze(-1).tolist() == [6, 7, 8, second]


def _configs() -> dict[str, Any]:
    from transformers import Gemma2Config, LlamaConfig, Qwen2Config

    return {
        "llama": LlamaConfig(num_hidden_layers=2),
        "mistral": _mistral_config(VOCAB),
        "gemma2": Gemma2Config(num_hidden_layers=2, sliding_window=WINDOW),  # sliding, full
        "qwen2": Qwen2Config(
            num_hidden_layers=2, use_sliding_window=True, sliding_window=8, max_window_layers=1
        ),
        "chunked": SimpleNamespace(
            model_type="llama4_text", layer_types=["chunked_attention", "full_attention"]
        ),
    }


@pytest.mark.parametrize(
    ("names", "longest", "expected"),
    [
        (["llama"], 40, RowAttention()),
        (["mistral"], 40, RowAttention(window=4)),
        (["mistral"], 4, RowAttention()),  # distances reach 3 < 4: the window hides nothing
        (["gemma2"], 4, RowAttention()),  # the same: its sliding and global layers agree
        (
            ["gemma2"],
            5,
            RowAttention(
                unshared="the layers of gemma2 attend through global attention and a sliding window of "
                "4 tokens, and examples reach 5 tokens: one 4D attention mask cannot serve every layer"
            ),
        ),
        (
            ["qwen2"],
            40,
            RowAttention(
                unshared="the layers of qwen2 attend through global attention and a sliding window of "
                "8 tokens, and examples reach 40 tokens: one 4D attention mask cannot serve every layer"
            ),
        ),
        (
            ["llama", "mistral"],  # a distillation teacher without the student's window
            40,
            RowAttention(
                unshared="the layers of llama and mistral attend through global attention and a sliding "
                "window of 4 tokens, and examples reach 40 tokens: one 4D attention mask cannot serve "
                "every layer"
            ),
        ),
        (
            ["chunked"],
            40,
            RowAttention(
                unshared="llama4_text has chunked_attention layers, which a 4D attention mask does not "
                "describe"
            ),
        ),
    ],
)
def test_row_attention_reads_the_window_every_layer_shares(
    names: list[str], longest: int, expected: RowAttention
) -> None:
    configs = _configs()
    assert row_attention([configs[n] for n in names], longest) == expected


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(make_tiny_chat_model(tmp_path_factory.mktemp("tiny")))


def _prepare(tokenizer: Any, model_configs: list[Any]) -> Any:
    return prepare_chat(
        tokenizer,
        clinc_chats(slice(0, 600, 30), "c", 0),
        batch_tokens=512,
        length_policy="drop",
        system_prompt=CLINC_SYSTEM_PROMPT,
        max_length=512,
        row_tokens=256,
        model_configs=model_configs,
    )


def test_prepared_rows_carry_the_models_window_to_the_loss(tokenizer: Any) -> None:
    config = _mistral_config(len(tokenizer))
    data = _prepare(tokenizer, [config])
    assert data.window == WINDOW and "prefix_sharing_off" not in data.layout
    assert data.layout["shared_prefix_examples"] == data.layout["examples"] == 20
    model = _mistral(config)
    members = data.bins[0]
    batch = data.collate(members)
    assert batch.attention_mask is not None  # shared-prefix rows
    sequences = [m for r in members for m in data.rows[r].members]
    reference = collate_padded(data.sequences, sequences, tokenizer.pad_token_id)
    torch.testing.assert_close(loss_sum(model, batch)[0], loss_sum(model, reference)[0], rtol=1e-5, atol=1e-5)


def test_a_model_mixing_window_and_global_layers_gets_no_prefix_sharing(tokenizer: Any) -> None:
    from transformers import Gemma2Config

    data = _prepare(tokenizer, [Gemma2Config(num_hidden_layers=2, sliding_window=WINDOW)])
    longest = max(len(s.input_ids) for s in data.sequences)
    assert data.layout["prefix_sharing_off"] == (
        "the layers of gemma2 attend through global attention and a sliding window of 4 tokens, and "
        f"examples reach {longest} tokens: one 4D attention mask cannot serve every layer"
    )
    assert data.layout["shared_prefix_examples"] == 0 and data.window is None
    assert data.layout["computed_tokens"] == data.layout["example_tokens"]
    assert all(row.prefix == 0 for row in data.rows)
    assert all(data.collate(members).attention_mask is None for members in data.bins)  # position ids


def test_a_window_longer_than_every_example_keeps_prefix_sharing(tokenizer: Any) -> None:
    from transformers import Gemma2Config

    data = _prepare(tokenizer, [Gemma2Config(num_hidden_layers=2, sliding_window=4096)])
    assert "prefix_sharing_off" not in data.layout and data.window is None
    assert data.layout["shared_prefix_examples"] == 20
