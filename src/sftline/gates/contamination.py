"""Contamination: training examples that match a holdout, gold or eval example.

Three tests, on the input side less the shared text (`sftline.data.common_text`): an exact
match after normalisation; any shared word n-gram (13 words by default, the usual test for
benchmark leakage) for texts that long; and for short texts (under `long_words` words), a
MinHash match at the near-duplicate threshold.

An n-gram that more than `MAX_NGRAM_SHARE` (1%) of the reference examples contain is not evidence:
it is phrasing the reference set shares (an instruction, a template, a stock sentence), and a
training example that has it shares the phrasing, not an example. Decontamination studies leave
such frequent n-grams out for the same reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sftline.data.common_text import CommonText
from sftline.data.example import Example
from sftline.gates.base import Flag, GateOutcome
from sftline.text.minhash import NearDuplicateIndex
from sftline.text.ngrams import MAX_NGRAM_SHARE, NGRAM_WORDS, common_ngrams, word_ngrams

MATCHES_REPORTED = 200  # contamination matches listed in the report (all are counted)


@dataclass(frozen=True)
class _Reference:
    ref: str
    example: Example
    normalized: str


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

    def features(self, batch: Sequence[Example]) -> list[str]:
        return [self.common.compared_input(e) for e in batch]

    def check(self, examples: Sequence[Example]) -> GateOutcome:
        return self.decide(examples, self.features(examples))

    def _reference_ngrams(self) -> tuple[dict[bytes, _Reference], int]:
        """Each n-gram that is evidence -> the first reference with it; and how many were not."""
        first: dict[bytes, _Reference] = {}
        documents: Counter[bytes] = Counter()
        for ref in self.references:
            words = ref.normalized.split()
            if len(words) >= self.ngram:
                grams = word_ngrams(words, self.ngram)
                documents.update(grams)
                for gram in grams:
                    first.setdefault(gram, ref)
        common = common_ngrams(documents, len(self.references))
        return {gram: ref for gram, ref in first.items() if gram not in common}, len(common)

    def decide(self, examples: Sequence[Example], normalized: Sequence[str]) -> GateOutcome:
        outcome = GateOutcome(self.name)
        refs = [r for r in self.references if r.normalized]
        matches: list[dict[str, object]] = []
        if not refs or not examples:
            outcome.report = {"against": sorted({r.ref for r in refs}), "matches": [], "n_matches": 0}
            return outcome

        def hit(example: Example, ref: _Reference, kind: str, similarity: float) -> None:
            detail = f"{kind} match with {ref.ref} example {ref.example.id} (similarity {similarity:.2f})"
            related = (f"{ref.ref}:{ref.example.id}",)
            field = self.common.input_field(example)
            outcome.flags.append(Flag(example.id, f"contamination_{kind}", detail, related, field))
            matches.append(
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

        exact = {r.normalized: r for r in refs}
        remaining = []
        for example, text in zip(examples, normalized, strict=True):
            if not text:
                continue  # nothing but shared text: nothing to compare
            if text in exact:
                hit(example, exact[text], "exact", 1.0)
            else:
                remaining.append((example, text))

        long_refs, n_common = self._reference_ngrams()
        short_refs = [r for r in refs if len(r.normalized.split()) < self.long_words]
        index = (
            NearDuplicateIndex.build([r.normalized for r in short_refs], threshold=self.threshold)
            if short_refs
            else None
        )

        short_queries = []
        for example, text in remaining:
            words = text.split()
            shared = word_ngrams(words, self.ngram) & long_refs.keys() if len(words) >= self.ngram else set()
            if shared:
                ref = long_refs[min(shared)]
                hit(example, ref, "ngram", len(shared) / max(1, len(words) - self.ngram + 1))
            elif len(words) < self.long_words:
                short_queries.append((example, text))
        if index is not None and short_queries:
            results = index.query([text for _, text in short_queries])
            for (example, _), found in zip(short_queries, results, strict=True):
                if found:
                    position, similarity = found[0]
                    hit(example, short_refs[position], "near", similarity)
        outcome.report = {
            "against": sorted({r.ref for r in refs}),
            "n_reference_examples": len(refs),
            "n_matches": len(matches),
            "matches": matches[:MATCHES_REPORTED],
            "common_ngrams": n_common,
            "ngram_max_share": MAX_NGRAM_SHARE,
        }
        return outcome
