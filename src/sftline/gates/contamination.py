"""Contamination: training examples that match a holdout, gold or eval example.

Three tests, on the input side less the shared text (`sftline.data.common_text`): an exact
match after normalisation; any shared word n-gram (13 words by default, the usual test for
benchmark leakage) for texts that long; and for short texts (under `long_words` words), a
MinHash match at the near-duplicate threshold.

An n-gram that more than `MAX_NGRAM_SHARE` (1%) of the reference examples contain is not evidence:
it is phrasing the reference set shares (an instruction, a template, a stock sentence), and a
training example that has it shares the phrasing, not an example. Decontamination studies leave
such frequent n-grams out for the same reason.

The matching is per example, so it is the gate's `features` and runs on the engine (on Ray, in
`map_batches`): each process builds the reference structures (the exact-text table, the n-gram
table, the MinHash index of the short references) once, the first time it matches a batch,
and `decide` only turns the matches into flags and the report.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sftline.data.common_text import CommonText
from sftline.data.example import Example
from sftline.gates.base import Flag, GateOutcome
from sftline.text.minhash import NearDuplicateIndex
from sftline.text.ngrams import MAX_NGRAM_SHARE, NGRAM_WORDS, common_ngrams, word_ngrams

MATCHES_REPORTED = 200  # contamination matches listed in the report (all are counted)
_KINDS = ("exact", "ngram", "near")  # the order the report lists matches in


@dataclass(frozen=True)
class _Reference:
    ref: str
    example: Example
    normalized: str


@dataclass(frozen=True)
class Match:
    """An example's match: its kind, the position of the reference in the gate's references."""

    kind: str
    reference: int
    similarity: float


@dataclass(frozen=True)
class _ReferenceTexts:
    """What the matching needs of the references: their compared texts and the settings. Small
    to send to workers, and hashable: the per-process cache of the built tables is keyed by it."""

    normalized: tuple[str, ...]
    threshold: float
    ngram: int
    long_words: int


@dataclass(frozen=True)
class _ReferenceTables:
    exact: dict[str, int]
    """Compared text -> the last reference with it."""
    ngrams: dict[bytes, int]
    """Each n-gram that is evidence -> the first reference with it."""
    n_common: int
    """N-grams left out as common phrasing."""
    short: list[int]
    """The references shorter than `long_words` words, in the order `index` holds them."""
    index: NearDuplicateIndex | None


@functools.lru_cache(maxsize=4)
def _tables(refs: _ReferenceTexts) -> _ReferenceTables:
    """Built once per process for each reference set (an engine's worker matches many batches)."""
    present = [k for k, text in enumerate(refs.normalized) if text]
    first: dict[bytes, int] = {}
    documents: Counter[bytes] = Counter()
    for k, text in enumerate(refs.normalized):
        words = text.split()
        if len(words) >= refs.ngram:
            grams = word_ngrams(words, refs.ngram)
            documents.update(grams)
            for gram in grams:
                first.setdefault(gram, k)
    common = common_ngrams(documents, len(refs.normalized))
    short = [k for k in present if len(refs.normalized[k].split()) < refs.long_words]
    texts = [refs.normalized[k] for k in short]
    return _ReferenceTables(
        exact={refs.normalized[k]: k for k in present},
        ngrams={gram: k for gram, k in first.items() if gram not in common},
        n_common=len(common),
        short=short,
        index=NearDuplicateIndex.build(texts, threshold=refs.threshold) if short else None,
    )


@dataclass(frozen=True)
class _Matcher:
    """The gate's `features`: each example's match against the references, or None. A callable
    of its own, so that what the engine sends to its workers is the references' texts, not the
    gate with every reference example."""

    refs: _ReferenceTexts
    common: CommonText

    def __call__(self, batch: Sequence[Example]) -> list[Match | None]:
        found: list[Match | None] = [None] * len(batch)
        if not any(self.refs.normalized):
            return found
        tables = _tables(self.refs)
        short_queries: list[tuple[int, str]] = []
        for position, example in enumerate(batch):
            text = self.common.compared_input(example)
            if not text:
                continue  # nothing but shared text: nothing to compare
            if text in tables.exact:
                found[position] = Match("exact", tables.exact[text], 1.0)
                continue
            words = text.split()
            n = self.refs.ngram
            shared = word_ngrams(words, n) & tables.ngrams.keys() if len(words) >= n else set()
            if shared:
                similarity = len(shared) / max(1, len(words) - n + 1)
                found[position] = Match("ngram", tables.ngrams[min(shared)], similarity)
            elif len(words) < self.refs.long_words:
                short_queries.append((position, text))
        if tables.index is not None and short_queries:
            results = tables.index.query([text for _, text in short_queries])
            for (position, _), hits in zip(short_queries, results, strict=True):
                if hits:
                    nearest, similarity = hits[0]
                    found[position] = Match("near", tables.short[nearest], similarity)
        return found


class ContaminationGate:
    name = "contamination"

    def __init__(
        self,
        against: Mapping[str, Sequence[Example]],
        *,
        threshold: float = 0.8,
        ngram: int = NGRAM_WORDS,
        long_words: int = 50,
        common: CommonText | None = None,
    ) -> None:
        self.common = common or CommonText()
        self.references = [
            _Reference(ref, example, self.common.compared_input(example))
            for ref, examples in against.items()
            for example in examples
        ]
        self.threshold = threshold
        self.ngram = ngram
        self.long_words = long_words
        refs = _ReferenceTexts(tuple(r.normalized for r in self.references), threshold, ngram, long_words)
        self.features = _Matcher(refs, self.common)

    def check(self, examples: Sequence[Example]) -> GateOutcome:
        return self.decide(examples, self.features(examples))

    def decide(self, examples: Sequence[Example], matches: Sequence[Match | None]) -> GateOutcome:
        outcome = GateOutcome(self.name)
        against = sorted({r.ref for r in self.references if r.normalized})
        if not against or not examples:
            outcome.report = {"against": against, "matches": [], "n_matches": 0}
            return outcome
        listed: list[dict[str, object]] = []
        found = [(example, m) for example, m in zip(examples, matches, strict=True) if m is not None]
        for example, match in sorted(found, key=lambda pair: _KINDS.index(pair[1].kind)):  # stable
            ref = self.references[match.reference]
            kind, similarity = match.kind, match.similarity
            detail = f"{kind} match with {ref.ref} example {ref.example.id} (similarity {similarity:.2f})"
            related = (f"{ref.ref}:{ref.example.id}",)
            field = self.common.input_field(example)
            outcome.flags.append(Flag(example.id, f"contamination_{kind}", detail, related, field))
            listed.append(
                {
                    "example": example.id,
                    "against": ref.ref,
                    "against_example": ref.example.id,
                    "kind": kind,
                    "similarity": round(similarity, 4),
                    "text": example.prompt[:300],
                    "against_text": ref.example.prompt[:300],
                }
            )
        outcome.report = {
            "against": against,
            "n_reference_examples": sum(1 for r in self.references if r.normalized),
            "n_matches": len(listed),
            "matches": listed[:MATCHES_REPORTED],
            "common_ngrams": _tables(self.features.refs).n_common,
            "ngram_max_share": MAX_NGRAM_SHARE,
        }
        return outcome
