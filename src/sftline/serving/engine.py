"""In-process engines for `sftline serve`: a chat model and a classifier, each behind a `Batcher`.

A served chat model sees exactly what training and evaluation showed it: the conversation rendered
with the model's own chat template, the contract's system prompt when the request has none, the
generation prompt (`render_prompt`, the same function evaluation uses), the same stop tokens, and
answers constrained to the contract's labels or JSON schema (`answer_constraint`) unless the request
brings its own schema. Greedy requests (temperature 0) answer what `sftline eval` measured.

Concurrent requests with the same sampling settings and constraint share one left-padded
`model.generate` call (with its KV cache). Two small hooks watch that call step by step, one per
batch: a logits processor that keeps the step's log-probabilities (for the answer's confidence)
and applies the constraint, and a stopping criterion that is handed each step's new token per
row. The criterion gives each row its own end (its stop strings, its `max_tokens`, a caller that
went away), streams the row's new text to its caller, and hands the row's answer over the moment
the row ends, so a short answer does not wait for the longest one in its batch. Batches do not
take new rows while they run (no continuous batching): a request arriving mid-batch waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from sftline.contract.constrain import (
    AnswerConstraint,
    ConstrainedDecoding,
    JsonSchemaConstraint,
    answer_constraint,
)
from sftline.contract.render import render_prompt
from sftline.contract.spec import Contract
from sftline.data.example import Example, Provenance
from sftline.errors import ModelError, SftlineError, TrainingError
from sftline.evals.predict import ClassifierPredictor, GenerationPredictor, _pad, method_of
from sftline.serving.batching import Batcher

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]
REQUEST = Provenance(source="request", source_sha256="0" * 64, format="chat")
"""The provenance of an example made from a request (rendering and the predictors take examples)."""
SCHEMA_CACHE = 64
"""Compiled request JSON schemas kept (compiling one takes tens of milliseconds)."""


class InvalidRequest(SftlineError):
    """A request the engine cannot answer as asked (an HTTP 400): bad sampling settings, messages
    the chat template cannot render, a JSON schema that does not compile, a prompt longer than
    the model's context."""


@dataclass(frozen=True)
class ChatParams:
    """How to answer one chat request."""

    max_tokens: int
    """At most this many answer tokens (capped by the contract's `limits.max_target_tokens`)."""
    temperature: float = 0.0
    """0 answers greedily, as evaluation does."""
    top_p: float = 1.0
    seed: int | None = None
    """Sample reproducibly: the request runs in a batch of its own, the random generator seeded."""
    stop: list[str] = field(default_factory=list)
    """Strings that end the answer (not included in it), besides the model's stop tokens."""
    json_schema: dict[str, Any] | None = None
    """Answer with JSON this schema accepts, instead of what the contract's output allows."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_tokens < 1:
            problems.append(f"max_tokens must be at least 1, got {self.max_tokens}")
        if not self.temperature >= 0:
            problems.append(f"temperature must be at least 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if any(not s for s in self.stop):
            problems.append("stop strings must not be empty")
        if problems:
            raise InvalidRequest("; ".join(problems))

    @property
    def sampling(self) -> Hashable:
        """What a batch must share to be one `generate` call."""
        return ("greedy",) if self.temperature == 0 else ("sample", self.temperature, self.top_p)


@dataclass(frozen=True)
class ChatAnswer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    """Answer tokens generated (without the stop token; with a stop string, up to the token that
    completed it)."""
    finish_reason: FinishReason
    confidence: float | None
    """The model's own probability of the answer, stop token included (unconstrained, at
    temperature 1: what evaluation's confidence is)."""
    ttft_s: float
    """From the request reaching the engine to its first answer token (queueing included)."""
    seconds: float
    """From the request reaching the engine to its answer."""


@dataclass(frozen=True)
class ClassifyAnswer:
    label: str
    probability: float
    """Of the label; for an abstention forced by the run's rule, 1 - the top label's probability."""
    abstained: bool
    top: list[tuple[str, float]]
    """The most probable labels (up to 5), with their probabilities."""


@dataclass(eq=False)
class _Request:
    """One chat request on its way through the batcher."""

    prompt: list[int]
    params: ChatParams
    max_new: int
    constraint: AnswerConstraint | None
    group: Hashable
    """The batching key: the sampling settings and the constraint (unique for a seeded request)."""
    send: Callable[[str | ChatAnswer], None]
    """Called from the worker thread with each new piece of text (when `deltas`) and the answer."""
    deltas: bool
    arrived: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    """Set when the caller went away: the row stops at its next step."""


