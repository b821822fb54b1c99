"""Running a model over examples: classifier logits, zero-shot embeddings, or greedy generation.

Each predictor turns examples into `Output`s, the per-example facts the record keeps. Chat models
see the prompt training rendered (`render_prompt`: the tokenizer's chat template, the contract's
system prompt, the generation prompt) and answer greedily with a KV cache, in left-padded batches
of similar length, stopping at the same stop tokens training taught; with a constraint
(`sftline.contract.constrain`) they answer only with one of the contract's labels or with JSON its
schema accepts.
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

from sftline.contract.constrain import AnswerConstraint, ConstrainedDecoding
from sftline.contract.render import render_prompt, stop_token_ids
from sftline.data.example import Example
from sftline.errors import ModelError
from sftline.evals.abstention import AbstentionRule, FeatureStats
from sftline.evals.abstention import score as abstention_score
from sftline.evals.metrics import softmax
from sftline.evals.scoring import Output
from sftline.models.classifier import SentenceClassifier, is_classifier_folder, load_abstention_tensors
from sftline.models.safety import SAFE_LOADING

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
    if is_classifier_folder(folder):
        return "classifier"
    architectures = json.loads(config_file.read_text()).get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "classifier"
    if any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in architectures):
        return "generate"
    return "embedding"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def _pad(
    sequences: Sequence[list[int]], pad: int, *, left: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded to the longest (on the right, or on the left for generation), and the
    attention mask."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        span = slice(width - len(sequence), width) if left else slice(0, len(sequence))
        ids[row, span] = torch.tensor(sequence)
        mask[row, span] = 1
    return ids, mask


def _batched(
    tokenizer: Any,
    texts: Sequence[str],
    forward: Callable[[torch.Tensor, torch.Tensor], np.ndarray],
    *,
    max_length: int,
    batch_tokens: int,
    progress: Progress | None,
) -> tuple[np.ndarray, list[int], list[float]]:
    """`forward(ids, mask)` over the texts in length-sorted, right-padded batches: its rows in the
    texts' order, the token count of each text and each text's share of its batch's time in ms."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    pad = tokenizer.pad_token_id or 0
    out: np.ndarray | None = None
    latency = [0.0] * len(texts)
    for batch in _length_batches([len(e) for e in encoded], batch_tokens, 512):
        started = time.perf_counter()
        with torch.inference_mode():
            rows = forward(*_pad([encoded[i] for i in batch], pad))
        if out is None:
            out = np.zeros((len(texts), rows.shape[1]), dtype=np.float32)
        out[batch] = rows
        share = (time.perf_counter() - started) * 1000 / len(batch)
        for i in batch:
            latency[i] = share
        if progress:
            progress(len(batch))
    assert out is not None
    return out, [len(e) for e in encoded], latency


def _label_outputs(
    examples: Sequence[Example],
    probs: np.ndarray,
    labels: Sequence[str],
    lengths: Sequence[int],
    latency: Sequence[float],
    *,
    abstain: np.ndarray | None = None,
    abstention: str | None = None,
) -> list[Output]:
    """A label answer per example: the most probable label, or the abstention label where
    `abstain` is true. The confidence of an abstention is the probability that the top label is
    wrong (1 - its probability; the abstention label's own when it is the top label): a threshold
    abstains on inputs whose probability is spread over in-scope labels, and the abstention
    label's own small probability would call every such answer wrong (ECE 13% where 8% without
    the rule, on CLINC150)."""
    outputs = []
    for i, example in enumerate(examples):
        ranked = _ranked(probs[i], labels)
        answer, confidence = ranked[0]
        if abstain is not None and abstain[i] and answer != abstention:
            answer, confidence = str(abstention), 1.0 - confidence
        outputs.append(
            Output(
                example_id=example.id,
                target=example.target,
                output=answer,
                tags=dict(example.tags),
                prompt=example.prompt,
                ranked=ranked,
                confidence=confidence,
                prompt_tokens=lengths[i],
                output_tokens=1,
                latency_ms=latency[i],
            )
        )
    return outputs


def _ranked(probs: np.ndarray, labels: Sequence[str]) -> list[tuple[str, float]]:
    top = np.argsort(-probs, kind="stable")[:RANKED]
    return [(labels[int(i)], float(probs[int(i)])) for i in top]


