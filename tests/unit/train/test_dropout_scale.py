"""BitDropout keeps the mean in 16-bit types, where the scale 1/(1-p) is not representable."""

from __future__ import annotations

import math

import pytest
import torch

from sftline.train.dropout import LEVELS, BitDropout, kept_scales

N = 2**22


@pytest.mark.parametrize("p", [0.05, 0.1])
def test_the_mean_of_bfloat16_ones_stays_one(p: float) -> None:
    torch.manual_seed(0)
    dropout = BitDropout(p).train()
    out = dropout(torch.ones(N, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    # An element is 0 with probability q = dropped / LEVELS and 1/(1-q) otherwise: variance
    # q/(1-q), so the mean of N has standard error sqrt(q/(1-q)/N) = 1.1e-4 (p = 0.05) and 1.6e-4
    # (p = 0.1). A scale rounded to bfloat16 (1.0546875, 1.109375) moves the mean by +2.0e-3 and
    # -1.5e-3, 18 and 9.5 standard errors; five are allowed.
    q = dropout.dropped / LEVELS
    standard_error = math.sqrt(q / (1 - q) / N)
    assert abs(float(out.double().mean()) - 1.0) < 5 * standard_error


def test_kept_elements_take_the_two_bfloat16_neighbours_of_the_scale() -> None:
    # p = 0.05: 3,277 levels dropped, 62,259 kept, scale 65,536 / 62,259 = 1.05263, between
    # bfloat16's 1.046875 and 1.0546875 (steps of 2**-7). 45,902 levels at 1.0546875 and 16,357
    # at 1.046875 sum to 48,412.265625 + 17,123.734375 = 65,536 levels: a mean scale of exactly 1.
    assert kept_scales(3_277, torch.bfloat16) == (1.046875, 1.0546875, 45_902)
    torch.manual_seed(1)
    out = BitDropout(0.05).train()(torch.ones(N, dtype=torch.bfloat16))
    assert set(out.unique().tolist()) == {0.0, 1.046875, 1.0546875}
    high = float((out == 1.0546875).double().mean())
    # The share at 1.0546875 is 45,902 / 65,536 = 0.70041; its standard error over N is 2.2e-4.
    assert abs(high - 45_902 / LEVELS) < 5 * math.sqrt(0.7 * 0.3 / N)


def test_float32_keeps_one_scale_and_the_masks_of_earlier_runs() -> None:
    low, high, high_levels = kept_scales(3_277, torch.float32)
    assert low == high == float(torch.tensor(LEVELS / 62_259, dtype=torch.float32)) and high_levels == 0
    assert kept_scales(LEVELS // 2, torch.bfloat16) == (2.0, 2.0, 0)  # p = 0.5: 2 is representable
