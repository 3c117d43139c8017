"""Single-use links: ``POST /v1/links/generate`` and ``GET|HEAD /download/{token}``
(api.md §2.11, §2.12, §4)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from callfs_core.errors import (
    CallFSError,
    InvalidRequest,
    LinkAlreadyUsed,
    LinkExpired,
    LinkInvalid,
    LinkNotFound,
    NotFound,
)
from callfs_core.paths import FsPath
from callfs_http.common import (
    BlobResponse,
    client_ip,
    identity_of,
    json_response,
    read_json,
    services,
)
from callfs_http.errors import error_body
from callfs_http.representation import content_disposition, link_body

__all__ = ["download_endpoint", "generate_endpoint"]

log = logging.getLogger("callfs.links")
MAX_BODY = 4096


def rate_limited(retry_after: float) -> Response:
    return Response(
        error_body("RATE_LIMIT_EXCEEDED", "Rate limit exceeded"),
        status_code=429,
        headers={"Content-Type": "application/json", "Retry-After": str(int(retry_after))},
    )


async def generate_endpoint(request: Request) -> Response:
    svc = services(request)
    wait = await svc.generate_limiter.acquire(client_ip(request))
    if wait is not None:
        return rate_limited(wait)
    payload = await read_json(request, MAX_BODY)
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    raw_path = payload.get("path")
    if raw_path is not None and not isinstance(raw_path, str):
        raise InvalidRequest("path must be a string")
    if not raw_path:
        raise InvalidRequest("path is required")
    path = FsPath.from_body(raw_path)
    expiry = payload.get("expiry_seconds")
    expiry_seconds = expiry if isinstance(expiry, int) and not isinstance(expiry, bool) else None
    link = await svc.engine.generate_link(identity_of(request), path, expiry_seconds)
    svc.metrics.link_generations.inc()
    log.info("link %s... generated for %s", link.token[:8], path)
    return json_response(link_body(link, svc.settings.external_url), 201, newline=True)


_CONSUMPTION_STATUS: list[tuple[type[CallFSError], str]] = [
    (LinkInvalid, "invalid"),
    (LinkExpired, "expired"),
    (LinkAlreadyUsed, "invalid"),
    (LinkNotFound, "not_found"),
    (NotFound, "not_found"),
]


async def download_endpoint(request: Request) -> Response:
    svc = services(request)
    wait = await svc.download_limiter.acquire(client_ip(request))
    if wait is not None:
        return rate_limited(wait)
    token: str = request.path_params["token"]
    consume = request.method == "GET"
    try:
        result = await svc.engine.redeem_link(token, client_ip=client_ip(request), consume=consume)
    except CallFSError as exc:
        if consume:
            status = next((s for cls, s in _CONSUMPTION_STATUS if isinstance(exc, cls)), None)
            if status is not None:
                svc.metrics.link_consumptions.labels(status).inc()
        raise
    inode = result.inode
    assert inode.sha256 is not None
    if consume:
        svc.metrics.link_consumptions.labels("success").inc()
        svc.metrics.file_ops.labels("read", inode.backend).inc()
        log.info("link %s... redeemed", token[:8])
    headers = {
        "Content-Type": inode.content_type or "application/octet-stream",
        "Content-Length": str(inode.size),
        "ETag": f'"{inode.sha256}"',
        "X-CallFS-SHA256": inode.sha256,
        "Cache-Control": "no-store",
        "Content-Disposition": content_disposition(inode.path.name),
    }
    return BlobResponse(result.reader, 200, headers)
