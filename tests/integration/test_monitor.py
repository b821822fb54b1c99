"""The monitoring station end to end: a served tiny model fed CLINC150 traffic from the domains
it was trained on and from domains it never saw, burn-rate alerts on a simulated error spike, a
webhook on loopback, the review queue and feedback, and `retrain` producing a gated candidate."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import openai
import pytest
import yaml

from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.serving.config import Deployments
from tests.support.cli import run_json
from tests.support.serving import serving

CLINC = Path(__file__).resolve().parents[2] / "examples" / "clinc150"
HELD_OUT = ("travel", "auto_and_commute")
"""Domains the model never sees in training: the shifted traffic asks about them."""


def clinc() -> tuple[dict[str, list[list[str]]], dict[str, str]]:
    data = json.loads((CLINC / "data_full.json").read_text())
    domain_of = {
        intent: d
        for d, intents in json.loads((CLINC / "domains.json").read_text()).items()
        for intent in intents
    }
    return data, domain_of


class Receiver:
    """A webhook receiver on loopback that keeps what it was sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append(json.loads(body) | {"_auth": self.headers.get("authorization")})
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def configure(project: Path, update: dict[str, Any]) -> None:
    path = project / "sftline.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in update.items():
        config[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def add_minutes(workspace: Workspace, rows: list[dict[str, Any]]) -> None:
    with workspace.record.session() as session:
        queries.add_serving_minutes(session, rows)


def minute(at: datetime, requests: int, errors: int = 0) -> dict[str, Any]:
    return {
        "minute": at,
        "model_name": "support",
        "model_version": "support@1",
        "route": "production",
        "requests": requests,
        "status_counts": {"200": requests - errors, "500": errors},
        "latency_buckets": {"50": requests},
        "latency_sum_ms": 30.0 * requests,
        "busy_seconds": 0.02 * requests,
    }


def test_an_error_spike_pages_once_tells_the_webhook_and_resolves(
    project_dir: Path, capsys: pytest.CaptureFixture[str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    configure(
        project_dir,
        {
            "model_name": "support",
            "monitoring": {
                "webhook_url": receiver.url,
                "webhook_token_env": "HOOK_TOKEN",
                "cost": {"price_per_hour": 2.5},
            },
        },
    )
    now = datetime.now(timezone.utc).replace(second=30, microsecond=0)
    workspace = Workspace.find(project_dir)
    # Three healthy days (a row every 10 minutes), then every request fails for 10 minutes.
    add_minutes(workspace, [minute(now - timedelta(minutes=m), 200) for m in range(10, 3 * 24 * 60, 10)])
    add_minutes(workspace, [minute(now - timedelta(minutes=m), 20, errors=20) for m in range(0, 10)])
    from sftline.stations.monitor import run_monitor

    first = run_monitor(workspace, window="1h", now=now, drift=False)
    names = [a["name"] for a in first.fired]
    assert names == ["availability:page:1h/5m"], names  # the fast page; not 6h/30m, not the 3-day ticket
    slo = next(s for s in first.report["slos"] if s["slo"] == "availability")
    assert [b["firing"] for b in slo["burn"]] == [True, False, False]
    overall = first.report["slis"]["overall"]
    assert overall["errors"] == 200 and overall["cost_per_1k_requests"] > 0
    # The record keeps the receiver's host, never its URL (a chat webhook's URL is its secret).
    assert first.fired[0]["delivery"]["to"] == receiver.url.removesuffix("/hook")
    assert first.fired[0]["delivery"]["status"] == 202
    assert [(m["event"], m["name"], m["_auth"]) for m in receiver.received] == [
        ("firing", "availability:page:1h/5m", "Bearer s3cret")
    ]
    # The same condition a minute later: still one alert, not a second page.
    again = run_monitor(workspace, window="1h", now=now + timedelta(seconds=30), drift=False)
    assert again.fired == [] and [a["name"] for a in again.report["alerts"]["firing"]] == names
    # An hour of healthy traffic later it has cleared: resolved, and the webhook hears that too.
    later = now + timedelta(hours=1)
    add_minutes(workspace, [minute(later - timedelta(minutes=m), 200) for m in range(0, 60)])
    cleared = run_monitor(workspace, window="1h", now=later, drift=False)
    assert [a["name"] for a in cleared.resolved] == names and cleared.report["alerts"]["firing"] == []
    assert receiver.received[-1]["event"] == "resolved"
    listed = run_json(capsys, "monitor", "--no-drift", "--window", "2h")
    assert listed["slis"]["overall"]["requests"] > 0 and listed["report_id"] > cleared.report_id
    workspace.close()


def test_an_unreachable_webhook_is_recorded_not_fatal(project_dir: Path) -> None:
    configure(
        project_dir, {"model_name": "support", "monitoring": {"webhook_url": "http://127.0.0.1:9/none"}}
    )
    now = datetime.now(timezone.utc)
    workspace = Workspace.find(project_dir)
    add_minutes(workspace, [minute(now - timedelta(minutes=m), 10, errors=10) for m in range(0, 10)])
    from sftline.stations.monitor import run_monitor

    out = run_monitor(workspace, window="1h", now=now, drift=False)
    assert out.fired and all("error" in a["delivery"] for a in out.fired)
    workspace.close()


@pytest.mark.real_model
@pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)
def test_drift_review_feedback_and_retrain_on_a_served_model(
    chat_project: Path, capsys: pytest.CaptureFixture[str], receiver: Receiver
) -> None:
    data, domain_of = clinc()
    rng = random.Random(7)
    seen = [row for row in data["train"] if domain_of[row[1]] not in HELD_OUT]
    train = rng.sample(seen, 400)
    path = chat_project / "support.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": label}]}
            )
            + "\n"
            for t, label in train
        )
    )
    suite = chat_project / "suite.jsonl"
    suite.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": i}]})
            + "\n"
            for t, i in data["test"][:12]
        )
    )
    run_json(capsys, "data", "import", str(suite), "--name", "release-suite")
    run_json(capsys, "models", "pull", "minilm-l6")
    line = {
        "import": [{"path": "support.jsonl", "name": "support-data"}],
        "train": {
            "base": "tiny",
            "data": "support-data",
            "task": "chat",
            "max_steps": 2,
            "batch_tokens": 256,
        },
    }
    config = yaml.safe_load((chat_project / "sftline.yaml").read_text())
    config["contract"]["limits"]["max_target_tokens"] = 4
    configure(
        chat_project,
        {
            "model_name": "support",
            "contract": config["contract"],
            "release": {"on": ["release-suite"], "criteria": [{"metric": "accuracy", "min": 0.99}]},
            "line": line,
            "monitoring": {
                "review": {"audit_share": 0.3, "confidence_below": None},
                "triggers": {"feedback_examples": 5, "drift": False},
                "webhook_url": receiver.url,
            },
        },
    )
    run_json(capsys, "run")
    run_json(capsys, "models", "register", "run-0001")
    run_json(capsys, "models", "promote", "support@1", "--to", "production", "--force", "--reason", "first")
    key = run_json(capsys, "keys", "add", "app")["key"]
    in_domain = [row for row in data["val"] if domain_of[row[1]] not in HELD_OUT]
    shifted = [row for row in data["val"] if domain_of[row[1]] in HELD_OUT] + data["oos_val"]
    deployments = Deployments.model_validate(
        {"log": {"sample": 1.0, "flush_s": 0.2}, "analysis": {"enabled": False}}
    )
    ids: dict[str, str] = {}

    def ask(api: openai.OpenAI, rows: list[list[str]]) -> None:
        for text, intent in rows:
            raw = api.chat.completions.with_raw_response.create(
                model="support", messages=[{"role": "user", "content": text}], max_tokens=3
            )
            ids[raw.headers["x-request-id"]] = intent

    with serving(chat_project, deployments) as running:
        api = openai.OpenAI(base_url=running.url, api_key=key, max_retries=0, timeout=60)
        ask(api, rng.sample(in_domain, 60))
        running.server.log.flush()
        calm = run_json(capsys, "monitor", "--window", "1h")
        started = time.monotonic()
        ask(api, rng.sample(shifted, 60))
        running.server.log.flush()
    window = f"{int(time.monotonic() - started) + 2}s"
    storm = run_json(capsys, "monitor", "--window", window, "--html", str(chat_project / "monitor.html"))

    def drifted(report: dict[str, Any]) -> dict[str, bool]:
        return {t["name"]: t["drifted"] for t in report["drift"]["tests"] if not t["skipped"]}

    assert calm["slis"]["overall"]["requests"] == 60 == calm["drift"]["current"]["inputs"]
    # The aggregates count by the minute, so a window of seconds may reach into the calm minute;
    # the drift tests read the logged requests themselves, the shifted ones only.
    assert storm["slis"]["overall"]["requests"] >= 60 == storm["drift"]["current"]["inputs"]
    assert set(drifted(calm)) == {"input_length", "input_tokens", "embedding"}
    assert not any(drifted(calm).values()), calm["drift"]["tests"]
    assert drifted(storm)["embedding"], storm["drift"]["tests"]
    assert storm["drift"]["novel"], "the new inputs are clustered and shown"
    assert [a["name"] for a in storm["alerts"]["fired"] if a["kind"] == "drift"]
    html = (chat_project / "monitor.html").read_text()
    assert "<svg" in html and "embedding" in html
    assert any(m["kind"] == "drift" for m in receiver.received)

    # The review queue: an audit sample of the answers, exported, labelled and imported back.
    queue = run_json(capsys, "review", "list", "--status", "open", "--limit", "500")
    assert queue and {i["reason"] for i in queue} <= {
        "audit",
        "low_confidence",
        "abstained",
        "contract_invalid",
    }
    exported = chat_project / "queue.csv"
    assert run_json(capsys, "review", "export", str(exported))["exported"] == len(queue)
    assert run_json(capsys, "review", "list", "--status", "open") == []
    import csv

    rows = list(csv.DictReader(exported.open()))
    for row in rows:
        row["label"] = ids[row["request_id"]]
    with exported.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    reviewed = run_json(capsys, "review", "import", str(exported), "--no-build")
    assert reviewed["accepted"] == reviewed["reviewed"] == len(rows)

    # Feedback by request id: two bad rows are rejected with their line, the rest gated as a dataset.
    labelled = [rid for rid in ids if rid not in {r["request_id"] for r in rows}][:8]
    labels = chat_project / "labels.jsonl"
    lines = [{"request_id": rid, "label": ids[rid]} for rid in labelled]
    lines += [{"request_id": "nobody-asked-this", "label": "balance"}, {"request_id": labelled[0]}]
    labels.write_text("".join(json.dumps(x) + "\n" for x in lines))
    imported = run_json(capsys, "feedback", "import", str(labels))
    assert imported["read"] == 10 and imported["accepted"] == 8 and imported["rejected"] == 2
    assert {(r["reason"], r["origin"].rsplit(":", 1)[1]) for r in imported["rejects"]} == {
        ("unknown_request_id", "9"),
        ("missing_field", "10"),
    }
    dataset = imported["dataset"]
    assert dataset["name"] == "support-feedback" and dataset["checked_against"] == ["release-suite"]
    assert dataset["n_accepted"] + dataset["n_quarantined"] == dataset["examples"] == 8 + len(rows)
    shown = run_json(capsys, "data", "show", "support-feedback", "--head", "1")
    assert shown

    # Enough labels fire the retraining trigger; retrain needs the line to read the feedback.
    assert run_json(capsys, "retrain", "--if-triggered")["status"] == "not_triggered"
    triggered = run_json(capsys, "monitor", "--no-drift", "--window", "1h")
    assert "retrain:feedback" in [a["name"] for a in triggered["alerts"]["fired"]]
    failed = run_json(capsys, "retrain", "--if-triggered", code=1)
    assert "does not read support-feedback" in failed["err"]
    line["mix"] = {"from": ["support-data", "support-feedback"], "weights": "*:1", "seed": 1}
    line["train"]["data"] = "support-data-mix"
    configure(chat_project, {"line": line})
    out = run_json(capsys, "retrain", "--if-triggered")
    assert out["registered"] == "support@2" and out["triggers"] == ["retrain:feedback"]
    # Through the registry's gate, never production: the release criterion fails, so a candidate.
    assert out["status"] == "registered" and out["promotion"]["status"] == "blocked"
    history = run_json(capsys, "models", "history", "support")
    assert {(h["version"], h["to"]) for h in history if h["action"] == "register"} == {
        (1, "candidate"),
        (2, "candidate"),
    }
    assert not [h for h in history if h["version"] == 2 and h["to"] == "production"]
    stations = {s["station"]: s["status"] for s in out["line"]["stations"]}
    assert stations["import"] == "cached" and stations["mix"] == "ran" and stations["train"] == "ran"
    graph = run_json(capsys, "lineage", "run-0002")
    assert any(n["name"].startswith("support-feedback@") for n in graph["nodes"])
    assert run_json(capsys, "retrain", "--if-triggered")["status"] == "not_triggered"  # handled


