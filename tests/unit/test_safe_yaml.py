"""`safe_yaml.load_yaml`: what `yaml.safe_load` reads, less duplicate keys and runaway aliases."""

from __future__ import annotations

import pytest
import yaml

from sftline.safe_yaml import MAX_EXPANDED_NODES, load_yaml


def test_ordinary_documents_read_as_safe_load_reads_them() -> None:
    text = "base: &base {action: block}\nexact: *base\nnear:\n  <<: *base\n  action: warn\nempty:\n"
    assert load_yaml(text) == yaml.safe_load(text)
    assert load_yaml(text)["near"] == {"action": "warn"}  # a merged key may be overridden
    assert load_yaml("") is None


def _problem(text: str) -> tuple[str, int]:
    with pytest.raises(yaml.MarkedYAMLError) as raised:
        load_yaml(text)
    assert raised.value.problem is not None and raised.value.problem_mark is not None
    return raised.value.problem, raised.value.problem_mark.line + 1


def test_a_key_given_twice_is_refused_with_both_lines() -> None:
    assert _problem("gates:\n  pii: {action: off}\n  lengths: {}\n  pii: {action: block}\n") == (
        "duplicate key 'pii', first given on line 2",
        4,
    )


def test_aliases_may_not_expand_past_the_bound_or_hold_themselves() -> None:
    width = 10
    levels = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, 5)]
    # a3 expands to 1 + 10 * (1 + 10 * (1 + 10 * 11)) = 11,111 values, a4 to 111,111
    assert load_yaml("\n".join(levels[:4]))["a3"][0][0][0] == ["x"] * width
    assert _problem("\n".join(levels)) == (
        f"aliases expand this value to more than {MAX_EXPANDED_NODES:,} values",
        5,
    )
    assert _problem("a: &a [1, *a]\n") == ("an alias refers to a value that holds it (a recursive alias)", 1)
