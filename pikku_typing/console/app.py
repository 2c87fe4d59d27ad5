"""The console's Starlette application: pages and actions over one state store.

Pages (GET): ``/`` the runs list (``?workflow=``, ``?status=`` repeated or comma-separated,
``?page=``, ``?per_page=``), ``/runs/{id}`` a run. Actions (POST, CSRF-checked):
``/runs/{id}/cancel`` and ``/runs/{id}/resume`` run the code of ``pikku-runs cancel`` and
``pikku-runs resume`` (:func:`runs_cli.cancel_run`, :func:`runs_cli.resume_run_in_store`).
``/healthz`` answers ``ok`` (behind the token like everything else).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from pikku_typing.console import views
from pikku_typing.console.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    LOOPBACK_NAMES,
    SecurityMiddleware,
    cookie_name,
    csrf_cookie_ok,
    new_csrf,
)
from pikku_typing.errors import StateCorruptedError, StoreUnavailableError
from pikku_typing.models import RunStatus
from pikku_typing.runtime import runs_cli
from pikku_typing.state.base import WorkflowStateService

logger = logging.getLogger("pikku.console")

ACTION_MESSAGES: Final = {
    "cancelled": "Run cancelled.",
    "cancel_requested": "Cancel requested: the run is running and stops at its next step boundary.",
    "woken": "The run is due now; a worker picks it up (pikku-worker --recover, or runtime.recover()).",
    "resumed": "Run resumed: a worker picks it up (pikku-worker --recover, or runtime.recover()).",
}
MAX_RESUME_ATTEMPTS: Final = 100


@dataclass
class ConsoleSettings:
    store_url: str
    token: str | None = None
    allowed_hosts: Sequence[str] = LOOPBACK_NAMES
    meta_path: Path | None = None
    page_size: int = views.DEFAULT_PAGE_SIZE
    open_store: Callable[[str], Awaitable[WorkflowStateService]] = field(
        default=runs_cli.open_store
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pikku_typing.console", "templates"),
        autoescape=True,  # every page is HTML: nothing from the store is trusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["statuses"] = [s.value for s in RunStatus]
    env.filters["q"] = lambda value: quote(str(value), safe="")
    return env


def create_app(settings: ConsoleSettings) -> Starlette:
    """The console for ``settings.store_url`` (the store is opened at startup, closed at
    shutdown)."""
    templates = _environment()
    meta = views.MetaSource(settings.meta_path)
    holder: dict[str, WorkflowStateService] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        holder["store"] = await settings.open_store(settings.store_url)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await holder["store"].close()

    def store() -> WorkflowStateService:
        return holder["store"]

    def page(
        request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        name = cookie_name(CSRF_COOKIE, request.scope)
        csrf = request.cookies.get(name)
        fresh = not csrf_cookie_ok(csrf)
        if fresh:
            csrf = new_csrf()
        html = templates.get_template(template).render(
            csrf=csrf,
            csrf_field=CSRF_FIELD,
            nonce=request.scope.get("state", {}).get("csp_nonce", ""),
            store_url=display_store(settings.store_url),
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        if fresh:
            response.set_cookie(
                name,
                csrf or "",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                path="/",
            )
        return response

    def message(request: Request, status_code: int, title: str, text: str) -> HTMLResponse:
        return page(request, "message.html", status_code, title=title, text=text)

    async def runs_list(request: Request) -> Response:
        try:
            query = views.parse_list_query(
                dict(request.query_params), request.query_params.getlist("status")
            )
        except views.QueryError as exc:
            return message(request, 400, "Bad request", str(exc))
        if not request.query_params.get("per_page"):
            query = views.ListQuery(query.workflow, query.statuses, query.page, settings.page_size)
        data = await views.runs_page(store(), query)
        report = meta.get()
        workflows = sorted(w.name for w in report.workflows) if report is not None else []

        def link(page_number: int) -> str:
            params: list[tuple[str, str]] = []
            if query.workflow:
                params.append(("workflow", query.workflow))
            params.extend(("status", s.value) for s in query.statuses)
            if query.per_page != settings.page_size:
                params.append(("per_page", str(query.per_page)))
            if page_number > 1:
                params.append(("page", str(page_number)))
            return "/" + (f"?{urlencode(params)}" if params else "")

        return page(
            request,
            "runs.html",
            data=data,
            selected={s.value for s in query.statuses},
            workflows=workflows,
            prev_link=link(query.page - 1) if query.page > 1 else None,
            next_link=link(query.page + 1) if data.has_next else None,
        )

    async def run_detail(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        all_steps = request.query_params.get("steps") == "all"
        try:
            data = await views.run_page(
                store(),
                run_id,
                meta=meta.get(),
                meta_problem=meta.problem,
                max_steps=None if all_steps else views.DEFAULT_MAX_STEPS,
            )
        except views.RunNotShown:
            return message(request, 404, "Run not found", f"There is no run {run_id!r} in this store.")
        done = request.query_params.get("done")
        notice = ACTION_MESSAGES.get(done or "")
        return page(request, "run.html", data=data, notice=notice, refusal=None)

    async def act(request: Request, action: str) -> Response:
        run_id = request.path_params["run_id"]
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        try:
            if action == "cancel":
                result = await runs_cli.cancel_run(store(), run_id)
                if not result.done:
                    raise runs_cli.CliError(f"nothing to cancel: {result.message}")
            else:
                attempts = _attempts(form.get("attempts"))
                result = await runs_cli.resume_run_in_store(store(), run_id, attempts=attempts)
        except runs_cli.CliError as exc:
            logger.info("console %s of run %s refused: %s", action, run_id, exc)
            try:
                data = await views.run_page(
                    store(), run_id, meta=meta.get(), meta_problem=meta.problem
                )
            except views.RunNotShown:
                return message(request, 404, "Run not found", str(exc))
            return page(request, "run.html", 409, data=data, notice=None, refusal=str(exc))
        logger.info("console %s of run %s: %s", action, run_id, result.message)
        target = f"/runs/{quote(run_id, safe='')}?{urlencode({'done': result.action})}"
        return RedirectResponse(target, status_code=303)

    async def cancel(request: Request) -> Response:
        return await act(request, "cancel")

    async def resume(request: Request) -> Response:
        return await act(request, "resume")

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def not_found(request: Request, exc: Exception) -> Response:
        return message(request, 404, "Not found", f"There is no page {request.url.path!r}.")

    async def corrupted(request: Request, exc: Exception) -> Response:
        logger.warning("console: damaged record behind %s: %s", request.url.path, exc)
        return message(request, 500, "Damaged record", f"The store holds a damaged record: {exc}")

    async def unavailable(request: Request, exc: Exception) -> Response:
        logger.warning("console: store unavailable for %s: %s", request.url.path, exc)
        return message(request, 503, "Store unavailable", f"The store cannot be reached: {exc}")

    app = Starlette(
        routes=[
            Route("/", runs_list, methods=["GET"]),
            Route("/runs/{run_id}", run_detail, methods=["GET"]),
            Route("/runs/{run_id}/cancel", cancel, methods=["POST"]),
            Route("/runs/{run_id}/resume", resume, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={
            404: not_found,
            StateCorruptedError: corrupted,
            StoreUnavailableError: unavailable,
        },
    )
    app.add_middleware(
        SecurityMiddleware, token=settings.token, allowed_hosts=settings.allowed_hosts
    )
    return app


def _attempts(text: str | None) -> int:
    if text is None or not text.strip():
        return 1
    try:
        value = int(text)
    except ValueError:
        raise runs_cli.CliError(f"attempts must be a whole number, not {text[:40]!r}") from None
    if not 1 <= value <= MAX_RESUME_ATTEMPTS:
        raise runs_cli.CliError(f"attempts must be between 1 and {MAX_RESUME_ATTEMPTS}")
    return value


def display_store(url: str) -> str:
    """The store URL without a password (a PostgreSQL DSN may carry one)."""
    scheme, _, rest = url.partition(":")
    if "@" in rest and "://" in url:
        head, _, tail = url.rpartition("@")
        prefix, _, credentials = head.partition("://")
        user = credentials.split(":", 1)[0]
        return f"{prefix}://{user}:***@{tail}" if ":" in credentials else url
    if "password=" in rest:
        return scheme + ":" + " ".join(
            "password=***" if part.startswith("password=") else part for part in rest.split()
        )
    return url
