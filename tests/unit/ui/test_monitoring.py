"""The dashboard's monitoring panels over a record that `sftline monitor` ran on: the SLO table
with each burn-rate rule (a firing one highlighted), alerts firing and resolved, past reports,
drift tests with their charts and novel clusters, the review queue page by page; and the review
label form: an admin's label is recorded as feedback under the key's name, a read-only visitor
sees no form, and a bad token or a label outside the label set records nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sftline.project_init import init_project
from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.serving.keys import create_key
from sftline.stations.monitor import run_monitor, summary_of
from sftline.ui.app import create_app
from tests.support.big_record import LABELS, MODEL_NAME, SMALL, error_spike, seed

ORIGIN = "http://testserver"
NOW = datetime(2026, 12, 2, 12, 0, 30, tzinfo=timezone.utc)
LOW = 30
"""Predictions answered at confidence 0.3: each goes to the review queue as low_confidence."""


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[tuple[Workspace, dict[str, Any]]]:
    """The small seeded record, 20 minutes of failing requests at its end and 30 unsure answers;
    a monitoring pass then (the error spike pages) and one two hours later (it has resolved)."""
    project = init_project(tmp_path / "p", task="classify", labels=list(LABELS), abstention="oos")
    with Workspace.open(project) as workspace:
        seed(workspace, SMALL, now=NOW)
        error_spike(workspace, NOW.replace(second=0))
        with workspace.record.session() as session:
            queries.add_predictions(
                session,
                [
                    {
                        "request_id": f"unsure-{i:02d}",
                        "at": NOW - timedelta(seconds=10 + i),
                        "model_name": MODEL_NAME,
                        "model_version": f"{MODEL_NAME}@3",
                        "route": "production",
                        "endpoint": "classify",
                        "prompt": f"lost my card or not, case {i:02d}",
                        "output": "transfer",
                        "label": "transfer",
                        "confidence": 0.3,
                        "abstained": False,
                        "contract_valid": True,
                        "latency_ms": 30.0,
                        "prompt_tokens": 8,
                        "output_tokens": 1,
                        "status_code": 200,
                    }
                    for i in range(LOW)
                ],
            )
        spike = run_monitor(workspace, model_name=MODEL_NAME, window="1h", now=NOW, drift=False)
        calm = run_monitor(
            workspace, model_name=MODEL_NAME, window="1h", now=NOW + timedelta(hours=2), drift=False
        )
        yield workspace, {"spike": spike, "calm": calm}


@pytest.fixture
def client(monitored: tuple[Workspace, dict[str, Any]]) -> TestClient:
    return TestClient(create_app(monitored[0]))


def rows(html: str, table_class: str) -> list[str]:
    found = re.search(rf'<table class="{table_class}">(.*?)</table>', html, re.S)
    assert found is not None, table_class
    return re.findall(r"<tr[ >].*?</tr>", found.group(1), re.S)[1:]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def sign_in(client: TestClient, key: str) -> str:
    token = csrf_of(client.get("/signin").text)
    signed = client.post(
        "/signin", data={"csrf": token, "key": key, "next": "/monitoring"}, headers={"origin": ORIGIN}
    )
    assert signed.status_code == 200
    return csrf_of(signed.text)


def test_the_report_that_paged_shows_its_firing_rules_and_budget(
    client: TestClient, monitored: tuple[Workspace, dict[str, Any]]
) -> None:
    spike = monitored[1]["spike"]
    firing = [a["name"] for a in spike.report["alerts"]["firing"]]
    assert "availability:page:1h/5m" in firing
    page = client.get(f"/monitoring?report={spike.report_id}").text
    slo_rows = rows(page, "slos")
    # Two SLOs (availability, latency) of three burn-rate rules each.
    assert len(slo_rows) == 6
    availability = next(s for s in spike.report["slos"] if s["slo"] == "availability")
    fired = [b["firing"] for b in availability["burn"]]
    assert [('class="firing"' in r) for r in slo_rows[:3]] == fired and fired[0]
    assert [('class="firing"' in r) for r in slo_rows[3:]] == [False] * 3  # every request was fast
    # The only errors are the 20 minutes x 600 failed requests (the seed's 429s are the callers'):
    # an objective of 99% allows 1% of the window's requests, and 12,000 is far past that.
    spent = 1 - 12_000 / availability["events"] / 0.01
    assert availability["budget_left"] == pytest.approx(spent) and spent < 0
    assert f'class="num fail">{spent * 100:.1f}%</td>' in slo_rows[0]
    assert "1h/5m" not in slo_rows[0] and "1h (" in slo_rows[0] and "5m (" in slo_rows[0]
    for name in firing:
        assert name in page


def test_alerts_reports_and_the_queue_are_listed(
    client: TestClient, monitored: tuple[Workspace, dict[str, Any]]
) -> None:
    spike, calm = monitored[1]["spike"], monitored[1]["calm"]
    page = client.get("/monitoring").text  # the newest report: the calm one
    assert f'Report <a href="/monitoring?report={calm.report_id}">#{calm.report_id}</a>' in page
    # Two hours on, the pages have resolved; the 3-day ticket still burns (6h of it saw the spike).
    now_firing = page.split("<h3>Firing now</h3>")[1].split("<h3>")[0]
    assert re.findall(r'<tr class="firing"><td>\w+</td><td>([^<]+)</td>', now_firing) == [
        "availability:ticket:3d/6h"
    ]
    resolved = [a["name"] for a in calm.resolved]
    assert sorted(resolved) == ["availability:page:1h/5m", "availability:page:6h/30m"]
    settled = page.split("<h3>Resolved and handled</h3>")[1].split("<h2")[0]
    assert settled.count("<td>resolved</td>") == len(resolved)
    # Past reports, newest first, each linking to its page.
    listed = page.split('<h2 id="reports">')[1]
    assert listed.index(f"#{calm.report_id}</a>") < listed.index(f"#{spike.report_id}</a>")
    assert "availability:page:1h/5m" in listed  # what was firing, from the row's summary
    # The queue: the 30 unsure answers and the audit sample, oldest first, 25 a page.
    with monitored[0].record.session() as session:
        counts = queries.review_counts(session, model_name=MODEL_NAME)
        items = queries.review_items(session, model_name=MODEL_NAME)
        waiting = [i.id for i in items]
        unsure = sum(1 for i in items if i.reason == "low_confidence")
    assert counts == {"open": len(waiting)} and len(waiting) == spike.report["review"]["added"]
    assert unsure == LOW and len(waiting) > 25
    first = rows(page, "review")
    assert [int(re.search(r'id="item-(\d+)"', r).group(1)) for r in first] == waiting[:25]  # type: ignore[union-attr]
    assert "low_confidence" in page and "lost my card or not" in page
    assert f"page 1 of 2 ({len(waiting)} in all)" in page
    second = client.get("/monitoring?review_page=2").text
    ids = [int(re.search(r'id="item-(\d+)"', r).group(1)) for r in rows(second, "review")]  # type: ignore[union-attr]
    assert ids == waiting[25:]
    # Read-only: no label form, a sign-in link instead.
    assert "/monitoring/review/" not in page and "to label review items" in page
    # The serving page shows the newest report's panel too.
    serving = client.get("/serving").text
    assert f"/monitoring?report={calm.report_id}" in serving and 'class="slos"' in serving


def test_drift_tests_are_drawn_reference_against_now_with_the_novel_clusters(
    client: TestClient, monitored: tuple[Workspace, dict[str, Any]]
) -> None:
    """The page draws what a report holds: a report with two drift tests (one with bins) and a
    novel cluster, stored as `sftline monitor` stores one."""
    workspace, calm = monitored[0], monitored[1]["calm"]
    bins = [
        {"low": None, "high": 12.0, "reference": 0.5, "current": 0.1},
        {"low": 12.0, "high": None, "reference": 0.5, "current": 0.9},
    ]
    drift = {
        "false_alarm_rate": 0.01,
        "alpha_per_test": 0.005,
        "tests_planned": ["input_length", "label"],
        "reference": {"inputs": 1000, "inputs_from": "ds-000@v2", "answers": 200},
        "current": {"inputs": 500, "labelled": 0},
        "tests": [
            {
                "name": "input_length",
                "test": "psi",
                "statistic": 0.9,
                "p_value": 0.0001,
                "alpha": 0.005,
                "drifted": True,
                "effect": 0.9,
                "n_reference": 1000,
                "n_current": 500,
                "details": {"bins": bins},
                "skipped": None,
                "min_effect": 0.1,
            },
            {
                "name": "label",
                "test": "chi2",
                "statistic": None,
                "p_value": None,
                "alpha": 0.005,
                "drifted": False,
                "effect": None,
                "n_reference": 200,
                "n_current": 3,
                "details": {},
                "skipped": "3 labelled answers (at least 50)",
                "min_effect": None,
            },
        ],  # fmt: skip
        "drifted": ["input_length"],
        "novel": [
            {
                "size": 42,
                "share": 0.084,
                "top_words": ["flight", "hotel"],
                "examples": ["book me a flight to Oslo", "is the hotel refundable"],
            },
        ],  # fmt: skip
    }
    report = calm.report | {"drift": drift, "at": (NOW + timedelta(hours=3)).isoformat()}
    digest = workspace.objects.put_bytes(json.dumps(report).encode())
    with workspace.record.session() as session:
        row = queries.add_monitor_report(
            session, model_name=MODEL_NAME, at=NOW + timedelta(hours=3), window_s=3600.0,
            report_object=digest, summary=summary_of(report),
        )  # fmt: skip
        report_id = row.id
    page = client.get("/monitoring").text
    assert f"#{report_id}</a>" in page
    tests = rows(page, "drift")
    assert len(tests) == 2 and 'class="firing"' in tests[0] and "skipped: 3 labelled answers" in tests[1]
    assert "input_length: reference against now (% of each)" in page
    # A bar per bin and side, labelled by the bin's range with its open ends.
    for label in ("&lt;= 12 ref", "&lt;= 12 now", "&gt; 12 ref", "&gt; 12 now"):
        assert label in page, label
    assert "<strong>42 inputs</strong> (8.4% of the sample): flight, hotel" in page
    assert "book me a flight to Oslo" in page


def label_form(html: str) -> tuple[int, str]:
    found = re.search(r'action="/monitoring/review/(\d+)/label"', html)
    assert found is not None
    return int(found.group(1)), csrf_of(html)


def test_an_admin_labels_a_review_item_from_the_page(
    client: TestClient, monitored: tuple[Workspace, dict[str, Any]]
) -> None:
    workspace = monitored[0]
    token = sign_in(client, create_key(workspace, "reviewer", "admin"))
    page = client.get("/monitoring").text
    item_id, token = label_form(page)
    # The contract's label set, abstention included, as a select.
    assert re.findall(r'<option value="([^"]+)"', page.split("/label")[1].split("</form>")[0]) == list(LABELS)
    done = client.post(
        f"/monitoring/review/{item_id}/label",
        data={"csrf": token, "label": "card_lost", "back": "/monitoring?queue=labelled"},
        headers={"origin": ORIGIN},
    )
    assert done.status_code == 200 and done.url.path == "/monitoring"
    assert f"review item #{item_id} labelled" in done.text
    assert f'id="item-{item_id}"' in done.text  # back on the labelled view, the item there
    with workspace.record.session() as session:
        item = queries.review_item_by_id(session, item_id)
        assert item is not None
        feedback = queries.feedback(session, model_name=MODEL_NAME)
        assert (item.status, item.label, item.reviewer) == ("labelled", "card_lost", "key:reviewer")
        assert [(f.request_id, f.label, f.source, f.actor) for f in feedback] == [
            (item.request_id, "card_lost", "review", "key:reviewer")
        ]
    # Labelled already: a second label is rejected, with the reason on the page.
    again = client.post(
        f"/monitoring/review/{item_id}/label",
        data={"csrf": token, "label": "oos"},
        headers={"origin": ORIGIN},
    )
    assert f"review item #{item_id} not labelled" in again.text and "is labelled already" in again.text


def test_a_label_outside_the_set_a_bad_token_or_a_read_only_visitor_records_nothing(
    client: TestClient, monitored: tuple[Workspace, dict[str, Any]]
) -> None:
    workspace = monitored[0]
    with workspace.record.session() as session:
        item_id = queries.review_items(session, model_name=MODEL_NAME, limit=1)[0].id
    # Read-only: refused.
    token = csrf_of(client.get("/signin").text)
    url = f"/monitoring/review/{item_id}/label"
    anonymous = client.post(url, data={"csrf": token, "label": "balance"}, headers={"origin": ORIGIN})
    assert anonymous.status_code == 403 and "sign in" in anonymous.text
    token = sign_in(client, create_key(workspace, "reviewer", "admin"))
    for data, origin in (
        ({"csrf": "stale", "label": "balance"}, ORIGIN),
        ({"label": "balance"}, ORIGIN),
        ({"csrf": token, "label": "balance"}, "http://evil.example"),
    ):
        assert client.post(url, data=data, headers={"origin": origin}).status_code == 403
    outside = client.post(url, data={"csrf": token, "label": "pizza"}, headers={"origin": ORIGIN})
    assert (
        "not labelled" in outside.text
        and "&#39;pizza&#39; is not in the contract&#39;s label set" in outside.text
    )
    empty = client.post(url, data={"csrf": token, "label": "  "}, headers={"origin": ORIGIN})
    assert "no label given" in empty.text
    assert client.post("/monitoring/review/99999/label", data={"csrf": token, "label": "oos"},
                       headers={"origin": ORIGIN}).status_code == 404  # fmt: skip
    with workspace.record.session() as session:
        item = queries.review_item_by_id(session, item_id)
        assert item is not None and item.status == "open" and item.label is None
        assert queries.feedback(session, model_name=MODEL_NAME) == []
