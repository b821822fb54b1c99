"""Erasure matches: `FIELD=VALUE` equals, `FIELD~=TEXT` contains (any case)."""

from __future__ import annotations

import hashlib

import pytest

from sftline.data.erasure import ExampleMatch
from sftline.errors import ErasureError
from tests.support.records import chat, labelled


def test_parsing_takes_the_first_equals_sign_and_the_tilde_before_it() -> None:
    assert ExampleMatch.parse("user_id=4711") == ExampleMatch("user_id", "=", "4711")
    assert ExampleMatch.parse("text~=a=b") == ExampleMatch("text", "~=", "a=b")
    assert ExampleMatch.parse(" id =x ") == ExampleMatch("id", "=", "x ")
    assert str(ExampleMatch.parse("text~=Alice")) == "text~=Alice"


@pytest.mark.parametrize("spec", ["user_id", "=4711", "user_id=", "text~=", "~=x"])
def test_a_match_without_both_sides_is_refused(spec: str) -> None:
    with pytest.raises(ErasureError, match="expected FIELD=VALUE or FIELD~=TEXT"):
        ExampleMatch.parse(spec)


def test_equals_compares_whole_values_and_contains_ignores_case() -> None:
    alice = chat("c1", "alice", "My mail is Alice@Example.com", answer="noted")
    assert ExampleMatch.parse("user_id=alice").matches(alice)
    assert not ExampleMatch.parse("user_id=ali").matches(alice)
    assert ExampleMatch.parse("user_id~=ALI").matches(alice)
    assert ExampleMatch.parse("id=c1").matches(alice)
    assert not ExampleMatch.parse("country=alice").matches(alice)  # no such tag
    assert ExampleMatch.parse("text~=alice@example.com").matches(alice)
    assert ExampleMatch.parse("text~=NOTED").matches(alice)  # the assistant's turn is content too
    assert not ExampleMatch.parse("text=alice@example.com").matches(alice)  # not a whole value
    assert ExampleMatch.parse("text=noted").matches(alice)


def test_text_reaches_classification_text_labels_and_tool_calls() -> None:
    assert ExampleMatch.parse("text~=call bob").matches(labelled("x", "please call Bob", "phone"))
    assert ExampleMatch.parse("label=phone").matches(labelled("x", "please call Bob", "phone"))
    assert ExampleMatch.parse("text=phone").matches(labelled("x", "please call Bob", "phone"))
    call = chat("t", "u", "hi")
    call.messages[1]["tool_calls"] = [{"function": {"name": "lookup", "arguments": {"email": "eve@x.org"}}}]
    assert ExampleMatch.parse("text~=eve@x.org").matches(call)


def test_the_record_keeps_the_value_as_its_sha256_only() -> None:
    record = ExampleMatch.parse("email=alice@example.com").as_record()
    assert record == {
        "field": "email",
        "op": "=",
        "value_sha256": hashlib.sha256(b"alice@example.com").hexdigest(),
    }
