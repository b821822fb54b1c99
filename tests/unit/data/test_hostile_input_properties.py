"""Generated hostile records and files thrown at every reader (Hypothesis).

For JSONL, JSON (arrays, splits, one record), CSV/TSV, Parquet, each optionally gzipped, with
records holding deep nesting, lone surrogates, huge numbers, NaN, bytes that are not UTF-8, odd CSV
quoting and valid records mixed in, an import:

- raises nothing but `ImportInputError`, one line naming the file, and only for a whole-file
  problem (empty, binary, not JSON at all, an undetectable format, a bad CSV header);
- reads every record the generator wrote: read = accepted + quarantined, with each line (or JSON
  item, or table row) accepted or quarantined exactly once;
- names every quarantined record by file and line (or row), and leaves examples and a quarantine
  that the import station can store (UTF-8, JSON, Parquet).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import asdict
from pathlib import Path
from tempfile import TemporaryDirectory

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftline.data.formats import FORMATS
from sftline.data.importer import ImportOptions, ImportResult, import_file
from sftline.data.parquet_io import examples_to_table, table_to_examples
from sftline.data.record_limits import MAX_DEPTH
from sftline.errors import ImportInputError

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEYS = [
    "messages",
    "role",
    "content",
    "text",
    "label",
    "tools",
    "function",
    "name",
    "arguments",
    "tool_calls",
    "tool_call_id",
    "conversations",
    "from",
    "value",
    "prompt",
    "completion",
    "instruction",
    "output",
    "input",
    "history",
    "id",
    "tags",
    "system",
    "weight",
    "type",
    "train",
    "test",
]
ROLES = ["user", "assistant", "system", "tool", "developer", "human", "gpt", "function_call", "observation"]
GOOD_CHAT = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}'
GOOD_TEXT = '{"text": "hi there", "label": "greeting"}'

# JSON text, valid to Python's json (NaN included), built as text so that it can hold what
# json.dumps refuses to write: integers of thousands of digits, nesting past the recursion limit.
strings = st.one_of(
    st.text(max_size=12).map(json.dumps),
    st.sampled_from(KEYS + ROLES).map(json.dumps),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3).map(json.dumps),  # \udXXX
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3).map(lambda s: f'"{s}"'),  # raw
    st.sampled_from(['"\\ud800"', '"a\\udc80b"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\\\ud800"', '"\\n"']),
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(18, 6_000).map(lambda digits: "-" * (digits % 2) + "9" * digits),
    st.floats().map(json.dumps),  # NaN, Infinity
    st.sampled_from(["1e999", "-1e400", "1.5", "0", "-0", "1E+2", "18446744073709551616"]),
)
depths = st.sampled_from([3, 63, 64, 65, 990, 1_000, 5_000, 100_000])
deep = st.one_of(
    depths.map(lambda d: "[" * d + "]" * d),
    depths.filter(lambda d: d <= 5_000).map(lambda d: '{"a": ' * d + "1" + "}" * d),
)
scalars = st.one_of(strings, numbers, st.sampled_from(["null", "true", "false"]))


def _array(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{key}: {value}" for key, value in pairs) + "}"


values = st.recursive(
    st.one_of(scalars, deep),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_array),
        st.lists(st.tuples(st.one_of(st.sampled_from(KEYS).map(json.dumps), strings), inner), max_size=4).map(
            _object
        ),
    ),
    max_leaves=10,
)
hostile = st.one_of(strings, numbers, deep, values, values.map(json.dumps))
"""A field's value: a string, number or nesting of the hostile kinds, or a string of JSON text."""


@st.composite
def shaped(draw: st.DrawFn) -> str:
    """A record of one of the formats, valid but for a hostile value in one of its fields."""
    slot, seen = draw(st.integers(0, 7)), [0]

    def field(good: str) -> str:
        seen[0] += 1
        return draw(hostile) if seen[0] - 1 == slot else good

    role = draw(st.one_of(st.just('"user"'), st.sampled_from(ROLES).map(json.dumps)))
    call = _object(
        [
            ('"type"', '"function"'),
            ('"function"', _object([('"name"', field('"f"')), ('"arguments"', field('"{}"'))])),
        ]
    )
    shape = draw(st.sampled_from(["chat", "sharegpt", "pc", "alpaca", "classification", "pairs", "text"]))
    if shape == "chat":
        turns = [
            _object([('"role"', role), ('"content"', field('"hi"'))]),
            _object(
                [('"role"', '"assistant"'), ('"content"', field('"ok"')), ('"tool_calls"', _array([call]))]
            ),
        ]
        tool = _object(
            [
                ('"type"', '"function"'),
                ('"function"', _object([('"name"', '"f"'), ('"parameters"', field("{}"))])),
            ]
        )
        pairs = [('"messages"', _array(turns)), ('"tools"', _array([tool])), ('"id"', field("null"))]
        return _object([*pairs, ('"tags"', field("{}"))])
    if shape == "sharegpt":
        turns = [
            _object([('"from"', role), ('"value"', field('"hi"'))]),
            _object([('"from"', '"gpt"'), ('"value"', field('"ok"'))]),
        ]
        return _object(
            [('"conversations"', _array(turns)), ('"system"', field('"s"')), ('"tools"', field('""'))]
        )
    if shape == "pc":
        return _object([('"prompt"', field('"p"')), ('"completion"', field('"c"'))])
    if shape == "alpaca":
        return _object(
            [('"instruction"', field('"i"')), ('"output"', field('"o"')), ('"history"', field("[]"))]
        )
    if shape == "classification":
        return _object([('"text"', field('"t"')), ('"label"', field('"l"'))])
    if shape == "pairs":
        return _array([field('"t"'), field('"l"')])
    return _object([('"text"', field('"t"'))])


