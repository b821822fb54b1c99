"""`sftline serve` end to end on loopback with the tiny chat model: the `openai` package as the
client, the registry's stages routing traffic, limits, backpressure, canary and shadow."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.serving.config import Deployments
from tests.support.cli import run_json
from tests.support.serving import serving

pytestmark = pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)

TRAIN = ["train", "--base", "tiny", "--data", "intents", "--max-steps", "2", "--batch-tokens", "256"]
QUESTION = [{"role": "user", "content": "what is my balance"}]


@pytest.fixture
def served(chat_project: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """support@1 in production, support@2 a candidate; a serve key and an admin key."""
    config_path = chat_project / "sftline.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["model_name"] = "support"
    config["contract"]["limits"]["max_target_tokens"] = 8
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    for seed in (1, 2):
        run = run_json(capsys, *TRAIN, "--seed", str(seed))["run"]
        run_json(capsys, "models", "register", run)
    run_json(capsys, "models", "promote", "support@1", "--to", "production", "--force", "--reason", "test")
    keys = {
        scope: run_json(capsys, "keys", "add", f"{scope}-key", "--scope", scope)["key"]
        for scope in ("serve", "admin")
    }
    return keys


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)


def test_chat_plain_and_streaming_through_the_openai_client(
    chat_project: Path, served: dict[str, str]
) -> None:
    with serving(chat_project, Deployments()) as running:
        api = client(running.url, served["serve"])
        raw = api.chat.completions.with_raw_response.create(model="support", messages=QUESTION, max_tokens=6)
        answer = raw.parse()
        assert raw.headers["x-model-version"] == "support@1" and raw.headers["x-request-id"]
        assert answer.choices[0].message.role == "assistant" and answer.model == "support@1"
        assert answer.usage.prompt_tokens > 0 and 0 < answer.usage.completion_tokens <= 6
        text = answer.choices[0].message.content
        stream = api.chat.completions.create(
            model="support",
            messages=QUESTION,
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
        deltas, usage = [], None
        for part in stream:
            usage = part.usage or usage
            deltas += [c.delta.content or "" for c in part.choices]
        assert "".join(deltas) == text  # greedy: the same answer, token by token
        assert usage is not None and usage.completion_tokens == answer.usage.completion_tokens
        # A specific version by name, and the model list
        assert (
            api.chat.completions.create(model="support@2", messages=QUESTION, max_tokens=2).model
            == "support@2"
        )
        assert {m.id for m in api.models.list()} >= {"support", "support@1"}


def test_json_schema_answers_always_parse_from_a_model_folder(
    chat_project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from jsonschema import validate

    from tests.support.tiny_models import make_tiny_bpe_tokenizer, tiny_causal_lm

    # A byte-level BPE tokenizer (llguidance reads those), served by folder with --model.
    tokenizer = make_tiny_bpe_tokenizer(["what is my balance", '{"intent": "balance"}', "card lost"] * 20)
    folder = tmp_path / "bpe-model"
    tokenizer.save_pretrained(folder)
    tiny_causal_lm(tokenizer, seed=3).save_pretrained(folder)
    key = run_json(capsys, "keys", "add", "app")["key"]
    schema = {
        "type": "object",
        "properties": {"intent": {"type": "string", "maxLength": 6}},
        "required": ["intent"],
        "additionalProperties": False,
    }
    with serving(chat_project, Deployments(), model=str(folder)) as running:
        api = client(running.url, key)
        for seed in range(4):
            reply = api.chat.completions.create(
                model=str(folder),
                messages=QUESTION,
                max_tokens=60,
                temperature=1.0,
                seed=seed,
                response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
            )
            assert reply.choices[0].finish_reason == "stop"
            validate(json.loads(reply.choices[0].message.content), schema)


def test_auth_limits_and_errors_are_openai_shaped(chat_project: Path, served: dict[str, str]) -> None:
    deployments = Deployments.model_validate({"limits": {"max_messages": 3, "max_body_bytes": 4000}})
    with serving(chat_project, deployments) as running:
        assert httpx.get(f"{running.root}/healthz").status_code == 200  # no key needed
        with pytest.raises(openai.AuthenticationError):
            client(running.url, "sk-wrong").chat.completions.create(model="support", messages=QUESTION)
        no_key = httpx.get(f"{running.url}/models")
        assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
        api = client(running.url, served["serve"])
        with pytest.raises(openai.BadRequestError, match="over the limit of 8"):
            api.chat.completions.create(model="support", messages=QUESTION, max_tokens=100)
        with pytest.raises(openai.BadRequestError, match="4 messages; the limit is 3"):
            api.chat.completions.create(model="support", messages=QUESTION * 4, max_tokens=2)
        with pytest.raises(openai.NotFoundError):
            api.chat.completions.create(model="other", messages=QUESTION)
        headers = {"Authorization": f"Bearer {served['serve']}"}
        broken = httpx.post(f"{running.url}/chat/completions", content=b"{not json", headers=headers)
        assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
        big = httpx.post(f"{running.url}/chat/completions", content=b" " * 5000, headers=headers)
        assert big.status_code == 413
        # a chunked body (no Content-Length) is cut off at the limit too
        chunked = httpx.post(
            f"{running.url}/chat/completions", content=iter([b" " * 1000] * 5), headers=headers
        )
        assert chunked.status_code == 413 and "over 4000 bytes" in chunked.json()["error"]["message"]
        metrics = httpx.get(f"{running.root}/metrics", headers=headers).text
        assert (
            'sftline_requests_total{endpoint="chat",model="support",route="production",status="400"'
            in metrics
        )
        # the key is never logged or echoed
        assert served["serve"] not in metrics


def test_a_full_queue_answers_429_never_5xx(chat_project: Path, served: dict[str, str]) -> None:
    deployments = Deployments.model_validate({"queue": {"max_queue": 1, "max_batch": 1, "window_ms": 0}})
    with serving(chat_project, deployments) as running:
        headers = {"Authorization": f"Bearer {served['serve']}"}
        body = {"model": "support", "messages": QUESTION, "max_tokens": 8}

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=120) as http:
                calls = [
                    http.post(f"{running.url}/chat/completions", json=body, headers=headers)
                    for _ in range(24)
                ]
                return list(await asyncio.gather(*calls))

        answers = asyncio.run(burst())
        codes = Counter(r.status_code for r in answers)
        assert codes[429] > 0 and codes[200] > 0 and set(codes) <= {200, 429}, codes
        busy = next(r for r in answers if r.status_code == 429)
        assert int(busy.headers["Retry-After"]) >= 1 and busy.json()["error"]["type"] == "rate_limit_error"


def test_canary_share_is_sticky_and_near_its_share(
    chat_project: Path, served: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(capsys, "models", "promote", "support@2", "--to", "canary", "--force")
    deployments = Deployments.model_validate({"canary_share": 0.3, "analysis": {"enabled": False}})
    with serving(chat_project, deployments) as running:
        api = client(running.url, served["serve"])

        def version(user: str) -> str:
            raw = api.chat.completions.with_raw_response.create(
                model="support", messages=QUESTION, max_tokens=1, user=user
            )
            return str(raw.headers["x-model-version"])

        seen = Counter(version(f"user-{i}") for i in range(160))
        assert 0.3 - 0.1 < seen["support@2"] / 160 < 0.3 + 0.1, seen  # binomial sd 0.036
        for user in ("user-1", "user-2", "user-3"):
            assert len({version(user) for _ in range(3)}) == 1  # one user sees one model
        # a version named outright is that version, whatever the user's place in the split
        for named in ("support@1", "support@2"):
            assert {
                api.chat.completions.with_raw_response.create(
                    model=named, messages=QUESTION, max_tokens=1, user=f"user-{i}"
                ).headers["x-model-version"]
                for i in range(6)
            } == {named}


def test_shadow_answers_are_logged_not_returned(chat_project: Path, served: dict[str, str]) -> None:
    deployments = Deployments.model_validate(
        {"shadows": ["support@2"], "log": {"sample": 1.0, "flush_s": 0.2}}
    )
    with serving(chat_project, deployments) as running:
        api = client(running.url, served["serve"])
        raw = api.chat.completions.with_raw_response.create(model="support", messages=QUESTION, max_tokens=4)
        assert raw.headers["x-model-version"] == "support@1"
        request_id = raw.headers["x-request-id"]
        headers = {"Authorization": f"Bearer {served['serve']}"}
        rows = []
        for _ in range(600):  # the shadow answers after the response: wait for its log row
            running.server.log.flush()
            with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
                rows = [r for r in queries.predictions(session) if r.request_id == request_id]
                minutes = queries.serving_minutes(session, since=datetime(2000, 1, 1, tzinfo=timezone.utc))
            if len(rows) == 2:
                break
            time.sleep(0.1)
        metrics = httpx.get(f"{running.root}/metrics", headers=headers).text
    assert {(r.route, r.model_version) for r in rows} == {
        ("production", "support@1"),
        ("shadow", "support@2"),
    }
    assert "sftline_shadow_agreement_total{agreed=" in metrics
    assert sum(m.requests for m in minutes if m.route == "production") >= 1
    shadow = next(r for r in rows if r.route == "shadow")
    assert "agreed" in shadow.extra and shadow.output is not None


def test_a_broken_canary_is_rolled_back_automatically(
    chat_project: Path, served: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(capsys, "models", "promote", "support@2", "--to", "canary", "--force")
    deployments = Deployments.model_validate(
        {
            "canary_share": 0.5,
            # the canary's backend is a port nobody listens on: every canary request fails (502)
            "backends": {"support@2": {"url": "http://127.0.0.1:9/v1", "timeout_s": 2}},
            "analysis": {"min_requests": 5, "interval_s": 0.2, "window_s": 60},
        }
    )
    with serving(chat_project, deployments) as running:
        api = client(running.url, served["serve"])
        codes: Counter[str] = Counter()
        for i in range(40):
            try:
                api.chat.completions.create(model="support", messages=QUESTION, max_tokens=1, user=f"u{i}")
                codes["ok"] += 1
            except openai.APIStatusError as error:
                codes[str(error.status_code)] += 1
        assert codes["502"] >= 5, codes
        history = run_json(capsys, "models", "history", "support")
        rolled = [h for h in history if h["version"] == 2 and h["action"] == "rollback"]
        assert rolled and rolled[-1]["to"] == "candidate" and rolled[-1]["actor"].startswith("sftline serve")
        evidence = rolled[-1]["evidence"]
        assert evidence["canary"]["error_rate"] > 0.5 and evidence["breaches"]
        # after the rollback every user is answered by production
        after = {
            api.chat.completions.with_raw_response.create(
                model="support", messages=QUESTION, max_tokens=1, user=f"u{i}"
            ).headers["x-model-version"]
            for i in range(10)
        }
        assert after == {"support@1"}


def test_a_remote_backend_answers_like_the_model_in_process(
    chat_project: Path, served: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMOTE_KEY", served["serve"])
    with serving(chat_project, Deployments(), model="support@1") as upstream:
        local = client(upstream.url, served["serve"]).chat.completions.create(
            model="support@1", messages=QUESTION, max_tokens=6
        )
        deployments = Deployments.model_validate(
            {"backends": {"support@1": {"url": upstream.url, "api_key_env": "REMOTE_KEY"}}}
        )
        with serving(chat_project, deployments) as front:
            remote = client(front.url, served["serve"]).chat.completions.create(
                model="support", messages=QUESTION, max_tokens=6
            )
            # the backend's own refusal is the caller's error, passed on (not a 502)
            with pytest.raises(openai.BadRequestError, match="exceeds|limit|max_tokens|schema"):
                client(front.url, served["serve"]).chat.completions.create(
                    model="support",
                    messages=QUESTION,
                    max_tokens=4,
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": "x", "schema": {"type": 12}},
                    },
                )
    assert remote.choices[0].message.content == local.choices[0].message.content
    assert remote.model == "support@1"


def test_a_classifier_answers_classify_and_chat_requests(
    chat_project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tests.support.tiny_models import make_tiny_classifier

    labels = ["balance", "transfer", "card_lost", "oos"]
    config_path = chat_project / "sftline.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["contract"].update(task="classify", abstention="oos", output={"kind": "labels", "labels": labels})
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    folder = tmp_path / "classifier"
    make_tiny_classifier(folder, labels)
    key = run_json(capsys, "keys", "add", "app")["key"]
    with serving(chat_project, Deployments(), model=str(folder)) as running:
        headers = {"Authorization": f"Bearer {key}"}
        texts = ["what is my balance", "i lost my card", "play a song"]
        body = httpx.post(
            f"{running.url}/classify", json={"model": str(folder), "input": texts}, headers=headers
        ).json()
        assert body["model"] == str(folder) and len(body["results"]) == 3
        for result in body["results"]:
            assert result["label"] in labels and 0 < result["probability"] <= 1
            assert [t["label"] for t in result["top"]][0] == result["label"] or result["abstained"]
            assert abs(sum(t["probability"] for t in result["top"]) - 1) < 1e-4 or len(result["top"]) < 4
        one = httpx.post(f"{running.url}/classify", json={"input": texts[0]}, headers=headers).json()
        first = body["results"][0]  # alone or padded in a batch: the same answer (float32 aside)
        assert one["results"][0]["label"] == first["label"]
        assert one["results"][0]["probability"] == pytest.approx(first["probability"], abs=1e-5)
        # Any OpenAI client can call it: the label is the message content.
        reply = client(running.url, key).chat.completions.create(
            model=str(folder), messages=[{"role": "user", "content": texts[0]}]
        )
        assert reply.choices[0].message.content == body["results"][0]["label"]


def test_admin_actions_need_an_admin_key_and_are_recorded_with_its_name(
    chat_project: Path, served: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    deployments = Deployments.model_validate({"limits": {"requests_per_minute": 3}})
    with serving(chat_project, deployments) as running:
        promote = {"version": "support@2", "to": "canary", "force": True, "reason": "from the UI"}
        denied = httpx.post(
            f"{running.url}/admin/promote",
            json=promote,
            headers={"Authorization": f"Bearer {served['serve']}"},
        )
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "insufficient_scope"
        admin = {"Authorization": f"Bearer {served['admin']}"}
        done = httpx.post(f"{running.url}/admin/promote", json=promote, headers=admin)
        assert done.status_code == 200 and done.json()["to"] == "canary"
        missing = httpx.post(f"{running.url}/admin/rollback", json={"name": "nope"}, headers=admin)
        assert missing.status_code == 400 and "no registered model" in missing.json()["error"]["message"]
        # requests_per_minute: the fourth chat request of a key within a minute is refused
        api = client(running.url, served["serve"])
        codes = []
        for _ in range(4):
            try:
                api.chat.completions.create(model="support", messages=QUESTION, max_tokens=1)
                codes.append(200)
            except openai.RateLimitError:
                codes.append(429)
        assert codes == [200, 200, 200, 429]
    history = run_json(capsys, "models", "history", "support")
    assert history[-1]["actor"] == "key:admin-key" and history[-1]["reason"] == "from the UI"


def test_sigterm_drains_in_flight_requests(chat_project: Path, served: dict[str, str]) -> None:
    """The real CLI: a request in flight when SIGTERM arrives still gets its answer."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    from tests.support.serving import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    # A long collection window keeps the request in flight (waiting for its batch) for 2 s.
    (chat_project / "deployments.yaml").write_text("queue: {window_ms: 2000}\n")
    command = [
        sys.executable,
        "-m",
        "sftline",
        "serve",
        "--port",
        str(port),
        "--deployments",
        "deployments.yaml",
    ]
    process = subprocess.Popen(command, cwd=chat_project, env=env)
    root = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{root}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {served['serve']}"}
        body = {"model": "support", "messages": QUESTION, "max_tokens": 8}
        answers: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{root}/v1/chat/completions", json=body, headers=headers, timeout=60)
            )
        )
        request.start()
        time.sleep(0.8)
        process.send_signal(signal.SIGTERM)
        request.join(timeout=60)
        # uvicorn drains, then re-raises the signal it caught: the status says SIGTERM ended it
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        process.kill()
    assert answers and answers[0].status_code == 200
