"""Running a model over examples: classifier logits, zero-shot embeddings, or greedy generation.

Each predictor turns examples into `Output`s, the per-example facts the record keeps. Chat models
see the prompt training rendered (`render_prompt`: the tokenizer's chat template, the contract's
system prompt, the generation prompt) and answer greedily with a KV cache, in left-padded batches
of similar length, stopping at the same stop tokens training taught.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from sftline.data.example import Example
from sftline.errors import ModelError
from sftline.evals.metrics import softmax
from sftline.evals.scoring import Output

Method = Literal["classifier", "embedding", "generate"]
Progress = Callable[[int], None]
"""Called with the number of examples just finished."""

RANKED = 5
"""Labels kept per example for a classifier (top-k accuracy up to this k)."""
ZERO_SHOT_SCALE = 20.0
"""Cosine similarities are multiplied by this before the softmax (a temperature of 0.05)."""


class Predictor(Protocol):
    def predict(self, examples: Sequence[Example], progress: Progress | None = None) -> list[Output]: ...


def method_of(folder: Path) -> Method:
    """How to evaluate the model in `folder`, from its config's architecture."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{folder}: no config.json; not a Hugging Face model folder")
    architectures = json.loads(config_file.read_text()).get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "classifier"
    if any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in architectures):
        return "generate"
    return "embedding"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _text_of(example: Example) -> str:
    return example.text if example.messages is None else example.prompt  # type: ignore[return-value]


def _target_of(example: Example) -> str:
    return str(example.label) if example.messages is None else example.target


