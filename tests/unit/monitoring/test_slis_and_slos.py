"""SLIs from the serving aggregates, burn-rate rules, label files and the review rules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from sftline.monitoring.labels import read_labels
from sftline.monitoring.settings import MonitoringConfig, Slo, parse_duration
from sftline.monitoring.slis import (
    Labelled,
    events_per_minute,
    feedback_indicators,
    good_latency,
    latency_quantile,
    serving_indicators,
)
from sftline.monitoring.slo import budget, check_burn
from sftline.stations.monitor import review_reason

NOW = datetime(2026, 12, 2, 12, 0, 30, tzinfo=timezone.utc)


def minute_row(minutes_ago: int, requests: int, errors: int = 0, slow: int = 0) -> dict[str, object]:
    ok = requests - errors
    return {
        "minute": (NOW - timedelta(minutes=minutes_ago)).replace(second=0, microsecond=0),
        "model_version": "m@1",
        "route": "production",
        "requests": requests,
        "status_counts": {"200": ok, "500": errors} if errors else {"200": ok},
        "latency_buckets": {"50": requests - slow, "2500": slow} if slow else {"50": requests},
        "latency_sum_ms": 40.0 * requests,
        "prompt_tokens": 10 * requests,
        "output_tokens": 2 * requests,
        "contract_invalid": 0,
        "abstentions": 0,
        "busy_seconds": 0.01 * requests,
    }


def test_durations_and_bad_config() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1.5h") == 5400 and parse_duration("3d") == 259200
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    with pytest.raises(ValueError, match="threshold_ms"):
        Slo(name="lat", sli="latency", objective=0.9)
    with pytest.raises(ValueError, match="given twice"):
        MonitoringConfig.model_validate(
            {"slos": [{"name": "a", "sli": "success_rate", "objective": 0.9}] * 2}
        )


def test_latency_quantiles_interpolate_inside_the_bucket() -> None:
    # 90 requests at or under 50 ms, 10 between 100 and 250 ms
    buckets = {"50": 90, "250": 10}
    assert latency_quantile(buckets, 0.5) == pytest.approx(50 * 50 / 90)
    assert latency_quantile(buckets, 0.95) == pytest.approx(50 + 200 * 0.5)
    assert latency_quantile({"+Inf": 3, "10000": 1}, 0.99) == 10000  # the open bucket: its lower edge
    assert latency_quantile({}, 0.5) is None
    # A bound between edges counts as the edge below it: never more good requests than there were.
    assert good_latency(buckets, 249) == 90 and good_latency(buckets, 250) == 100


def test_serving_indicators_count_errors_and_cost() -> None:
    rows = [minute_row(1, 100, errors=5, slow=10), minute_row(2, 50)]
    rows[0]["status_counts"] |= {"408": 2, "429": 3, "400": 1}
    rows[0]["requests"] = 106
    s = serving_indicators(rows, price_per_hour=3.6)
    # 5xx and timeouts are errors; a 429 or 400 is the caller's
    assert s["errors"] == 7 and s["success_rate"] == pytest.approx(1 - 7 / 156)
    assert s["busy_seconds"] == pytest.approx(1.5)
    assert s["cost_per_1k_requests"] == pytest.approx(3.6 * 1.5 / 3600 / 156 * 1000)
    assert s["latency_ms"]["p50"] is not None and s["latency_ms"]["p99"] > 50


def test_an_error_spike_fires_the_fast_burn_rule_and_not_the_slow_ones() -> None:
    cfg = MonitoringConfig()
    availability = cfg.slos[0]
    healthy = [minute_row(m, 100) for m in range(10, 3 * 24 * 60, 5)]  # 3 days, a row every 5 minutes
    spike = [minute_row(m, 20, errors=20) for m in range(0, 10)]  # the last 10 minutes all fail
    series = events_per_minute(availability, healthy + spike, [])
    checks = {(c.severity, c.long_s): c for c in check_burn(availability, series, cfg.burn_rules, NOW)}
    fast, medium, slow = checks[("page", 3600)], checks[("page", 21600)], checks[("ticket", 259200)]
    assert fast.firing and fast.burn_long >= 14.4 and fast.burn_short >= 14.4
    assert not medium.firing and medium.burn_short >= 6 > medium.burn_long  # the 30m window alone burns
    assert not slow.firing and slow.burn_long < 1
    # Healthy traffic alone fires nothing, and the budget over the day is untouched.
    quiet = events_per_minute(availability, healthy, [])
    assert not any(c.firing for c in check_burn(availability, quiet, cfg.burn_rules, NOW))
    assert budget(availability, quiet, NOW, 86400)["budget_left"] == 1.0
    # A scaled-down drill: the 1h/5m rule over 1 minute/5 seconds sees only the last minute's spike.
    scaled = check_burn(availability, series, cfg.burn_rules, NOW, scale=1 / 60)
    assert scaled[0].long_s == 60 and scaled[0].firing


def test_latency_and_accuracy_slos_count_their_own_events() -> None:
    latency = Slo(name="fast", sli="latency", objective=0.9, threshold_ms=1000)
    series = events_per_minute(latency, [minute_row(1, 100, slow=30)], [])
    assert list(series.values()) == [(30, 100)]
    accuracy = Slo(name="right", sli="accuracy", objective=0.8)
    labelled = [
        Labelled("a", NOW, "m@1", "production", "balance", "balance", 0.9),
        Labelled("b", NOW, "m@1", "production", "balance", "transfer", 0.6),
    ]
    assert list(events_per_minute(accuracy, [], labelled).values()) == [(1, 2)]


def test_feedback_indicators_with_intervals_top_k_and_calibration() -> None:
    rows = [
        Labelled(str(i), NOW, "m@1", "production", truth, predicted, conf, tuple(top))
        for i, (truth, predicted, conf, top) in enumerate(
            [("a", "a", 0.9, "ab"), ("b", "a", 0.8, "ab"), ("c", "c", 0.7, "cb"), ("a", "a", 0.95, "ac")] * 5
        )
    ]
    out = feedback_indicators(rows, k=2)
    assert out["labelled"] == 20 and out["accuracy"]["value"] == pytest.approx(0.75)
    assert out["accuracy"]["low"] <= 0.75 <= out["accuracy"]["high"]
    assert out["top2_accuracy"]["value"] == 1.0
    assert 0 < out["macro_f1"]["value"] < 1 and out["ece"]["value"] > 0
    assert sum(b["count"] for b in out["reliability"]) == 20
    assert feedback_indicators([]) == {"labelled": 0}


def test_label_files_report_every_bad_row_and_lose_none(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "request_id,label,note\n"
        'r1,balance,"a note\nover two lines"\n'
        ",balance,no id\n"
        "r2,,empty label\n"
        "r3,not-a-label,\n"
        "r1,transfer,again\n"
        "r4,oos,\n"
    )
    out = read_labels(path, labels={"balance", "transfer", "oos"})
    assert [(r.request_id, r.label) for r in out.accepted] == [("r1", "balance"), ("r4", "oos")]
    reasons = [(r.reason, r.field, r.origin) for r in out.rejected]
    assert reasons == [
        ("missing_field", "request_id", f"{path}:4"),
        ("missing_field", "label", f"{path}:5"),
        ("unknown_label", "label", f"{path}:6"),
        ("duplicate_request_id", "request_id", f"{path}:7"),
    ]
    assert out.read == 6 == len(out.accepted) + len(out.rejected)
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text('{"request_id": "x", "answer": "anything"}\n[1, 2]\n{"request_id": "y", "correct": 3}\n')
    out = read_labels(jsonl)
    assert [(r.request_id, r.label) for r in out.accepted] == [("x", "anything"), ("y", "3")]
    assert [r.reason for r in out.rejected] == ["not_an_object"]


def prediction(request_id: str, **fields: object) -> SimpleNamespace:
    base = {"request_id": request_id, "contract_valid": True, "abstained": False, "confidence": 0.9}
    return SimpleNamespace(**(base | fields))


def test_review_rules_pick_the_answers_people_should_see() -> None:
    cfg = MonitoringConfig.model_validate({"review": {"confidence_below": 0.6, "audit_share": 0.0}})
    assert review_reason(prediction("a", contract_valid=False), cfg) == "contract_invalid"  # type: ignore[arg-type]
    assert review_reason(prediction("b", abstained=True), cfg) == "abstained"  # type: ignore[arg-type]
    assert review_reason(prediction("c", confidence=0.3), cfg) == "low_confidence"  # type: ignore[arg-type]
    assert review_reason(prediction("d"), cfg) is None  # type: ignore[arg-type]
    audit = MonitoringConfig.model_validate({"review": {"audit_share": 0.25}})
    chosen = [review_reason(prediction(str(i)), audit) for i in range(2000)]  # type: ignore[arg-type]
    assert 0.2 < chosen.count("audit") / 2000 < 0.3  # a stable hash sample of about the share
    assert chosen == [review_reason(prediction(str(i)), audit) for i in range(2000)]  # type: ignore[arg-type]
