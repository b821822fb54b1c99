"""The serving tables: per-minute aggregates that server processes add into at once, the
prediction log, and the latency buckets."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from sftline.record.db import Record
from sftline.record.queries import add_predictions, add_serving_minutes, predictions, serving_minutes
from sftline.record.schema import ServingMinute, latency_bucket

on_both = pytest.mark.parametrize(
    "record_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
NOON = datetime(2026, 12, 9, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def record(record_url: str) -> Iterator[Record]:
    opened = Record(record_url)
    yield opened
    opened.close()


def minute_row(moment: datetime, route: str = "production", **counts: Any) -> dict[str, Any]:
    return {"minute": moment, "model_name": "support", "model_version": "support@3", "route": route, **counts}


def as_tuple(row: ServingMinute) -> tuple[Any, ...]:
    return (
        row.route, row.requests, row.status_counts, row.latency_buckets, row.latency_sum_ms,
        row.prompt_tokens, row.output_tokens, row.contract_invalid, row.abstentions, row.busy_seconds,
    )  # fmt: skip


@on_both
def test_rows_of_one_minute_add_up_and_other_routes_and_minutes_stay_apart(record: Record) -> None:
    first = minute_row(
        NOON + timedelta(seconds=5),
        requests=3, status_counts={"200": 2, "429": 1}, latency_buckets={"5": 1, "50": 2},
        latency_sum_ms=70.5, prompt_tokens=30, output_tokens=12, contract_invalid=1, abstentions=0,
        busy_seconds=0.25,
    )  # fmt: skip
    # the same minute seen from another zone, with int status codes and counts left out
    berlin = timezone(timedelta(hours=1))
    second = minute_row(
        (NOON + timedelta(seconds=59)).astimezone(berlin),
        requests=2, status_counts={200: 1, 500: 1}, latency_buckets={"50": 1, "+Inf": 1},
        latency_sum_ms=12000.0, prompt_tokens=20, abstentions=1,
    )  # fmt: skip
    canary = minute_row(NOON, route="canary", requests=1, status_counts={"200": 1})
    later = minute_row(NOON + timedelta(minutes=1), requests=4)
    with record.session() as session:
        add_serving_minutes(session, [first, canary])
    with record.session() as session:
        add_serving_minutes(session, [second, later])

    with record.session() as session:
        rows = serving_minutes(session, since=NOON + timedelta(seconds=30))
        assert [row.minute.replace(tzinfo=timezone.utc) for row in rows] == [NOON] * 2 + [
            NOON + timedelta(minutes=1)
        ]
        assert [as_tuple(row) for row in rows] == [
            ("canary", 1, {"200": 1}, {}, 0.0, 0, 0, 0, 0, 0.0),
            (
                "production", 5, {"200": 3, "429": 1, "500": 1}, {"5": 1, "50": 3, "+Inf": 1},
                12070.5, 50, 12, 1, 1, 0.25,
            ),
            ("production", 4, {}, {}, 0.0, 0, 0, 0, 0, 0.0),
        ]  # fmt: skip
        assert serving_minutes(session, since=NOON + timedelta(minutes=2)) == []
        assert serving_minutes(session, since=NOON, model_name="other") == []


@on_both
def test_writers_adding_to_the_same_minute_at_once_lose_no_count(record: Record) -> None:
    """Two writers, each with its own engine (its own connections), add 25 flushes each to the
    same two rows, in opposite orders (a writer that locked rows in the order given would
    deadlock on PostgreSQL): every count must arrive, exactly once."""
    flushes = 25
    writers = [Record(record.url) for _ in range(2)]
    barrier = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def write(index: int) -> None:
        status = {"200": 1} if index == 0 else {"503": 1}
        rows = [
            minute_row(NOON, route, requests=1, status_counts=status, latency_buckets={"10": 1},
                       latency_sum_ms=7.5, prompt_tokens=3, busy_seconds=0.5)
            for route in ("production", "canary")
        ]  # fmt: skip
        try:
            barrier.wait()
            for _ in range(flushes):
                with writers[index].session() as session:
                    add_serving_minutes(session, rows if index == 0 else rows[::-1])
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()
    assert errors == []
    total = flushes * len(writers)
    with record.session() as session:
        assert [as_tuple(row) for row in serving_minutes(session, since=NOON)] == [
            (route, total, {"200": flushes, "503": flushes}, {"10": total}, 7.5 * total,
             3 * total, 0, 0, 0, 0.5 * total)
            for route in ("canary", "production")
        ]  # fmt: skip


def prediction(at: datetime, model_name: str = "support", **fields: Any) -> dict[str, Any]:
    return {
        "request_id": f"req-{at:%H%M%S}-{model_name}", "at": at, "model_name": model_name,
        "model_version": f"{model_name}@1", "route": "production", "endpoint": "classify",
        "prompt": "[EMAIL] wants a refund", "output": "refund", "abstained": False, "latency_ms": 12.5,
        "prompt_tokens": 9, "output_tokens": 1, "status_code": 200, **fields,
    }  # fmt: skip


@on_both
def test_the_prediction_log_is_read_newest_first_by_time_and_model(record: Record) -> None:
    rows = [
        prediction(NOON, label="refund", confidence=0.9, contract_valid=True, user_hash="u" * 64),
        prediction(NOON + timedelta(minutes=1), extra={"shadow_of": "req-1"}),
        prediction(NOON + timedelta(minutes=2), model_name="triage"),
    ]
    with record.session() as session:
        add_predictions(session, rows)
        add_predictions(session, [])
    with record.session() as session:
        newest = predictions(session)
        assert [p.request_id for p in newest] == [
            "req-120200-triage",
            "req-120100-support",
            "req-120000-support",
        ]
        oldest = newest[-1]
        assert (oldest.label, oldest.confidence, oldest.contract_valid, oldest.user_hash, oldest.extra) == (
            "refund", 0.9, True, "u" * 64, {},
        )  # fmt: skip
        assert (newest[1].label, newest[1].contract_valid, newest[1].extra) == (
            None,
            None,
            {"shadow_of": "req-1"},
        )
        since = predictions(session, since=NOON + timedelta(seconds=30), model_name="support")
        assert [p.request_id for p in since] == ["req-120100-support"]
        assert [p.request_id for p in predictions(session, limit=1)] == ["req-120200-triage"]


@pytest.mark.parametrize(
    ("latency_ms", "bucket"),
    [(0.0, "5"), (5.0, "5"), (5.01, "10"), (999.9, "1000"), (10000.0, "10000"), (10000.5, "+Inf")],
)
def test_a_latency_is_counted_in_the_first_bucket_at_or_above_it(latency_ms: float, bucket: str) -> None:
    assert latency_bucket(latency_ms) == bucket
