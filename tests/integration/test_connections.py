"""What the connection layer does, over real connections: ``server.read_timeout`` /
``write_timeout`` (api.md §1.9: the longest a body may stall between two parts) and
the HTTP versions offered (HTTP/1.1; HTTP/2 only with ``server.http2``)."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import KEYS

IDLE = 2.0  # seconds: both timeouts of the servers below
BIG = 64 * 1024 * 1024  # far more than the socket buffers hold


@pytest.fixture
def idle_server(make_server: Any) -> Any:
    return make_server({"server": {"read_timeout": f"{IDLE}s", "write_timeout": f"{IDLE}s"}})


def _connect(server: Any) -> ssl.SSLSocket:
    address = urlsplit(server.base_url)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((address.hostname, address.port), timeout=30)
    return context.wrap_socket(raw, server_hostname=address.hostname)


def _read_all(sock: ssl.SSLSocket, limit: float) -> bytes:
    """Everything the server sends until it closes the connection (at most ``limit`` s)."""
    received = bytearray()
    sock.settimeout(limit)
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError, ssl.SSLError):
        pass
    return bytes(received)


def test_a_stalled_upload_gets_408_and_stores_nothing(idle_server: Any) -> None:
    with _connect(idle_server) as sock:
        head = (
            "PUT /v1/files/stalled.bin HTTP/1.1\r\n"
            f"Host: {urlsplit(idle_server.base_url).netloc}\r\n"
            f"Authorization: Bearer {KEYS['alice']}\r\n"
            "Content-Length: 1000\r\n\r\n"
        )
        sock.sendall(head.encode() + b"x" * 100)  # then nothing
        started = time.monotonic()
        answer = _read_all(sock, IDLE + 10)
        waited = time.monotonic() - started
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", answer[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert json.loads(body)["code"] == "REQUEST_TIMEOUT"
    assert IDLE - 0.2 < waited < IDLE + 5
    with idle_server.client() as alice:
        assert alice.get("/v1/files/stalled.bin").status_code == 404
    assert idle_server.storage.leftovers() == []


def test_a_slow_but_steady_upload_is_not_cut_off(idle_server: Any) -> None:
    # Idle time between parts counts, not the whole transfer (api.md §1.9).
    def parts() -> Any:
        for _ in range(4):
            yield b"y" * 1000
            time.sleep(IDLE * 0.4)

    with idle_server.client() as alice:
        response = alice.put("/v1/files/steady.bin", content=parts())
        assert response.status_code == 201, response.text
        assert alice.get("/v1/files/steady.bin").content == b"y" * 4000


def test_a_download_nobody_reads_is_cut_off(idle_server: Any) -> None:
    with idle_server.client() as alice:
        assert alice.put("/v1/files/big.bin", content=b"z" * BIG).status_code == 201
    with _connect(idle_server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        request = (
            "GET /v1/files/big.bin HTTP/1.1\r\n"
            f"Host: {urlsplit(idle_server.base_url).netloc}\r\n"
            f"Authorization: Bearer {KEYS['alice']}\r\n\r\n"
        )
        sock.sendall(request.encode())
        time.sleep(IDLE + 2)  # read nothing: the server's writes stall, then it gives up
        answer = _read_all(sock, 20)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert len(answer) < BIG  # the connection was closed before the whole file went out
    with idle_server.client() as alice:  # the server itself is fine
        assert alice.get("/v1/files/big.bin", headers={"Range": "bytes=0-3"}).content == b"zzzz"


# --------------------------------------------------------------------------- protocols


def _http_version(server: Any) -> str:
    with httpx.Client(http2=True, verify=False, base_url=server.base_url) as client:
        response = client.get("/v1/files/", headers={"Authorization": f"Bearer {KEYS['alice']}"})
        assert response.status_code == 200, response.text
        return response.http_version


def test_http2_is_offered_only_when_enabled(make_server: Any) -> None:
    # HTTP/1.1 by default (uvicorn); server.http2 offers h2 over ALPN (Hypercorn).
    assert _http_version(make_server()) == "HTTP/1.1"
    h2 = make_server({"server": {"http2": True}})
    assert _http_version(h2) == "HTTP/2"
    with h2.client() as alice:
        body = bytes(range(256)) * 4096
        assert alice.put("/v1/files/h2.bin", content=body).status_code == 201
        assert alice.get("/v1/files/h2.bin").content == body


def test_an_overlong_request_head_is_refused(server: Any) -> None:
    # The head (request line and headers) is bounded: 64 KiB (httptools has no limit).
    def head_of(size: int) -> bytes:
        return (
            "GET /v1/files/ HTTP/1.1\r\n"
            f"Host: {urlsplit(server.base_url).netloc}\r\n"
            f"Authorization: Bearer {KEYS['alice']}\r\n"
            f"X-Padding: {'p' * size}\r\n\r\n"
        ).encode()

    with _connect(server) as sock:
        sock.sendall(head_of(32 * 1024))
        assert _read_all(sock, 2).startswith(b"HTTP/1.1 200 OK")
    with _connect(server) as sock:
        # The server may close before the whole head is sent.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError, ssl.SSLError):
            sock.sendall(head_of(200 * 1024))
        answer = _read_all(sock, 10)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request"), answer[:200]
    with server.client() as alice:  # the server itself is fine
        assert alice.get("/v1/files/").status_code == 200
