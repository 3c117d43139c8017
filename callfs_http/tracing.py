"""The HTTP server span of each request (OpenTelemetry semantic conventions for
HTTP servers). Installed by :func:`callfs_http.app.create_app` only when
tracing is on, outside :class:`~callfs_http.middleware.EdgeMiddleware`.

An incoming W3C ``traceparent`` (or what ``OTEL_PROPAGATORS`` names) is
continued: a request forwarded by a peer joins the trace of the original one.
Download tokens never reach a span: ``url.path`` of ``/download/{token}`` is
the route template.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from opentelemetry import propagate
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callfs_adapters.tracing import record_error
from callfs_http.middleware import DOWNLOAD_ROUTE, route_label

__all__ = ["TracingMiddleware"]

_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

Headers = Iterable[tuple[bytes, bytes]]


class _HeaderGetter(Getter[Headers]):
    """Reads propagation headers from the ASGI header list."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k == name]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER: Final = _HeaderGetter()


def _header(headers: Headers, name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _server_address(scope: Scope, host: str | None) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port``: from the Host header, else the socket."""
    if host:
        name, colon, port = host.rpartition(":")
        if colon and port.isdigit() and not name.endswith(":"):
            return name.strip("[]"), int(port)
        return host.strip("[]"), _DEFAULT_PORTS.get(scope.get("scheme", ""))
    server = scope.get("server")
    if server:
        return str(server[0]), server[1]
    return None, None


class TracingMiddleware:
    def __init__(self, app: ASGIApp, *, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        method: str = scope["method"]
        route = route_label(scope["path"])
        known = method in _KNOWN_METHODS
        span_method = method if known else "HTTP"
        name = span_method if route == "unmatched" else f"{span_method} {route}"
        attributes: dict[str, Any] = {
            "http.request.method": method if known else "_OTHER",
            "url.path": route if route == DOWNLOAD_ROUTE else scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        if not known:
            attributes["http.request.method_original"] = method
        if route != "unmatched":
            attributes["http.route"] = route
        address, port = _server_address(scope, _header(headers, b"host"))
        if address:
            attributes["server.address"] = address
        if port:
            attributes["server.port"] = port
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
            attributes["client.port"] = client[1]
        agent = _header(headers, b"user-agent")
        if agent is not None:
            attributes["user_agent.original"] = agent
        version = scope.get("http_version")
        if version:
            attributes["network.protocol.version"] = version
        parent = propagate.extract(headers, getter=_GETTER)
        status = [0]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        with self.tracer.start_as_current_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            state = scope.setdefault("state", {})
            state["trace_id"] = format(span.get_span_context().trace_id, "032x")
            try:
                await self.app(scope, receive, send_wrapper)
            except BaseException as exc:
                record_error(span, exc)
                raise
            finally:
                if status[0]:
                    span.set_attribute("http.response.status_code", status[0])
                    if status[0] >= 500:
                        # Semantic conventions: 5xx is an error of the server, 4xx is not.
                        span.set_attribute("error.type", str(status[0]))
                        span.set_status(Status(StatusCode.ERROR))
                request_id = state.get("request_id")
                if request_id:
                    span.set_attribute("callfs.request_id", request_id)
