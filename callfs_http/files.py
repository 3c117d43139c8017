"""``/v1/files/{path}``: read, create, replace and delete (api.md §2.5–2.8)."""

from __future__ import annotations

import json
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from callfs_adapters.peer_client import DISCARD_HEADER
from callfs_core.errors import InvalidRequest, NotModified, OwnedByPeer
from callfs_core.model import Inode, ReadOptions, WriteMode
from callfs_core.patching import PatchRequest
from callfs_http.common import (
    BlobResponse,
    check_content_length,
    empty,
    identity_of,
    json_response,
    parse_digests,
    parse_mode,
    parse_preconditions,
    read_json,
    services,
    url_path,
)
from callfs_http.forwarding import forward
from callfs_http.representation import file_info, inode_headers, parse_http_date

__all__ = ["files_endpoint"]

PREFIX = b"/v1/files/"


async def files_endpoint(request: Request) -> Response:
    handler = _HANDLERS[request.method]
    return await handler(request)


def _if_range(request: Request) -> str | datetime | None:
    value = request.headers.get("if-range")
    if value is None:
        return None
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value
    return parse_http_date(value) or "unparsable"


async def read(request: Request) -> Response:
    svc = services(request)
    target = url_path(request, PREFIX)
    head = request.method == "HEAD"
    if_range = _if_range(request)
    options = ReadOptions(
        range_header=request.headers.get("range"),
        if_range=if_range,
        preconditions=parse_preconditions(request),
        head=head,
    )
    try:
        result = await svc.engine.read(identity_of(request), target.path, options)
    except NotModified as exc:
        assert isinstance(exc.inode, Inode)
        return Response(status_code=304, headers=inode_headers(exc.inode))
    inode = result.inode
    headers = inode_headers(inode)
    if inode.is_dir:
        headers["Content-Type"] = "application/json"
        if head:
            return BlobResponse(None, 200, headers)
        assert result.children is not None
        return json_response_with([file_info(i) for i in result.children], headers)
    headers["Content-Type"] = inode.content_type or "application/octet-stream"
    headers["Accept-Ranges"] = "bytes"
    status = 200
    if result.byte_range is not None:
        status = 206
        r = result.byte_range
        headers["Content-Range"] = f"bytes {r.start}-{r.end}/{inode.size}"
        headers["Content-Length"] = str(r.length)
    else:
        headers["Content-Length"] = str(inode.size)
    if not head:
        svc.metrics.file_ops.labels("read", inode.backend).inc()
    return BlobResponse(result.reader, status, headers)


def json_response_with(value: object, headers: dict[str, str]) -> Response:
    response = json_response(value)
    for key, item in headers.items():
        response.headers[key] = item
    return response


async def create(request: Request) -> Response:
    svc = services(request)
    target = url_path(request, PREFIX)
    mode = parse_mode(request)
    identity = identity_of(request)
    if target.directory:
        result = await svc.engine.create_directory(identity, target.path, mode=mode)
        return empty(201 if result.created else 200)
    digests = parse_digests(request)
    check_content_length(request, svc.settings.max_upload_bytes)
    result = await svc.engine.write_file(
        identity,
        target.path,
        request.stream(),
        write_mode=WriteMode.CREATE,
        mode=mode,
        content_type=request.headers.get("content-type"),
        digests=digests,
    )
    svc.metrics.file_ops.labels("create", result.inode.backend).inc()
    return _written(201, result.inode)


async def replace(request: Request) -> Response:
    svc = services(request)
    target = url_path(request, PREFIX)
    if target.directory:
        raise InvalidRequest("PUT cannot target a directory path")
    mode = parse_mode(request)
    digests = parse_digests(request)
    check_content_length(request, svc.settings.max_upload_bytes)
    try:
        result = await svc.engine.write_file(
            identity_of(request),
            target.path,
            request.stream(),
            write_mode=WriteMode.UPSERT,
            mode=mode,
            content_type=request.headers.get("content-type"),
            digests=digests,
            preconditions=parse_preconditions(request),
        )
    except OwnedByPeer as owned:
        return await forward(request, owned, target.path, request.stream())
    svc.metrics.file_ops.labels(
        "create" if result.created else "update", result.inode.backend
    ).inc()
    return _written(201 if result.created else 200, result.inode)


def _written(status: int, inode: Inode) -> Response:
    assert inode.sha256 is not None
    return empty(status, {"ETag": f'"{inode.sha256}"', "X-CallFS-SHA256": inode.sha256})


async def delete(request: Request) -> Response:
    svc = services(request)
    target = url_path(request, PREFIX)
    if target.path.is_root:
        raise InvalidRequest("the root directory cannot be deleted")
    if request.headers.get(DISCARD_HEADER) == "bytes":
        await svc.engine.discard_orphan(identity_of(request), target.path)
        return Response(status_code=204)
    try:
        removed = await svc.engine.delete(
            identity_of(request),
            target.path,
            recursive=request.query_params.get("recursive") == "true",
            preconditions=parse_preconditions(request),
        )
    except OwnedByPeer as owned:
        return await forward(request, owned, target.path)
    svc.metrics.file_ops.labels("delete", removed.backend).inc()
    return Response(status_code=204)


MAX_PATCH_BODY = 1024 * 1024
_PATCH_TEXT = ("name", "destination", "backend", "instance", "mode", "group", "owner")
_PATCH_FLAGS = ("overwrite", "create_parents")


def _patch_request(payload: object, overwrite_query: bool) -> PatchRequest:
    if not isinstance(payload, dict):
        raise InvalidRequest("invalid JSON body")
    for key in _PATCH_TEXT:
        if payload.get(key) is not None and not isinstance(payload[key], str):
            raise InvalidRequest("invalid JSON body")
    for key in _PATCH_FLAGS:
        if payload.get(key) is not None and not isinstance(payload[key], bool):
            raise InvalidRequest("invalid JSON body")
    return PatchRequest(
        **{key: payload.get(key) for key in _PATCH_TEXT},
        overwrite=bool(payload.get("overwrite")) or overwrite_query,
        create_parents=bool(payload.get("create_parents")),
    )


async def patch(request: Request) -> Response:
    svc = services(request)
    target = url_path(request, PREFIX)
    try:
        payload = await read_json(request, MAX_PATCH_BODY)
    except InvalidRequest:
        raise InvalidRequest("invalid JSON body") from None
    patch_request = _patch_request(payload, request.query_params.get("overwrite") == "true")
    try:
        result = await svc.engine.patch(
            identity_of(request),
            target.path,
            patch_request,
            preconditions=parse_preconditions(request),
        )
    except OwnedByPeer as owned:
        return await forward(request, owned, target.path, json.dumps(payload).encode())
    if patch_request.name is not None or patch_request.destination is not None:
        svc.metrics.file_ops.labels("move", result.backend).inc()
    return json_response({"path": str(result.path)}, newline=True)


_HANDLERS = {
    "GET": read,
    "HEAD": read,
    "POST": create,
    "PUT": replace,
    "DELETE": delete,
    "PATCH": patch,
}
METHODS = list(_HANDLERS)
