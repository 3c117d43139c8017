"""``GET /v1/directories/{path}``: structured, paginated listings (api.md §2.10)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from callfs_core.errors import InvalidRequest
from callfs_core.paths import FsPath
from callfs_http.common import identity_of, json_response, services, url_path
from callfs_http.representation import listing_body

__all__ = ["directories_endpoint"]

PREFIX = b"/v1/directories/"
DEFAULT_MAX_DEPTH = 100
MAX_DEPTH = 1000
MAX_LIMIT = 10000


def _max_depth(value: str | None) -> int:
    try:
        depth = int(value) if value is not None else DEFAULT_MAX_DEPTH
    except ValueError:
        return DEFAULT_MAX_DEPTH
    if depth < 0:
        return DEFAULT_MAX_DEPTH
    return min(depth, MAX_DEPTH)


def _limit(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer between 1 and {MAX_LIMIT}")
    return int(value)


async def directories_endpoint(request: Request) -> Response:
    svc = services(request)
    target = url_path(request, PREFIX)
    query = request.query_params
    recursive = query.get("recursive") == "true"
    max_depth = _max_depth(query.get("max_depth"))
    limit = _limit(query.get("limit"))
    after_raw = query.get("after")
    after = FsPath.from_body(after_raw) if after_raw is not None else None
    listing = await svc.engine.list(
        identity_of(request),
        target.path,
        recursive=recursive,
        max_depth=max_depth,
        after=after,
        limit=limit,
    )
    response = json_response(listing_body(listing, recursive=recursive, max_depth=max_depth))
    response.headers["X-CallFS-Type"] = "directory"
    response.headers["X-CallFS-Count"] = str(len(listing.items))
    response.headers["X-CallFS-Recursive"] = "true" if recursive else "false"
    return response
