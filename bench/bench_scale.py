"""Benchmark: the near-duplicate and contamination gates at scale, in process and on a local Ray
cluster of two nodes.

    python bench/bench_scale.py --rows 1000000

Synthetic support queries (`bench_near_duplicates.synthetic_queries`: ~5% planted near
duplicates) are written as examples to a Parquet file, with a held-out set of every 100th row
(1%: exact matches, and near matches through the planted copies). Each method then runs in a
subprocess of its own:

- `local`: the in-process engine (`LocalEngine`);
- `ray`: `ray.cluster_utils.Cluster` with two nodes of 1 CPU each (each its own raylet and object
  store) and `RayEngine` connected to it; the driver sends the workers the texts to compare;
- `ray-parquet`: the same, but the workers read the examples from the Parquet file (the version's
  object, in `sftline check`) and make the texts themselves.

Each runs the near-duplicate gate (pair search on the engine, grouping in the driver) and the
contamination gate (matching on the engine) and reports seconds and records/s of each. The
parent samples the subprocess's whole process tree every 0.25 s (Ray's GCS, raylets with their
object stores, and workers are all descendants) and reports the peak of the summed RSS and of
the summed PSS (shared pages divided among the processes that map them: the object store
counted once) over the whole run and over each gate. Last, the two methods' pairs, groups,
flags and reports are compared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_near_duplicates import synthetic_queries  # noqa: E402

from sftline.data.common_text import CommonText  # noqa: E402
from sftline.data.example import Example, Provenance  # noqa: E402
from sftline.data.parquet_io import read_examples, write_examples  # noqa: E402
from sftline.gates.contamination import ContaminationGate  # noqa: E402
from sftline.gates.engine import Engine, LocalEngine, RayEngine, Texts  # noqa: E402
from sftline.gates.near_duplicates import NearDuplicateGate  # noqa: E402
from sftline.text.minhash import SimilarPairs  # noqa: E402

OBJECT_STORE_BYTES = 3 << 30  # per Ray node


def write_data(rows: int, folder: Path) -> tuple[Path, Path]:
    """The examples and the held-out set as Parquet files (made once per row count)."""
    data, held = folder / f"data-{rows}.parquet", folder / f"heldout-{rows}.parquet"
    if data.exists() and held.exists():
        return data, held
    folder.mkdir(parents=True, exist_ok=True)
    texts, _ = synthetic_queries(rows)
    provenance = Provenance("synthetic", "0" * 64, "classification", None)
    examples = [Example(id=f"s{i}", provenance=provenance, text=t, label="x") for i, t in enumerate(texts)]
    write_examples(examples, data)
    write_examples(
        [Example(id=f"h{e.id}", provenance=provenance, text=e.text, label="x") for e in examples[::100]], held
    )
    return data, held


class TimedEngine:
    """The engine the gates get, keeping the pairs it found and how long the search took."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.name = engine, engine.name
        self.found: SimilarPairs | None = None
        self.pairs_seconds = 0.0

    def map(self, features: Any, examples: Sequence[Example]) -> list[Any]:
        return self.engine.map(features, examples)

    def similar_pairs(self, texts: Texts, **options: Any) -> SimilarPairs:
        start = time.perf_counter()
        self.found = self.engine.similar_pairs(texts, **options)
        self.pairs_seconds = time.perf_counter() - start
        return self.found


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pairs_digest(found: SimilarPairs) -> str:
    h = hashlib.sha256()
    for array in (found.i, found.j, found.estimate):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def flags_of(outcome: Any) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(f.example_id, f.reason, f.detail, f.related) for f in outcome.flags]


