"""Constrained answers: greedy generation that can only give what the contract's output allows.

Two constraints, one per kind of output:

- `LabelConstraint`, a trie over the token ids of every label as training renders it (the chat
  template's assistant turn: the label's tokens in context, then the end of the turn), so an answer
  is exactly one label, then a stop token.
- `JsonSchemaConstraint`, the schema compiled to a grammar by llguidance, which reads the tokenizer's
  own tokenizer.json (byte-level BPE and SentencePiece byte fallback), so an answer is JSON that
  the schema accepts, then a stop token.

`ConstrainedDecoding` applies either to batched, left-padded `model.generate` as a logits
processor: each row keeps its own state, advanced by the token the row chose on the step before;
the tokens the state does not allow get -inf, so greedy decoding picks the most probable allowed
token, and once an answer is complete the stop tokens are allowed (only they, when nothing may
follow). A row is left alone once it has stopped (generate pads it from then on).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import llguidance
import numpy as np
import torch

from sftline.contract.render import IGNORE_INDEX, render_chat
from sftline.contract.spec import Contract
from sftline.data.example import Example, Provenance
from sftline.errors import ModelError

JSON_WHITESPACE = "[ ]?"
"""Whitespace the JSON constraint allows between tokens: one optional space, so both
`{"a": 1, "b": 2}` (json.dumps) and `{"a":1,"b":2}` pass, and a weak model cannot spend its whole
token budget on whitespace."""


class AnswerState(Protocol):
    """One answer's progress through a constraint."""

    @property
    def complete(self) -> bool:
        """The tokens so far are a whole answer: a stop token may come next."""
        ...

    def allow(self, mask: torch.Tensor) -> None:
        """Set `mask` (a bool row over the vocabulary) true at every token that may continue the answer."""
        ...

    def advance(self, token: int) -> None:
        """Take the (non-stop) token the answer chose."""
        ...


class AnswerConstraint(Protocol):
    """What an answer may be."""

    kind: str
    """`labels` or `json_schema`: what evaluation records as its constraint."""

    def start(self) -> AnswerState:
        """A fresh state for one answer."""
        ...

    def answer(self, tokens: Sequence[int]) -> str | None:
        """The text the answer's tokens (without the stop token) spell, when the constraint knows it
        exactly (a label's own spelling, which a lossy decoder such as WordPiece's does not give
        back: `card_lost` decodes as `card _ lost`); None to decode them with the tokenizer."""
        ...


@dataclass(eq=False)
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    label: str | None = None
    """The label whose tokens end here (an answer may stop here)."""
    allowed: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    """The children's token ids, for the mask."""


class LabelConstraint:
    """Answers that are exactly one of a set of labels: a trie over their token ids.

    A label that is a prefix of another (`card`, `card_lost`) is a node with children that is also
    a label's end: there the model may stop or go on. Two labels with the same tokens (`OOS` and
    `oos` under an uncased tokenizer, which scoring also counts as one answer) keep the first."""

    kind = "labels"

    def __init__(self, paths: dict[str, list[int]]) -> None:
        """`paths`: each label's token ids, without the stop token."""
        if not paths:
            raise ValueError("a label constraint needs at least one label")
        self.root = _Node()
        for label, tokens in paths.items():
            node = self.root
            for token in tokens:
                node = node.children.setdefault(token, _Node())
            if node.label is None:
                node.label = label
        pending = [self.root]
        while pending:
            node = pending.pop()
            node.allowed = torch.tensor(sorted(node.children), dtype=torch.long)
            pending.extend(node.children.values())

    @classmethod
    def rendered(
        cls,
        tokenizer: Any,
        labels: Sequence[str],
        stops: Collection[int],
        *,
        system_prompt: str | None = None,
    ) -> LabelConstraint:
        """The trie of `labels` as `render_chat` trains them: each label's trained tokens (the
        assistant turn rendered in context) up to the first stop token."""
        provenance = Provenance(source="contract", source_sha256="0" * 64, format="classification")
        paths: dict[str, list[int]] = {}
        for label in labels:
            example = Example(id=f"label:{label}", provenance=provenance, text="?", label=label)
            rendered = render_chat(tokenizer, example, system_prompt=system_prompt)
            trained = [token for token in rendered.labels if token != IGNORE_INDEX]  # ids, unshifted
            end = next((i for i, token in enumerate(trained) if token in stops), len(trained))
            paths[label] = trained[:end]
        return cls(paths)

    def start(self) -> _TrieState:
        return _TrieState(self.root)

    def answer(self, tokens: Sequence[int]) -> str | None:
        node: _Node | None = self.root
        for token in tokens:
            node = node.children.get(token) if node is not None else None
        return node.label if node is not None else None


