"""Changes of entries another instance owns: forwarded whole, answers relayed (api.md §1.10).

The receiving instance has checked permissions and preconditions (the engine
raised :class:`~callfs_core.errors.OwnedByPeer` only after them); the owner runs
the request as ``internal-proxy`` on behalf of the caller, takes the path
locks and commits. Its 2xx and 4xx answers reach the client unchanged; no
answer, a timeout or a 5xx is 502 ``PEER_UNAVAILABLE``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Final

import httpx
from starlette.requests import Request
from starlette.responses import Response

from callfs_adapters.peer_client import PeerClient
from callfs_core.errors import ExistsOnPeer, OwnedByPeer, PeerUnavailable
from callfs_core.model import Inode
from callfs_core.paths import FsPath
from callfs_http.common import BlobResponse, identity_of, services

__all__ = ["conflict_body", "forward"]

# Request headers the owner needs (api.md §1.10: range, type, length, digests;
# the preconditions too, so that the owner re-checks them under its lock).
_PASSED_ON: Final = (
    "range",
    "if-range",
    "content-type",
    "content-length",
    "content-digest",
    "repr-digest",
    "content-md5",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "x-callfs-mode",
)
# Answer headers not relayed: hop-by-hop ones, and those this server sets itself.
_NOT_RELAYED: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "date",
        "server",
        "x-request-id",
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "permissions-policy",
        "cross-origin-opener-policy",
        "cross-origin-embedder-policy",
        "strict-transport-security",
    }
)


def _peers(request: Request) -> PeerClient:
    peers = services(request).peers
    if peers is None:
        raise PeerUnavailable(message="no peer instances are configured")
    return peers


async def forward(
    request: Request,
    owned: OwnedByPeer,
    path: FsPath,
    content: bytes | AsyncIterable[bytes] | None = None,
) -> Response:
    """Send ``request`` (with ``content`` as its body: the request's own stream, or
    bytes read from it already) to the owning instance and relay the answer."""
    headers = {name: request.headers[name] for name in _PASSED_ON if name in request.headers}
    if isinstance(content, bytes):
        headers.pop("content-length", None)  # a body read here: httpx counts it again
    answer = await _peers(request).forward(
        owned.instance_id,
        request.method,
        path,
        query=request.url.query,
        headers=headers,
        content=content,
        acting_user=identity_of(request).user,
    )
    relayed = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_RELAYED}
    return BlobResponse(_Relay(answer), answer.status_code, relayed)


class _Relay:
    """The owner's answer body, streamed through as it arrives."""

    def __init__(self, answer: httpx.Response) -> None:
        self._answer = answer
        length = answer.headers.get("content-length", "")
        self.size = int(length) if length.isdigit() else -1  # -1: unknown, streamed

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._answer.aiter_raw():
            if chunk:
                yield chunk

    async def aclose(self) -> None:
        await self._answer.aclose()


_SUGGESTIONS: Final = {
    (True, True): "Directory already exists on another server. Use GET to access it.",
    (True, False): "Path exists as file on another server, cannot create directory",
    (False, False): "File already exists on another server. Use PUT to update it.",
    (False, True): "Path exists as directory on another server, cannot create file",
}


def conflict_body(request: Request, exc: ExistsOnPeer) -> dict[str, str]:
    """The cross-server conflict body of api.md §2.6, keys in their order."""
    inode = exc.inode
    assert isinstance(inode, Inode)
    assert inode.instance_id is not None
    body = {
        "error": "Resource exists on another server",
        "existing_path": str(inode.path),
        "instance_id": inode.instance_id,
        "backend_type": inode.backend,
        "suggestion": _SUGGESTIONS[(exc.directory, inode.is_dir)],
    }
    peers = services(request).peers
    if not exc.directory and inode.is_file and peers is not None:
        base = peers.endpoint(inode.instance_id)
        if base is not None:
            body["update_url"] = f"{base}/v1/files{inode.path}"
    return body
