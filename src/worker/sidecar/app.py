"""The sidecar's ASGI application, built from what the composition root hands it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.errors import passes_by_itself
from worker.metrics import Metrics
from worker.sidecar.api import ReadApi, ServiceUnavailableError, router
from worker.sidecar.auth import TokenRules
from worker.sidecar.limits import DEFAULT_PER_MINUTE, RateLimiter

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backends:
    """What the sidecar answers from, once the worker has opened it: its readiness check and
    the read API (with its pool)."""

    readiness: ReadinessCheck
    read_api: ReadApi


# What `/readyz` reports while the worker is starting.
_STARTING = {"database": False, "kafka_group": False}

# The methods a metric label may take; any other token a client sends is counted as "other",
# so a client cannot grow the number of series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Faults of the database behind a read. (Starlette hands `Exception` itself to its outermost
# middleware, past the request metrics, so the classes are named.)
_DATABASE_FAULTS = (
    ServiceUnavailableError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)


def create_app(
    backends: asyncio.Future[Backends],
    metrics: Metrics,
    token_rules: TokenRules,
    limiter: RateLimiter | None = None,
) -> FastAPI:
    """The sidecar. It serves from the first moment (`/healthz`, `/metrics`, token checks);
    `/readyz` and the read API answer from `backends` once the worker has opened them, and say
    503 until then."""
    app = FastAPI(
        title="payment-worker sidecar",
        version="1.0.0",
        description="Health, readiness, metrics and the read API of payment-worker.",
    )
    app.state.backends = backends
    app.state.token_rules = token_rules
    app.state.limiter = limiter or RateLimiter(DEFAULT_PER_MINUTE)
    app.state.metrics = metrics
    app.include_router(router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """200 while the process runs."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={503: {"description": "not ready: the database or the consumer group is down"}},
    )
    async def readyz() -> JSONResponse:
        """200 only while the database answers and the consumer is in its group."""
        checks = await backends.result().readiness() if backends.done() else _STARTING
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def prometheus(
        # Left out of the OpenAPI document: a query string cannot tell one name from a list of
        # one, so no schema of it is exact (schemathesis finds the gap), and every value is
        # fine anyway (an unknown name matches no sample).
        names: Annotated[list[str] | None, Query(alias="name[]", include_in_schema=False)] = None,
    ) -> Response:
        """Prometheus text format: every metric, or with `name[]=<sample name>` (repeatable)
        only the samples named, as Prometheus' own client libraries allow."""
        # As prometheus_client's own handler: blank names are dropped, and none means all.
        named = [name for name in names or () if name]
        registry = metrics.registry.restricted_registry(named) if named else metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return JSONResponse({"detail": problems}, status_code=400)

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        """503 only for a passing fault (the database is down or the read timed out): a client
        should try again. Anything else is a fault of the service (500), logged as one, so an
        SQL bug never looks like an outage."""
        if isinstance(exc, ServiceUnavailableError) or passes_by_itself(exc):
            log.warning(
                "read failed",
                extra={"action": "read_unavailable", "path": request.url.path, "error": repr(exc)},
            )
            return JSONResponse(
                {"detail": "the database cannot answer now; try again"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        log.error(
            "read failed by a fault of the service",
            exc_info=exc,
            extra={"action": "read_error", "path": request.url.path},
        )
        return JSONResponse({"detail": "internal error"}, status_code=500)

    for fault in _DATABASE_FAULTS:
        app.add_exception_handler(fault, failed)

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        method = request.method if request.method in _METHODS else "other"
        metrics.http_requests.labels(
            route=template, method=method, status=str(response.status_code)
        ).inc()
        metrics.http_seconds.labels(route=template).observe(time.perf_counter() - started)
        return response

    def openapi() -> dict[str, Any]:
        """The generated document, with 400 (this API's answer to bad input) in place of 422."""
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path in document["paths"].values():
                for operation in path.values():
                    operation["responses"].pop("422", None)
            schemas = document.get("components", {}).get("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
