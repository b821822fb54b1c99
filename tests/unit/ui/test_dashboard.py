"""`sftline ui` in process (Starlette's TestClient) on a small seeded record: every page answers
with its charts drawn, the serving percentiles come from the histogram, and writes need an admin
key, the session's CSRF token and this dashboard's origin."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sftline.monitoring.slis import latency_quantile
from sftline.project_init import init_project
from sftline.record.workspace import Workspace
from sftline.reports.svg import line_chart
from sftline.serving.keys import create_key, revoke
from sftline.stations.registry import history
from sftline.ui.app import create_app
from sftline.ui.evals import Comparisons
from tests.support.big_record import LABELS, SMALL, seed

ORIGIN = "http://testserver"


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[Workspace, dict[str, object]]]:
    project = init_project(tmp_path / "p", task="classify", labels=list(LABELS), abstention="oos")
    with Workspace.open(project) as workspace:
        yield workspace, seed(workspace, SMALL)


@pytest.fixture
def client(seeded: tuple[Workspace, dict[str, object]]) -> TestClient:
    return TestClient(create_app(seeded[0]))


def points(html: str) -> int:
    return html.count('class="point"')


def test_every_page_answers_with_its_charts(client: TestClient, seeded: tuple[Workspace, dict]) -> None:
    names = seeded[1]
    run, evaluation = names["run"], names["evaluation"]
    # page -> a piece of SVG that only a drawn chart holds
    expected = {
        "/line": "train run-",
        f"/lineage?artifact={run}": 'class="node"',
        "/data": "ds-000",
        "/data/ds-000": "report 1",
        f"/data/reports/{names['report']}": 'fill="#72b7b2"',  # the length histogram's bars
        "/runs": f"/runs/{run}",
        f"/runs/{run}": 'class="point"',
        "/evals": evaluation,
        f"/evals/{evaluation}": 'class="cell"',  # the confusion matrix
        f"/evals/{evaluation}?against={names['baseline']}": "Release verdict",
        "/registry": "support@3",  # the seeded canary
        "/registry/support": "<h2>History</h2>",
        "/registry/support/1/card": "<table>",
        "/serving": 'class="point"',
    }
    for url, piece in expected.items():
        response = client.get(url)
        assert response.status_code == 200, url
        assert piece in response.text, url
        assert "server-timing" in response.headers
        assert "default-src 'none'" in response.headers["content-security-policy"]
    run_page = client.get(f"/runs/{run}").text
    # 12 steps of loss, tokens/s; eval_loss and eval_accuracy at step 10: 12 + 1 + 1 + 12 points.
    assert points(run_page) == 12 + 1 + 1 + 12
    serving = client.get("/serving?window=60").text
    # 60 minutes of production and canary: requests (2 x 60), invalid share (2 x 60), p50/p95/p99 (3 x 60).
    assert points(serving) == 2 * 60 + 2 * 60 + 3 * 60
    assert client.get("/runs/run-9999").status_code == 404


def test_predictions_are_paged(client: TestClient) -> None:
    last = client.get("/serving?page=10").text
    assert "page 10 of 10 (500 in all)" in last
    assert last.count("what is my balance, request") == 50
    assert "request 499" in last and "request 449" not in last  # the oldest 50, newest first


def test_serving_percentiles_are_the_monitoring_stations() -> None:
    """One implementation: the serving page's percentiles are `sftline monitor`'s, interpolated
    inside the bucket (100 requests: the 95th is the 5th of 9 in (50, 250])."""
    buckets = {"10": 50, "50": 40, "250": 9, "+Inf": 1}
    assert latency_quantile(buckets, 0.5) == 10
    assert latency_quantile(buckets, 0.7) == 30  # 10 + 40 x 20/40
    assert latency_quantile(buckets, 0.95) == pytest.approx(50 + 200 * 5 / 9)
    assert latency_quantile(buckets, 0.999) == 250  # the open top bucket: its lower edge
    assert latency_quantile({}, 0.5) is None


def test_line_chart_draws_a_point_per_value() -> None:
    svg = line_chart({"loss": [(1, 2.0), (2, 1.5), (3, 1.2)], "eval_loss": [(3, 1.4)]}, x_label="step")
    assert points(svg) == 4
    assert svg.count('class="series"') == 2
    assert line_chart({}) == "<p><em>no data</em></p>"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_rollback_needs_an_admin_key_a_csrf_token_and_this_origin(
    client: TestClient, seeded: tuple[Workspace, dict]
) -> None:
    workspace = seeded[0]
    admin = create_key(workspace, "ops", "admin")
    serve_only = create_key(workspace, "app", "serve")
    token = csrf_of(client.get("/signin").text)
    # Not signed in: refused, nothing recorded.
    refused = client.post("/registry/support/rollback", data={"csrf": token}, headers={"origin": ORIGIN})
    assert refused.status_code == 403 and "sign in" in refused.text
    # A serve-scope key does not sign in.
    wrong = client.post("/signin", data={"csrf": token, "key": serve_only}, headers={"origin": ORIGIN})
    assert wrong.status_code == 401
    signed = client.post(
        "/signin", data={"csrf": token, "key": admin, "next": "/registry/support"}, headers={"origin": ORIGIN}
    )
    assert signed.status_code == 200 and "signed in as key ops" in signed.text
    assert "HttpOnly" in signed.history[0].headers["set-cookie"]
    assert "SameSite=strict" in signed.history[0].headers["set-cookie"]
    token = csrf_of(signed.text)  # a sign-in starts a new session with a new token
    before = len(history(workspace, "support"))
    # A foreign origin, a missing token, a stale token: refused.
    for data, origin in (({"csrf": token}, "http://evil.example"), ({}, ORIGIN), ({"csrf": "stale"}, ORIGIN)):
        response = client.post("/registry/support/rollback", data=data, headers={"origin": origin})
        assert response.status_code == 403
    assert len(history(workspace, "support")) == before
    done = client.post(
        "/registry/support/rollback", data={"csrf": token, "reason": "latency"}, headers={"origin": ORIGIN}
    )
    assert (
        done.status_code == 200
        and "support@1 restored to production; support@2 returned to candidate" in done.text
    )
    tail = history(workspace, "support")[-2:]
    assert [(h["version"], h["to"], h["actor"], h["reason"]) for h in tail] == [
        (2, "candidate", "key:ops", "latency"),
        (1, "production", "key:ops", "latency"),
    ]
    # A key revoked while signed in stops working at the next write.
    revoke(workspace, "ops")
    again = client.post("/registry/support/rollback", data={"csrf": token}, headers={"origin": ORIGIN})
    assert again.status_code == 403 and "revoked" in again.text


def test_a_kept_comparison_is_the_one_computed_afresh(seeded: tuple[Workspace, dict]) -> None:
    workspace, names = seeded
    url = f"/evals/{names['evaluation']}?against={names['baseline']}"
    kept = TestClient(create_app(workspace))
    first, second = kept.get(url).text, kept.get(url).text
    fresh = TestClient(create_app(workspace)).get(url).text
    assert "Release verdict" in first and first == second == fresh


def test_comparisons_are_computed_once_per_pair_and_handed_out_as_copies() -> None:
    calls: list[str] = []

    def compute(name: str) -> Callable[[], dict[str, Any]]:
        return lambda: calls.append(name) or {"overall": {"accuracy": {"diff": 0.1}}}

    kept = Comparisons(size=2)
    kept.get(("a", "b"), compute("ab"))["overall"]["accuracy"]["diff"] = 99.0  # a caller's change
    assert kept.get(("a", "b"), compute("ab")) == {"overall": {"accuracy": {"diff": 0.1}}}
    kept.get(("a", "c"), compute("ac"))
    kept.get(("a", "d"), compute("ad"))  # the least recently used pair, (a, b), goes
    kept.get(("a", "b"), compute("ab"))
    assert calls == ["ab", "ac", "ad", "ab"]