records = st.one_of(shaped(), values, st.sampled_from([GOOD_CHAT, GOOD_TEXT]))


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a raw surrogate becomes bytes that are not UTF-8


lines = st.one_of(
    records.map(encode),
    records.map(lambda r: encode(r[: len(r) // 2])),  # cut short: invalid JSON
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")),
    st.sampled_from([b"", b"  ", b"\r", b"\t"]),
)
formats = st.sampled_from(["auto", *FORMATS])


def import_checked(path: Path, fmt: str) -> ImportResult | None:
    """The import, or None after a one-line `ImportInputError` naming the file."""
    try:
        result = import_file(path, ImportOptions(format=fmt))
    except ImportInputError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert path.name in message, message
        return None
    for example in result.examples:  # within the limits, checked here by their own definition
        assert depth(example.content()) <= MAX_DEPTH
        for message in example.messages or []:
            for call in message.get("tool_calls", []):  # rendering parses the arguments
                assert depth(json.loads(call["function"]["arguments"])) <= MAX_DEPTH
    stored = examples_to_table(result.examples)  # what the import station writes: UTF-8, JSON, Parquet
    assert [e.content_hash for e in table_to_examples(stored)] == [e.content_hash for e in result.examples]
    pa.Table.from_pylist([asdict(q) for q in result.quarantined])
    for record in result.quarantined:
        assert record.source == path.name
        assert record.describe().encode("utf-8")
    return result


def depth(value: object) -> int:
    """Nesting levels of arrays and objects (recursive: it would overflow on what it should catch)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def places(result: ImportResult) -> list[tuple[int | None, str | None]]:
    """Where each record read was: accepted, then quarantined."""
    accepted = [(e.provenance.line, e.provenance.pointer) for e in result.examples]
    return accepted + [(q.line, q.pointer) for q in result.quarantined]


def write(folder: str, name: str, data: bytes, gzipped: bool) -> Path:
    path = Path(folder) / (f"{name}.gz" if gzipped else name)
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path


@SETTINGS
@given(
    file_lines=st.lists(lines, max_size=8),
    newline=st.sampled_from([b"\n", b"\r\n"]),
    trailing=st.booleans(),
    gzipped=st.booleans(),
    fmt=formats,
)
def test_jsonl(file_lines: list[bytes], newline: bytes, trailing: bool, gzipped: bool, fmt: str) -> None:
    data = newline.join(file_lines) + (newline if trailing else b"")
    with TemporaryDirectory() as folder:
        path = write(folder, "hostile.jsonl", data, gzipped)
        result = import_checked(path, fmt)
    numbered = enumerate(data.split(b"\n"), start=1)
    written = [number for number, line in numbered if line.rstrip(b"\r").strip()]
    if result is None:
        # Whole-file problems: no record, NUL bytes, an undetectable format, a gzip header
        unreadable = b"\x00" in data[:8192] or (data.startswith(b"\x1f\x8b") and not gzipped)
        assert not written or unreadable or fmt == "auto", "a record failed the whole file"
        return
    assert sorted(line for line, _ in places(result)) == written  # each line once: read = acc. + quar.
    assert result.n_read == len(result.examples) + len(result.quarantined) == len(written)


@SETTINGS
@given(
    items=st.lists(records, max_size=6),
    layout=st.sampled_from(["array", "splits", "record"]),
    gzipped=st.booleans(),
    fmt=formats,
)
def test_json_document(items: list[str], layout: str, gzipped: bool, fmt: str) -> None:
    if layout == "array":
        text, expected = "[" + ",\n ".join(items) + "]", [f"[{i}]" for i in range(len(items))]
    elif layout == "splits":
        half = len(items) // 2
        train, test = ", ".join(items[:half]), ",\n".join(items[half:])
        text = f'{{"train": [{train}],\n"test": [{test}]}}'
        expected = [f"train[{i}]" for i in range(half)] + [f"test[{i}]" for i in range(len(items) - half)]
    else:
        text = '\n{"messages": ' + (items[0] if items else "[]") + ', "tools": null}'
        expected = [""]
    with TemporaryDirectory() as folder:
        path = write(folder, "hostile.json", encode(text), gzipped)
        result = import_checked(path, fmt)
    if result is None:
        assert fmt == "auto", "a record failed the whole file"  # the document is valid JSON
        return
    found = [pointer or "" for _, pointer in places(result)]
    assert sorted(found) == sorted(expected)
    assert all(line is not None for line, _ in places(result))


cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(['a "quoted" b', "line\nbreak", "cr\rhere", ",", "\t", '"', "  "]),
    st.binary(max_size=8).map(lambda b: b.decode("utf-8", "surrogateescape")),
)


@SETTINGS
@given(
    header=st.lists(
        st.sampled_from(["text", "label", "id", "input", "intent", "x"]), min_size=1, max_size=3, unique=True
    ),
    rows=st.lists(st.lists(cells, min_size=1, max_size=4), max_size=6),
    ragged=st.booleans(),
    quoted=st.booleans(),
    tsv=st.booleans(),
    gzipped=st.booleans(),
    fmt=st.sampled_from(["auto", "classification", "text"]),
)
def test_csv(
    header: list[str], rows: list[list[str]], ragged: bool, quoted: bool, tsv: bool, gzipped: bool, fmt: str
) -> None:
    delimiter = "\t" if tsv else ","
    if not ragged:  # as wide as the header, so that rows can be accepted
        rows = [(row + ["x"] * len(header))[: len(header)] for row in rows]
    if quoted:  # written by csv.writer: every row comes back as written
        buffer = io.StringIO(newline="")
        csv.writer(buffer, delimiter=delimiter).writerows([header, *rows])
        text = buffer.getvalue()
    else:  # pasted together: stray quotes, delimiters and newlines inside cells
        text = "\n".join(delimiter.join(row) for row in [header, *rows]) + "\n"
    data = text.encode("utf-8", "surrogateescape")
    with TemporaryDirectory() as folder:
        path = write(folder, "hostile.tsv" if tsv else "hostile.csv", data, gzipped)
        result = import_checked(path, fmt)
    if result is None:
        return
    read = [line for line, _ in places(result)]
    breaks = text.count("\n") + text.count("\r")  # the csv module ends a line at either
    assert all(line is not None and 2 <= line <= breaks + 1 for line in read)
    assert sorted(read) == sorted(set(read)), "a line read twice"
    if quoted:
        nonblank = [row for row in rows if any(cell.strip() for cell in row)]
        assert result.n_read == len(nonblank)


table_cells = st.one_of(
    st.none(),
    st.text(max_size=10),
    st.one_of(
        values,
        hostile.map(
            lambda v: f'[{{"role": "user", "content": {v}}}, {{"role": "assistant", "content": "ok"}}]'
        ),
    ).map(
        lambda v: v.encode("utf-8", "replace").decode()  # JSON text: its surrogates escaped, none raw
    ),
)
table_rows = st.tuples(
    table_cells, st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), st.text(max_size=5)
)


@settings(SETTINGS, max_examples=100)
@given(
    rows=st.lists(table_rows, max_size=5), as_examples=st.booleans(), int_labels=st.booleans(), fmt=formats
)
def test_parquet(
    rows: list[tuple[str | None, int | None, str]], as_examples: bool, int_labels: bool, fmt: str
) -> None:
    """A table's rows, or sftline's own table whose messages column holds generated JSON text."""
    if as_examples:
        table = examples_to_table([]).select(["id", "messages", "tools", "text", "label", "tags"])
        columns = {
            "id": [str(i) for i in range(len(rows))],
            "messages": [cell for cell, _, _ in rows],
            "tools": [None] * len(rows),
            "text": [None] * len(rows),
            "label": [None] * len(rows),
            "tags": [[]] * len(rows),
        }
        table = pa.table(columns, schema=table.schema)
    else:
        labels = [number if int_labels else name for _, number, name in rows]
        table = pa.table({"text": [cell for cell, _, _ in rows], "label": labels})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    with TemporaryDirectory() as folder:
        result = import_checked(write(folder, "hostile.parquet", buffer.getvalue(), False), fmt)
    if result is None:
        assert fmt == "auto" or not rows
        return
    assert sorted(pointer or "" for _, pointer in places(result)) == sorted(
        f"[{i}]" for i in range(len(rows))
    )
