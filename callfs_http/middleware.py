"""The edge of every request: request ids, security headers, authentication,
request metrics, the access log line, the idle timeouts of bodies and the
last-resort 500 (api.md §1.1, §1.4, §1.5, §1.9, §5)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Final

from opentelemetry import trace
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callfs_adapters.metrics import Metrics
from callfs_core.errors import AuthenticationFailed
from callfs_http.auth import INTERNAL_PROXY_USER, Authenticator
from callfs_http.errors import error_body, reply_for

__all__ = ["DOWNLOAD_ROUTE", "EdgeMiddleware", "loggable_path", "route_label"]

log = logging.getLogger("callfs.http")
# One line per request; its fields are attributes of the record (JSON: one key each).
access_log = logging.getLogger("callfs.access")

SECURITY_HEADERS: Final = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'self'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (
        b"permissions-policy",
        b"geolocation=(), microphone=(), camera=(), payment=(), usb=(), magnetometer=(), "
        b"gyroscope=(), accelerometer=()",
    ),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
]
HSTS: Final = (b"strict-transport-security", b"max-age=31536000; includeSubDomains; preload")
_EXACT_ROUTES: Final = frozenset(
    {"/health", "/ready", "/metrics", "/openapi.json", "/v1/links/generate"}
)
DOWNLOAD_ROUTE: Final = "/download/{token}"
_DOWNLOAD_PREFIX: Final = "/download/"
_PREFIX_ROUTES: Final = (
    ("/v1/files/ws/", "/v1/files/ws/*"),
    ("/v1/files/", "/v1/files/*"),
    ("/v1/directories/", "/v1/directories/*"),
    (_DOWNLOAD_PREFIX, DOWNLOAD_ROUTE),
)
# How much of a download token logs show.
TOKEN_PREFIX_LENGTH: Final = 8


def route_label(path: str) -> str:
    """The route template used as the ``path`` metric label, never the concrete URL."""
    if path in _EXACT_ROUTES:
        return path
    for prefix, label in _PREFIX_ROUTES:
        if path.startswith(prefix):
            return label
    return "unmatched"


def loggable_path(scope: Scope) -> str:
    """The request path as logs show it: as received (still percent-encoded, so
    it cannot break a log line), except a download token, cut to its first
    characters."""
    path: str = scope["path"]
    if path.startswith(_DOWNLOAD_PREFIX):
        token = path[len(_DOWNLOAD_PREFIX) :]
        return f"{_DOWNLOAD_PREFIX}{token[:TOKEN_PREFIX_LENGTH]}…"
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return path.encode("unicode_escape").decode("ascii")
    return raw.split(b"?", 1)[0].decode("ascii", "backslashreplace")


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


def _needs_key(path: str) -> bool:
    return path.startswith("/v1/") or path == "/metrics"


# A response body part this long, or one of several, may wait for the client
# to read; shorter single bodies go out in one write.
_WATCHED_BODY: Final = 64 * 1024


class EdgeMiddleware:
    """The outermost layer of the API (inside the tracing span, when traced).

    ``read_timeout`` / ``write_timeout`` (api.md §1.9): the longest a request
    body may stall between two parts, and a response body part may wait for
    the client to take it. A stalled upload ends with 408 ``REQUEST_TIMEOUT``
    and the connection closed (nothing of it is stored); a stalled download is
    cut off.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        metrics: Metrics,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.metrics = metrics
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # An identifier, not a secret: no need for the system's randomness.
        request_id = f"{random.getrandbits(64):016x}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        method: str = scope["method"]
        label = route_label(scope["path"])
        extra = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
        if scope.get("scheme") == "https":
            extra.append(HSTS)
        status_sent: list[int] = []
        sent_bytes = [0]
        body_read = [not _has_body(scope)]

        stalled: list[str] = []

        async def receive_wrapper() -> Message:
            if self.read_timeout is None or body_read[0]:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout(self.read_timeout):
                        message = await receive()
                except TimeoutError:
                    # To the application the client is gone; it answers 408 below.
                    stalled.append("read")
                    return {"type": "http.disconnect"}
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read[0] = True
            return message

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_sent.append(message["status"])
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                headers += extra
                if not body_read[0]:
                    # Answered before the body arrived (an early error): the rest
                    # of the body is still on the wire, so this connection
                    # cannot carry another request. Say so, and it is closed.
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                sent_bytes[0] += len(body)
                if self.write_timeout is not None and (
                    len(body) > _WATCHED_BODY or message.get("more_body", False)
                ):
                    try:
                        async with asyncio.timeout(self.write_timeout):
                            await send(message)
                    except TimeoutError:
                        stalled.append("write")
                        raise ClientDisconnect() from None
                    return
            await send(message)

        try:
            if _needs_key(scope["path"]):
                headers = dict(scope.get("headers", []))
                raw = headers.get(b"authorization")
                try:
                    identity = self.authenticator.authenticate(
                        raw.decode("latin-1") if raw is not None else None
                    )
                except AuthenticationFailed as exc:
                    await self._send_error(send_wrapper, method, exc)
                    return
                acting = headers.get(b"x-callfs-acting-user")
                if acting and identity.user == INTERNAL_PROXY_USER:
                    # Honoured only with the internal secret (api.md §1.10).
                    identity = self.authenticator.acting_as(acting.decode("utf-8", "replace"))
                state["identity"] = identity
            await self.app(scope, receive_wrapper, send_wrapper)
        except ClientDisconnect:
            if not stalled:
                log.info("client disconnected (request id %s)", request_id)
            elif stalled[0] == "write":
                log.info(
                    "client took nothing for %ss: response cut off (request id %s)",
                    self.write_timeout,
                    request_id,
                )
            elif not status_sent:
                await self._send_timeout(send_wrapper, method)
        except Exception as exc:
            log.exception("unhandled error (request id %s)", request_id)
            trace.get_current_span().record_exception(exc)
            self.metrics.errors.labels("http", "INTERNAL_ERROR").inc()
            if not status_sent:
                body = error_body(
                    "INTERNAL_ERROR", f"an internal error occurred (request id {request_id})"
                )
                await _send_json(send_wrapper, 500, body, method)
            else:
                raise
        finally:
            status = str(status_sent[0]) if status_sent else "499"
            duration = time.perf_counter() - start
            self.metrics.http_requests.labels(method, label, status).inc()
            self.metrics.http_duration.labels(method, label).observe(duration)
            if access_log.isEnabledFor(logging.INFO):
                _log_access(scope, label, status, sent_bytes[0], duration)

    async def _send_timeout(self, send: Send, method: str) -> None:
        message = f"no part of the request body arrived for {self.read_timeout:g}s"
        body = error_body("REQUEST_TIMEOUT", message)
        await _send_json(send, 408, body, method)

    async def _send_error(self, send: Send, method: str, exc: AuthenticationFailed) -> None:
        reply = reply_for(exc, method)
        body = error_body(reply.code, reply.message)
        await _send_json(send, reply.status, body, method, reply.headers)


def _log_access(scope: Scope, route: str, status: str, sent: int, duration: float) -> None:
    state = scope["state"]
    identity = state.get("identity")
    client = scope.get("client")
    fields = {
        "request_id": state["request_id"],
        "user": identity.user if identity is not None else "-",
        "method": scope["method"],
        "route": route,
        "path": loggable_path(scope),
        "status": int(status),
        "bytes": sent,
        "duration_ms": round(duration * 1000, 3),
        "client_ip": client[0] if client else "-",
    }
    trace_id = state.get("trace_id")
    if trace_id is not None:
        fields["trace_id"] = trace_id
    # The message is formatted only when a handler writes it.
    access_log.info(
        '%s %s "%s %s" %s %dB %.1fms request_id=%s%s',
        fields["client_ip"],
        fields["user"],
        fields["method"],
        fields["path"],
        status,
        sent,
        fields["duration_ms"],
        fields["request_id"],
        f" trace_id={trace_id}" if trace_id is not None else "",
        extra=fields,
    )


async def _send_json(
    send: Send, status: int, body: bytes, method: str, headers: dict[str, str] | None = None
) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
