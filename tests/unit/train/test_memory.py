"""Default micro-batches from an activation budget, and attention memory linear in the row length."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sftline.train.config import TrainConfig
from sftline.train.memory import activation_bytes_per_token, resolve_batching, startup_line

SMOLLM2 = LlamaConfig(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3,
)  # fmt: skip


def test_the_default_micro_batch_fills_the_activation_budget_and_accumulation_fills_the_step() -> None:
    config = TrainConfig(base="b", data="d")
    # 30 layers x (16 x 576 + 5 x 1536) + 4 x 576 + 0.25 x 3 x 49152 floats, 4 bytes each.
    per_token = 4 * (30 * (16 * 576 + 5 * 1536) + 4 * 576 + 0.25 * 3 * 49152)
    assert activation_bytes_per_token(SMOLLM2, config) == math.ceil(per_token) == 2_184_192
    batching = resolve_batching(config, SMOLLM2)
    # 1536 MiB / 2,184,192 bytes = 737 tokens -> 704 (a multiple of 64); 8192 / 704 -> 12 micro-batches.
    assert (batching.micro_tokens, batching.grad_accum, batching.row_tokens) == (704, 12, 704)
    assert batching.step_tokens == 8448 and batching.bytes_per_token == 2_184_192
    assert startup_line(batching) == (
        "micro-batches of 704 tokens x 12 accumulation = 8,448 tokens per optimizer step; rows of <= 704 "
        "tokens (activations ~2,133 KiB per token (estimated from the model's shape, float32) within "
        "activation_memory_mb 1,536)"
    )
    # bfloat16 halves the bytes: twice the tokens per micro-batch (1474 -> 1472), half the accumulation.
    half = resolve_batching(TrainConfig(base="b", data="d", dtype="bfloat16"), SMOLLM2)
    assert (half.micro_tokens, half.grad_accum) == (1472, 6)


def test_set_sizes_win_and_the_budget_never_reads_the_machine() -> None:
    set_size = resolve_batching(TrainConfig(base="b", data="d", batch_tokens=256, grad_accum=3), SMOLLM2)
    assert (set_size.micro_tokens, set_size.grad_accum, set_size.bytes_per_token) == (256, 3, None)
    assert resolve_batching(TrainConfig(base="b", data="d", batch_tokens=512), SMOLLM2).grad_accum == 1
    small = resolve_batching(TrainConfig(base="b", data="d", activation_memory_mb=64), SMOLLM2)
    assert small.micro_tokens == 64  # the floor: 64 MiB holds 30 tokens of SmolLM2
    assert small.grad_accum == 128
    # Only the config and the shape decide: the same answer every time, on every machine.
    assert resolve_batching(TrainConfig(base="b", data="d"), SMOLLM2) == resolve_batching(
        TrainConfig(base="b", data="d"), SMOLLM2
    )


def _saved_bytes_per_token(model: torch.nn.Module, tokens: int) -> float:
    """What autograd keeps for the backward pass of one forward, per token (parameters excluded)."""
    params = {p.data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in params:
            storages[t.data_ptr()] = max(storages.get(t.data_ptr(), 0), t.untyped_storage().nbytes())
        return t

    ids = torch.randint(0, 500, (4, tokens // 4))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, use_cache=False, logits_to_keep=ids.shape[1] // 4)
    return sum(storages.values()) / tokens


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize(("hidden", "intermediate"), [(256, 512), (256, 1024)])
def test_the_estimate_covers_what_autograd_saves(method: str, hidden: int, intermediate: int) -> None:
    shape = LlamaConfig(
        vocab_size=500, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model: torch.nn.Module = LlamaForCausalLM(shape)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        from sftline.train.dropout import use_bit_dropout

        lora = LoraConfig(r=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)  # as sftline trains: dropout 0.05 keeps input copies
        use_bit_dropout(model)
    model.train()
    measured = _saved_bytes_per_token(model, 512)
    estimate = activation_bytes_per_token(shape, TrainConfig(base="b", data="d", method=method))
    # Never under what is saved; for LoRA within a fifth above it (a full fine-tune saves less).
    assert measured <= estimate <= (1.2 if method == "lora" else 1.7) * measured


PEAK_SCRIPT = """
import json, resource, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
length = int(sys.argv[1])
torch.manual_seed(0)
config = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                     num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=length)
model = LlamaForCausalLM(config)  # sdpa, as sftline trains
ids = torch.randint(0, 256, (1, length))
# A shared-prefix row's kind of mask: a 4D boolean mask (here causal), passed as given.
mask = torch.ones(length, length, dtype=torch.bool).tril()[None, None]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
logits.float().logsumexp(-1).sum().backward()
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024))
"""


def _peak_bytes(length: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(length)], capture_output=True, text=True, check=True
    )
    return int(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_training_steps_peak_memory_grows_linearly_with_the_row_length() -> None:
    """A step's extra memory is a*L + b*L^2 for a row of L tokens. Two rows of L and one of 2L
    eliminate a: b = (peak(2L) - 2 peak(L)) / (4L^2 - 2L^2). The 4D mask and its float copies cost
    ~12 bytes per pair whatever the model (~6 MB for the default 704-token rows of SmolLM2); attention
    scores kept for the backward pass would cost 4 bytes x 8 heads x 4 layers = 128 bytes per pair,
    growing with the model (the quadratic path issue 12 feared; SDPA does not take it)."""
    one, two = _peak_bytes(4096), _peak_bytes(8192)
    per_pair = (two - 2 * one) / (8192**2 - 2 * 4096**2)
    assert per_pair < 32, f"{per_pair:.1f} bytes per (query, key) pair"
    assert two < 4 * 8 * 4 * 8192**2  # far below the kept scores of one row (8.6 GB)
