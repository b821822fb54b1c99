"""Benchmark: server time of every page of `sftline ui` on a big record.

    python bench/bench_ui.py                       # 100 datasets, 1,000 runs, 100,000 predictions
    python bench/bench_ui.py --repeats 30 --json
    python bench/bench_ui.py --small               # the tests' small record (a quick look)

Set-up, in a temporary folder: `sftline init` a classify project, then `tests/support/big_record`
seeds its SQLite record by bulk inserts: 100 datasets of 3 versions with gate reports, 1,000
completed runs with 50 logged steps each (loss, throughput, holdout loss and accuracy every 10),
1,000 train station runs with their lineage, 200 evaluations of 60 outputs, a registered model of
4 versions with its history, 1,440 minutes of production and canary aggregates and 100,000
logged predictions. Then monitoring: 20 minutes of failing requests at the end, a `sftline monitor`
pass over the last hour (it pages, and queues the audit sample for review) and one two hours on
(the pages resolve), plus `--monitoring-rows` each of past reports, resolved alerts and review
items added through the record's queries (2,000 by default).

Measurement: the dashboard app (`create_app`, the defaults `sftline ui` uses) in this process,
called through Starlette's TestClient; each page once to warm up, then `--repeats` times. The
server time is the app's own `Server-Timing` header (routing, the record's queries, charts and
the template; not the client or the socket). Per page: the first (cold) call, median and p95 in
ms, and whether the p95 is under the 300 ms budget (the first call of a comparison computes the
paired bootstrap, later ones read the dashboard's cache of it). Peak memory is this process's peak
RSS (ru_maxrss) after seeding and after all the pages; the seeding itself is timed too.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient  # noqa: E402

from sftline.project_init import init_project  # noqa: E402
from sftline.record import queries  # noqa: E402
from sftline.record.workspace import Workspace  # noqa: E402
from sftline.stations.monitor import run_monitor  # noqa: E402
from sftline.ui.app import create_app  # noqa: E402
from tests.support.big_record import LABELS, MODEL_NAME, SMALL, Scale, error_spike, seed  # noqa: E402

BUDGET_MS = 300.0


def pages(names: dict[str, object]) -> list[str]:
    run, evaluation, baseline = names["run"], names["evaluation"], names["baseline"]
    return [
        "/line",
        "/line?page=20",
        f"/lineage?artifact={run}",
        "/data",
        f"/data/{names['dataset']}",
        f"/data/reports/{names['report']}",
        "/runs",
        "/runs?page=20",
        f"/runs/{run}",
        "/evals",
        f"/evals/{evaluation}",
        f"/evals/{evaluation}?against={baseline}",
        "/registry",
        f"/registry/{names['model']}",
        f"/registry/{names['model']}/1/card",
        "/serving",
        "/serving?window=360",
        "/serving?page=1000",
        "/monitoring",
        f"/monitoring?report={names['spike_report']}",
        "/monitoring?review_page=40&alerts_page=20&reports_page=50",
        "/monitoring?queue=all",
    ]


def add_monitoring(workspace: Workspace, now: datetime, rows: int) -> dict[str, int]:
    """An error spike and two monitoring passes (the first pages, the second resolves), then
    `rows` past reports, resolved alerts and review items."""
    error_spike(workspace, now.replace(second=0, microsecond=0))
    first = run_monitor(workspace, model_name=MODEL_NAME, window="1h", now=now, drift=False)
    calm = run_monitor(
        workspace, model_name=MODEL_NAME, window="1h", now=now + timedelta(hours=2), drift=False
    )
    with workspace.record.session() as session:
        newest = queries.monitor_reports(session, limit=1)[0]
        for i in range(rows):
            at = now - timedelta(hours=i + 1)
            queries.add_monitor_report(
                session, model_name=MODEL_NAME, at=at, window_s=3600.0,
                report_object=newest.report_object, summary=newest.summary,
            )  # fmt: skip
            queries.add_alert(
                session, model_name=MODEL_NAME, kind="slo_burn", name=f"latency:page:{i}", severity="page",
                status="resolved", message="seeded", details={}, fired_at=at, last_seen_at=at,
                resolved_at=at + timedelta(minutes=5), delivery={},
            )  # fmt: skip
        queries.add_review_items(
            session,
            [
                {
                    "request_id": f"seeded-review-{i}",
                    "model_name": MODEL_NAME,
                    "model_version": f"{MODEL_NAME}@3",
                    "reason": "low_confidence",
                    "status": "open",
                    "prompt": f"which card is this, case {i}",
                    "output": "card_lost",
                    "confidence": 0.3,
                    "served_at": now - timedelta(minutes=i),
                }
                for i in range(rows)
            ],  # fmt: skip
        )
    return {"spike_report": first.report_id, "calm_report": calm.report_id}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--small", action="store_true", help="The tests' small record instead.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--monitoring-rows", type=int, default=2_000)
    args = parser.parse_args()
    scale = SMALL if args.small else Scale()
    with tempfile.TemporaryDirectory() as folder:
        project = init_project(Path(folder) / "p", task="classify", labels=list(LABELS), abstention="oos")
        with Workspace.open(project) as workspace:
            started = time.perf_counter()
            now = datetime.now(timezone.utc)
            names = seed(workspace, scale, now=now)
            names |= add_monitoring(workspace, now, args.monitoring_rows)
            seed_seconds = time.perf_counter() - started
            seeded_rss = peak_rss_mb()
            client = TestClient(create_app(workspace))
            results = []
            for url in pages(names):
                first = client.get(url)  # warm-up (and a check)
                assert first.status_code == 200, url
                times = []
                for _ in range(args.repeats):
                    response = client.get(url)
                    times.append(float(response.headers["server-timing"].partition("dur=")[2]))
                times.sort()
                p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                results.append(
                    {
                        "page": url,
                        "first_ms": float(first.headers["server-timing"].partition("dur=")[2]),
                        "median_ms": statistics.median(times),
                        "p95_ms": p95,
                    }
                )
    report = {
        "scale": scale.__dict__ | {"monitoring_rows": args.monitoring_rows},
        "seed_seconds": round(seed_seconds, 1),
        "peak_rss_mb_after_seed": round(seeded_rss),
        "peak_rss_mb": round(peak_rss_mb()),
        "pages": results,
        "all_under_budget": all(r["p95_ms"] < BUDGET_MS for r in results),
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(
        f"seeded in {report['seed_seconds']} s; peak RSS {report['peak_rss_mb_after_seed']} MB after seeding"
    )
    print(f"{'page':60} {'first ms':>9} {'median ms':>10} {'p95 ms':>8}")
    for r in results:
        flag = "" if r["p95_ms"] < BUDGET_MS else "  over 300 ms"
        print(f"{r['page']:60} {r['first_ms']:9.1f} {r['median_ms']:10.1f} {r['p95_ms']:8.1f}{flag}")
    print(
        f"peak RSS {report['peak_rss_mb']} MB; "
        f"every page's p95 under {BUDGET_MS:.0f} ms: {report['all_under_budget']}"
    )


if __name__ == "__main__":
    main()
