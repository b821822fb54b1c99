"""LoRA dropout with cheaper random numbers.

peft applies `nn.Dropout` to the input of every LoRA layer (seven per decoder layer with
all-linear targets). On CPU, `torch.bernoulli_` draws one 32-bit number per element and is slow:
on the project's 2-core machine a 1,024 x 576 mask took 5-10 ms, about as long as the layer's
576 x 576 matmul, and the masks were a fifth of a SmolLM2 LoRA step's CPU time. `BitDropout`
takes four 16-bit draws from each 64-bit random number and keeps an element when its draw is at
least p x 65,536: the keep probability is exact for p rounded to 1/65,536 (p = 0.05 becomes
0.0500030), and kept elements are scaled by the inverse of that probability, so the expectation
is unchanged. The draws come from torch's generator of the tensor's device, whose state
checkpoints already save, so resumed runs draw the same masks.
"""

from __future__ import annotations

import torch
from torch import nn

LEVELS = 65_536


class BitDropout(nn.Module):
    """`nn.Dropout(p)` in distribution (p rounded to 1/65,536), from 16-bit draws."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.dropped = round(p * LEVELS)
        """Draws below this (of 65,536 levels) drop their element."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropped == 0:
            return x
        n = x.numel()
        # random_ over the full int64 range fills all 64 bits; viewed as int16, four uniform draws.
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        draws = bits.view(torch.int16)[:n].view(x.shape)
        scale = LEVELS / (LEVELS - self.dropped)
        keep = torch.where(draws >= self.dropped - LEVELS // 2, scale, 0.0).to(x.dtype)
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_bit_dropout(model: nn.Module) -> int:
    """Replace the `nn.Dropout` of every peft LoRA layer with `BitDropout`; returns how many."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if isinstance(dropout, nn.Dropout) and dropout.p > 0:
                dropouts[name] = BitDropout(dropout.p)
                replaced += 1
    return replaced