class ChatEngine:
    """A causal LM answering chat requests in batches (see the module's docstring)."""

    kind = "chat"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        contract: Contract,
        stops: Sequence[int],
        *,
        max_batch: int = 16,
        window_ms: float = 5.0,
        max_queue: int = 256,
        batching: bool = True,
        constrain: bool = True,
        labels: Sequence[str] = (),
    ) -> None:
        """`stops`: the token ids that end an answer. `constrain` false serves the model's raw
        answers; `labels` is the label set of a contract that leaves it to the data (without it,
        such a contract's answers are not constrained: there is nothing to constrain them to)."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.contract = contract
        self.stops = sorted(stops)
        pad = tokenizer.pad_token_id
        self.pad = int(pad if pad is not None else self.stops[0])
        self.constraint = _contract_constraint(contract, tokenizer, self.stops, labels) if constrain else None
        self.context: int | None = getattr(model.config, "max_position_embeddings", None)
        self.cleans_spaces = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
        self._schemas: OrderedDict[str, JsonSchemaConstraint] = OrderedDict()
        self._schemas_lock = threading.Lock()
        self._seeded = itertools.count()
        self.batcher: Batcher[_Request, ChatAnswer] = Batcher(
            self._run,
            key=lambda request: request.group,
            max_batch=max_batch if batching else 1,
            window_ms=window_ms if batching else 0.0,
            max_queue=max_queue,
            name="sftline-chat",
        )

    @classmethod
    def load(cls, folder: Path, contract: Contract, **options: Any) -> ChatEngine:
        """The chat model in `folder`, loaded as evaluation loads it (safetensors only; the stop
        tokens of its tokenizer and generation config)."""
        predictor = GenerationPredictor.load(folder, contract.system_prompt)
        return cls(predictor.model, predictor.tokenizer, contract, predictor.stops, **options)

    def render(self, messages: list[dict[str, Any]]) -> list[int]:
        """The prompt's token ids: the messages as training rendered them, the contract's system
        prompt first when they have no system message, then the generation prompt."""
        # An empty assistant turn to answer: render_prompt renders what comes before it.
        example = Example("request", REQUEST, messages=[*messages, {"role": "assistant", "content": ""}])
        try:
            prompt, _ = render_prompt(self.tokenizer, example, system_prompt=self.contract.system_prompt)
        except TrainingError as exc:
            raise InvalidRequest(f"the messages cannot be rendered: {exc}") from exc
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    async def complete(
        self, messages: list[dict[str, Any]], params: ChatParams, *, deadline: float | None = None
    ) -> ChatAnswer:
        """The answer to `messages`. `deadline` (`time.monotonic()`) is when its batch must have
        started (else DeadlineExceeded); a full queue raises QueueFull."""
        async with contextlib.aclosing(self._answer(messages, params, deadline, deltas=False)) as items:
            async for item in items:
                if isinstance(item, ChatAnswer):
                    return item
        raise AssertionError("_answer ends with the answer or an error")

    def stream(
        self, messages: list[dict[str, Any]], params: ChatParams, *, deadline: float | None = None
    ) -> AsyncIterator[str | ChatAnswer]:
        """The answer's text in pieces as it is generated, then the `ChatAnswer` (whose text the
        pieces join to). Closing the iterator early (`aclose`) stops the answer's generation."""
        return self._answer(messages, params, deadline, deltas=True)

    async def _answer(
        self, messages: list[dict[str, Any]], params: ChatParams, deadline: float | None, *, deltas: bool
    ) -> AsyncGenerator[str | ChatAnswer, None]:
        loop = asyncio.get_running_loop()
        received: asyncio.Queue[str | ChatAnswer | None] = asyncio.Queue()

        def send(item: str | ChatAnswer) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop has closed
                loop.call_soon_threadsafe(received.put_nowait, item)

        request = await asyncio.to_thread(self._request, messages, params, send, deltas)
        submitted = asyncio.ensure_future(self.batcher.submit(request, deadline=deadline))
        submitted.add_done_callback(lambda _: received.put_nowait(None))
        try:
            while (item := await received.get()) is not None:
                yield item
                if isinstance(item, ChatAnswer):
                    return
            yield submitted.result()  # raises the batch's error (or the batcher's refusal)
        finally:
            if not submitted.done():
                request.cancelled = True
                submitted.cancel()

    def _request(
        self,
        messages: list[dict[str, Any]],
        params: ChatParams,
        send: Callable[[str | ChatAnswer], None],
        deltas: bool,
    ) -> _Request:
        """The request, rendered and with its constraint compiled (off the event loop: both take
        CPU time)."""
        prompt = self.render(messages)
        max_new = min(params.max_tokens, self.contract.limits.max_target_tokens)
        if self.context is not None:
            if len(prompt) >= self.context:
                raise InvalidRequest(
                    f"the prompt has {len(prompt)} tokens; the model's context is {self.context}"
                )
            max_new = min(max_new, self.context - len(prompt))
        constraint, constraint_key = self._constraint_for(params)
        group = ("seed", next(self._seeded)) if params.seed is not None else (params.sampling, constraint_key)
        return _Request(prompt, params, max_new, constraint, group, send, deltas)

    def _constraint_for(self, params: ChatParams) -> tuple[AnswerConstraint | None, Hashable]:
        """The request's own JSON schema compiled (cached by its canonical JSON), else the contract's."""
        if params.json_schema is None:
            return self.constraint, "contract"
        key = json.dumps(params.json_schema, sort_keys=True)
        with self._schemas_lock:
            if key in self._schemas:
                self._schemas.move_to_end(key)
                return self._schemas[key], ("schema", key)
        try:
            Draft202012Validator.check_schema(params.json_schema)
            compiled = JsonSchemaConstraint(self.tokenizer, params.json_schema)
        except SchemaError as exc:
            raise InvalidRequest(f"json_schema is not a valid JSON schema: {exc.message}") from None
        except ModelError as exc:
            reason = str(exc).split("; evaluate without it")[0]  # the eval flag means nothing here
            raise InvalidRequest(f"json_schema cannot constrain this model's answers: {reason}") from None
        with self._schemas_lock:
            self._schemas[key] = compiled
            while len(self._schemas) > SCHEMA_CACHE:
                self._schemas.popitem(last=False)
        return compiled, ("schema", key)

    def _run(self, requests: list[_Request]) -> list[ChatAnswer]:
        """One `generate` call for the batch (in the batcher's worker thread)."""
        from transformers import LogitsProcessorList, StoppingCriteriaList

        first = requests[0]
        device = next(self.model.parameters()).device
        decoding = _BatchDecoding(requests, self.stops, self.tokenizer, self.cleans_spaces)
        ids, mask = _pad([r.prompt for r in requests], self.pad, left=True)
        sampling: dict[str, Any] = (
            {"do_sample": False, "temperature": None, "top_p": None}
            if first.params.temperature == 0
            else {"do_sample": True, "temperature": first.params.temperature, "top_p": first.params.top_p}
        )
        with _seeded(first.params.seed, device), torch.inference_mode():
            self.model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max(r.max_new for r in requests),
                top_k=None,
                eos_token_id=self.stops,
                pad_token_id=self.pad,
                logits_processor=LogitsProcessorList([_StepScores(decoding)]),
                stopping_criteria=StoppingCriteriaList([_StepTokens(decoding)]),
                **sampling,
            )
        return decoding.finish()

    async def close(self) -> None:
        """Stop taking requests, drop those still waiting, finish the running batch."""
        await self.batcher.close()


