"""Tiny random models with real tokenizers, for fast training tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

# A ChatML-like template over BERT's special tokens: [CLS] opens a turn, [SEP] ends it (the eos).
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}[CLS]{{ m['role'] }}\n{{ m['content'] }}[SEP]\n{% endfor %}"
    "{% if add_generation_prompt %}[CLS]assistant\n{% endif %}"
)


def make_tiny_chat_model(folder: Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """A 2-layer Llama over the MiniLM WordPiece vocabulary, with a chat template; saved to `folder`."""
    from transformers import AutoTokenizer

    from sftline.models import EMBEDDED

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED["minilm-l6"].source_path())
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.eos_token = "[SEP]"
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)
    model = tiny_causal_lm(tokenizer, hidden=hidden, seed=seed, bos_token_id=tokenizer.cls_token_id)
    model.save_pretrained(folder)
    return folder


# ChatML (SmolLM2's template, without its default system prompt): <|im_end|> ends a turn (the eos).
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tiny_bpe_tokenizer(corpus: Iterable[str], *, vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer (the kind of GPT-2 and SmolLM2, which llguidance reads) trained on
    `corpus`, with the ChatML template; `<pad>` pads. Deterministic, and in memory (~0.1 s)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<pad>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_causal_lm(
    tokenizer: Any, *, hidden: int = 32, seed: int = 0, bos_token_id: int | None = None
) -> Any:
    """A 2-layer random Llama over `tokenizer`'s vocabulary, in memory (bos: the tokenizer's)."""
    from transformers import LlamaConfig, LlamaForCausalLM

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
        bos_token_id=tokenizer.bos_token_id if bos_token_id is None else bos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def make_tiny_classifier(folder: Path, labels: list[str], *, seed: int = 0) -> Any:
    """A SentenceClassifier over a random 2-layer BERT with the MiniLM vocabulary, its head spread
    so probabilities differ; saved with its tokenizer to `folder` and returned."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from sftline.models import EMBEDDED
    from sftline.models.classifier import SentenceClassifier

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED["minilm-l6"].source_path())
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    torch.manual_seed(seed)
    classifier = SentenceClassifier(BertModel(config, add_pooling_layer=False), labels)
    torch.nn.init.normal_(classifier.head.weight, std=2.0)
    classifier.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return classifier
