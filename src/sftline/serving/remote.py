"""A version answered by another OpenAI-compatible server (vLLM, TGI, another `sftline serve`).

It offers what the in-process engines offer (`complete`, `stream`, `classify`), so the router,
metrics, contract validation and the prediction log are the same for both. The key comes from
the environment variable the deployment names; it is sent, never logged.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from sftline.errors import ModelError
from sftline.serving.config import RemoteBackend
from sftline.serving.engine import ChatAnswer, ChatParams, ClassifyAnswer


class RemoteError(ModelError):
    """The remote backend failed or answered something that is not an OpenAI response (502)."""


class RemoteRefused(RemoteError):
    """The remote backend refused the request itself (a 4xx): the caller's error, passed on with
    the backend's status and message, not a failure of the backend."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _refusal(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        return str(error.get("message") if isinstance(error, dict) else error)[:300]
    except (ValueError, AttributeError):
        return f"the backend answered {response.status_code}"


class RemoteEngine:
    """`kind` is "chat" until the backend says otherwise: a remote classifier is reached through
    its `/classify` endpoint when one is asked for."""

    def __init__(self, backend: RemoteBackend, version: str) -> None:
        self.backend = backend
        self.version = version
        self.kind = "chat"
        headers = {}
        if backend.api_key_env:
            key = os.environ.get(backend.api_key_env)
            if not key:
                raise ModelError(
                    f"the remote backend of {version} needs ${backend.api_key_env}, which is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.AsyncClient(
            base_url=backend.url.rstrip("/"), headers=headers, timeout=backend.timeout_s
        )

    def _body(self, messages: list[dict[str, Any]], params: ChatParams, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.backend.model or self.version,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": stream,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = params.stop
        if params.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": params.json_schema},
            }
        return body

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise RemoteError(f"the remote backend of {self.version} is unreachable: {exc}") from exc
        if 400 <= response.status_code < 500:
            raise RemoteRefused(response.status_code, _refusal(response))
        if response.status_code != 200:
            raise RemoteError(f"the remote backend of {self.version} answered {response.status_code}")
        try:
            value: dict[str, Any] = response.json()
        except ValueError as exc:
            raise RemoteError(
                f"the remote backend of {self.version} answered something that is not JSON"
            ) from exc
        return value

    async def complete(
        self, messages: list[dict[str, Any]], params: ChatParams, *, deadline: float | None = None
    ) -> ChatAnswer:
        started = time.perf_counter()
        data = await self._post("/chat/completions", self._body(messages, params, stream=False))
        try:
            choice, usage = data["choices"][0], data.get("usage") or {}
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise RemoteError(f"the remote backend of {self.version} answered no choice") from exc
        seconds = time.perf_counter() - started
        return ChatAnswer(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            confidence=None,
            ttft_s=seconds,
            seconds=seconds,
        )

    async def stream(
        self, messages: list[dict[str, Any]], params: ChatParams, *, deadline: float | None = None
    ) -> AsyncIterator[str | ChatAnswer]:
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        finish = "stop"
        body = self._body(messages, params, stream=True)
        try:
            async with self.client.stream("POST", "/chat/completions", json=body) as response:
                if 400 <= response.status_code < 500:
                    await response.aread()
                    raise RemoteRefused(response.status_code, _refusal(response))
                if response.status_code != 200:
                    raise RemoteError(f"the remote backend of {self.version} answered {response.status_code}")
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[len("data: ") :])
                    for choice in chunk.get("choices", []):
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            first = first or time.perf_counter()
                            parts.append(delta)
                            yield delta
                        if choice.get("finish_reason") == "length":
                            finish = "length"
        except httpx.HTTPError as exc:
            raise RemoteError(f"the remote backend of {self.version} is unreachable: {exc}") from exc
        seconds = time.perf_counter() - started
        yield ChatAnswer(
            text="".join(parts),
            prompt_tokens=0,
            completion_tokens=len(parts),
            finish_reason=finish,  # type: ignore[arg-type]
            confidence=None,
            ttft_s=(first - started) if first else seconds,
            seconds=seconds,
        )

    async def classify(self, texts: list[str], *, deadline: float | None = None) -> list[ClassifyAnswer]:
        data = await self._post("/classify", {"model": self.backend.model or self.version, "input": texts})
        try:
            return [
                ClassifyAnswer(
                    label=r["label"],
                    probability=float(r["probability"]),
                    abstained=bool(r["abstained"]),
                    top=[(t["label"], float(t["probability"])) for t in r["top"]],
                )
                for r in data["results"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise RemoteError(f"the remote backend of {self.version} answered no classification") from exc

    async def close(self) -> None:
        await self.client.aclose()