def _contract_constraint(
    contract: Contract, tokenizer: Any, stops: Sequence[int], labels: Sequence[str]
) -> AnswerConstraint | None:
    if contract.output.kind == "labels" and not contract.output.labels and not labels:
        log.warning(
            "the contract leaves its labels to the data and none were given: answers are not constrained"
        )
        return None
    examples = [Example(f"label:{label}", REQUEST, text="?", label=label) for label in labels]
    return answer_constraint(contract, tokenizer, stops, examples)


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """With a seed: torch's generators seeded for the block and restored after it (other requests'
    sampling goes on from where it was)."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class _Row:
    """One request's answer as its batch generates it."""

    def __init__(self, request: _Request, spell: Callable[[list[int]], str], cleans_spaces: bool) -> None:
        self.request = request
        self.spell = spell
        self.tokens: list[int] = []
        self.logps: list[float] = []
        self.first_at: float | None = None
        self.ended_at_step: int | None = None
        self.emitted = ""
        # A label is spelled exactly only once complete (its partial tokens decode otherwise).
        constraint = request.constraint
        self.holds_all = constraint is not None and constraint.kind == "labels"
        self.cleans_spaces = cleans_spaces
        self.answer: ChatAnswer | None = None

    @property
    def done(self) -> bool:
        return self.ended_at_step is not None

    def ended_before(self, step: int) -> bool:
        return self.ended_at_step is not None and self.ended_at_step < step

    def take(self, token: int, logp: float, step: int, stops: set[int]) -> None:
        """The token the row chose at `step` (1-based), with the model's log-probability of it."""
        if self.done:
            return
        self.first_at = self.first_at or time.monotonic()
        self.logps.append(logp)
        if token in stops:
            self.end(step, "stop")
            return
        self.tokens.append(token)
        if self.request.cancelled:
            self.end(step, "stop")  # nobody reads this answer
            return
        stop_strings, sends = self.request.params.stop, self.request.deltas
        text = self.spell(self.tokens) if stop_strings or sends else ""
        if stop_strings and _first_stop(text, stop_strings) is not None:
            self.end(step, "stop")
        elif len(self.tokens) >= self.request.max_new:
            self.end(step, "length")
        elif sends:
            self._send_text(self._safe_prefix(text))

    def end(self, step: int, reason: FinishReason) -> None:
        """End the row at `step`: its answer, sent to its caller now."""
        self.ended_at_step = step
        text = self.spell(self.tokens)
        cut = _first_stop(text, self.request.params.stop)
        if cut is not None:
            text, reason = text[:cut], "stop"
        now = time.monotonic()
        arrived = self.request.arrived
        self.answer = ChatAnswer(
            text=text,
            prompt_tokens=len(self.request.prompt),
            completion_tokens=len(self.tokens),
            finish_reason=reason,
            confidence=math.exp(math.fsum(self.logps)) if self.logps else None,
            ttft_s=(self.first_at or now) - arrived,
            seconds=now - arrived,
        )
        if self.request.deltas:
            if text.startswith(self.emitted):
                self._send_text(text)
            else:  # a decoder that rewrote text already sent (should be held back by _safe_prefix)
                log.warning("streamed text %r is not a prefix of the answer %r", self.emitted, text)
        self.request.send(self.answer)

    def _safe_prefix(self, text: str) -> str:
        """The part of the text so far that later tokens cannot change: without an incomplete
        character at the end, a start of a stop string, or (for a decoder that cleans up spaces
        before punctuation) the last word."""
        if self.holds_all:
            return ""
        text = text.rstrip("\ufffd")  # the first bytes of a character split over tokens
        for stop in self.request.params.stop:
            for length in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:length]):
                    text = text[:-length]
                    break
        if self.cleans_spaces:
            last_space = max((m.start() for m in re.finditer(r"\s", text)), default=0)
            text = text[:last_space]
        return text

    def _send_text(self, text: str) -> None:
        if len(text) > len(self.emitted) and text.startswith(self.emitted):
            self.request.send(text[len(self.emitted) :])
            self.emitted = text


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the first stop string in `text` starts, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


