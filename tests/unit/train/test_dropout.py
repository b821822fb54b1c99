"""BitDropout: nn.Dropout's distribution from 16-bit draws, and its place in peft's LoRA layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sftline.train.dropout import LEVELS, BitDropout, use_bit_dropout


def test_keeps_the_share_one_minus_p_and_the_mean() -> None:
    torch.manual_seed(0)
    dropout = BitDropout(0.05).train()
    out = dropout(torch.ones(2_000_000))
    dropped = round(0.05 * LEVELS)  # 3,277 of 65,536 levels: p = 0.0500030
    kept = float((out > 0).float().mean())
    # 2M draws: the standard error of the kept share is sqrt(p(1-p)/n) = 1.5e-4.
    assert abs(kept - (1 - dropped / LEVELS)) < 8e-4
    torch.testing.assert_close(out[out > 0], torch.full_like(out[out > 0], LEVELS / (LEVELS - dropped)))
    assert abs(float(out.mean()) - 1.0) < 1e-3


def test_identity_in_eval_mode_and_for_p_zero() -> None:
    x = torch.randn(64, 32)
    assert BitDropout(0.3).eval()(x) is x
    assert BitDropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        BitDropout(1.0)


def test_masks_follow_the_seed_and_the_gradient_is_the_mask() -> None:
    dropout = BitDropout(0.5).train()
    torch.manual_seed(3)
    a = dropout(torch.ones(1000))
    torch.manual_seed(3)
    b = dropout(torch.ones(1000))
    assert torch.equal(a, b) and not torch.equal(a, dropout(torch.ones(1000)))
    x = torch.ones(1000, requires_grad=True)
    torch.manual_seed(4)
    y = dropout(x)
    y.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, y.detach())  # d(x * mask)/dx = mask, and x = 1


def test_replaces_the_dropout_of_every_lora_layer() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    model = get_peft_model(
        LlamaForCausalLM(config), LoraConfig(r=4, lora_dropout=0.1, target_modules="all-linear")
    )
    assert use_bit_dropout(model) == 2 * 7  # q, k, v, o, gate, up, down per layer
    kinds = {type(m) for m in model.modules() if isinstance(m, nn.Dropout | BitDropout)}
    assert kinds == {BitDropout}
