"""The FastAPI application: the /v1 routes, /healthz, the web page, and the callback sender."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from posequeue import __version__
from posequeue.api import errors, routes, views
from posequeue.api.auth import Tokens
from posequeue.api.callbacks import Sender
from posequeue.config.settings import Settings, get_settings
from posequeue.jobs import Jobs
from posequeue.logs import get_logger
from posequeue.store import StoreError, open_store

log = get_logger(__name__)
STATIC = Path(__file__).parent / "static"
# The page loads nothing but its own files and talks to nothing but this API.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(settings: Settings | None = None, tokens: Tokens | None = None) -> FastAPI:
    settings = settings or get_settings()
    tokens = tokens or Tokens.from_settings(settings)
    jobs = Jobs.from_url(settings.broker_url)
    store = open_store(settings.store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sender = None
        if settings.callback_secret:  # without a secret no job can ask for a callback
            sender = Sender(jobs, settings.callback_secret, lambda job: views.describe(job, store, tokens))
            sender.start()
        yield
        if sender:
            sender.stop()

    # FastAPIOffline: FastAPI whose /docs (Swagger UI) and /redoc load their scripts from this
    # server (bundled in fastapi-offline), not from a CDN: they work on a host without internet.
    app = FastAPIOffline(
        title="posequeue",
        version=__version__,
        description="Submit videos for pose estimation, follow jobs, fetch results. Every /v1 "
        "endpoint needs `Authorization: Bearer TOKEN` (docs/api.md).",
        lifespan=lifespan,
    )
    app.state.settings, app.state.tokens, app.state.jobs, app.state.store = settings, tokens, jobs, store
    errors.install(app)
    app.include_router(routes.authed)
    app.include_router(routes.router)

    @app.get("/healthz", summary="Redis and the store reachable (no token needed)")
    def healthz() -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            jobs.r.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # redis-py raises ConnectionError, TimeoutError, ...
            checks["redis"] = f"unreachable: {exc}"
        try:
            store.check()
            checks["store"] = "ok"
        except StoreError as exc:
            checks["store"] = f"unreachable: {exc}"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if healthy else "unhealthy", **checks}, 200 if healthy else 503)

    @app.get("/", include_in_schema=False)
    def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