class _BatchDecoding:
    """The per-step state of one batch's `generate` call, shared by its two hooks."""

    def __init__(
        self, requests: Sequence[_Request], stops: Sequence[int], tokenizer: Any, cleans_spaces: bool
    ) -> None:
        constraint = requests[0].constraint  # the same for the whole batch (it is in the key)

        def spell(tokens: list[int]) -> str:
            spelled = constraint.answer(tokens) if constraint is not None else None
            return spelled if spelled is not None else str(tokenizer.decode(tokens, skip_special_tokens=True))

        self.rows = [_Row(r, spell, cleans_spaces) for r in requests]
        self.stops = set(stops)
        self.stop_id = min(stops)
        self.constrain = ConstrainedDecoding(constraint, stops) if constraint is not None else None
        self.logp: torch.Tensor | None = None
        self.steps = 0

    def scores(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Keep the model's log-probabilities, then apply the constraint (before sampling's
        temperature and top-p, which `generate` applies after the processors it is given)."""
        self.logp = torch.log_softmax(scores, dim=-1, dtype=torch.float64)
        if self.constrain is None:
            return scores
        return self.constrain(self._as_constraint_sees(input_ids), scores)

    def _as_constraint_sees(self, input_ids: torch.Tensor) -> torch.Tensor:
        """A row this engine ended (a stop string, its own max_tokens) is padded from the step after
        its last token; to the constraint it reads as a stop token, which it treats as the end."""
        ended = [i for i, row in enumerate(self.rows) if row.ended_before(self.steps)]
        if not ended:
            return input_ids
        seen = input_ids.clone()
        seen[ended, -1] = self.stop_id
        return seen

    def tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Hand each row the token it just chose; true for the rows that have ended."""
        assert self.logp is not None, "the logits processor runs before the stopping criterion"
        self.steps += 1
        chosen = input_ids[:, -1]
        logps = self.logp.gather(1, chosen[:, None].to(self.logp.device)).squeeze(1).tolist()
        for row, token, logp in zip(self.rows, chosen.tolist(), logps, strict=True):
            row.take(token, logp, self.steps, self.stops)
        return torch.tensor([row.done for row in self.rows], device=input_ids.device)

    def finish(self) -> list[ChatAnswer]:
        """Every row's answer (a row `generate` left unfinished ends by length)."""
        for row in self.rows:
            if not row.done:
                row.end(self.steps, "length")
        return [row.answer for row in self.rows if row.answer is not None]


