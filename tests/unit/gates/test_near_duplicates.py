from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasketch.lsh import _optimal_param

from sftline.data.example import Example, Provenance
from sftline.errors import ConfigError
from sftline.gates.near_duplicates import NearDuplicateGate
from sftline.text import minhash
from sftline.text.groups import near_duplicate_groups
from sftline.text.minhash import (
    NearDuplicateIndex,
    ShingleSpec,
    _shingle_hashes,
    exact_jaccard,
    near_duplicate_clusters,
    optimal_bands,
    shingles,
)
from sftline.text.normalize import normalize_text

CLINC = Path(__file__).resolve().parents[3] / "examples" / "clinc150" / "data_full.json"

# ~10-word support queries and one-edit variants. With character 5-grams one edit changes ~5-10
# of ~55 shingles: exact Jaccard 0.80-0.98, except a word swap (0.73-0.77).
PLANTED = {
    "I was charged twice for my subscription, please refund me": {
        "typo": "I was charged twice for my subscripton, please refund me",
        "punctuation": "I was charged twice for my subscription please refund me!",
        "added word": "I was charged twice for my subscription, please refund me now",
        "reordered": "I was charged twice for my subscription, refund me please",
    },
    "how do i reset the password on my banking account": {
        "typo": "how do i reset the pasword on my banking account",
        "punctuation": "how do i reset the password on my banking account?",
        "added word": "how do i reset the password on my own banking account",
        "reordered": "how do i reset the password on my account banking",
    },
    "my package was supposed to arrive yesterday but never came": {
        "typo": "my package was suposed to arrive yesterday but never came",
        "punctuation": "my package was supposed to arrive yesterday, but never came!",
        "added word": "my package was supposed to arrive yesterday but it never came",
        "reordered": "my package was supposed to arrive yesterday but came never",
    },
    "the mobile app keeps crashing when i try logging in": {
        "typo": "the mobile app keeps crashing when i try loging in",
        "punctuation": "the mobile app keeps crashing when i try logging in!!",
        "added word": "the mobile app keeps crashing when i try logging in again",
        "reordered": "the mobile app keeps crashing when i try in logging",
    },
}


@pytest.fixture(scope="module")
def clinc() -> list[str]:
    """300 CLINC150 train queries, every 50th: 150 intents, 2 queries each."""
    train = json.loads(CLINC.read_text())["train"]
    return [text for text, _ in train[::50]]


def example(i: int, prompt: str, answer: str = "ok") -> Example:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    provenance = Provenance("f.jsonl", "0" * 64, "chat", i + 1)
    return Example(id=f"ex-{i}", provenance=provenance, messages=messages)


def test_normalize_text() -> None:
    assert normalize_text("  Ｈｅｌｌｏ\t\u00a0WORLD\n ﬁne Straße ") == "hello world fine strasse"
    assert normalize_text("") == ""


def test_vectorised_shingle_hashes_match_the_reference_shingles() -> None:
    texts = ["", "hi", "abcde", "Hello  world!", "ünïcödé 文字 ok", " ".join(f"w{i}" for i in range(15)),
             "a b c d e f g h i j k", "x " * 11 + "y", "one two"]  # fmt: skip
    for spec in (ShingleSpec(), ShingleSpec(char_ngram=3, word_ngram=2, short_words=5)):
        order, hashes, counts = _shingle_hashes(texts, spec)
        segments = np.split(hashes, np.cumsum(counts)[:-1])
        distinct = {int(doc): len(np.unique(seg)) for doc, seg in zip(order, segments, strict=True)}
        assert distinct == {k: len(shingles(t, **vars(spec))) for k, t in enumerate(texts)}
    assert exact_jaccard("Hello  World", "hello world") == 1.0


def test_planted_near_duplicates_join_their_originals(clinc: list[str]) -> None:
    pairs = [(base, variant) for base, kinds in PLANTED.items() for variant in kinds.values()]
    # at the default 0.8, the one-edit variants whose exact Jaccard clears it with some margin
    clear = [(b, v) for b, v in pairs if exact_jaccard(b, v) >= 0.84]
    assert len(clear) >= 8
    # at 0.7 every variant, word swaps included
    for threshold, planted in ((0.8, clear), (0.7, pairs)):
        texts = list(clinc)
        at: dict[str, int] = {}
        for text in (text for pair in planted for text in pair):
            at.setdefault(text, len(texts))
            texts += [] if len(texts) > at[text] else [text]
        clusters = near_duplicate_clusters(texts, threshold=threshold)
        cluster_of = {member: k for k, group in enumerate(clusters) for member in group}
        for base, variant in planted:
            assert at[base] in cluster_of, base
            assert cluster_of.get(at[variant]) == cluster_of[at[base]], (threshold, variant)
            assert clusters[cluster_of[at[base]]][0] == at[base]  # the original represents


