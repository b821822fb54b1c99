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

In 16-bit types that inverse is not representable: in bfloat16 1/0.95 = 1.05263 rounds to
1.0546875, and one rounded scale on every kept element moves the mean of ones to 1.0020 (p =
0.05; 0.9985 at p = 0.1), 18 (9.5) standard errors over 2**22 elements; `nn.Dropout` does the
same. So a kept element gets one of the two representable neighbours of the inverse, picked by
the same draw in the proportions that keep the mean scale exact (`kept_scales`).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

LEVELS = 65_536


class BitDropout(nn.Module):
    """`nn.Dropout(p)` in distribution (p rounded to 1/65,536), from 16-bit draws; in 16-bit
    types the mean scale is exact where `nn.Dropout` rounds it (module docstring)."""

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
        low, high, high_levels = kept_scales(self.dropped, x.dtype)
        # A draw, offset by 32,768, below `dropped` drops its element; the next `high_levels`
        # levels keep it scaled by `high`, the rest by `low`.
        threshold = self.dropped - LEVELS // 2
        keep = torch.full_like(x, low)
        if high_levels:
            keep.masked_fill_(draws < threshold + high_levels, high)
        return x * keep.masked_fill_(draws < threshold, 0.0)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@functools.cache
def kept_scales(dropped: int, dtype: torch.dtype) -> tuple[float, float, int]:
    """(low, high, high_levels): the representable values of `dtype` on either side of the
    scale LEVELS / kept (kept = LEVELS - dropped levels), and how many of the kept levels take
    `high` so that the kept levels' scales sum to LEVELS: high_levels x high + (kept -
    high_levels) x low = LEVELS, to within (high - low) / 2, a mean scale off by at most
    (high - low) / 2 / LEVELS (2**-24 in bfloat16 near 1).

    In 32-bit types and wider the nearest value alone is within 2**-24 of the scale, relative,
    far below the standard error of any mean dropout is measured over, so it is kept alone
    (high_levels 0, and the masks of earlier runs unchanged)."""
    kept = LEVELS - dropped
    scale = LEVELS / kept
    nearest = torch.tensor(scale, dtype=torch.float64).to(dtype)
    if float(nearest) == scale or torch.finfo(dtype).bits >= 32:
        return float(nearest), float(nearest), 0
    toward = torch.tensor(math.inf if float(nearest) < scale else -math.inf, dtype=dtype)
    low, high = sorted((float(nearest), float(torch.nextafter(nearest, toward))))
    return low, high, round((LEVELS - kept * low) / (high - low))


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