@dataclass
class ClassifierPredictor:
    """A sequence classifier: sftline's (`SentenceClassifier`, with the temperature and abstention
    rule its run chose on the holdout) or any `...ForSequenceClassification` (see `load`)."""

    model: Any
    tokenizer: Any
    max_length: int = 512
    batch_tokens: int = 8192
    temperature: float = 1.0
    abstain_below: float | None = None
    """Answer the abstention label when the top probability is below this (the paper's
    threshold); replaces a stored rule."""
    abstention: str | None = None
    rule: AbstentionRule | None = None
    """The run's abstention rule (sftline.evals.abstention)."""
    stats: FeatureStats | None = None
    """Class means and precision for the mahalanobis score."""

    @classmethod
    def load(cls, folder: Path, *, stored_abstention: bool = True, **settings: Any) -> ClassifierPredictor:
        """The classifier in `folder`. An sftline classifier brings its run's temperature and,
        unless `stored_abstention` is false or `abstain_below` is given, its abstention rule."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        if not is_classifier_folder(folder):
            model = AutoModelForSequenceClassification.from_pretrained(folder, **SAFE_LOADING)
            return cls(model.to(_device()), tokenizer, **settings)
        classifier = SentenceClassifier.from_pretrained(folder)
        stored: dict[str, Any] = {"temperature": float(classifier.extra.get("temperature", 1.0))}
        rule = classifier.extra.get("abstention")
        if rule and stored_abstention and settings.get("abstain_below") is None:
            stored["rule"] = AbstentionRule(**rule["rule"])
            tensors = load_abstention_tensors(folder)
            if "means" in tensors:
                stored["stats"] = FeatureStats(
                    tensors["means"].double().numpy(), tensors["precision"].double().numpy()
                )
            settings.setdefault("abstention", stored["rule"].label)
        return cls(classifier.to(_device()), tokenizer, **{**stored, **settings})

    def __post_init__(self) -> None:
        config = self.model.config
        labels = getattr(self.model, "labels", None)
        self.labels = list(labels) if labels else [config.id2label[i] for i in range(config.num_labels)]
        if (self.abstain_below is not None or self.rule is not None) and self.abstention not in self.labels:
            raise ModelError(
                f"abstaining needs the abstention label {self.abstention!r} among the model's labels"
            )

    def outputs(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> tuple[np.ndarray, np.ndarray | None, list[int], list[float]]:
        """Logits (n, labels), pooled features (n, hidden) of an sftline classifier (else None),
        token counts and per-example latency shares in ms."""
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        n_labels = len(self.labels)

        def forward(ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
            out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device))
            rows = out.logits.float()
            features = getattr(out, "features", None)
            if features is not None:
                rows = torch.cat([rows, features.float()], dim=1)
            return rows.cpu().numpy()  # type: ignore[no-any-return]

        try:
            rows, lengths, latency = _batched(
                self.tokenizer,
                texts,
                forward,
                max_length=self.max_length,
                batch_tokens=self.batch_tokens,
                progress=progress,
            )
        finally:
            self.model.train(was_training)
        features = rows[:, n_labels:] if rows.shape[1] > n_labels else None
        return rows[:, :n_labels], features, lengths, latency

    def logits(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> tuple[np.ndarray, list[int], list[float]]:
        """Logits (n, labels), token counts and per-example latency shares in ms."""
        logits, _, lengths, latency = self.outputs(texts, progress)
        return logits, lengths, latency

    def abstains(self, logits: np.ndarray, features: np.ndarray | None) -> np.ndarray | None:
        """Where the abstention label replaces the top label: below `abstain_below`, or by the rule."""
        if self.abstain_below is not None:
            return np.asarray(softmax(logits, self.temperature).max(axis=1) < self.abstain_below)
        if self.rule is None:
            return None
        abstain_id = self.labels.index(self.rule.label)
        in_scope = [i for i in range(len(self.labels)) if i != abstain_id]
        scores = abstention_score(
            self.rule.score,
            logits,
            features,
            temperature=self.temperature,
            in_scope=in_scope,
            stats=self.stats,
        )
        return self.rule.abstain(scores)

    def predict(self, examples: Sequence[Example], progress: Progress | None = None) -> list[Output]:
        logits, features, lengths, latency = self.outputs([e.prompt for e in examples], progress)
        return _label_outputs(
            examples,
            softmax(logits, self.temperature),
            self.labels,
            lengths,
            latency,
            abstain=self.abstains(logits, features),
            abstention=self.abstention,
        )


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
        self.model = AutoModel.from_pretrained(self.folder, **SAFE_LOADING).to(_device()).eval()

    def embed(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> tuple[np.ndarray, list[int], list[float]]:
        """Unit-length mean-pooled embeddings (n, hidden), token counts and latency shares in ms."""
        device = _device()

        def forward(ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
            hidden = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            m = mask.to(device).unsqueeze(-1).float()
            pooled = (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1)
            return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()  # type: ignore[no-any-return]

        return _batched(
            self.tokenizer,
            texts,
            forward,
            max_length=self.max_length,
            batch_tokens=self.batch_tokens,
            progress=progress,
        )

    def predict(self, examples: Sequence[Example], progress: Progress | None = None) -> list[Output]:
        label_vectors, _, _ = self.embed([label.replace("_", " ") for label in self.labels])
        vectors, lengths, latency = self.embed([e.prompt for e in examples], progress)
        probs = softmax(vectors @ label_vectors.T * ZERO_SHOT_SCALE)
        return _label_outputs(examples, probs, self.labels, lengths, latency)


class _GreedyLogProbs:
    """A logits processor that records, per step, the log-probability of the token greedy decoding
    picks (the arg-max), without keeping the full logits of every step.

    With a constraint (applied here, after the log-probabilities are taken), the pick is the arg-max
    over the allowed tokens, and what is recorded is still the unconstrained model's log-probability
    of that token: an answer's confidence is then the probability that the model itself gives the
    answer. Renormalised over the allowed tokens it would not be: a label forced out of a model that
    meant something else would read as certain (one allowed token has probability 1).

    In float64: a sequence's probability is the exp of their sum, which float32 holds only down to
    e^-87 (e^-104 with lost precision, then 0: 100 tokens at p = 0.35 each), float64 to e^-745."""

    def __init__(self, constrain: ConstrainedDecoding | None = None) -> None:
        self.steps: list[torch.Tensor] = []
        self.constrain = constrain

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(scores, dim=-1, dtype=torch.float64)
        if self.constrain is not None:
            scores = self.constrain(input_ids, scores)
        chosen = scores.argmax(dim=-1, keepdim=True)  # what greedy generate picks from these scores
        self.steps.append(logp.gather(-1, chosen).squeeze(-1))
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
    synced: bool = False
    """Every rank of a sharded (FSDP) model generates together, forward for forward, until all
    ranks' answers have ended (transformers' `synced_gpus`); a rank that stopped early would
    leave the others waiting in their parameter all-gathers."""
    constraint: AnswerConstraint | None = None
    """Answers only the contract allows (`answer_constraint`: one of its labels, or JSON valid
    against its schema); the confidence stays the unconstrained model's (see `_GreedyLogProbs`)."""

    @classmethod
    def load(cls, folder: Path, system_prompt: str | None, **settings: Any) -> GenerationPredictor:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, **SAFE_LOADING)
        model.to(_device())  # type: ignore[arg-type]
        return cls.around(model, tokenizer, folder, system_prompt, **settings)

    @classmethod
    def around(
        cls, model: Any, tokenizer: Any, folder: Path, system_prompt: str | None, **settings: Any
    ) -> GenerationPredictor:
        """A predictor for a model already in memory (one in training, say); `folder` holds the
        generation config whose eos ids, with the tokenizer's, end an answer."""
        from transformers import GenerationConfig

        try:
            generation_config = GenerationConfig.from_pretrained(folder, local_files_only=True)
        except OSError:
            generation_config = None
        stops = sorted(stop_token_ids(tokenizer, generation_config))
        return cls(model, tokenizer, system_prompt, stops, **settings)

    def __post_init__(self) -> None:
        pad = self.tokenizer.pad_token_id
        self.pad = int(pad if pad is not None else self.stops[0])

    def predict(self, examples: Sequence[Example], progress: Progress | None = None) -> list[Output]:

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
                    prompt=examples[i].prompt,
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

        ids, mask = _pad(prompts, self.pad, left=True)
        width = ids.shape[1]
        recorder = _GreedyLogProbs(
            ConstrainedDecoding(self.constraint, self.stops) if self.constraint is not None else None
        )
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
                synced_gpus=self.synced,
            )
        self.model.train(was_training)
        new = generated[:, width:].cpu()
        logp = (
            torch.stack(recorder.steps, dim=1).cpu()
            if recorder.steps
            else torch.zeros((len(prompts), 0), dtype=torch.float64)
        )
        stops = set(self.stops)
        texts, counts, finished, confidence = [], [], [], []
        for row in range(len(prompts)):
            tokens = new[row].tolist()
            end = next((j for j, t in enumerate(tokens) if t in stops), None)
            content = tokens if end is None else tokens[:end]
            scored = len(tokens) if end is None else end + 1  # the stop token's probability counts
            spelled = self.constraint.answer(content) if self.constraint is not None else None
            if spelled is None:
                spelled = self.tokenizer.decode(content, skip_special_tokens=True)
            texts.append(spelled)
            counts.append(len(content))
            finished.append(end is not None)
            confidence.append(float(torch.exp(logp[row, :scored].sum())))
        return texts, counts, finished, confidence
