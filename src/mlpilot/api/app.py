"""The control-plane application: REST API (OpenAPI at /docs), health, and error mapping."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlpilot.api.deps import Services
from mlpilot.api.routes import artifacts, deploy, features, monitor, registry, tokens, tracking
from mlpilot.errors import MlpilotError

__all__ = ["create_app"]

log = logging.getLogger("mlpilot.api")


def _field_of(loc: Any) -> str:
    # ("body", "params", 0, "key") -> "params[0].key": the name a caller recognises.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or ".".join(str(p) for p in loc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = _field_of(first.get("loc", ()))
    problems = [{"field": _field_of(e.get("loc", ())), "message": e.get("msg", "")} for e in errors]
    body = {
        "error": "InvalidInputError",
        "message": f"{field}: {first.get('msg', 'invalid')}" if field else str(first.get("msg")),
        "field": field,
        "details": {"errors": problems},
    }
    return JSONResponse(body, status_code=400)


async def _mlpilot_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MlpilotError)
    if exc.http_status >= 500:
        log.error("request failed: %s", exc.message)
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body = {"error": "HTTPError", "message": str(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse({"error": "InternalError", "message": "internal server error"}, status_code=500)


def create_app(services: Services, *, require_auth: bool = False, background: bool = True) -> FastAPI:
    """Build the control-plane app over ``services``.

    ``require_auth`` makes every request present a token; ``mlpilot server`` sets it whenever it binds beyond
    loopback. ``background`` runs the control loops while the app serves: the rollout controller (analysis,
    promotion and automatic rollback, every second) and scheduled monitoring (checks, alert rules, reference
    profiles of new versions, every ``MLPILOT_MONITOR_INTERVAL`` seconds).
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not background:
            yield
            return
        from mlpilot.deploy import Controller
        from mlpilot.deploy.labels import LabelFeed

        # Labels logged through monitoring feed the rollouts' online accuracy before each look.
        feed = LabelFeed(services.deployments, services.monitor)
        controller = Controller(services.deployments, interval=1.0, labels=feed).start()
        try:
            with services.monitor.scheduler().running():
                yield
        finally:
            controller.stop()

    app = FastAPI(title="mlpilot control plane", version="1", lifespan=lifespan)
    app.state.services = services
    app.state.require_auth = require_auth
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(MlpilotError, _mlpilot_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        """Liveness and a cheap check that the metadata store answers."""
        from sqlalchemy import text

        with services.store.read() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "store": services.store.dialect}

    for module in (tracking, registry, artifacts, tokens, deploy, monitor, features):
        app.include_router(module.router)
    return app