class _TrieState:
    def __init__(self, node: _Node) -> None:
        self.node = node

    @property
    def complete(self) -> bool:
        return self.node.label is not None

    def allow(self, mask: torch.Tensor) -> None:
        mask[self.node.allowed] = True

    def advance(self, token: int) -> None:
        child = self.node.children.get(token)
        if child is None:
            raise ModelError(f"constrained decoding chose token {token}, which no label continues with")
        self.node = child


class JsonSchemaConstraint:
    """Answers that are JSON valid against a schema, through llguidance's grammar for it.

    Properties come in the schema's order. Keywords llguidance does not implement are not enforced
    while generating (it is told to be lenient, so any valid schema evaluates); the contract's
    validator still judges every answer. An answer cut by the token limit is not JSON."""

    kind = "json_schema"

    def __init__(self, tokenizer: Any, schema: dict[str, Any]) -> None:
        from llguidance.hf import from_tokenizer  # imports transformers

        try:
            self.tokenizer = from_tokenizer(tokenizer)
        except ValueError as exc:
            name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
            raise ModelError(
                f"the JSON-schema constraint cannot read the tokenizer of {name!r} ({exc}); "
                "evaluate without it: --no-constrain"
            ) from None
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema, overrides={"whitespace_pattern": JSON_WHITESPACE, "lenient": True}
        )
        self.initial = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        if self.initial.is_error():
            raise ModelError(
                f"the contract's JSON schema cannot be compiled for constrained decoding: "
                f"{self.initial.get_error()}; evaluate without it: --no-constrain"
            )

    def start(self) -> _MatcherState:
        return _MatcherState(self.initial.deep_copy(), self.tokenizer.eos_token)

    def answer(self, tokens: Sequence[int]) -> str | None:
        return self.tokenizer.decode_str(list(tokens))


class _MatcherState:
    def __init__(self, matcher: llguidance.LLMatcher, eos: int) -> None:
        self.matcher = matcher
        self.eos = eos

    @property
    def complete(self) -> bool:
        return self.matcher.is_accepting()

    def allow(self, mask: torch.Tensor) -> None:
        if self.matcher.is_stopped():
            return
        packed = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        bits = np.unpackbits(packed, bitorder="little")[: len(mask)].astype(bool)
        if self.eos < len(bits):
            bits[self.eos] = False  # llguidance's own end token: the stop tokens come with `complete`
        mask[: len(bits)] |= torch.from_numpy(bits)

    def advance(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise ModelError(
                f"constrained decoding chose token {token}, which the JSON schema's grammar rejects: "
                f"{self.matcher.get_error()}"
            )


def answer_constraint(
    contract: Contract, tokenizer: Any, stops: Collection[int], examples: Sequence[Example] = ()
) -> AnswerConstraint | None:
    """The constraint of the contract's output: its labels (with the abstention answer), or every
    target of `examples` where the contract leaves its label set to the data, as scoring counts
    label compliance; its JSON schema; None for free text."""
    output = contract.output
    if output.kind == "json_schema" and output.json_schema is not None:
        return JsonSchemaConstraint(tokenizer, output.json_schema)
    if output.kind != "labels":
        return None
    labels = list(output.labels or sorted({e.target for e in examples if e.target}))
    if contract.abstention and contract.abstention not in labels:
        labels.append(contract.abstention)
    if not labels:
        return None
    return LabelConstraint.rendered(tokenizer, labels, stops, system_prompt=contract.system_prompt)


class ConstrainedDecoding:
    """A logits processor for `model.generate` (greedy, batched, left-padded): disallowed tokens get
    -inf. Make one per `generate` call: the first call sees the prompts and starts a state per row."""

    def __init__(self, constraint: AnswerConstraint, stops: Collection[int]) -> None:
        self.constraint = constraint
        self.stops = set(stops)
        self.stop_ids = torch.tensor(sorted(self.stops), dtype=torch.long)
        self.states: list[AnswerState] = []
        self.stopped: list[bool] = []
        self.seen = 0
        """Width of `input_ids` at the last call: every later call has one token more per row."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.states:
            self.states = [self.constraint.start() for _ in range(input_ids.shape[0])]
            self.stopped = [False] * input_ids.shape[0]
        elif input_ids.shape[1] > self.seen:
            for row, token in enumerate(input_ids[:, -1].tolist()):
                if self.stopped[row]:
                    continue
                if token in self.stops:
                    self.stopped[row] = True
                else:
                    self.states[row].advance(token)
        self.seen = input_ids.shape[1]
        mask = torch.zeros(scores.shape, dtype=torch.bool)
        for row, state in enumerate(self.states):
            if self.stopped[row]:
                mask[row] = True
                continue
            state.allow(mask[row])
            if state.complete:
                mask[row, self.stop_ids[self.stop_ids < scores.shape[1]]] = True
            if not mask[row].any():
                raise ModelError("constrained decoding reached a state that allows no token")
        return scores.masked_fill(~mask.to(scores.device), float("-inf"))