def _length_batches(
    lengths: Sequence[int], batch_tokens: int, max_batch: int, extra: int = 0
) -> list[list[int]]:
    """Indices sorted by length, cut so each batch's padded size (plus `extra` generated tokens per
    row) stays within `batch_tokens` and it has at most `max_batch` rows."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (
            (lengths[i] + extra) * (len(current) + 1) > batch_tokens or len(current) >= max_batch
        ):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _pad_right(sequences: Sequence[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded on the right to the longest, and the attention mask."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    return ids, mask


def _ranked(probs: np.ndarray, labels: Sequence[str]) -> list[tuple[str, float]]:
    top = np.argsort(-probs, kind="stable")[:RANKED]
    return [(labels[int(i)], float(probs[int(i)])) for i in top]


@dataclass
class ClassifierPredictor:
    """A sequence classifier: a fine-tuned `...ForSequenceClassification` (see `load`)."""

    model: Any
    tokenizer: Any
    max_length: int = 512
    batch_tokens: int = 8192
    temperature: float = 1.0
    abstain_below: float | None = None
    """Answer the abstention label when the top probability is below this (the paper's threshold)."""
    abstention: str | None = None

    @classmethod
    def load(cls, folder: Path, **settings: Any) -> ClassifierPredictor:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
        return cls(model.to(_device()), tokenizer, **settings)

    def __post_init__(self) -> None:
        config = self.model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        if self.abstain_below is not None and self.abstention not in self.labels:
            raise ModelError(
                f"abstain_below needs the abstention label {self.abstention!r} among the model's labels"
            )

    def logits(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> tuple[np.ndarray, list[int], list[float]]:
        """Logits (n, labels), token counts and per-example latency shares in ms."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        latency = [0.0] * len(texts)
        pad = self.tokenizer.pad_token_id or 0
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        for batch in _length_batches([len(e) for e in encoded], self.batch_tokens, 512):
            started = time.perf_counter()
            ids, mask = _pad_right([encoded[i] for i in batch], pad)
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            out[batch] = logits.float().cpu().numpy()
            share = (time.perf_counter() - started) * 1000 / len(batch)
            for i in batch:
                latency[i] = share
            if progress:
                progress(len(batch))
        self.model.train(was_training)
        return out, [len(e) for e in encoded], latency

    def predict(self, examples: Sequence[Example], progress: Progress | None = None) -> list[Output]:
        logits, lengths, latency = self.logits([_text_of(e) for e in examples], progress)
        probs = softmax(logits, self.temperature)
        outputs = []
        for i, example in enumerate(examples):
            ranked = _ranked(probs[i], self.labels)
            answer, confidence = ranked[0]
            if self.abstain_below is not None and confidence < self.abstain_below:
                # The answer is now the abstention label: its confidence is the model's own
                # probability of that label, not the top label's.
                answer = str(self.abstention)
                confidence = float(probs[i, self.labels.index(answer)])
            outputs.append(
                Output(
                    example_id=example.id,
                    target=_target_of(example),
                    output=answer,
                    tags=dict(example.tags),
                    prompt=_text_of(example),
                    ranked=ranked,
                    confidence=confidence,
                    prompt_tokens=lengths[i],
                    output_tokens=1,
                    finished=True,
                    latency_ms=latency[i],
                )
            )
        return outputs


@dataclass
class EmbeddingPredictor:
    """Zero-shot classification with a sentence encoder (MiniLM before fine-tuning): the label whose
    name (underscores read as spaces) is nearest the text by cosine similarity of mean-pooled
    embeddings."""

    folder: Path
    labels: Sequence[str]
    max_length: int = 256
    batch_tokens: int = 8192

    def __post_init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.folder, local_files_only=True).to(_device()).eval()

    def embed(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> tuple[np.ndarray, list[int], list[float]]:
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        out: np.ndarray | None = None
        latency = [0.0] * len(texts)
        device = _device()
        pad = self.tokenizer.pad_token_id or 0
        for batch in _length_batches([len(e) for e in encoded], self.batch_tokens, 512):
            started = time.perf_counter()
            ids, mask = _pad_right([encoded[i] for i in batch], pad)
            with torch.inference_mode():
                hidden = self.model(
                    input_ids=ids.to(device), attention_mask=mask.to(device)
                ).last_hidden_state
                m = mask.to(device).unsqueeze(-1).float()
                pooled = (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1)
                pooled = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
            if out is None:
                out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[batch] = pooled
            share = (time.perf_counter() - started) * 1000 / len(batch)
            for i in batch:
                latency[i] = share
            if progress:
                progress(len(batch))
        assert out is not None
        return out, [len(e) for e in encoded], latency

    def predict(self, examples: Sequence[Example], progress: Progress | None = None) -> list[Output]:
        label_vectors, _, _ = self.embed([label.replace("_", " ") for label in self.labels])
        vectors, lengths, latency = self.embed([_text_of(e) for e in examples], progress)
        probs = softmax(vectors @ label_vectors.T * ZERO_SHOT_SCALE)
        outputs = []
        for i, example in enumerate(examples):
            ranked = _ranked(probs[i], self.labels)
            outputs.append(
                Output(
                    example_id=example.id,
                    target=_target_of(example),
                    output=ranked[0][0],
                    tags=dict(example.tags),
                    prompt=_text_of(example),
                    ranked=ranked,
                    confidence=ranked[0][1],
                    prompt_tokens=lengths[i],
                    output_tokens=1,
                    latency_ms=latency[i],
                )
            )
        return outputs


class _GreedyLogProbs:
    """A logits processor that records, per step, the log-probability of the token greedy decoding
    picks (the arg-max), without keeping the full logits of every step."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.steps.append(torch.log_softmax(scores.float(), dim=-1).max(dim=-1).values)
        return scores


@dataclass
class GenerationPredictor:
    """A causal LM answering greedily in its own chat template (see `load`)."""

    model: Any
    tokenizer: Any
    system_prompt: str | None
    stops: list[int]
    """Token ids that end an answer (the tokenizer's eos and the generation config's)."""
    max_new_tokens: int = 64
    batch_size: int = 32
    batch_tokens: int = 16384

    @classmethod
    def load(cls, folder: Path, system_prompt: str | None, **settings: Any) -> GenerationPredictor:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        from sftline.train.render import stop_token_ids

        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        model.to(_device())  # type: ignore[arg-type]
        try:
            generation_config = GenerationConfig.from_pretrained(folder, local_files_only=True)
        except OSError:
            generation_config = None
        stops = sorted(stop_token_ids(tokenizer, generation_config))
        return cls(model, tokenizer, system_prompt, stops, **settings)

    def __post_init__(self) -> None:
        self.tokenizer.padding_side = "left"
        pad = self.tokenizer.pad_token_id
        self.pad = int(pad if pad is not None else self.stops[0])

    def predict(self, examples: Sequence[Example], progress: Progress | None = None) -> list[Output]:
        from sftline.train.render import render_prompt

        pairs = [render_prompt(self.tokenizer, e, system_prompt=self.system_prompt) for e in examples]
        encoded = self.tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
        outputs: list[Output | None] = [None] * len(examples)
        lengths = [len(e) for e in encoded]
        for batch in _length_batches(lengths, self.batch_tokens, self.batch_size, self.max_new_tokens):
            started = time.perf_counter()
            texts, counts, finished, confidence = self._generate([encoded[i] for i in batch])
            share = (time.perf_counter() - started) * 1000 / len(batch)
            for row, i in enumerate(batch):
                outputs[i] = Output(
                    example_id=examples[i].id,
                    target=pairs[i][1],
                    output=texts[row],
                    tags=dict(examples[i].tags),
                    prompt=_text_of(examples[i]),
                    confidence=confidence[row],
                    prompt_tokens=len(encoded[i]),
                    output_tokens=counts[row],
                    finished=finished[row],
                    latency_ms=share,
                )
            if progress:
                progress(len(batch))
        return [o for o in outputs if o is not None]

    def _generate(self, prompts: Sequence[list[int]]) -> tuple[list[str], list[int], list[bool], list[float]]:
        from transformers import LogitsProcessorList

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        recorder = _GreedyLogProbs()
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=self.stops,
                pad_token_id=self.pad,
                logits_processor=LogitsProcessorList([recorder]),
            )
        self.model.train(was_training)
        new = generated[:, width:].cpu()
        logp = torch.stack(recorder.steps, dim=1).cpu() if recorder.steps else torch.zeros((len(prompts), 0))
        stops = set(self.stops)
        texts, counts, finished, confidence = [], [], [], []
        for row in range(len(prompts)):
            tokens = new[row].tolist()
            end = next((j for j, t in enumerate(tokens) if t in stops), None)
            content = tokens if end is None else tokens[:end]
            scored = len(tokens) if end is None else end + 1  # the stop token's probability counts
            texts.append(self.tokenizer.decode(content, skip_special_tokens=True))
            counts.append(len(content))
            finished.append(end is not None)
            confidence.append(float(torch.exp(logp[row, :scored].sum())))
        return texts, counts, finished, confidence


def zero_shot_labels(
    examples: Sequence[Example], contract_labels: Sequence[str] | None, abstention: str | None
) -> list[str]:
    """The label set a zero-shot classifier chooses from: the contract's, else the examples'."""
    from sftline.train.tasks import label_set

    return label_set(examples, contract_labels, abstention)