def run_method(method: str, data: Path, held: Path, batch_size: int) -> dict[str, Any]:
    """One method's run (in the subprocess): phases with wall-clock bounds, results as digests."""
    phases: dict[str, tuple[float, float]] = {}
    result: dict[str, Any] = {"method": method}
    begin = time.time()
    if method.startswith("ray"):
        from ray.cluster_utils import Cluster

        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "object_store_memory": OBJECT_STORE_BYTES,
                "include_dashboard": False,
            },
        )
        cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE_BYTES)
        cluster.wait_for_nodes()
        ray_engine = RayEngine(address=cluster.address, batch_size=batch_size)
        ray_engine.start()
        engine: Engine = ray_engine
        import ray

        result["nodes"] = len([n for n in ray.nodes() if n["Alive"]])
        result["cpus"] = ray.cluster_resources().get("CPU")
    else:
        engine = LocalEngine()
    phases["start"] = (begin, time.time())

    begin = time.time()
    examples, held_out = read_examples(data), read_examples(held)
    phases["load"] = (begin, time.time())
    common = CommonText()

    timed = TimedEngine(engine)
    near = NearDuplicateGate(common=common)
    begin = time.time()
    source = data if method == "ray-parquet" else None
    outcome = near.check(examples, engine=timed, source=source)  # type: ignore[arg-type]
    phases["near_duplicates"] = (begin, time.time())
    assert timed.found is not None
    result["pairs"] = int(timed.found.i.size)
    result["pairs_seconds"] = round(timed.pairs_seconds, 2)
    result["pairs_digest"] = pairs_digest(timed.found)
    result["near_flags"] = len(outcome.flags)
    result["near_flags_digest"] = digest(flags_of(outcome))
    result["near_report_digest"] = digest(outcome.report)
    del outcome, timed

    contamination = ContaminationGate({"heldout@v1": held_out}, common=common)
    begin = time.time()
    matches = engine.map(contamination.features, examples)
    middle = time.time()
    outcome = contamination.decide(examples, matches)
    phases["contamination"] = (begin, time.time())
    result["contamination_match_seconds"] = round(middle - begin, 2)
    result["contamination_flags"] = len(outcome.flags)
    result["contamination_kinds"] = sorted({f.reason for f in outcome.flags})
    result["contamination_flags_digest"] = digest(flags_of(outcome))
    result["contamination_report_digest"] = digest(outcome.report)
    result["rows"] = len(examples)
    result["phases"] = phases
    result["driver_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if method.startswith("ray"):  # the driver leaves before the nodes go: else their teardown fails the exit
        ray_engine.shutdown()
        cluster.shutdown()
    return result


def tree_memory(root: psutil.Process) -> tuple[int, int, int]:
    """(summed RSS, summed PSS, processes) of a process and all its descendants now."""
    rss = pss = count = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        rss, pss, count = rss + info.rss, pss + info.pss, count + 1
    return rss, pss, count


def measured(method: str, data: Path, held: Path, batch_size: int) -> dict[str, Any]:
    """Runs one method in a subprocess, sampling its process tree's memory until it ends."""
    out = data.parent / f"result-{method}.json"
    command = [sys.executable, __file__, "--method", method, "--data", str(data), "--held", str(held),
               "--out", str(out), "--batch-size", str(batch_size)]  # fmt: skip
    samples: list[tuple[float, int, int, int]] = []
    load_before = os.getloadavg()[0]
    child = subprocess.Popen(command, env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    root = psutil.Process(child.pid)

    def sample() -> None:
        while child.poll() is None:
            try:
                samples.append((time.time(), *tree_memory(root)))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if child.wait() != 0:
        raise SystemExit(f"{method} failed with exit status {child.returncode}")
    sampler.join()
    result: dict[str, Any] = json.loads(out.read_text())
    # the machine's 1-minute load average before and after: other work on it slows every method
    result["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    times = np.array([s[0] for s in samples])
    rss, pss, procs = (np.array([s[k] for s in samples]) for k in (1, 2, 3))
    result["peak_rss_mib"] = round(int(rss.max()) / 2**20)
    result["peak_pss_mib"] = round(int(pss.max()) / 2**20)
    result["max_processes"] = int(procs.max())
    for name, (begin, end) in result["phases"].items():
        inside = (times >= begin) & (times <= end)
        result[f"{name}_seconds"] = round(end - begin, 2)
        if inside.any():
            result[f"{name}_peak_rss_mib"] = round(int(rss[inside].max()) / 2**20)
            result[f"{name}_peak_pss_mib"] = round(int(pss[inside].max()) / 2**20)
    rows = result["rows"]
    result["near_duplicates_records_per_s"] = round(rows / result["near_duplicates_seconds"])
    result["contamination_records_per_s"] = round(rows / result["contamination_seconds"])
    return result


SAME = ["pairs", "pairs_digest", "near_flags", "near_flags_digest", "near_report_digest",
        "contamination_flags", "contamination_flags_digest", "contamination_report_digest"]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/sftline-bench-scale"))
    parser.add_argument("--methods", default="local,ray,ray-parquet")
    parser.add_argument("--batch-size", type=int, default=2048, help="RayEngine batch size")
    parser.add_argument("--method", help=argparse.SUPPRESS)  # in the subprocess: run this one
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--held", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.method:
        args.out.write_text(json.dumps(run_method(args.method, args.data, args.held, args.batch_size)))
        return 0
    start = time.perf_counter()
    data, held = write_data(args.rows, args.folder)
    print(f"data: {args.rows:,} rows in {data} ({time.perf_counter() - start:.0f} s)", flush=True)
    results = {}
    for method in args.methods.split(","):
        results[method] = measured(method, data, held, args.batch_size)
        print(json.dumps(results[method]), flush=True)
    first, *others = results.values()
    for other in others:
        equal = {key: first[key] == other[key] for key in SAME}
        print(
            json.dumps(
                {
                    "compared": [first["method"], other["method"]],
                    "equal": equal,
                    "all_equal": all(equal.values()),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
