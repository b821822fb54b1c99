"""`sftline ui`: the dashboard, server-rendered pages over the record.

Pages read the record through `sftline.record.queries` one page of rows at a time; charts are the
inline SVG of `sftline.reports.svg`, so a page loads nothing but itself and one stylesheet (the
Content-Security-Policy says so to the browser). The only writes are the registry's promote and
rollback, made by `sftline.stations.registry`, and a review item's label, recorded by
`sftline.stations.feedback`, each as the signed-in admin key (see `sftline.ui.auth`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from sftline.config import Project
from sftline.errors import SftlineError
from sftline.monitoring.settings import format_duration
from sftline.record.workspace import Workspace
from sftline.serving.keys import hash_key
from sftline.stations.feedback import known_labels
from sftline.stations.registry import promote, rollback
from sftline.ui import auth
from sftline.ui import data as data_views
from sftline.ui import evals as eval_views
from sftline.ui import line as line_views
from sftline.ui import monitoring as monitoring_views
from sftline.ui import registry as registry_views
from sftline.ui import runs as run_views
from sftline.ui import serving as serving_views
from sftline.ui.format import Page, figure, short, when

HERE = Path(__file__).parent
T = TypeVar("T")

SECURITY_HEADERS = {
    # Nothing but this origin's stylesheet and the page's own inline SVG: no CDN, no scripts.
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
NAV = (
    ("/line", "Line"),
    ("/data", "Data"),
    ("/runs", "Runs"),
    ("/evals", "Evaluations"),
    ("/registry", "Registry"),
    ("/serving", "Serving"),
    ("/monitoring", "Monitoring"),
)


class Refused(Exception):
    """A write the dashboard will not carry out: not signed in, a bad CSRF token or origin."""


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def create_app(workspace: Workspace) -> FastAPI:
    """The dashboard over `workspace`'s record. The workspace stays open for the app's life."""
    app = FastAPI(title="sftline ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters.update(
        when=when, short=short, figure=figure, percent=_percent, quote=quote, span=format_duration
    )
    sessions = auth.Sessions()
    comparisons = eval_views.Comparisons()

    def read(view: Callable[..., T], *args: Any) -> T:
        with workspace.record.session() as session:
            return view(session, *args)

    def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
        session_id = request.cookies.get(auth.COOKIE)
        ui_session = sessions.get(session_id)
        fresh = ui_session is None
        if ui_session is None:
            session_id, ui_session = sessions.new()
        flash, ui_session.flash = ui_session.flash, []
        shared = {
            "nav": NAV,
            "path": request.url.path,
            "signed_in": ui_session.key_name,
            "csrf": ui_session.csrf,
            "flash": flash,
        }
        response = templates.TemplateResponse(request, template, {**shared, **context}, status_code=status)
        if fresh:
            _set_cookie(request, response, session_id or "")
        return response

    def redirect(to: str) -> RedirectResponse:
        return RedirectResponse(to, status_code=303)

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        """The security headers, and the page's server time as `Server-Timing: app;dur=MS` (what
        bench/bench_ui.py reads, and a browser's devtools show)."""
        started = time.perf_counter()
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        response.headers["server-timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    @app.exception_handler(SftlineError)
    async def not_found(request: Request, error: SftlineError) -> Response:
        return render(request, "error.html", {"message": str(error)}, status=404)

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> Response:
        return render(request, "error.html", {"message": str(error)}, status=403)

    async def checked_form(request: Request) -> tuple[dict[str, str], auth.UiSession | None]:
        """The POST's form, once its origin and CSRF token are checked."""
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        own = f"{request.url.scheme}://{request.url.netloc}"
        if not auth.same_origin(request.headers.get("origin"), request.headers.get("referer"), own):
            raise Refused("refused: the form was not sent from this dashboard (Origin check)")
        ui_session = sessions.get(request.cookies.get(auth.COOKIE))
        if not auth.csrf_ok(ui_session, form.get("csrf")):
            raise Refused("refused: the form's session token is missing or stale; reload the page and retry")
        return form, ui_session

    async def admin(request: Request) -> tuple[dict[str, str], auth.UiSession]:
        form, ui_session = await checked_form(request)
        if ui_session is None or ui_session.key_name is None:
            raise Refused("sign in with an admin API key (`sftline keys add NAME --scope admin`) first")
        if not await asyncio.to_thread(read, auth.still_admin, ui_session):
            ui_session.key_hash = ui_session.key_name = None
            raise Refused("the admin key this session signed in with was revoked; sign in again")
        return form, ui_session

    @app.get("/", response_class=HTMLResponse)
    def home() -> Response:
        return redirect("/line")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        """No icon: an empty answer instead of a 404 that every browser would log."""
        return Response(status_code=204)

    @app.get("/line", response_class=HTMLResponse)
    def line(request: Request, page: int = 1) -> Response:
        return render(request, "line.html", read(line_views.line_page, Page.of(page)))

    @app.get("/lineage", response_class=HTMLResponse)
    def lineage(request: Request, artifact: str = "") -> Response:
        context = read(line_views.lineage_page, artifact) if artifact else {"artifact": ""}
        return render(request, "lineage.html", context)

    @app.get("/data", response_class=HTMLResponse)
    def data(request: Request) -> Response:
        return render(request, "data.html", read(data_views.data_page))

    @app.get("/data/reports/{report_id}", response_class=HTMLResponse)
    def gate_report(request: Request, report_id: int) -> Response:
        with workspace.record.session() as session:
            context = data_views.gate_report_page(workspace, session, report_id)
        return render(request, "gate_report.html", context)

    @app.get("/data/{name}", response_class=HTMLResponse)
    def dataset(request: Request, name: str) -> Response:
        return render(request, "dataset.html", read(data_views.dataset_page, name))

    @app.get("/runs", response_class=HTMLResponse)
    def runs(request: Request, page: int = 1) -> Response:
        return render(request, "runs.html", read(run_views.runs_page, Page.of(page)))

    @app.get("/runs/{name}", response_class=HTMLResponse)
    def run(request: Request, name: str) -> Response:
        return render(request, "run.html", read(run_views.run_page, name))

    @app.get("/runs/{name}/masks", response_class=HTMLResponse)
    def masks(request: Request, name: str) -> Response:
        with workspace.record.session() as session:
            context = run_views.masks_page(workspace, session, name)
        return render(request, "masks.html", context)

    @app.get("/evals", response_class=HTMLResponse)
    def evals(request: Request, page: int = 1) -> Response:
        return render(request, "evals.html", read(eval_views.evals_page, Page.of(page)))

    @app.get("/evals/{name}", response_class=HTMLResponse)
    def evaluation(request: Request, name: str, against: str = "") -> Response:
        with workspace.record.session() as session:
            context = eval_views.evaluation_page(workspace, session, name, against or None, comparisons)
        return render(request, "evaluation.html", context)

    @app.get("/registry", response_class=HTMLResponse)
    def registry(request: Request) -> Response:
        return render(request, "registry.html", read(registry_views.registry_page))

    @app.get("/registry/{name}", response_class=HTMLResponse)
    def model(request: Request, name: str) -> Response:
        return render(request, "model.html", read(registry_views.model_page, name))

    @app.get("/registry/{name}/{number}/card", response_class=HTMLResponse)
    def card(request: Request, name: str, number: int) -> Response:
        return render(request, "card.html", registry_views.card_page(workspace, f"{name}@{number}"))

    @app.post("/registry/{name}/promote")
    async def promote_version(request: Request, name: str) -> Response:
        """Promote `name@version` to `to` as the signed-in key; a verdict that is not `pass` blocks
        it and the page says why. There is no --force here: overriding a release verdict stays a
        deliberate act at the command line."""
        form, ui_session = await admin(request)
        ref = f"{name}@{form.get('version', '')}"
        # sftline.yaml read now, as the CLI would: the release criteria of this moment decide.
        current = Workspace(Project.find(workspace.project.root), workspace.record, workspace.objects)
        try:
            outcome = await asyncio.to_thread(
                promote, current, ref, form.get("to", ""), reason=form.get("reason") or None,
                actor=f"key:{ui_session.key_name}",
            )  # fmt: skip
        except SftlineError as exc:
            ui_session.say("error", f"{ref} not promoted: {exc}")
            return redirect(f"/registry/{quote(name)}")
        if outcome.status == "blocked":
            text = f"{ref} not promoted to {outcome.to_stage}: the release verdict is {outcome.verdict}"
            details = tuple(outcome.evidence.get("reasons") or outcome.overridden)
            ui_session.say("error", text, details)
        elif outcome.status == "unchanged":
            ui_session.say("ok", f"{ref} is in {outcome.to_stage} already")
        else:
            aside = f"; {outcome.moved_aside} moved aside" if outcome.moved_aside else ""
            verdict = f" on a {outcome.verdict} verdict" if outcome.verdict else ""
            text = f"{ref} promoted from {outcome.from_stage} to {outcome.to_stage}{verdict}{aside}"
            ui_session.say("ok", text)
        return redirect(f"/registry/{quote(name)}")

    @app.post("/registry/{name}/rollback")
    async def rollback_model(request: Request, name: str) -> Response:
        form, ui_session = await admin(request)
        try:
            outcome = await asyncio.to_thread(
                rollback,
                workspace,
                name,
                reason=form.get("reason") or None,
                actor=f"key:{ui_session.key_name}",
            )
        except SftlineError as exc:
            ui_session.say("error", f"no rollback: {exc}")
        else:
            text = f"{outcome.restored} restored to production"
            if outcome.rolled_back:
                text += f"; {outcome.rolled_back} returned to candidate"
            ui_session.say("ok", text)
        return redirect(f"/registry/{quote(name)}")

    @app.get("/serving", response_class=HTMLResponse)
    def serving(request: Request, window: int = 60, page: int = 1) -> Response:
        minutes = window if window in serving_views.WINDOWS else 60
        with workspace.record.session() as session:
            context = serving_views.serving_page(session, minutes, Page.of(page))
            context["mon"] = monitoring_views.newest_panels(workspace, session)
        return render(request, "serving.html", context)

    @app.get("/monitoring", response_class=HTMLResponse)
    def monitoring(
        request: Request,
        model: str = "",
        report: int | None = None,
        reports_page: int = 1,
        alerts_page: int = 1,
        review_page: int = 1,
        queue: str = "to label",
    ) -> Response:
        query = monitoring_views.MonitoringQuery(
            model or None, report, max(1, reports_page), max(1, alerts_page), max(1, review_page), queue
        )
        with workspace.record.session() as session:
            context = monitoring_views.monitoring_page(workspace, session, query)
        context["labels"] = known_labels(workspace, context["model"])
        return render(request, "monitoring_page.html", context)

    @app.post("/monitoring/review/{item_id}/label")
    async def label_review_item(request: Request, item_id: int) -> Response:
        """Record the form's label for review item `item_id` as the signed-in key; the page says
        whether it was recorded or why it was rejected."""
        form, ui_session = await admin(request)
        back = _local(form.get("back", ""), "/monitoring")
        outcome = await asyncio.to_thread(
            monitoring_views.label_review_item,
            workspace,
            item_id,
            form.get("label", ""),
            f"key:{ui_session.key_name}",
        )
        if outcome.accepted:
            ui_session.say(
                "ok",
                f"review item #{item_id} labelled; `sftline feedback import` or `sftline retrain` "
                "builds the feedback dataset from it",
            )
        else:
            ui_session.say(
                "error", f"review item #{item_id} not labelled", tuple(r.detail for r in outcome.rejected)
            )
        return redirect(f"{back}#item-{item_id}")

    @app.get("/signin", response_class=HTMLResponse)
    def signin_form(request: Request, next: str = "/registry") -> Response:
        return render(request, "signin.html", {"next": _local(next)})

    @app.post("/signin")
    async def signin(request: Request) -> Response:
        form, _ = await checked_form(request)
        name = await asyncio.to_thread(read, auth.admin_key_name, form.get("key", ""))
        if name is None:
            context = {"next": _local(form.get("next", "")), "problem": "not a live admin API key"}
            return render(request, "signin.html", context, status=401)
        sessions.drop(request.cookies.get(auth.COOKIE))
        session_id, ui_session = sessions.new()
        ui_session.key_name, ui_session.key_hash = name, hash_key(form["key"].strip())
        ui_session.say("ok", f"signed in as key {name}")
        response = redirect(_local(form.get("next", "")))
        _set_cookie(request, response, session_id)
        return response

    @app.post("/signout")
    async def signout(request: Request) -> Response:
        await checked_form(request)
        sessions.drop(request.cookies.get(auth.COOKIE))
        response = redirect("/line")
        response.delete_cookie(auth.COOKIE, path="/")
        return response

    return app


def _local(target: str, otherwise: str = "/registry") -> str:
    """A redirect target on this site only: a path, never `//host` or a full URL."""
    return (
        target if target.startswith("/") and not target.startswith("//") and "\\" not in target else otherwise
    )


def _set_cookie(request: Request, response: Response, session_id: str) -> None:
    response.set_cookie(
        auth.COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