def test_clearly_different_queries_are_not_flagged(clinc: list[str]) -> None:
    clusters = near_duplicate_clusters(clinc)
    flagged = [(group[0], member) for group in clusters for member in group[1:]]
    assert len(flagged) <= 3  # 300 queries from 150 intents: a real near-duplicate at most
    for rep, member in flagged:
        assert exact_jaccard(clinc[rep], clinc[member]) >= 0.7, (clinc[rep], clinc[member])


def test_signatures_are_deterministic(clinc: list[str]) -> None:
    first = NearDuplicateIndex.build(clinc[:50], seed=3).signatures
    assert first.dtype == np.uint32 and first.shape == (50, 128)
    np.testing.assert_array_equal(first, NearDuplicateIndex.build(clinc[:50], seed=3).signatures)
    assert not np.array_equal(first, NearDuplicateIndex.build(clinc[:50], seed=4).signatures)


def test_chunking_does_not_change_signatures(clinc: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    texts = clinc[:40] + [" ".join(clinc[:30])] + clinc[40:80]  # one long text (word shingles)
    whole = NearDuplicateIndex.build(texts)
    monkeypatch.setattr(minhash, "_CHUNK_DOCS", 7)
    monkeypatch.setattr(minhash, "_CHUNK_CHARS", 200)
    chunked = NearDuplicateIndex.build(texts)
    np.testing.assert_array_equal(whole.signatures, chunked.signatures)
    np.testing.assert_array_equal(whole.band_keys, chunked.band_keys)


def test_estimated_jaccard_is_within_a_tenth_of_exact(clinc: list[str]) -> None:
    """Random pairs: queries with 0-5 random character edits, plus unrelated pairs.

    The estimate's standard deviation is sqrt(J (1 - J) / num_perm): <= 0.044 at 128
    permutations, where one pair in ~50 lands past 0.1 (2.3 sd); <= 0.031 at 256 (0.1 = 3.2 sd).
    """
    rng = np.random.RandomState(0)
    pairs = []
    for k in rng.choice(len(clinc), 40, replace=False).tolist():
        edited = clinc[k]
        for _ in range(rng.randint(6)):
            i = rng.randint(len(edited))
            edited = edited[:i] + "xyzqw"[rng.randint(5)] + edited[i + 1 :]
        pairs.append((clinc[k], edited))
    pairs += [(clinc[k], clinc[k + 1]) for k in range(0, 20, 2)]
    exact = np.array([exact_jaccard(a, b) for a, b in pairs])
    assert exact.min() < 0.3 and np.median(exact) > 0.4  # a spread of similarities
    for num_perm, mean_error in ((128, 0.035), (256, 0.025)):
        index = NearDuplicateIndex.build([t for pair in pairs for t in pair], num_perm=num_perm)
        sig = index.signatures
        estimated = (sig[0::2] == sig[1::2]).mean(axis=1)
        assert np.abs(estimated - exact).mean() < mean_error
    np.testing.assert_allclose(estimated, exact, atol=0.1)


def test_bands_minimise_weighted_error_like_datasketch() -> None:
    for threshold, num_perm, fn_weight in ((0.8, 128, 0.9), (0.8, 128, 0.5), (0.6, 64, 0.9)):
        expected = _optimal_param(threshold, num_perm, 1 - fn_weight, fn_weight)
        assert optimal_bands(threshold, num_perm, fn_weight) == expected
    assert optimal_bands(0.8, 128) == (14, 9)


def test_a_huge_bucket_of_exact_duplicates_is_one_cluster(clinc: list[str]) -> None:
    texts = clinc[:20] + ["what is my balance"] * 150 + clinc[20:40]
    assert near_duplicate_clusters(texts) == [list(range(20, 170))]


def test_gate_flags_every_member_but_the_earliest() -> None:
    prompts = ["how do i reset the password on my banking account", "what time is it in tokyo",
               "How do I reset the password on my banking account?", "play some jazz music",
               "how do i reset the password on my banking account!"]  # fmt: skip
    examples = [example(i, p) for i, p in enumerate(prompts)]
    outcome = NearDuplicateGate().check(examples)
    assert outcome.gate == "near_duplicates"
    assert [f.example_id for f in outcome.flags] == ["ex-2", "ex-4"]
    for flag, index in zip(outcome.flags, (2, 4), strict=True):
        assert flag.reason == "near_duplicate" and flag.related == ("ex-0",)
        assert flag.field == "messages[0]"
        jaccard = exact_jaccard(prompts[0], prompts[index])
        assert flag.detail == f"Jaccard {jaccard:.2f} with ex-0 (group of 3)"
    report = outcome.report
    cluster = {"representative": "ex-0", "members": ["ex-0", "ex-2", "ex-4"], "size": 3}
    assert report["clusters"] == [cluster]
    assert report["n_clusters"] == 1 and report["n_flagged"] == 2
    params = report["params"]
    assert params | {"threshold": 0.8, "num_perm": 128, "bands": 14, "rows": 9} == params
    assert params["field"] == "prompt" and params["seed"] == 1
    assert params["verified"] == "exact Jaccard with the representative"
    json.dumps(report)


def test_gate_field_example_compares_prompt_and_answer() -> None:
    prompt = "how do i reset the password on my banking account"
    examples = [example(0, prompt, "Open settings, then security, then reset password."),
                example(1, prompt, "I cannot help with that request, sorry about it.")]  # fmt: skip
    assert len(NearDuplicateGate(field="prompt").check(examples).flags) == 1
    assert NearDuplicateGate(field="example").check(examples).flags == []


def test_query_finds_a_planted_match_and_nothing_for_unrelated_text(clinc: list[str]) -> None:
    base = "my package was supposed to arrive yesterday but never came"
    index = NearDuplicateIndex.build(clinc[:100] + [base] + clinc[100:])
    planted = "My package was supposed to arrive yesterday, but never came!"
    hits = index.query([planted, "zebra quantum tango"])
    assert [corpus for corpus, _ in hits[0]] == [100] and hits[0][0][1] >= 0.8
    assert hits[1] == []
    assert index.query([]) == []


def test_empty_and_single_inputs() -> None:
    assert near_duplicate_clusters([]) == []
    assert near_duplicate_clusters(["only one"]) == []
    assert near_duplicate_clusters(["", ""]) == [[0, 1]]
    assert NearDuplicateIndex.build([]).query(["anything"]) == [[]]
    outcome = NearDuplicateGate().check([])
    assert outcome.flags == [] and outcome.report["n_clusters"] == 0


def test_bad_settings_are_reported_together() -> None:
    with pytest.raises(ConfigError, match="threshold .* num_perm .* char_ngram"):
        NearDuplicateIndex.build(["a"], threshold=1.5, num_perm=1, char_ngram=0)
    with pytest.raises(ConfigError, match="field"):
        NearDuplicateGate(field="answer")  # type: ignore[arg-type]


# Exact Jaccard (char 5-grams): A~B 0.87, B~C 0.94, C~D 0.87, A~C 0.82, B~D 0.82, A~D 0.71.
CHAIN = [
    "i was charged twice for my subscription this month, please refund me",
    "i was charged twice for my subscripton this month, please refund me",
    "i was charged twice for my subscripton this month, please refund me now",
    "i was charged twice for my subscripton this month please refund me now",
]


def test_a_chain_through_other_texts_does_not_flag_a_text_unlike_the_representative() -> None:
    assert exact_jaccard(CHAIN[0], CHAIN[3]) < 0.8 <= exact_jaccard(CHAIN[2], CHAIN[3])
    assert near_duplicate_clusters(CHAIN) == [[0, 1, 2, 3]]  # union-find joins all four (splits)
    outcome = NearDuplicateGate().check([example(i, text) for i, text in enumerate(CHAIN)])
    assert [(f.example_id, f.related) for f in outcome.flags] == [("ex-1", ("ex-0",)), ("ex-2", ("ex-0",))]
    assert outcome.report["clusters"] == [
        {"representative": "ex-0", "members": ["ex-0", "ex-1", "ex-2"], "size": 3}
    ]
    index = NearDuplicateIndex.build(CHAIN)
    groups = near_duplicate_groups(index.similar_pairs(), CHAIN)
    assert [(g.representative, [m for m, _ in g.members]) for g in groups] == [(0, [1, 2])]
    for group in groups:
        for member, jaccard in group.members:
            assert jaccard == exact_jaccard(CHAIN[group.representative], CHAIN[member]) >= 0.8
    # when the first text is to be avoided, the second represents, and all three others are within 0.8
    avoided = near_duplicate_groups(index.similar_pairs(), CHAIN, avoid=[True, False, False, False])
    assert [(g.representative, [m for m, _ in g.members]) for g in avoided] == [(1, [0, 2, 3])]


def test_every_flag_is_within_the_threshold_of_its_representative(clinc: list[str]) -> None:
    """Planted one-edit variants on CLINC150 at 0.7: each original represents its 4 variants."""
    texts = list(clinc)
    for base, kinds in PLANTED.items():
        texts += [base, *kinds.values()]
    groups = near_duplicate_groups(NearDuplicateIndex.build(texts, threshold=0.7).similar_pairs(), texts)
    starts = [len(clinc) + 5 * k for k in range(len(PLANTED))]
    assert [(g.representative, [m for m, _ in g.members]) for g in groups] == [
        (start, [start + 1, start + 2, start + 3, start + 4]) for start in starts
    ]
    for group in groups:
        for member, jaccard in group.members:
            assert exact_jaccard(texts[group.representative], texts[member]) == jaccard >= 0.7
