"""Text most examples share, left out of what duplicate and contamination tests compare.

Two customer queries behind the same 20-word system message look alike to MinHash, and each
shares 13-word runs with every eval example that carries the same message: a comparison of
whole prompts measures the boilerplate, not the data. So the tests that compare inputs (exact
and near duplicates, conflicts, contamination, a split's near-duplicate groups) compare what
varies, after leaving out:

- the contract's system prompt, wherever a system message repeats it;
- a system message that at least `SHARED_MESSAGE_SHARE` of a set's records carry;
- a template's fixed wording: the longest run of words that begins (or ends) the rest of the
  input of at least `TEMPLATE_SHARE` of a set's records, with more words after (before) it.

Each set (the checked one, every held-out one) is read on its own, and what any of them shares
is left out of every text, so a train and an eval set with the same system message compare
their queries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sftline.data.example import Example, message_text
from sftline.text.normalize import normalize_text

SHARED_MESSAGE_SHARE = 0.2
"""A system message in at least a fifth of a set's records is left out. An instruction is not
what makes two records the same, whatever its share; but a text a few records share (a retrieval
context given to several questions) may be exactly that, so it stays compared. A fifth leaves
out the system message of each task of a mixture of up to five, and keeps a context shared by
fewer than a fifth of the records, which at any real size means a handful of records each."""
TEMPLATE_SHARE = 0.5
"""Wording that begins (or ends) at least half of a set's inputs is a template's. Natural
queries do not agree on a first word that often (the commonest first word of CLINC150's train
queries, "i", begins 14% of them; the commonest last word, "card", ends 3%), a template's
records all do."""
TEMPLATE_MIN_RECORDS = 20
"""A set smaller than this has no template wording: in a few records a shared first word is chance."""
TEMPLATE_SAMPLE = 10_000
"""Records template wording is looked for in (evenly spaced); its share is then measured on all."""

Kind = Literal["contract_system_prompt", "system_message", "prefix", "suffix"]


@dataclass(frozen=True)
class LeftOut:
    """One kind of text left out of the compared text, for the report."""

    set: str
    """The set it was found in (a dataset version)."""
    kind: Kind
    texts: int
    """Distinct texts of this kind."""
    words: tuple[int, ...]
    shares: tuple[float, ...]
    """Share of the set's records that carry each text."""
    sample: str
    """The first text, cut at 120 characters."""

    @property
    def why(self) -> str:
        shares = ", ".join(f"{share:.0%}" for share in self.shares)
        words = ", ".join(str(n) for n in self.words)
        plural = "s" if self.texts > 1 else ""
        of = f"of {self.set}'s records"
        if self.kind == "contract_system_prompt":
            what = f"the contract's system prompt ({words} words), in {shares} {of},"
        elif self.kind == "system_message":
            what = (
                f"system message{plural} shared by {shares} {of} ({self.texts} text{plural}, {words} words)"
            )
        else:
            edge = "begins" if self.kind == "prefix" else "ends"
            what = f"template wording that {edge} {shares} {of} ({words} words: {self.sample!r})"
        return f"{what} left out of the compared text"

    def to_json(self) -> dict[str, object]:
        return {
            "set": self.set,
            "kind": self.kind,
            "texts": self.texts,
            "words": list(self.words),
            "shares": [round(share, 4) for share in self.shares],
            "sample": self.sample,
            "why": self.why,
        }


@dataclass(frozen=True)
class CommonText:
    """What to leave out of an example's input before comparing it with others."""

    system_messages: frozenset[str] = frozenset()
    """Normalised contents of the system messages left out."""
    prefixes: tuple[tuple[str, ...], ...] = ()
    suffixes: tuple[tuple[str, ...], ...] = ()
    left_out: tuple[LeftOut, ...] = ()

    def _kept_messages(self, example: Example) -> list[tuple[int, str]]:
        """(index, normalised text) of the input messages that are compared."""
        kept = []
        for index, message in enumerate(example.messages or ()):
            if message["role"] == "assistant":
                continue
            text = normalize_text(message_text(message))
            if not (message["role"] == "system" and text in self.system_messages):
                kept.append((index, text))
        return kept

    def compared_input(self, example: Example) -> str:
        """The example's input, normalised, less the shared text: what duplicate and
        contamination tests compare. Wording at an edge is left out only where words remain."""
        if example.messages is None:
            text = normalize_text(example.text or "")
        else:
            text = " ".join(text for _, text in self._kept_messages(example) if text)
        if not (self.prefixes or self.suffixes):
            return text
        return " ".join(_strip_edges(text.split(), self.prefixes, self.suffixes))

    def input_field(self, example: Example) -> str:
        """Where the compared input is: `text`, the one compared message, or `messages`."""
        if example.messages is None:
            return "text"
        kept = self._kept_messages(example)
        return f"messages[{kept[0][0]}]" if len(kept) == 1 else "messages"


