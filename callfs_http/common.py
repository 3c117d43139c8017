"""Helpers shared by the route modules: settings, raw paths, headers, responses."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import anyio
import attrs
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from callfs_adapters.metrics import Metrics
from callfs_adapters.peer_client import PeerClient
from callfs_core.engine import Digests, Engine
from callfs_core.errors import InvalidRequest, PayloadTooLarge
from callfs_core.model import Identity, Preconditions
from callfs_core.paths import FsPath, UrlPath
from callfs_core.ports import BlobReader, RateLimitPort
from callfs_http.representation import dumps, parse_http_date

__all__ = [
    "BlobResponse",
    "HttpSettings",
    "Services",
    "empty",
    "identity_of",
    "json_response",
    "parse_digests",
    "parse_mode",
    "parse_preconditions",
    "services",
    "url_path",
]

_MODE: Final = re.compile(r"[0-7]{3,4}")


@attrs.frozen
class HttpSettings:
    """What the HTTP layer needs from the configuration."""

    external_url: str = "localhost:8443"
    max_upload_bytes: int = 10 * 1024**3
    generate_rps: float = 100.0
    generate_burst: int = 1
    download_rps: float = 10.0
    download_burst: int = 5
    version: str = "0.1.0"
    # Idle timeouts of a request body and of a response body (seconds; None: none).
    read_timeout: float | None = None
    write_timeout: float | None = None


@attrs.define
class Services:
    engine: Engine
    settings: HttpSettings
    metrics: Metrics
    generate_limiter: RateLimitPort
    download_limiter: RateLimitPort
    peers: PeerClient | None = None


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def identity_of(request: Request) -> Identity:
    identity: Identity = request.scope["state"]["identity"]
    return identity


def url_path(request: Request, prefix: bytes) -> UrlPath:
    """Apply api.md §1.2 to the raw (still percent-encoded) URL path after ``prefix``."""
    raw: bytes | None = request.scope.get("raw_path")
    if raw is None:  # servers need not provide raw_path (ASGI spec)
        raw = quote(request.scope["path"]).encode()
    raw = raw.split(b"?", 1)[0]
    return FsPath.from_url(raw[len(prefix) :])


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def json_response(value: Any, status: int = 200, *, newline: bool = False) -> Response:
    body = dumps(value) + (b"\n" if newline else b"")
    return Response(body, status_code=status, headers={"Content-Type": "application/json"})


def empty(status: int, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(status_code=status, headers=dict(headers or {}))
    if status in (201, 200):
        response.headers["content-length"] = "0"
    return response


def parse_mode(request: Request) -> int | None:
    value = request.headers.get("x-callfs-mode")
    if value is None:
        return None
    if not _MODE.fullmatch(value):
        raise InvalidRequest("X-CallFS-Mode must be 3 or 4 octal digits, e.g. 0644")
    return int(value, 8)


def _sha256_member(header_name: str, value: str) -> bytes | None:
    for member in value.split(","):
        key, eq, item = member.strip().partition("=")
        if not eq:
            raise InvalidRequest(f"{header_name} is not a valid digest dictionary")
        key = key.strip().lower()
        item = item.strip()
        if key != "sha-256":
            continue
        if len(item) < 2 or item[0] != ":" or item[-1] != ":":
            raise InvalidRequest(f"{header_name}: sha-256 must be a byte sequence :<base64>:")
        try:
            digest = base64.b64decode(item[1:-1], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"{header_name}: sha-256 is not valid base64") from None
        if len(digest) != 32:
            raise InvalidRequest(f"{header_name}: sha-256 must be 32 bytes")
        return digest
    return None


def parse_digests(request: Request) -> Digests:
    """Parse ``Content-Digest``, ``Repr-Digest`` and ``Content-MD5`` (api.md §1.8)."""
    sha: list[bytes] = []
    for name in ("content-digest", "repr-digest"):
        value = request.headers.get(name)
        if value is not None:
            digest = _sha256_member(name.title(), value)
            if digest is not None:
                sha.append(digest)
    md5 = None
    raw_md5 = request.headers.get("content-md5")
    if raw_md5 is not None:
        try:
            md5 = base64.b64decode(raw_md5.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("Content-MD5 is not valid base64") from None
        if len(md5) != 16:
            raise InvalidRequest("Content-MD5 must be the base64 of 16 bytes")
    return Digests(sha256=tuple(sha), md5=md5)


def _tags(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    value = value.strip()
    if value == "*":
        return ("*",)
    return tuple(t.strip() for t in value.split(",") if t.strip())


def parse_preconditions(request: Request) -> Preconditions:
    h = request.headers
    return Preconditions(
        if_match=_tags(h.get("if-match")),
        if_none_match=_tags(h.get("if-none-match")),
        if_modified_since=parse_http_date(h.get("if-modified-since")),
        if_unmodified_since=parse_http_date(h.get("if-unmodified-since")),
    )


async def read_json(request: Request, limit: int) -> object:
    """A small JSON request body; over ``limit`` bytes or malformed -> BAD_REQUEST."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InvalidRequest(f"request body is larger than {limit} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise InvalidRequest("request body is not valid JSON") from None


def check_content_length(request: Request, limit: int) -> None:
    value = request.headers.get("content-length")
    if value is None:
        return
    if not value.strip().isdigit():
        raise InvalidRequest("Content-Length must be a non-negative integer")
    if int(value) > limit:
        raise PayloadTooLarge(limit)


SMALL_BODY: Final = 64 * 1024


class BlobResponse(Response):
    """Streams a backend reader to the client and always closes it, also when
    the client goes away mid-transfer."""

    def __init__(self, reader: BlobReader | None, status: int, headers: Mapping[str, str]) -> None:
        self.reader = reader
        self.status_code = status
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reader = self.reader
        start = {"type": "http.response.start", "status": self.status_code}
        start["headers"] = self.raw_headers
        try:
            if reader is not None and scope["method"] != "HEAD" and 0 <= reader.size <= SMALL_BODY:
                # A small body is read first and leaves with the headers: no task
                # watching for a disconnect during what is a single write.
                body = b"".join([chunk async for chunk in reader])
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(start)
            if reader is None or scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                return
            try:
                async with anyio.create_task_group() as group:

                    async def watch_disconnect() -> None:
                        while (await receive())["type"] != "http.disconnect":
                            pass
                        group.cancel_scope.cancel()

                    group.start_soon(watch_disconnect)
                    async for chunk in reader:
                        message = {"type": "http.response.body", "body": chunk, "more_body": True}
                        await send(message)
                    await send({"type": "http.response.body", "body": b""})
                    group.cancel_scope.cancel()
            except BaseExceptionGroup as group_error:
                # The client went away (or stopped reading): say so plainly.
                _, rest = group_error.split(ClientDisconnect)
                if rest is None:
                    raise ClientDisconnect() from None
                raise
        finally:
            if reader is not None:
                with anyio.CancelScope(shield=True):
                    await reader.aclose()
