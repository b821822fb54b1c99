"""Tiny random models with real tokenizers, for fast training tests."""

from __future__ import annotations

from pathlib import Path

import torch

# A ChatML-like template over BERT's special tokens: [CLS] opens a turn, [SEP] ends it (the eos).
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}[CLS]{{ m['role'] }}\n{{ m['content'] }}[SEP]\n{% endfor %}"
    "{% if add_generation_prompt %}[CLS]assistant\n{% endif %}"
)


def make_tiny_chat_model(folder: Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """A 2-layer Llama over the MiniLM WordPiece vocabulary, with a chat template; saved to `folder`."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sftline.models import EMBEDDED

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED["minilm-l6"].source_path())
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.eos_token = "[SEP]"
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
