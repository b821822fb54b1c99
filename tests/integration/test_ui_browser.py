"""`sftline ui` end to end in headless Chromium: a project made by the real CLI on the tiny chat
model (two trained and registered runs, their evaluations, an admin key) plus an hour of serving
aggregates; every page loads without console errors with its charts drawn, a promotion the
release verdict refuses says why on the page, and a promotion and a rollback made from the page
are in the registry's history under the key's name; the monitoring page shows a `sftline monitor`
report and a review item is labelled from it. A screenshot of every page is kept under
$SFTLINE_TEST_ARTIFACTS (default tests/artifacts/, git-ignored).

Chromium is Debian's (`scripts/ensure-chromium.sh`), driven through Playwright's
`executable_path`; no browser is downloaded. Without /usr/bin/chromium the test skips, unless
SFTLINE_REQUIRE_BROWSER=1 (CI), where it fails."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.stations.monitor import run_monitor
from sftline.stations.registry import history
from sftline.ui.app import create_app
from tests.integration.conftest import set_release
from tests.support.cli import run_json

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TRAIN = ["train", "--base", "tiny", "--data", "intents", "--max-steps", "4", "--batch-tokens", "256"]
ARTIFACTS = Path(os.environ.get("SFTLINE_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


def browser_or_skip() -> Any:
    if not CHROMIUM.exists():
        reason = f"no {CHROMIUM}: run scripts/ensure-chromium.sh (apt-get install chromium)"
        if os.environ.get("SFTLINE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"a browser is required here: {reason}")
        pytest.skip(reason)
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    return sync_api


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard(registry_project: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[dict[str, Any]]:
    """The registry project with two registered runs, an admin key and serving traffic, and the
    dashboard over it on a free port."""
    first = run_json(capsys, *TRAIN, "--seed", "1", "--eval-on", "release-suite", "--eval-every", "2")["run"]
    second = run_json(capsys, *TRAIN, "--seed", "2")["run"]
    run_json(capsys, "models", "register", first, "--name", "support")
    run_json(capsys, "models", "register", second, "--name", "support")
    run_json(capsys, "eval", first, "--on", "release-suite")
    key = run_json(capsys, "keys", "add", "ui-admin", "--scope", "admin")["key"]
    workspace = Workspace.find(registry_project)
    now = datetime.now(timezone.utc)
    with workspace.record.session() as session:
        queries.add_serving_minutes(
            session,
            [
                {
                    "minute": now - timedelta(minutes=m),
                    "model_name": "support",
                    "model_version": version,
                    "route": route,
                    "requests": 20 + m % 7,
                    "latency_sum_ms": 400.0 + m,
                    "contract_invalid": m % 3,
                    "status_counts": {"200": 20 + m % 7},
                    "latency_buckets": {"10": 10, "25": 8 + m % 7, "100": 2},
                }
                for m in range(30)
                for version, route in (("support@1", "production"), ("support@2", "canary"))
            ],
        )
        queries.add_predictions(
            session,
            [
                {
                    "request_id": f"r{i}",
                    "at": now - timedelta(seconds=i),
                    "model_name": "support",
                    "model_version": "support@1",
                    "route": "production",
                    "endpoint": "chat",
                    "prompt": f"question {i}",
                    "output": "balance",
                    "abstained": False,
                    "latency_ms": 12.0,
                    "prompt_tokens": 5,
                    "output_tokens": 1,
                    "status_code": 200,
                }
                for i in range(60)
            ]
            + [
                {
                    "request_id": f"unsure{i}",
                    "at": now - timedelta(seconds=i),
                    "model_name": "support",
                    "model_version": "support@1",
                    "route": "production",
                    "endpoint": "chat",
                    "prompt": f"something else entirely {i}",
                    "output": "",
                    "abstained": True,
                    "latency_ms": 12.0,
                    "prompt_tokens": 5,
                    "output_tokens": 0,
                    "status_code": 200,
                }
                for i in range(3)
            ],
        )
    # A monitoring pass: its report, and the abstentions queued for review.
    run_monitor(workspace, model_name="support", window="1h", drift=False)
    server = uvicorn.Server(uvicorn.Config(create_app(workspace), port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the dashboard did not start"
    yield {
        "url": f"http://127.0.0.1:{server.config.port}",
        "key": key,
        "first": first,
        "workspace": workspace,
        "project": registry_project,
    }
    server.should_exit = True
    thread.join(timeout=10)
    workspace.close()


def test_dashboard_in_a_browser(dashboard: dict[str, Any]) -> None:
    sync_api = browser_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base, first = dashboard["url"], dashboard["first"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"failed request {r.url}"))

        def visit(path: str, shot: str, chart: str | None = None) -> None:
            response = page.goto(base + path)
            assert response is not None and response.status == 200, path
            if chart is not None:
                assert page.locator(chart).count() > 0, f"{path}: no {chart}"
            page.screenshot(path=str(ARTIFACTS / f"ui-{shot}.png"), full_page=True)
            assert problems == [], f"{path}: {problems}"

        visit("/line", "line")
        visit(f"/lineage?artifact={first}", "lineage", "svg.lineage g.node")
        visit("/data", "data")
        visit("/data/intents", "dataset")
        visit("/runs", "runs")
        visit(f"/runs/{first}", "run", "svg circle.point")
        visit(f"/runs/{first}/masks", "masks", ".mask .trained")
        visit("/evals", "evals")
        evaluation = page.locator("table a[href^='/evals/']").first.inner_text()
        visit(f"/evals/{evaluation}", "evaluation", "svg path.whisker")
        visit("/registry", "registry")
        visit("/registry/support/1/card", "card")
        visit("/serving", "serving", "svg circle.point")

        # Sign in with the admin key; a promotion the verdict refuses says why on the page.
        visit("/signin?next=/registry/support", "signin")
        page.fill("input[name=key]", dashboard["key"])
        page.click("button:has-text('sign in')")
        page.select_option("#promote select[name=version]", "1")
        page.select_option("#promote select[name=to]", "production")
        page.click("#promote button")
        refusal = page.locator(".flash.error").inner_text()
        assert "support@1 not promoted to production: the release verdict is fail" in refusal
        assert "below the minimum 0.99" in refusal
        page.screenshot(path=str(ARTIFACTS / "ui-registry-refused.png"), full_page=True)

        # Criteria it passes (read from sftline.yaml at the moment of the promotion).
        set_release(dashboard["project"], [{"metric": "accuracy", "max_drop": 1.0}])
        page.select_option("#promote select[name=version]", "1")
        page.fill("#promote input[name=reason]", "first release")
        page.click("#promote button")
        assert "support@1 promoted from candidate to production" in page.locator(".flash.ok").inner_text()
        page.select_option("#promote select[name=version]", "2")
        page.click("#promote button")
        assert "support@1 moved aside" in page.locator(".flash.ok").inner_text()
        page.click("#rollback button")
        assert "support@1 restored to production" in page.locator(".flash.ok").inner_text()
        assert page.locator("#history td:has-text('key:ui-admin')").count() == 5
        page.screenshot(path=str(ARTIFACTS / "ui-registry-promoted.png"), full_page=True)

        # The monitoring panels, and a review item labelled from its form as the signed-in key.
        visit("/monitoring", "monitoring", "table.slos")
        form = page.locator("form.label").first
        if form.locator("select").count():
            form.locator("select").select_option(index=0)
        else:
            form.locator("input[name=label]").fill("I can only help with account questions.")
        form.locator("button").click()
        assert "labelled" in page.locator(".flash.ok").inner_text()
        page.screenshot(path=str(ARTIFACTS / "ui-monitoring-labelled.png"), full_page=True)
        assert problems == []
        browser.close()
    changes = [
        (h["version"], h["action"], h["to"], h["actor"]) for h in history(dashboard["workspace"], "support")
    ]
    assert changes[2:] == [
        (1, "promote", "production", "key:ui-admin"),
        (1, "demote", "archived", "key:ui-admin"),
        (2, "promote", "production", "key:ui-admin"),
        (2, "rollback", "candidate", "key:ui-admin"),
        (1, "rollback", "production", "key:ui-admin"),
    ]
    assert history(dashboard["workspace"], "support")[2]["reason"] == "first release"
