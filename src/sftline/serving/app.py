"""`sftline serve`: the FastAPI app (see the README's "Serving" for the endpoints).

`Server` holds what lives as long as the process: the router (which version answers), the
engines (loaded on first use, batching concurrent requests), the metrics, the prediction log, the
canary analysis and the API-key cache. `create_app(server)` wires the HTTP side: auth, limits,
request ids, OpenAI-shaped answers and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from sftline.contract.validate import OutputValidator
from sftline.errors import ModelError, RecordError, SftlineError
from sftline.record.workspace import Workspace
from sftline.serving.analysis import CanaryAnalysis
from sftline.serving.config import Deployments
from sftline.serving.log import Prediction, PredictionLog
from sftline.serving.metrics import ServerMetrics
from sftline.serving.protocol import ApiError, ChatCompletionRequest, ClassifyRequest, chunk, completion
from sftline.serving.router import EngineCache, Router, Target, UnknownModel

log = logging.getLogger("sftline.serve")

KEY_CACHE_S = 30.0
"""How long a verified key is trusted before the record is asked again (a revocation takes
effect within this)."""
ANALYSIS_ACTOR = "sftline serve (canary analysis)"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
CLIENT_CLOSED = 499
"""The status a request is counted with when its client left before the answer ended."""


@dataclass(frozen=True)
class Caller:
    name: str
    scope: str


class Server:
    def __init__(
        self,
        workspace: Workspace,
        deployments: Deployments,
        model: str | None = None,
        *,
        load_engine: Callable[[Target], Any] | None = None,
    ) -> None:
        self.workspace = workspace
        self.deployments = deployments
        self.contract = workspace.project.config.contract
        self.router = Router(workspace, deployments, model)
        self.engines = EngineCache(load_engine or self._load)
        self.metrics = ServerMetrics()
        self.log = PredictionLog(workspace, sample=deployments.log.sample, flush_s=deployments.log.flush_s)
        self.analysis = CanaryAnalysis(deployments.analysis)
        self.validator = OutputValidator(self.contract)
        self.ready = False
        self.draining = False
        self.inflight = 0
        self._keys: dict[str, tuple[float, Caller]] = {}
        self._rates: dict[str, tuple[int, int]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        limits = deployments.limits
        self.max_tokens = limits.max_tokens or self.contract.limits.max_target_tokens
        self.max_prompt_tokens = limits.max_prompt_tokens or self.contract.limits.max_length

    # --- engines ---------------------------------------------------------------------------

    def _load(self, target: Target) -> Any:
        if target.remote is not None:
            from sftline.serving.remote import RemoteEngine

            return RemoteEngine(target.remote, target.version)
        from transformers.utils import logging as hf_logging

        from sftline.serving.engine import load_engine

        hf_logging.disable_progress_bar()  # a server's stderr is a log
        if target.folder is None or not target.folder.is_dir():
            raise ModelError(f"{target.version} has no model folder at {target.folder}")
        queue = self.deployments.queue
        engine = load_engine(
            target.folder,
            self.contract,
            max_batch=queue.max_batch,
            window_ms=queue.window_ms,
            max_queue=queue.max_queue,
            batching=queue.batching,
        )
        labels = {"model": target.served, "version": target.version}
        batcher = getattr(engine, "batcher", None)
        if batcher is not None:

            def on_batch(size: int, seconds: float) -> None:
                self.metrics.batch_size.labels(**labels).observe(size)
                self.log.busy(target.served, target.version, target.route, seconds)

            batcher.on_batch = on_batch
        return engine

    async def warm_up(self) -> None:
        """Load the production and canary engines before saying ready."""
        try:
            for target in (await asyncio.to_thread(self.router.stages)).values():
                await self.engines.get(target)
        except Exception as exc:  # serve anyway: the first request loads (and says why it cannot)
            log.warning("could not load a model at start-up: %s", exc)
        self.ready = True

    # --- keys and limits -------------------------------------------------------------------

    async def caller(self, header: str | None) -> Caller:
        """The key's owner. A verified key is trusted for KEY_CACHE_S; an unknown one is not
        remembered (random keys cannot grow the cache), and the record is asked off the loop."""
        if not header or not header.startswith("Bearer "):
            raise ApiError(
                401,
                "missing API key: send Authorization: Bearer KEY (`sftline keys add`)",
                kind="authentication_error",
                code="invalid_api_key",
            )
        key = header[len("Bearer ") :].strip()
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is not None and now - cached[0] <= KEY_CACHE_S:
            return cached[1]
        from sftline.serving.keys import verify

        info = await asyncio.to_thread(verify, self.workspace, key)
        if info is None:
            self._keys.pop(digest, None)
            raise ApiError(401, "invalid API key", kind="authentication_error", code="invalid_api_key")
        caller = Caller(info.name, info.scope)
        self._keys[digest] = (now, caller)
        return caller

    def check_rate(self, caller: Caller) -> None:
        limit = self.deployments.limits.requests_per_minute
        if limit is None:
            return
        minute = int(time.time() // 60)
        start, count = self._rates.get(caller.name, (minute, 0))
        count = count + 1 if start == minute else 1
        self._rates[caller.name] = (minute, count)
        if count > limit:
            retry = str(60 - int(time.time()) % 60)
            raise ApiError(
                429,
                f"rate limit of {limit} requests per minute reached for key {caller.name!r}",
                kind="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": retry},
            )

    # --- background work -------------------------------------------------------------------

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def analysis_loop(self) -> None:
        settings = self.deployments.analysis
        while True:
            await asyncio.sleep(settings.interval_s)
            with contextlib.suppress(Exception):
                await self.analyse_once()

    async def analyse_once(self) -> str:
        """One look at the canary: "rollback", "promote", "wait" or "none" (no canary)."""
        from sftline.stations.registry import end_canary, promote

        stages = await asyncio.to_thread(self.router.stages)
        canary, production = stages.get("canary"), stages.get("production")
        if canary is None or production is None or self.router.fixed is not None:
            return "none"
        decision, evidence = self.analysis.decide(production.version, canary.version)
        if decision == "rollback":
            reason = "automatic canary rollback: " + "; ".join(evidence["breaches"])
            ended = await asyncio.to_thread(
                end_canary,
                self.workspace,
                canary.version,
                reason=reason,
                evidence=evidence,
                actor=ANALYSIS_ACTOR,
            )
            if ended:
                self.metrics.rollbacks.labels(model=canary.served, version=canary.version).inc()
                log.warning("%s: %s", canary.version, reason)
            self.analysis.forget(canary.version)
            self.router.refresh()
        elif decision == "promote":
            outcome = await asyncio.to_thread(
                promote,
                self.workspace,
                canary.version,
                "production",
                reason="canary analysis passed",
                actor=ANALYSIS_ACTOR,
            )
            log.warning("%s: canary analysis passed, promotion %s", canary.version, outcome.status)
            self.router.refresh()
        return decision

    async def close(self) -> None:
        self.draining = True
        deadline = time.monotonic() + self.deployments.queue.deadline_s
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in list(self._tasks):
            task.cancel()
        for engine in self.engines.all():
            with contextlib.suppress(Exception):
                await engine.close()
        await asyncio.to_thread(self.log.close)

    # --- one request -----------------------------------------------------------------------

    def account(
        self, target: Target | None, endpoint: str, status: int, started: float, **fields: Any
    ) -> None:
        """Metrics, the prediction log and the canary analysis, for every request however it ended."""
        latency = time.perf_counter() - started
        served = target.served if target else self.router.name
        version = target.version if target else "-"
        route = target.route if target else "-"
        labels = {"model": served, "version": version}
        self.metrics.requests.labels(**labels, route=route, endpoint=endpoint, status=str(status)).inc()
        if status == 200:
            self.metrics.latency.labels(**labels, endpoint=endpoint).observe(latency)
            self.metrics.prompt_tokens.labels(**labels).inc(fields.get("prompt_tokens", 0))
            self.metrics.generated_tokens.labels(**labels).inc(fields.get("output_tokens", 0))
            if fields.get("contract_valid") is False:
                self.metrics.contract_invalid.labels(**labels).inc()
            if fields.get("abstained"):
                self.metrics.abstentions.labels(**labels).inc()
        request_id = fields.pop("request_id")
        self.log.record(
            Prediction(request_id, served, version, route, endpoint, status, latency * 1000, **fields)
        )
        if target is not None and target.route in ("production", "canary"):
            self.analysis.observe(
                target.version,
                error=status >= 500 or status == 408,
                latency_s=latency,
                invalid=fields.get("contract_valid") is False,
                abstained=bool(fields.get("abstained")),
                answered=status == 200,
            )

    def account_label(
        self, target: Target, endpoint: str, started: float, request_id: str, text: str, answer: Any,
        user_hash: str | None = None, extra: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """`account` for one classified text (`answer`: the engine's ClassifyAnswer)."""
        # The ranked labels let monitoring score top-k accuracy once feedback names the right one.
        ranked = {"top": [label for label, _ in answer.top[:5]]} if getattr(answer, "top", None) else {}
        self.account(
            target, endpoint, 200, started, request_id=request_id, prompt=text, output=answer.label,
            label=answer.label, confidence=answer.probability, abstained=answer.abstained,
            contract_valid=self.valid(answer.label), user_hash=user_hash, extra={**ranked, **(extra or {})},
        )  # fmt: skip

    def valid(self, answer: str) -> bool | None:
        if answer.strip() == (self.contract.abstention or "\0"):
            return True
        return self.validator.problem(answer) is None if self.validator.active else None


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from exc


def _parse(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        raise ApiError(400, f"{where}: {message}" if where else message, param=where or None) from exc


class PromoteRequest(BaseModel):
    version: str
    to: str
    reason: str | None = None
    force: bool = False


class RollbackRequest(BaseModel):
    name: str
    version: int | None = None
    reason: str | None = None


def _engine_errors(exc: BaseException) -> ApiError | None:
    """The HTTP answer of an engine's refusal: overload is a 429 or 408, never a 5xx."""
    from sftline.serving.batching import BatcherClosed, DeadlineExceeded, QueueFull
    from sftline.serving.engine import InvalidRequest
    from sftline.serving.remote import RemoteError, RemoteRefused

    if isinstance(exc, QueueFull):
        retry = str(max(1, round(getattr(exc, "retry_after_s", 1.0))))
        return ApiError(
            429,
            "the server is busy: retry later",
            kind="rate_limit_error",
            code="server_busy",
            headers={"Retry-After": retry},
        )
    if isinstance(exc, (DeadlineExceeded, asyncio.TimeoutError)):
        return ApiError(
            408, "the request was not answered within its deadline", kind="timeout", code="timeout"
        )
    if isinstance(exc, InvalidRequest):
        return ApiError(400, str(exc))
    if isinstance(exc, BatcherClosed):
        return ApiError(503, "the server is shutting down", kind="api_error", code="draining")
    if isinstance(exc, RemoteRefused):  # the caller's error at the backend: its 4xx, passed on
        return ApiError(exc.status, str(exc))
    if isinstance(exc, RemoteError):
        return ApiError(502, str(exc), kind="api_error", code="bad_gateway")
    if isinstance(exc, UnknownModel):
        return ApiError(404, str(exc), code="model_not_found", param="model")
    return None


def create_app(server: Server) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        server.log.start()
        server.spawn(server.warm_up())
        if server.deployments.analysis.enabled:
            server.spawn(server.analysis_loop())
        yield
        await server.close()

    app = FastAPI(title="sftline", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    limits = server.deployments.limits

    @app.middleware("http")
    async def envelope(request: Request, call_next: Callable[[Request], Any]) -> Response:
        given = request.headers.get("x-request-id", "")
        request_id = given if 0 < len(given) <= 64 and given.isprintable() else uuid.uuid4().hex
        request.state.request_id = request_id
        try:
            if request.url.path not in PUBLIC_PATHS:
                request.state.caller = await server.caller(request.headers.get("authorization"))
                length = request.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > limits.max_body_bytes:
                    raise ApiError(413, f"the request body is over {limits.max_body_bytes} bytes")
            response: Response = await call_next(request)
        except ApiError as error:
            response = JSONResponse(error.body(), status_code=error.status, headers=error.headers)
        response.headers["x-request-id"] = request_id
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(SftlineError)
    async def refused(request: Request, error: SftlineError) -> JSONResponse:
        """A registry refusal in an admin action: what the CLI would say, as a 400; the record
        itself failing (down, locked past the retries) is a 503."""
        if isinstance(error, RecordError):
            body = ApiError(503, str(error), kind="api_error", code="record_unavailable").body()
            return JSONResponse(body, status_code=503)
        return JSONResponse(ApiError(400, str(error)).body(), status_code=400)

    async def body_of(request: Request) -> Any:
        """The JSON body, read chunk by chunk and refused as soon as it passes the limit (a
        chunked body has no Content-Length for the middleware to check)."""
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > limits.max_body_bytes:
                raise ApiError(413, f"the request body is over {limits.max_body_bytes} bytes")
            parts.append(part)
        return _json_body(b"".join(parts))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if server.ready and not server.draining:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "draining" if server.draining else "loading"}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        for target in (await asyncio.to_thread(server.router.stages)).values():
            engine = server.engines.loaded(target)
            batcher = getattr(engine, "batcher", None)
            if batcher is not None:
                server.metrics.queue_depth.labels(model=target.served, version=target.version).set(
                    batcher.depth
                )
        return Response(server.metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        stages = await asyncio.to_thread(server.router.stages)
        created = int(time.time())
        data = [{"id": server.router.name, "object": "model", "created": created, "owned_by": "sftline"}]
        data += [
            {"id": t.version, "object": "model", "created": created, "owned_by": "sftline", "stage": stage}
            for stage, t in stages.items()
            if t.version != server.router.name
        ]
        return {"object": "list", "data": data}

    def admin(request: Request) -> Caller:
        caller: Caller = request.state.caller
        if caller.scope != "admin":
            raise ApiError(403, f"key {caller.name!r} has scope {caller.scope!r}; this needs an admin key",
                           kind="permission_error", code="insufficient_scope")  # fmt: skip
        return caller

    @app.post("/v1/admin/promote")
    async def admin_promote(request: Request) -> JSONResponse:
        """{"version": "NAME@N", "to": stage, "reason", "force"}: the registry's promotion, as the key."""
        from sftline.stations.registry import promote

        caller = admin(request)
        body = _parse(PromoteRequest, await body_of(request))
        outcome = await asyncio.to_thread(
            promote, server.workspace, body.version, body.to, reason=body.reason, force=body.force,
            actor=f"key:{caller.name}",
        )  # fmt: skip
        server.router.refresh()
        status = 200 if outcome.status != "blocked" else 409
        return JSONResponse(outcome.as_json(), status_code=status)

    @app.post("/v1/admin/rollback")
    async def admin_rollback(request: Request) -> JSONResponse:
        """{"name", "version", "reason"}: the registry's rollback, as the key."""
        from sftline.stations.registry import rollback

        caller = admin(request)
        body = _parse(RollbackRequest, await body_of(request))
        outcome = await asyncio.to_thread(
            rollback, server.workspace, body.name, version=body.version, reason=body.reason,
            actor=f"key:{caller.name}",
        )  # fmt: skip
        server.router.refresh()
        return JSONResponse(outcome.as_json())

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await handle(request, "chat")

    @app.post("/v1/classify")
    async def classify(request: Request) -> Response:
        return await handle(request, "classify")

    async def handle(request: Request, endpoint: str) -> Response:
        started = time.perf_counter()
        request_id: str = request.state.request_id
        caller: Caller = request.state.caller
        target: Target | None = None
        server.inflight += 1
        try:
            if server.draining:
                raise ApiError(503, "the server is shutting down", kind="api_error", code="draining")
            server.check_rate(caller)
            body = await body_of(request)
            parsed = _parse(ChatCompletionRequest if endpoint == "chat" else ClassifyRequest, body)
            user = getattr(parsed, "user", None) or caller.name
            target = await asyncio.to_thread(server.router.pick, parsed.model, user)
            engine = await server.engines.get(target)
            deadline = time.monotonic() + server.deployments.queue.deadline_s
            if endpoint == "classify":
                return await answer_classify(request_id, started, target, engine, parsed, deadline)
            return await answer_chat(request_id, started, target, engine, parsed, deadline, user)
        except Exception as exc:
            error = exc if isinstance(exc, ApiError) else _engine_errors(exc)
            if error is None:
                log.exception("request %s failed", request_id)
                error = ApiError(500, f"internal error: {type(exc).__name__}", kind="api_error")
            server.account(target, endpoint, error.status, started, request_id=request_id)
            headers = {**error.headers, **({"x-model-version": target.version} if target else {})}
            return JSONResponse(error.body(), status_code=error.status, headers=headers)
        finally:
            server.inflight -= 1

    def messages_of(parsed: ChatCompletionRequest) -> list[dict[str, Any]]:
        if len(parsed.messages) > limits.max_messages:
            raise ApiError(
                400, f"{len(parsed.messages)} messages; the limit is {limits.max_messages}", param="messages"
            )
        return [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in parsed.messages
        ]

    async def answer_classify(
        request_id: str, started: float, target: Target, engine: Any, parsed: ClassifyRequest, deadline: float
    ) -> Response:
        if engine.kind != "classify":
            raise ApiError(400, f"{target.version} is a chat model: use /v1/chat/completions", param="model")
        texts = parsed.texts
        if not texts or len(texts) > limits.max_inputs:
            raise ApiError(400, f"input: 1 to {limits.max_inputs} texts, got {len(texts)}", param="input")
        answers = await engine.classify(texts, deadline=deadline)
        results = [
            {
                "label": a.label,
                "probability": a.probability,
                "abstained": a.abstained,
                "top": [{"label": label, "probability": p} for label, p in a.top],
            }
            for a in answers
        ]
        # One request, counted once (its first text stands for it in the log; all labels in extra).
        server.account_label(
            target, "classify", started, request_id, texts[0], answers[0],
            extra={"inputs": len(texts), "labels": [a.label for a in answers]} if len(texts) > 1 else None,
        )  # fmt: skip
        headers = {"x-model-version": target.version}
        return JSONResponse({"model": target.version, "results": results}, headers=headers)

    async def answer_chat(
        request_id: str,
        started: float,
        target: Target,
        engine: Any,
        parsed: ChatCompletionRequest,
        deadline: float,
        user: str,
    ) -> Response:
        from sftline.serving.engine import ChatAnswer, ChatParams

        messages = messages_of(parsed)
        wanted = parsed.max_completion_tokens or parsed.max_tokens or server.max_tokens
        if wanted > server.max_tokens:
            raise ApiError(
                400, f"max_tokens {wanted} is over the limit of {server.max_tokens}", param="max_tokens"
            )
        prompt = messages[-1]["content"] if messages else ""
        headers = {"x-model-version": target.version}
        user_hash = hashlib.sha256(user.encode()).hexdigest()[:16]
        if engine.kind == "classify":  # any OpenAI client can call a classifier: the label is the answer
            answer = (await engine.classify([prompt], deadline=deadline))[0]
            server.account_label(target, "chat", started, request_id, prompt, answer, user_hash=user_hash)
            body = completion(request_id, target.version, answer.label, "stop", 0, 1)
            return JSONResponse(body, headers=headers)
        if hasattr(engine, "render"):
            prompt_tokens = len(await asyncio.to_thread(engine.render, messages))
            if prompt_tokens > server.max_prompt_tokens:
                raise ApiError(
                    400,
                    f"the prompt has {prompt_tokens} tokens; the limit is {server.max_prompt_tokens}",
                    param="messages",
                )
        params = ChatParams(
            max_tokens=wanted,
            temperature=parsed.temperature or 0.0,
            top_p=parsed.top_p or 1.0,
            seed=parsed.seed,
            stop=parsed.stops,
            json_schema=parsed.answer_schema,
        )

        def finished(answer: ChatAnswer) -> None:
            labels = {"model": target.served, "version": target.version}
            server.metrics.ttft.labels(**labels).observe(answer.ttft_s)
            abstained = bool(server.contract.abstention) and answer.text.strip() == server.contract.abstention
            valid = server.valid(answer.text) if parsed.answer_schema is None else None
            server.account(
                target,
                "chat",
                200,
                started,
                request_id=request_id,
                prompt=prompt,
                output=answer.text,
                confidence=answer.confidence,
                abstained=abstained,
                contract_valid=valid,
                prompt_tokens=answer.prompt_tokens,
                output_tokens=answer.completion_tokens,
                user_hash=user_hash,
            )
            for shadow in server.router.shadows():
                server.spawn(run_shadow(shadow, messages, params, answer.text, request_id))

        if not parsed.stream:
            answer = await engine.complete(messages, params, deadline=deadline)
            finished(answer)
            body = completion(
                request_id,
                target.version,
                answer.text,
                answer.finish_reason,
                answer.prompt_tokens,
                answer.completion_tokens,
            )
            return JSONResponse(body, headers=headers)
        parts = engine.stream(messages, params, deadline=deadline)
        first = await parts.__anext__()  # a refusal (busy, deadline) is still a plain HTTP error here
        usage = bool((parsed.stream_options or {}).get("include_usage"))

        async def events() -> AsyncIterator[str]:
            server.inflight += 1
            accounted = False
            try:
                yield _sse(chunk(request_id, target.version, {"role": "assistant", "content": ""}))
                item = first
                while True:
                    if isinstance(item, ChatAnswer):
                        accounted = True
                        finished(item)
                        yield _sse(chunk(request_id, target.version, {}, item.finish_reason))
                        if usage:
                            last = chunk(request_id, target.version, {})
                            last["choices"] = []
                            last["usage"] = {
                                "prompt_tokens": item.prompt_tokens,
                                "completion_tokens": item.completion_tokens,
                                "total_tokens": item.prompt_tokens + item.completion_tokens,
                            }
                            yield _sse(last)
                        break
                    yield _sse(chunk(request_id, target.version, {"content": item}))
                    item = await parts.__anext__()
            except Exception as exc:  # mid-stream: the status is sent; say what happened in the stream
                error = _engine_errors(exc) or ApiError(
                    500, f"internal error: {type(exc).__name__}", kind="api_error"
                )
                if not accounted:
                    accounted = True
                    server.account(target, "chat", error.status, started, request_id=request_id)
                yield _sse(error.body())
            finally:
                server.inflight -= 1
                if not accounted:  # the client went away mid-answer (nginx's 499)
                    server.account(target, "chat", CLIENT_CLOSED, started, request_id=request_id)
                await parts.aclose()  # a client that went away stops its generation at the next step
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def run_shadow(
        shadow: Target, messages: list[dict[str, Any]], params: Any, returned: str, rid: str
    ) -> None:
        started = time.perf_counter()
        try:
            engine = await server.engines.get(shadow)
            if engine.kind == "classify":
                text = (await engine.classify([messages[-1]["content"]]))[0].label
            else:
                text = (await engine.complete(messages, params)).text
        except Exception as exc:
            error = _engine_errors(exc)
            server.account(shadow, "chat", error.status if error else 500, started, request_id=rid)
            return
        agreed = text.strip() == returned.strip()
        server.metrics.shadow_agreement.labels(
            model=shadow.served, version=shadow.version, shadow=shadow.version, agreed=str(agreed).lower()
        ).inc()
        server.account(
            shadow,
            "chat",
            200,
            started,
            request_id=rid,
            prompt=messages[-1]["content"],
            output=text,
            contract_valid=server.valid(text),
            extra={"agreed": agreed},  # the returned answer is the main row's (redacted) output
        )

    return app


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