class _StepScores:
    """`generate`'s logits processor: see `_BatchDecoding.scores`."""

    def __init__(self, decoding: _BatchDecoding) -> None:
        self.decoding = decoding

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.decoding.scores(input_ids, scores)


class _StepTokens:
    """`generate`'s stopping criterion: see `_BatchDecoding.tokens`."""

    def __init__(self, decoding: _BatchDecoding) -> None:
        self.decoding = decoding

    def __call__(self, input_ids: torch.Tensor, scores: Any, **_: Any) -> torch.Tensor:
        return self.decoding.tokens(input_ids)


class ClassifierEngine:
    """A classifier answering batches of texts, with its run's temperature and abstention rule
    (through `ClassifierPredictor`, exactly as evaluation classifies)."""

    kind = "classify"

    def __init__(
        self,
        predictor: ClassifierPredictor,
        *,
        max_batch: int = 16,
        window_ms: float = 5.0,
        max_queue: int = 256,
        batching: bool = True,
    ) -> None:
        """A batch holds up to `max_batch` requests (each with its texts)."""
        self.predictor = predictor
        self.tokenizer = predictor.tokenizer
        self.batcher: Batcher[tuple[str, ...], list[ClassifyAnswer]] = Batcher(
            self._run,
            max_batch=max_batch if batching else 1,
            window_ms=window_ms if batching else 0.0,
            max_queue=max_queue,
            name="sftline-classify",
        )

    @classmethod
    def load(cls, folder: Path, contract: Contract, **options: Any) -> ClassifierEngine:
        """The classifier in `folder`, loaded as evaluation loads it; abstentions answer the
        contract's abstention label."""
        settings: dict[str, Any] = {"max_length": contract.limits.max_length}
        if contract.abstention:
            settings["abstention"] = contract.abstention
        return cls(ClassifierPredictor.load(folder, **settings), **options)

    async def classify(self, texts: list[str], *, deadline: float | None = None) -> list[ClassifyAnswer]:
        """A label per text (in one batch with other requests'; see `Batcher.submit`)."""
        if not texts:
            return []
        return await self.batcher.submit(tuple(texts), deadline=deadline)

    def _run(self, requests: list[tuple[str, ...]]) -> list[list[ClassifyAnswer]]:
        texts = [text for request in requests for text in request]
        examples = [Example(f"request:{i}", REQUEST, text=text) for i, text in enumerate(texts)]
        abstention = self.predictor.abstention
        answers = [
            ClassifyAnswer(
                label=o.output,
                probability=float(o.confidence if o.confidence is not None else 0.0),
                abstained=abstention is not None and o.output == abstention,
                top=list(o.ranked or []),
            )
            for o in self.predictor.predict(examples)
        ]
        split, start = [], 0
        for request in requests:
            split.append(answers[start : start + len(request)])
            start += len(request)
        return split

    async def close(self) -> None:
        """Stop taking requests, drop those still waiting, finish the running batch."""
        await self.batcher.close()


def load_engine(folder: Path, contract: Contract, **options: Any) -> ChatEngine | ClassifierEngine:
    """The engine for the model in `folder`: a classifier's or a chat model's (by its config, as
    evaluation chooses)."""
    method = method_of(folder)
    if method == "classifier":
        return ClassifierEngine.load(folder, contract, **options)
    if method == "generate":
        return ChatEngine.load(folder, contract, **options)
    raise ModelError(
        f"{folder} holds a sentence encoder without a classification head, which `sftline serve` "
        "cannot answer with; serve a trained classifier or a chat model (`sftline train`)"
    )
