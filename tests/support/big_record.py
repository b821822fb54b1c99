"""A big record made fast, for the dashboard's tests and bench/bench_ui.py: datasets with versions
and gate reports, training runs with logged metrics, station runs and their lineage, evaluations
with per-example outputs, a registered model with its history, and serving's per-minute aggregates
and prediction log.

Rows go in by bulk inserts through SQLAlchemy core with their ids chosen here (so foreign keys
need no round trip); 100 datasets, 1,000 runs and 100,000 predictions take seconds, not the hours
the stations would. The values are synthetic but shaped as the stations write them, so every
page of `sftline ui` has something real to draw.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert

from sftline.record.schema import (
    LATENCY_BUCKETS_MS,
    Artifact,
    Dataset,
    DatasetVersion,
    EvalOutput,
    Evaluation,
    GateReport,
    LineageEdge,
    ModelVersion,
    Prediction,
    RegisteredModel,
    Run,
    RunMetric,
    ServingMinute,
    StageChange,
    StationRun,
    latency_bucket,
)
from sftline.record.workspace import Workspace
from tests.support.registry_records import make_record

LABELS = ("balance", "transfer", "card_lost", "oos")
MODEL_NAME = "support"
CHUNK = 5_000  # rows per executemany: large enough to be fast, small enough to stay in memory


@dataclass(frozen=True)
class Scale:
    datasets: int = 100
    versions_per_dataset: int = 3
    runs: int = 1_000
    steps_per_run: int = 50
    evaluations: int = 200
    outputs_per_evaluation: int = 60
    predictions: int = 100_000
    minutes: int = 1_440
    registered_versions: int = 4


SMALL = Scale(
    datasets=6,
    versions_per_dataset=2,
    runs=30,
    steps_per_run=12,
    evaluations=8,
    outputs_per_evaluation=40,
    predictions=500,
    minutes=90,
    registered_versions=3,
)


def error_spike(workspace: Workspace, end: datetime, minutes: int = 20) -> None:
    """`minutes` minutes up to `end` in which every one of 600 requests a minute failed (500)."""
    from sftline.record import queries

    rows = [
        {
            "minute": end - timedelta(minutes=m),
            "model_name": MODEL_NAME,
            "model_version": f"{MODEL_NAME}@3",
            "route": "production",
            "requests": 600,
            "status_counts": {"500": 600},
            "latency_buckets": {"50": 600},
            "latency_sum_ms": 600 * 30.0,
        }
        for m in range(minutes)
    ]
    with workspace.record.session() as session:
        queries.add_serving_minutes(session, rows)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _bulk(session: Any, table: type, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        session.execute(insert(table), rows[start : start + CHUNK])


def gate_report(version: str) -> dict[str, Any]:
    """A gate report in the shape `sftline data check` stores: counts, lengths, clusters,
    contamination, balance and flagged examples."""
    return {
        "version": version,
        "status": "passed",
        "checked": 1000,
        "accepted": 980,
        "quarantined": 20,
        "warned": 5,
        "redacted": 2,
        "against": ["gold@v1"],
        "failures": [],
        "left_out": [],
        "counts": {
            "exact": {"duplicate": {"blocked": 12, "warned": 0, "redacted": 0}},
            "near_duplicates": {"near_duplicate": {"blocked": 8, "warned": 3, "redacted": 0}},
            "pii": {"email": {"blocked": 0, "warned": 0, "redacted": 2}},
        },
        "gates": {
            "lengths": {
                "tokenizer": "tiny",
                "max_length": 96,
                "over_max_length": 4,
                "total_tokens": {
                    "bins": [0, 20, 40, 60, 80, 100, 120],
                    "counts": [50, 400, 300, 150, 90, 10],
                    "percentiles": {"p50": 41.0, "p95": 88.0},
                },
            },
            "near_duplicates": {
                "n_clusters": 2,
                "clusters": [
                    {"representative": "ex-1", "size": 3, "members": ["ex-1", "ex-7", "ex-9"]},
                    {"representative": "ex-4", "size": 2, "members": ["ex-4", "ex-12"]},
                ],
            },
            "contamination": {
                "n_matches": 1,
                "matches": [
                    {
                        "example": "ex-3",
                        "text": "what is my balance",
                        "against": "gold@v1",
                        "against_example": "g-2",
                        "against_text": "what's my balance",
                        "kind": "near",
                        "similarity": 0.91,
                    }
                ],
            },
            "balance": {
                "tables": {"label": {label: 250 for label in LABELS}},
                "findings": [],
                "thresholds": {},
            },
        },
        "n_flagged": 3,
        "flagged": [
            {
                "example_id": f"ex-{i}",
                "location": f"line {i}",
                "action": "blocked",
                "reasons": [{"gate": "exact", "reason": "duplicate", "detail": f"same as ex-{i + 1}"}],
            }
            for i in (1, 7, 9)
        ],
    }


def evaluation_metrics(rng: random.Random, n: int) -> dict[str, Any]:
    def estimate(value: float) -> dict[str, Any]:
        return {"value": value, "low": max(0.0, value - 0.05), "high": min(1.0, value + 0.05), "n": n}

    accuracy = rng.uniform(0.5, 0.95)
    return {
        "n": n,
        "overall": {"accuracy": estimate(accuracy), "macro_f1": estimate(accuracy - 0.03)},
        "slices": {f"label={label}": {"accuracy": estimate(rng.uniform(0.4, 1.0))} for label in LABELS},
        "reliability": [
            {"low": i / 10, "high": (i + 1) / 10, "count": 4, "confidence": i / 10 + 0.05, "accuracy": i / 10}
            for i in range(10)
        ],
    }


def seed(workspace: Workspace, scale: Scale = Scale(), *, now: datetime | None = None) -> dict[str, Any]:
    """Fill an initialised classify project's empty record; returns names the pages can be
    opened with (a dataset, a run, an evaluation, a gate report, the registered model)."""
    rng = random.Random(0)
    now = now or datetime.now(timezone.utc)
    report_object = workspace.objects.put_bytes(json.dumps(gate_report("ds-000@v1")).encode())
    datasets, versions, reports = [], [], []
    version_ids: list[int] = []
    for d in range(scale.datasets):
        datasets.append({"id": d + 1, "name": f"ds-{d:03d}", "created_at": now})
        for number in range(1, scale.versions_per_dataset + 1):
            version_id = len(versions) + 1
            versions.append(
                {
                    "id": version_id,
                    "dataset_id": d + 1,
                    "number": number,
                    "content_hash": digest(f"ds-{d}-{number}"),
                    "object_hash": digest(f"object-{d}-{number}"),
                    "parent_id": version_id - 1 if number > 1 else None,
                    "n_examples": 1000 + number,
                    "stats": {},
                    "provenance": {},
                    "changelog": {"added": number * 10, "removed": number} if number > 1 else {},
                    "created_by": "import" if number == 1 else "check",
                    "created_at": now,
                }
            )
            version_ids.append(version_id)
            if number > 1:
                reports.append(
                    {
                        "id": len(reports) + 1,
                        "checked_version_id": version_id - 1,
                        "result_version_id": version_id,
                        "status": "passed",
                        "n_checked": 1000,
                        "n_accepted": 980,
                        "n_quarantined": 20,
                        "counts": {},
                        "config": {},
                        "against": [],
                        "report_object": report_object,
                        "rejects_object": None,
                        "created_at": now,
                    }
                )
    runs, metrics, station_runs, artifacts, edges = [], [], [], [], []
    for r in range(scale.runs):
        run_id, data_id = r + 1, version_ids[r % len(version_ids)]
        name = f"run-{r + 1:04d}"
        model_hash = digest(f"model-{r}")
        runs.append(
            {
                "id": run_id,
                "name": name,
                "status": "completed",
                "config": {"base": "tiny", "lr": 2e-4, "seed": r},
                "seed": r,
                "data_version_id": data_id,
                "eval_version_id": None,
                "base_model": "tiny",
                "base_model_hash": "0" * 64,
                "code_version": "bench",
                "output_dir": str(workspace.project.runs_dir / name),
                "steps": scale.steps_per_run,
                "trained_tokens": 8192 * scale.steps_per_run,
                "summary": {"final_loss": 0.5, "station_key": digest(name)},
                "started_at": now - timedelta(minutes=scale.runs - r),
                "finished_at": now - timedelta(minutes=scale.runs - r - 1),
                "model_hash": model_hash,
                "model_files": {},
            }
        )
        for step in range(1, scale.steps_per_run + 1):
            loss = 3.0 / step**0.5 + rng.uniform(0, 0.05)
            metrics.append({"run_id": run_id, "step": step, "name": "loss", "value": loss})
            metrics.append({"run_id": run_id, "step": step, "name": "tokens_per_second", "value": 400.0})
            if step % 10 == 0:
                metrics.append({"run_id": run_id, "step": step, "name": "eval_loss", "value": loss + 0.1})
                metrics.append(
                    {"run_id": run_id, "step": step, "name": "eval_accuracy", "value": 1 - loss / 4}
                )
        station_id = len(station_runs) + 1
        outputs = [
            {"kind": "run", "name": name, "hash": digest(name)},
            {"kind": "model", "name": name, "hash": model_hash},
        ]
        station_runs.append(
            {
                "id": station_id,
                "station": "train",
                "label": f"train {name}",
                "key": digest(f"key-{name}"),
                "status": "succeeded",
                "settings": {},
                "inputs": [],
                "outputs": outputs,
                "result": {},
                "started_at": now - timedelta(minutes=scale.runs - r),
                "finished_at": now - timedelta(minutes=scale.runs - r - 1),
                "seconds": 60.0,
            }
        )
        dataset_index, number = divmod(data_id - 1, scale.versions_per_dataset)
        data_ref = f"ds-{dataset_index:03d}@v{number + 1}"
        base = len(artifacts)
        artifacts += [
            {"id": base + 1, "kind": "dataset_version", "name": data_ref, "hash": digest(data_ref)},
            {"id": base + 2, "kind": "run", "name": name, "hash": digest(name)},
            {"id": base + 3, "kind": "model", "name": name, "hash": model_hash},
        ]
        edges += [
            {"source_id": base + 1, "target_id": base + 2, "station_run_id": station_id},
            {"source_id": base + 1, "target_id": base + 3, "station_run_id": station_id},
        ]
    evaluations, outputs_rows = [], []
    for e in range(scale.evaluations):
        run_id = e % scale.runs + 1
        evaluations.append(
            {
                "id": e + 1,
                "name": f"eval-{e + 1:04d}",
                "key": digest(f"eval-{e}"),
                "model": f"run-{run_id:04d}",
                "model_kind": "run",
                "model_hash": digest(f"model-{run_id - 1}"),
                "run_id": run_id,
                "dataset_version_id": 1,
                "task": "classify",
                "settings": {"labels": list(LABELS)},
                "n_examples": scale.outputs_per_evaluation,
                "metrics": evaluation_metrics(rng, scale.outputs_per_evaluation),
                "seconds": 3.0,
                "created_at": now,
            }
        )
        for position in range(scale.outputs_per_evaluation):
            target = LABELS[position % len(LABELS)]
            output = target if rng.random() < 0.7 else rng.choice(LABELS)
            confidence = rng.uniform(0.3, 1.0)
            outputs_rows.append(
                {
                    "evaluation_id": e + 1,
                    "position": position,
                    "example_id": f"gold-{position}",
                    "prompt": f"question {position} about {target}",
                    "target": target,
                    "output": output,
                    "tags": {"label": target},
                    "ranked": [[output, confidence]],
                    "confidence": confidence,
                    "prompt_tokens": 12,
                    "output_tokens": 1,
                    "finished": True,
                    "latency_ms": 4.0,
                }
            )
    record = make_record()
    record.update(name=MODEL_NAME)
    versions_rows, changes = [], []
    stages = ["archived"] * (scale.registered_versions - 2) + ["production", "canary"]
    for v in range(scale.registered_versions):
        number, run_id = v + 1, v + 1
        versions_rows.append(
            {
                "id": number,
                "model_id": 1,
                "number": number,
                "run_id": run_id,
                "model_hash": digest(f"model-{run_id - 1}"),
                "stage": stages[v],
                "record": {
                    **record,
                    "version": number,
                    "run": {**record["run"], "name": f"run-{run_id:04d}"},
                },
                "record_hash": digest(f"record-{number}"),
                "created_by": "bench",
                "created_at": now,
            }
        )
        changes.append(
            {
                "model_id": 1,
                "version_id": number,
                "action": "register",
                "from_stage": None,
                "to_stage": "candidate",
                "actor": "bench",
                "reason": None,
                "forced": False,
                "evidence": {},
                "at": now,
            }
        )
        # Each archived version held production before the next one took it, so the history has
        # a rollback target (the version in production before the current one).
        moves = [("promote", "candidate", "production")] if stages[v] != "canary" else []
        moves += [("demote", "production", "archived")] if stages[v] == "archived" else []
        moves += [("promote", "candidate", "canary")] if stages[v] == "canary" else []
        for action, before, after in moves:
            changes.append(
                {
                    "model_id": 1,
                    "version_id": number,
                    "action": action,
                    "from_stage": before,
                    "to_stage": after,
                    "actor": "bench",
                    "reason": "seeded",
                    "forced": False,
                    "evidence": {"verdict": "pass", "evaluations": [f"eval-{number:04d}"]}
                    if action == "promote"
                    else {},
                    "at": now,
                }
            )
    end = now.replace(second=0, microsecond=0)
    minutes = []
    for m in range(scale.minutes):
        minute = end - timedelta(minutes=scale.minutes - 1 - m)
        for route, version, share in (
            ("production", f"{MODEL_NAME}@3", 0.9),
            ("canary", f"{MODEL_NAME}@4", 0.1),
        ):
            requests = max(1, int(rng.gauss(600 * share, 20 * share)))
            latencies = [rng.lognormvariate(3.5, 0.6) for _ in range(min(requests, 50))]
            buckets: dict[str, int] = {}
            for latency in latencies:
                key = latency_bucket(latency)
                buckets[key] = buckets.get(key, 0) + requests // len(latencies)
            counted = sum(buckets.values())
            buckets[latency_bucket(LATENCY_BUCKETS_MS[0])] = buckets.get("5", 0) + requests - counted
            errors = rng.randint(0, 3)
            minutes.append(
                {
                    "minute": minute,
                    "model_name": MODEL_NAME,
                    "model_version": version,
                    "route": route,
                    "requests": requests,
                    "status_counts": {"200": requests - errors, "429": errors},
                    "latency_buckets": buckets,
                    "latency_sum_ms": sum(latencies) / len(latencies) * requests,
                    "prompt_tokens": requests * 20,
                    "output_tokens": requests * 2,
                    "contract_invalid": rng.randint(0, 2),
                    "abstentions": rng.randint(0, 5),
                    "busy_seconds": requests * 0.02,
                }
            )
    predictions = [
        {
            "request_id": f"req-{p}",
            "at": end - timedelta(seconds=scale.minutes * 60 * p / scale.predictions),
            "model_name": MODEL_NAME,
            "model_version": f"{MODEL_NAME}@3",
            "route": "production",
            "endpoint": "classify",
            "prompt": f"what is my balance, request {p}",
            "output": LABELS[p % len(LABELS)],
            "label": LABELS[p % len(LABELS)],
            "confidence": 0.8,
            "abstained": False,
            "contract_valid": True,
            "latency_ms": 30.0,
            "prompt_tokens": 10,
            "output_tokens": 1,
            "status_code": 200,
            "user_hash": None,
            "extra": {},
        }
        for p in range(scale.predictions)
    ]
    with workspace.record.session() as session:
        _bulk(session, Dataset, datasets)
        _bulk(session, DatasetVersion, versions)
        _bulk(session, GateReport, reports)
        _bulk(session, Run, runs)
        _bulk(session, RunMetric, metrics)
        _bulk(session, StationRun, station_runs)
        _bulk(session, Artifact, _unique_artifacts(artifacts, edges))
        _bulk(session, LineageEdge, edges)
        _bulk(session, Evaluation, evaluations)
        _bulk(session, EvalOutput, outputs_rows)
        _bulk(session, RegisteredModel, [{"id": 1, "name": MODEL_NAME, "created_at": now, "changed_at": now}])
        _bulk(session, ModelVersion, versions_rows)
        _bulk(session, StageChange, changes)
        _bulk(session, ServingMinute, minutes)
        _bulk(session, Prediction, predictions)
    middle = scale.runs // 2
    return {
        "dataset": "ds-000",
        "run": f"run-{middle:04d}",
        "evaluation": "eval-0001",
        "baseline": "eval-0002",
        "report": 1,
        "model": MODEL_NAME,
    }


def _unique_artifacts(artifacts: list[dict[str, Any]], edges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The artifacts with one row per (kind, name, hash), as the unique constraint wants; edges
    are pointed at the row kept."""
    kept: dict[tuple[str, str, str], int] = {}
    renamed: dict[int, int] = {}
    rows = []
    for row in artifacts:
        key = (row["kind"], row["name"], row["hash"])
        if key in kept:
            renamed[row["id"]] = kept[key]
        else:
            kept[key] = row["id"]
            rows.append(row)
    for edge in edges:
        edge["source_id"] = renamed.get(edge["source_id"], edge["source_id"])
        edge["target_id"] = renamed.get(edge["target_id"], edge["target_id"])
    return rows
