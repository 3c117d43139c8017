"""Helpers shared by the integration test modules (``from helpers import ...``)."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

FILEINFO_KEYS = {"name", "path", "type", "size", "mode", "owner", "group", "mtime", "sha256"}


# --------------------------------------------------------------------------- raw requests


@dataclass
class Raw:
    """A response read with ``http.client``."""

    status: int
    headers: dict[str, str]  # lower-case names
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class RawClient:
    """Sends request targets byte-for-byte (httpx removes dot segments from URLs, and h11
    refuses some header spellings) over one kept-alive TLS connection.

    A connection the server closed after an early error is replaced once; that server
    behaviour is covered by test_files.py::test_keep_alive_connection_usable_after_early_error.
    """

    def __init__(self, server: Any) -> None:
        self.server = server
        host, port = server.config["server"]["listen_addr"].rsplit(":", 1)
        self.address = (host, int(port))
        self.context = ssl._create_unverified_context()
        self.conn: http.client.HTTPSConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(
        self,
        method: str,
        path: str,
        *,
        user: str | None = "alice",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Raw:
        """``user`` picks the API key (None: no Authorization header); a PUT or POST
        always carries a Content-Length."""
        for attempt in range(2):
            fresh = self.conn is None
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(
                    *self.address, timeout=30, context=self.context
                )
            try:
                return self._send(self.conn, method, path, user, headers or {}, body)
            except (http.client.RemoteDisconnected, ConnectionError, ssl.SSLError):
                self.close()
                if fresh or attempt:
                    raise
        raise AssertionError("unreachable")

    def _send(
        self,
        conn: http.client.HTTPSConnection,
        method: str,
        path: str,
        user: str | None,
        headers: dict[str, str],
        body: bytes | None,
    ) -> Raw:
        conn.putrequest(method, path)
        if user is not None:
            key = self.server.config["auth"]["api_key_users"][user]
            conn.putheader("Authorization", f"Bearer {key}")
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None or method in ("PUT", "POST"):
            conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        resp = conn.getresponse()
        result = Raw(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        if resp.will_close:
            self.close()
        return result


def raw_request(server: Any, method: str, path: str, **options: Any) -> Raw:
    """Send ``path`` exactly as given, on a connection of its own; ``options``: ``user``,
    ``headers`` and ``body`` of :meth:`RawClient.request`."""
    client = RawClient(server)
    try:
        return client.request(method, path, **options)
    finally:
        client.close()


# --------------------------------------------------------------------------- assertions


def assert_error(
    resp: Raw | httpx.Response,
    status: int,
    code: str,
    what: object = "",
    *,
    message: str | None = None,
) -> dict[str, Any]:
    """The error envelope of api.md §1.5 with ``status`` and ``code`` (and ``message``, when
    given); ``what`` is shown when an assertion fails. Returns the body.

    An httpx response to HEAD has no body: only its status is checked.
    """
    got = resp.status if isinstance(resp, Raw) else resp.status_code
    assert got == status, (what, got, resp.content)
    if isinstance(resp, httpx.Response) and resp.request.method == "HEAD":
        return {}
    assert resp.headers["content-type"] == "application/json", (what, resp.headers)
    body: dict[str, Any] = json.loads(resp.content)
    assert list(body) == ["code", "message"], (what, body)
    assert body["code"] == code, (what, body)
    assert isinstance(body["message"], str) and body["message"], (what, body)
    if message is not None:
        assert body["message"] == message, (what, body)
    assert not resp.content.endswith(b"\n"), what
    return body


# --------------------------------------------------------------------------- set-up


def put(client: httpx.Client, path: str, data: bytes = b"x", **kw: Any) -> httpx.Response:
    """Write ``/v1/files/{path}`` (created or replaced)."""
    resp = client.put(f"/v1/files/{path}", content=data, **kw)
    assert resp.status_code in (200, 201), resp.text
    return resp


def mkdir(client: httpx.Client, path: str, mode: str | None = None) -> httpx.Response:
    """Create the directory ``path``, which must not exist yet."""
    headers = {"X-CallFS-Mode": mode} if mode else {}
    resp = client.post(f"/v1/files/{path.rstrip('/')}/", headers=headers)
    assert resp.status_code == 201, resp.text
    return resp


def run_concurrently(count: int, action: Callable[[int], Any]) -> list[Any]:
    """Run ``action(0..count-1)`` in threads released together; their results in order.

    Fails the test when any action raised."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = action(index)
        except BaseException as exc:  # reported by the caller
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return results


def put_concurrently(
    servers: Sequence[Any], path: str, uploads: list[bytes]
) -> list[tuple[int, str]]:
    """PUT ``uploads[i]`` to ``path`` through ``servers[i % len(servers)]``, all at once
    (connections opened first); the (status, body) of each answer, in order."""
    workers = [servers[i % len(servers)].client("alice") for i in range(len(uploads))]
    try:
        for worker in workers:
            worker.get("/health")

        def upload(index: int) -> tuple[int, str]:
            response = workers[index].put(path, content=uploads[index])
            return response.status_code, response.text

        return run_concurrently(len(uploads), upload)
    finally:
        for worker in workers:
            worker.close()