def _starts(words: list[str], prefix: tuple[str, ...]) -> bool:
    return len(words) > len(prefix) and tuple(words[: len(prefix)]) == prefix


def _ends(words: list[str], suffix: tuple[str, ...]) -> bool:
    return len(words) > len(suffix) and tuple(words[-len(suffix) :]) == suffix


def _strip_edges(
    words: list[str], prefixes: Sequence[tuple[str, ...]], suffixes: Sequence[tuple[str, ...]]
) -> list[str]:
    """`words` less the first prefix and the first suffix they have (with words left over)."""
    prefix = next((p for p in prefixes if _starts(words, p)), ())
    words = words[len(prefix) :]
    suffix = next((s for s in suffixes if _ends(words, s)), ())
    return words[: len(words) - len(suffix)]


def _system_texts(example: Example) -> set[str]:
    return {normalize_text(message_text(m)) for m in example.messages or () if m["role"] == "system"}


def _template_edge(word_lists: Sequence[list[str]]) -> tuple[str, ...]:
    """The longest run of words that begins at least TEMPLATE_SHARE of the lists with more words
    after it (the lists are reversed for an ending)."""
    need = max(2.0, TEMPLATE_SHARE * len(word_lists))
    edge: list[str] = []
    alive: Sequence[list[str]] = word_lists
    while True:
        depth = len(edge)
        counts = Counter(words[depth] for words in alive if len(words) > depth + 1)
        if not counts:
            break
        word, count = counts.most_common(1)[0]
        if count < need:
            break
        edge.append(word)
        alive = [words for words in alive if len(words) > depth + 1 and words[depth] == word]
    return tuple(edge)


def _sample(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


def _find_in_set(name: str, examples: Sequence[Example], system_prompt: str | None) -> CommonText:
    n = len(examples)
    if n == 0:
        return CommonText()
    per_text = Counter(text for example in examples for text in _system_texts(example))
    contract = normalize_text(system_prompt) if system_prompt else None
    shared = {
        text: count
        for text, count in per_text.most_common()
        if text != contract and count >= 2 and count >= SHARED_MESSAGE_SHARE * n
    }
    left_out: list[LeftOut] = []
    if contract and per_text.get(contract):
        in_records = (per_text[contract] / n,)
        size = (len(contract.split()),)
        left_out.append(LeftOut(name, "contract_system_prompt", 1, size, in_records, _sample(contract)))
    if shared:
        texts = list(shared)
        sizes = tuple(len(t.split()) for t in texts)
        shares = tuple(shared[t] / n for t in texts)
        left_out.append(LeftOut(name, "system_message", len(texts), sizes, shares, _sample(texts[0])))
    messages = frozenset(shared) | ({contract} if contract else frozenset())
    prefixes: tuple[tuple[str, ...], ...] = ()
    suffixes: tuple[tuple[str, ...], ...] = ()
    if n >= TEMPLATE_MIN_RECORDS:
        # Found on an evenly spaced sample (a template's share is within ~1% of the set's on
        # 10,000 records), then measured on every record.
        sample = examples[:: max(1, n // TEMPLATE_SAMPLE)]
        without = CommonText(messages)
        word_lists = [without.compared_input(example).split() for example in sample]
        prefix = _template_edge(word_lists)
        if prefix:
            prefixes = (prefix,)
            word_lists = [_strip_edges(words, prefixes, ()) for words in word_lists]
        suffix = tuple(reversed(_template_edge([words[::-1] for words in word_lists])))
        suffixes = (suffix,) if suffix else ()
        if prefix or suffix:
            begun = ended = 0
            for example in examples:
                record = without.compared_input(example).split()
                begun += bool(prefix) and _starts(record, prefix)
                ended += bool(suffix) and _ends(_strip_edges(record, prefixes, ()), suffix)
            if prefix:
                left_out.append(
                    LeftOut(name, "prefix", 1, (len(prefix),), (begun / n,), _sample(" ".join(prefix)))
                )
            if suffix:
                left_out.append(
                    LeftOut(name, "suffix", 1, (len(suffix),), (ended / n,), _sample(" ".join(suffix)))
                )
    return CommonText(messages, prefixes, suffixes, tuple(left_out))


def _merge(parts: Iterable[CommonText]) -> CommonText:
    parts = list(parts)

    def distinct(edges: Iterable[tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
        return tuple(sorted(set(edges), key=lambda edge: (-len(edge), edge)))  # the longest first

    return CommonText(
        frozenset().union(*(p.system_messages for p in parts)),
        distinct(edge for p in parts for edge in p.prefixes),
        distinct(edge for p in parts for edge in p.suffixes),
        tuple(entry for p in parts for entry in p.left_out),
    )


def find_common_text(sets: Mapping[str, Sequence[Example]], system_prompt: str | None) -> CommonText:
    """What each named set shares, left out of every text: the contract's system prompt, shared
    system messages, template wording."""
    return _merge(_find_in_set(name, examples, system_prompt) for name, examples in sets.items())
