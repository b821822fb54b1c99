"""Benchmark: server time of every page of `sftline ui` on a big record.

    python bench/bench_ui.py                       # 100 datasets, 1,000 runs, 100,000 predictions
    python bench/bench_ui.py --repeats 30 --json
    python bench/bench_ui.py --small               # the tests' small record (a quick look)

Set-up, in a temporary folder: `sftline init` a classify project, then `tests/support/big_record`
seeds its SQLite record by bulk inserts: 100 datasets of 3 versions with gate reports, 1,000
completed runs with 50 logged steps each (loss, throughput, holdout loss and accuracy every 10),
1,000 train station runs with their lineage, 200 evaluations of 60 outputs, a registered model of
4 versions with its history, 1,440 minutes of production and canary aggregates and 100,000
logged predictions.

Measurement: the dashboard app (`create_app`, the defaults `sftline ui` uses) in this process,
called through Starlette's TestClient; each page once to warm up, then `--repeats` times. The
server time is the app's own `Server-Timing` header (routing, the record's queries, charts and
the template; not the client or the socket). Per page: median and p95 in ms, and whether the
p95 is under the 300 ms budget. Peak memory is this process's peak RSS (ru_maxrss) after seeding
and after all the pages; the seeding itself is timed too.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient  # noqa: E402

from sftline.project_init import init_project  # noqa: E402
from sftline.record.workspace import Workspace  # noqa: E402
from sftline.ui.app import create_app  # noqa: E402
from tests.support.big_record import LABELS, SMALL, Scale, seed  # noqa: E402

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
    ]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--small", action="store_true", help="The tests' small record instead.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    scale = SMALL if args.small else Scale()
    with tempfile.TemporaryDirectory() as folder:
        project = init_project(Path(folder) / "p", task="classify", labels=list(LABELS), abstention="oos")
        with Workspace.open(project) as workspace:
            started = time.perf_counter()
            names = seed(workspace, scale)
            seed_seconds = time.perf_counter() - started
            seeded_rss = peak_rss_mb()
            client = TestClient(create_app(workspace))
            results = []
            for url in pages(names):
                assert client.get(url).status_code == 200, url  # warm-up (and a check)
                times = []
                for _ in range(args.repeats):
                    response = client.get(url)
                    times.append(float(response.headers["server-timing"].partition("dur=")[2]))
                times.sort()
                p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                results.append({"page": url, "median_ms": statistics.median(times), "p95_ms": p95})
    report = {
        "scale": scale.__dict__,
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
    print(f"{'page':45} {'median ms':>10} {'p95 ms':>8}")
    for r in results:
        flag = "" if r["p95_ms"] < BUDGET_MS else "  over 300 ms"
        print(f"{r['page']:45} {r['median_ms']:10.1f} {r['p95_ms']:8.1f}{flag}")
    print(
        f"peak RSS {report['peak_rss_mb']} MB; "
        f"every page's p95 under {BUDGET_MS:.0f} ms: {report['all_under_budget']}"
    )


if __name__ == "__main__":
    main()
