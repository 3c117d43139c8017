"""The Starlette application: HTTP <-> Engine, nothing else."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callfs_adapters.memory_ratelimit import InMemoryRateLimiter
from callfs_adapters.metrics import Metrics, error_component
from callfs_adapters.peer_client import PeerClient
from callfs_core.engine import Engine
from callfs_core.errors import CallFSError, ExistsOnPeer
from callfs_core.ports import RateLimitPort
from callfs_http import files
from callfs_http.auth import Authenticator
from callfs_http.common import HttpSettings, Services, json_response
from callfs_http.directories import directories_endpoint
from callfs_http.errors import error_body, reply_for
from callfs_http.forwarding import conflict_body
from callfs_http.links import download_endpoint, generate_endpoint
from callfs_http.middleware import EdgeMiddleware, loggable_path
from callfs_http.system import (
    health_endpoint,
    metrics_endpoint,
    openapi_endpoint,
    ready_endpoint,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

__all__ = ["create_app"]

log = logging.getLogger("callfs.http")

_COMPONENT = {"LOCK_TIMEOUT": "lock", "PEER_UNAVAILABLE": "proxy"}


def _json_error(status: int, code: str, message: str, headers: dict[str, str]) -> Response:
    return Response(
        error_body(code, message),
        status_code=status,
        headers={"Content-Type": "application/json", **headers},
    )


async def _callfs_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CallFSError)
    if isinstance(exc, ExistsOnPeer):
        return json_response(conflict_body(request, exc), 409)
    reply = reply_for(exc, request.method, request.url.path)
    if reply.status >= 500:
        metrics: Metrics = request.app.state.services.metrics
        component = _COMPONENT.get(reply.code) or error_component(exc) or "backend"
        metrics.errors.labels(component, reply.code).inc()
        log.warning("%s %s: %s (%s)", request.method, loggable_path(request.scope), reply.code, exc)
    return _json_error(reply.status, reply.code, reply.message, reply.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return _json_error(
            405,
            "METHOD_NOT_ALLOWED",
            f"method {request.method} is not allowed for this endpoint",
            {"Allow": allow},
        )
    if exc.status_code == 404:
        return _json_error(404, "NOT_FOUND", "no such endpoint", {})
    return _json_error(exc.status_code, "BAD_REQUEST", str(exc.detail), {})


def create_app(
    engine: Engine,
    settings: HttpSettings,
    *,
    authenticator: Authenticator,
    metrics: Metrics,
    generate_limiter: RateLimitPort | None = None,
    download_limiter: RateLimitPort | None = None,
    tracer: Tracer | None = None,
    peers: PeerClient | None = None,
) -> Starlette:
    """Build the API application around an engine.

    The rate limiters default to in-process buckets built from ``settings``;
    a multi-process server passes limiters whose state all workers share.
    With a ``tracer``, each request gets an HTTP server span. ``peers``: the
    other instances of a cluster (api.md §1.10).
    """
    routes = [
        Route("/health", health_endpoint, methods=["GET", "HEAD"]),
        Route("/ready", ready_endpoint, methods=["GET", "HEAD"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET", "HEAD"]),
        Route(
            "/metrics",
            metrics_endpoint,
            methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
        ),
        Route("/v1/files/{path:path}", files.files_endpoint, methods=files.METHODS),
        Route("/v1/directories/{path:path}", directories_endpoint, methods=["GET", "HEAD"]),
        Route("/v1/links/generate", generate_endpoint, methods=["POST"]),
        Route("/download/{token}", download_endpoint, methods=["GET", "HEAD"]),
    ]
    for route in routes:
        # Paths may contain any character, newlines included (they are then
        # rejected as INVALID_PATH); Starlette's ".*" would not match those.
        route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
    middleware = [
        Middleware(
            EdgeMiddleware,
            authenticator=authenticator,
            metrics=metrics,
            read_timeout=settings.read_timeout,
            write_timeout=settings.write_timeout,
        )
    ]
    if tracer is not None:
        from callfs_http.tracing import TracingMiddleware

        middleware.insert(0, Middleware(TracingMiddleware, tracer=tracer))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={CallFSError: _callfs_error, HTTPException: _http_error},
    )
    app.router.redirect_slashes = False
    app.state.services = Services(
        engine=engine,
        settings=settings,
        metrics=metrics,
        generate_limiter=generate_limiter
        or InMemoryRateLimiter(settings.generate_rps, settings.generate_burst),
        download_limiter=download_limiter
        or InMemoryRateLimiter(settings.download_rps, settings.download_burst),
        peers=peers,
    )
    return app
