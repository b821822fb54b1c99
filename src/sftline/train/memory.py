"""How many tokens a micro-batch holds by default: as many as an activation budget allows.

A training step's memory is the model (weights, gradients, optimizer state) plus the activations
autograd saves for the backward pass, and on CPU the activations dominate: SmolLM2-135M saves
about 2 MB per token with LoRA in float32, so the old default micro-batch of 8,192 tokens peaked
near 19 GB (issue 12). Attention is not the cause: torch's SDPA kernel keeps its memory linear in
the row length with or without sftline's 4D masks (tests/unit/train/test_memory.py measures it).

The estimate is a function of the model's shape, the method and the dtype only, never of the
machine, so the resolved micro-batch and accumulation, and with them the steps and the losses, are
the same on every machine. Saved activations per layer and token, in floats, measured with
`torch.autograd.graph.saved_tensors_hooks` on Llama decoders (SmolLM2-135M and 2-layer models of
other widths, LoRA r=16 on every linear layer, float32):

    full fine-tuning  ~10 x hidden + 4 x intermediate
    LoRA              ~15.5 x hidden + 5 x intermediate   (each adapted layer's dropout keeps a copy
                                                           of its input)

BERT encoders (the classifier) measured within these. The estimate takes the LoRA line for both
methods (a full fine-tune gets micro-batches a quarter smaller than it could), adds the embedding
output, and the LM head's logits at trained positions, assumed to be a quarter of the tokens.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sftline.train.config import TrainConfig

FLOATS_PER_HIDDEN = 16  # saved floats per layer and token, per unit of hidden size
FLOATS_PER_INTERMEDIATE = 5  # ... per unit of the MLP's intermediate size
HEAD_FLOATS_PER_VOCAB = 3  # logits, their softmax and its gradient, per trained token
TRAINED_SHARE = 0.25  # share of tokens that are trained (the LM head runs only there)
ROUND_TO = 64  # micro-batch sizes are multiples of this many tokens
MIN_MICRO_TOKENS = 64
MIB = 1 << 20


@dataclass(frozen=True)
class Batching:
    """The resolved tokens per micro-batch, accumulation and row length, and why."""

    micro_tokens: int
    grad_accum: int
    row_tokens: int
    step_tokens: int
    """micro_tokens x grad_accum: tokens of examples per optimizer step on one process."""
    bytes_per_token: int | None
    """The activation estimate behind an automatic micro-batch (None when it was set)."""
    reason: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _dtype_bytes(config: TrainConfig) -> int:
    return 2 if config.dtype == "bfloat16" else 4


def activation_bytes_per_token(model_config: Any, config: TrainConfig) -> int:
    """Estimated bytes autograd saves per token of a micro-batch (see the module docstring)."""
    text = getattr(model_config, "text_config", None) or model_config  # multimodal configs nest it
    hidden = int(text.hidden_size)
    intermediate = int(getattr(text, "intermediate_size", None) or 4 * hidden)
    layers = int(text.num_hidden_layers)
    per_layer = FLOATS_PER_HIDDEN * hidden + FLOATS_PER_INTERMEDIATE * intermediate
    vocab = int(getattr(text, "vocab_size", 0) or 0)
    floats = layers * per_layer + 4 * hidden + TRAINED_SHARE * HEAD_FLOATS_PER_VOCAB * vocab
    return math.ceil(floats * _dtype_bytes(config))


def resolve_batching(config: TrainConfig, model_config: Any | None) -> Batching:
    """Tokens per micro-batch and accumulation for `config`: as set, else the largest micro-batch
    whose estimated activations fit `activation_memory_mb`, with accumulation filling
    `step_tokens` per optimizer step."""
    if config.batch_tokens is not None or model_config is None:
        # As set; or with no model shape to estimate from, a whole step in one micro-batch.
        micro, accum = config.micro_tokens, config.accumulation
        reason = "batch_tokens as set" if config.batch_tokens else "no model shape to estimate from"
        return Batching(micro, accum, min(config.row_tokens, micro), micro * accum, None, reason)
    per_token = activation_bytes_per_token(model_config, config)
    fits = config.activation_memory_mb * MIB // per_token
    micro = max(MIN_MICRO_TOKENS, min(config.step_tokens, fits // ROUND_TO * ROUND_TO))
    accum = config.grad_accum or max(1, math.ceil(config.step_tokens / micro))
    reason = (
        f"activations ~{per_token / 1024:,.0f} KiB per token (estimated from the model's shape, "
        f"{config.dtype}) within activation_memory_mb {config.activation_memory_mb:,}"
    )
    return Batching(micro, accum, min(config.row_tokens, micro), micro * accum, per_token, reason)


def resolved(config: TrainConfig, batching: Batching) -> TrainConfig:
    """`config` with the resolved micro-batch, accumulation and row length filled in."""
    return config.model_copy(
        update={
            "batch_tokens": batching.micro_tokens,
            "grad_accum": batching.grad_accum,
            "row_tokens": batching.row_tokens,
        }
    )


def startup_line(batching: Batching, world_size: int = 1) -> str:
    """What training says it chose before the first step."""
    processes = f" x {world_size} processes" if world_size > 1 else ""
    return (
        f"micro-batches of {batching.micro_tokens:,} tokens x {batching.grad_accum} accumulation{processes}"
        f" = {batching.step_tokens * world_size:,} tokens per optimizer step; rows of <= "
        f"{batching.row_tokens:,} tokens ({batching.reason})"
    )