@pytest.mark.real_model
@pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)
def test_false_alarms_over_repeated_in_domain_samples_stay_within_the_level(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The input tests as monitoring runs them (MiniLM tokens and embeddings, Bonferroni over the
    family) on 20 samples of 60 requests drawn like the training data (its domains' training
    queries the reference left out): the family fires on at most the configured share of them.
    bench/bench_drift.py measures the rate over many more samples, and on CLINC's own test split."""
    import numpy as np

    from sftline.monitoring import drift
    from sftline.stations.check import LazyEncoder
    from sftline.stations.monitor_drift import _tokenizer

    run_json(capsys, "models", "pull", "minilm-l6")
    data, domain_of = clinc()
    rng = random.Random(11)
    seen = [t for t, i in data["train"] if domain_of[i] not in HELD_OUT]
    rng.shuffle(seen)
    reference, pool = seen[:400], seen[400:]
    level, repeats = 0.05, 20
    samples = [rng.sample(pool, 60) for _ in range(repeats)]
    alpha = drift.bonferroni(level, 3)
    workspace = Workspace.find(project_dir)
    tokenizer, encode = _tokenizer(workspace), LazyEncoder(workspace)
    texts = sorted(set(reference).union(*samples))
    vectors = dict(zip(texts, encode(texts), strict=True))
    ref_tokens = [tokenizer.tokenize(t) for t in reference]
    ref_vectors = np.array([vectors[t] for t in reference])
    fired: list[list[str]] = []
    for repeat, sample in enumerate(samples):
        tokens = [tokenizer.tokenize(t) for t in sample]
        results = [
            drift.length_drift([len(t) for t in ref_tokens], [len(t) for t in tokens], alpha=alpha),
            drift.token_drift(ref_tokens, tokens, alpha=alpha, seed=repeat, permutations=200),
            drift.embedding_drift(
                ref_vectors, np.array([vectors[t] for t in sample]), alpha=alpha, seed=repeat
            ),
        ]
        assert all(r.skipped is None for r in results)
        fired.append([r.name for r in results if r.drifted])
    alarms = sum(bool(names) for names in fired)
    # Measured, then held to the level: 20 samples cannot pin a 5% rate down (2 alarms in 20 is
    # 10% measured, and happens a quarter of the time at exactly 5%), so the test fails when the
    # count is significantly above the level (one-sided binomial, 1%): a broken test fires on
    # most samples. bench/bench_drift.py measures the rate itself over hundreds of samples.
    from scipy.stats import binomtest

    above = binomtest(alarms, repeats, level, alternative="greater").pvalue
    assert above > 0.01, f"{alarms} of {repeats} samples like the training data raised an alarm: {fired}"
    workspace.close()


def log_predictions(workspace: Workspace, n: int, at: datetime) -> list[str]:
    rows = [
        {
            "request_id": f"req-{i}",
            "at": at,
            "model_name": "support",
            "model_version": "support@1",
            "route": "production",
            "endpoint": "chat",
            "prompt": f"question {i}",
            "output": "balance",
            "label": None,
            "confidence": 0.9,
            "abstained": False,
            "contract_valid": True,
            "latency_ms": 20.0,
            "prompt_tokens": 3,
            "output_tokens": 1,
            "status_code": 200,
            "user_hash": None,
            "extra": {},
        }
        for i in range(n)
    ]
    with workspace.record.session() as session:
        queries.add_predictions(session, rows)
    return [r["request_id"] for r in rows]


def test_the_review_queue_is_exported_once_and_kept_when_the_file_fails(project_dir: Path) -> None:
    configure(project_dir, {"model_name": "support", "monitoring": {"review": {"audit_share": 1.0}}})
    workspace = Workspace.find(project_dir)
    now = datetime.now(timezone.utc)
    log_predictions(workspace, 12, now - timedelta(minutes=1))
    from sftline.stations.monitor import run_monitor
    from sftline.stations.review import export_items, list_items

    assert run_monitor(workspace, window="1h", now=now, drift=False).report["review"]["added"] == 12

    def broken(items: list[dict[str, Any]]) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        export_items(workspace, broken)
    assert len(list_items(workspace, status="open")) == 12  # nothing marked: the file never came to be
    written: list[list[dict[str, Any]]] = []
    first = export_items(workspace, written.append)
    second = export_items(workspace, written.append)  # another reviewer, a moment later
    assert len(first) == 12 and second == [] and [len(w) for w in written] == [12, 0]
    assert all(item["served_at"].endswith("+00:00") for item in first)
    workspace.close()


def test_a_pass_without_drift_leaves_drift_alerts_and_repeated_labels_add_nothing(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(project_dir, {"model_name": "support", "monitoring": {"triggers": {"feedback_examples": 3}}})
    workspace = Workspace.find(project_dir)
    now = datetime.now(timezone.utc)
    ids = log_predictions(workspace, 4, now - timedelta(minutes=1))
    with workspace.record.session() as session:
        queries.add_alert(
            session, model_name="support", kind="drift", name="drift:embedding", severity="ticket",
            status="firing", message="drifted", details={}, fired_at=now, last_seen_at=now, delivery={},
        )  # fmt: skip
    from sftline.stations.monitor import run_monitor

    out = run_monitor(workspace, window="1h", now=now, drift=False)
    assert out.resolved == [] and [a["name"] for a in out.report["alerts"]["firing"]] == ["drift:embedding"]
    labels = project_dir / "labels.jsonl"
    labels.write_text("".join(json.dumps({"request_id": i, "label": "transfer"}) + "\n" for i in ids))
    first = run_json(capsys, "feedback", "import", str(labels), "--no-build")
    assert first["accepted"] == 4 and first["unchanged"] == 0
    fired = run_monitor(workspace, window="1h", now=now + timedelta(seconds=1), drift=False).fired
    assert [a["name"] for a in fired] == ["retrain:feedback"]
    with workspace.record.session() as session:
        for alert in queries.alerts(session, kind="retrain_trigger"):
            alert.status, alert.resolved_at = "handled", datetime.now(timezone.utc)
    again = run_json(capsys, "feedback", "import", str(labels), "--no-build")
    assert again["accepted"] == 4 and again["unchanged"] == 4  # the same labels: nothing new
    later = run_monitor(workspace, window="1h", now=datetime.now(timezone.utc), drift=False)
    assert "retrain:feedback" not in [a["name"] for a in later.fired]
    workspace.close()


@pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)
def test_reference_embeddings_are_computed_once_per_reference(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from sftline.stations import monitor_drift

    monkeypatch.setattr(
        monitor_drift, "find_base_model", lambda workspace, name: SimpleNamespace(content_hash="e" * 64)
    )
    calls: list[int] = []

    def encode(texts: Any) -> Any:
        calls.append(len(texts))
        return np.arange(len(texts) * 4, dtype=np.float32).reshape(len(texts), 4)

    workspace = Workspace.find(project_dir)
    first = monitor_drift.reference_vectors(workspace, encode, ["a", "b", "c"])
    again = monitor_drift.reference_vectors(workspace, encode, ["a", "b", "c"])
    other = monitor_drift.reference_vectors(workspace, encode, ["a", "b"])
    assert calls == [3, 2] and np.array_equal(first, again) and other.shape == (2, 4)
    for cached in (project_dir / ".sftline" / "cache" / "embeddings").iterdir():
        cached.write_bytes(b"not an array")  # a damaged cache file is computed again
    assert np.array_equal(monitor_drift.reference_vectors(workspace, encode, ["a", "b", "c"]), first)
    assert calls == [3, 2, 3]
    workspace.close()
