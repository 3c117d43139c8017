"""Requests to other CallFS instances (api.md §1.10), over their REST API with httpx.

Two uses:

* :meth:`PeerClient.open` (the :class:`~callfs_core.ports.PeerPort`) reads the
  bytes of a file another instance holds: ``GET /v1/files/<path>`` with a
  ``Range`` when one is wanted. The reading instance sends headers from the
  shared metadata; only the body comes from the owner.
* :meth:`PeerClient.forward` sends a whole change (PUT, DELETE, PATCH) to the
  owning instance, which takes the locks and commits bytes and metadata; the
  server relays its answer.

Both authenticate with ``auth.internal_proxy_secret`` and name the caller in
``X-CallFS-Acting-User``; the owner honours that header only with the secret.
Connections are pooled; connecting is bounded by 10 s and each read by
``server.read_timeout``. An unknown instance, a connection failure, a timeout
or a 5xx answer is :class:`~callfs_core.errors.PeerUnavailable` (502); 2xx and
4xx answers are the owner's to give.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Final
from urllib.parse import quote

import httpx

from callfs_adapters.metrics import Metrics
from callfs_adapters.tracing import inject_trace_context
from callfs_core.errors import NotFound, PeerUnavailable
from callfs_core.model import ByteRange
from callfs_core.paths import FsPath
from callfs_core.ports import BlobReader, PeerPort

__all__ = ["ACTING_USER_HEADER", "CONNECT_TIMEOUT", "DISCARD_HEADER", "PeerClient"]

log = logging.getLogger("callfs.peers")

ACTING_USER_HEADER: Final = "X-CallFS-Acting-User"
DISCARD_HEADER: Final = "X-CallFS-Discard"
"""``bytes`` on a forwarded DELETE: remove the bytes only, their entry is gone already."""
CONNECT_TIMEOUT: Final = 10.0
CHUNK_SIZE: Final = 1024 * 1024
BACKEND_TYPE: Final = "internalproxy"  # the backend_type label of forwarded calls (api.md §5)
_OPERATIONS: Final = {"GET": "open", "PUT": "update", "DELETE": "delete", "PATCH": "move"}


class _ResponseReader:
    """A peer's streamed answer as a :class:`~callfs_core.ports.BlobReader`."""

    def __init__(self, response: httpx.Response, size: int) -> None:
        self._response = response
        self.size = size

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw(CHUNK_SIZE):
                if chunk:
                    yield chunk
        except httpx.HTTPError as exc:
            # Headers are sent already: the server aborts the connection.
            raise PeerUnavailable(message=f"the owning instance stopped answering: {exc}") from exc
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()


class PeerClient:
    """The way to the other instances of a cluster.

    Args:
        endpoints: instance id → base URL (``instance_discovery.peer_endpoints``).
        secret: ``auth.internal_proxy_secret``, the same on every instance.
        read_timeout: the longest wait for each read of an answer (seconds; None: no limit).
        verify_tls: check the peers' certificates (off only with
            ``backend.internal_proxy_skip_tls_verify``).
        metrics: where forwarded calls are counted (``backend_type=internalproxy``).
    """

    def __init__(
        self,
        endpoints: Mapping[str, str],
        secret: str,
        *,
        read_timeout: float | None,
        verify_tls: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self._endpoints = {name: url.rstrip("/") for name, url in endpoints.items()}
        self._secret = secret
        self._metrics = metrics
        self._client = httpx.AsyncClient(
            verify=verify_tls,
            timeout=httpx.Timeout(
                connect=CONNECT_TIMEOUT, read=read_timeout, write=read_timeout, pool=CONNECT_TIMEOUT
            ),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=32),
            follow_redirects=False,
        )

    def knows(self, instance_id: str) -> bool:
        return instance_id in self._endpoints

    def endpoint(self, instance_id: str) -> str | None:
        """The base URL of ``instance_id`` (no trailing slash), or None if unknown."""
        return self._endpoints.get(instance_id)

    def url(self, instance_id: str, path: FsPath) -> str | None:
        """``<endpoint>/v1/files/<path>``, each segment percent-encoded; None if unknown."""
        base = self._endpoints.get(instance_id)
        if base is None:
            return None
        return base + "/v1/files/" + "/".join(quote(part, safe="") for part in path.parts)

    def _headers(self, acting_user: str | None, extra: Mapping[str, str]) -> dict[str, str]:
        headers = dict(extra)
        headers["Authorization"] = f"Bearer {self._secret}"
        if acting_user is not None:
            headers[ACTING_USER_HEADER] = acting_user
        inject_trace_context(headers)
        return headers

    async def open(
        self,
        instance_id: str,
        path: FsPath,
        byte_range: ByteRange | None = None,
        acting_user: str | None = None,
    ) -> BlobReader:
        headers = {}
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range.start}-{byte_range.end}"
        response = await self.forward(
            instance_id, "GET", path, headers=headers, acting_user=acting_user
        )
        if response.status_code == 404:
            await response.aclose()
            raise NotFound(path)
        if response.status_code not in (200, 206):
            await response.aclose()
            raise PeerUnavailable(
                message=f"instance {instance_id!r} answered {response.status_code} for {path}"
            )
        length = response.headers.get("content-length", "")
        size = int(length) if length.isdigit() else 0
        return _ResponseReader(response, size)

    async def discard(self, instance_id: str, path: FsPath) -> None:
        response = await self.forward(
            instance_id, "DELETE", path, headers={DISCARD_HEADER: "bytes"}
        )
        await response.aclose()
        if response.status_code != 204:
            raise PeerUnavailable(
                message=f"instance {instance_id!r} refused to discard {path} "
                f"({response.status_code})"
            )

    async def forward(
        self,
        instance_id: str,
        method: str,
        path: FsPath,
        *,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        acting_user: str | None = None,
    ) -> httpx.Response:
        """Send a request to the owner and return its streamed answer (2xx to 4xx).

        The caller closes the response (``aclose``).

        Raises:
            PeerUnavailable: unknown instance, no connection, timeout, or a 5xx answer.
        """
        url = self.url(instance_id, path)
        if url is None:
            raise PeerUnavailable(message=f"instance {instance_id!r} is not a known peer")
        if query:
            url = f"{url}?{query}"
        request = self._client.build_request(
            method, url, headers=self._headers(acting_user, headers or {}), content=content
        )
        start = time.perf_counter()
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise PeerUnavailable(
                message=f"instance {instance_id!r} did not answer in time"
            ) from exc
        except httpx.HTTPError as exc:
            raise PeerUnavailable(
                message=f"instance {instance_id!r} cannot be reached: {type(exc).__name__}"
            ) from exc
        finally:
            self._record(method, start)
        if response.status_code >= 500:
            await response.aclose()
            log.warning("instance %r answered %d to %s", instance_id, response.status_code, method)
            raise PeerUnavailable(
                message=f"instance {instance_id!r} failed ({response.status_code})"
            )
        return response

    def _record(self, method: str, start: float) -> None:
        if self._metrics is None:
            return
        operation = _OPERATIONS.get(method, "stat")
        self._metrics.backend_ops.labels(BACKEND_TYPE, operation).inc()
        self._metrics.backend_duration.labels(BACKEND_TYPE, operation).observe(
            time.perf_counter() - start
        )

    async def aclose(self) -> None:
        await self._client.aclose()


_check: type[PeerPort] = PeerClient
