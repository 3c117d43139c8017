"""A minimal HTTP/1.1 client on a raw (TLS) socket, for the benchmark's bulk work.

httpx tops out around 240 requests/s per core and copies large bodies several times;
this client sends request bodies from one preallocated 1 MiB block and reads response
bodies into one preallocated buffer, discarding them, so a 256 MiB transfer costs the
client little CPU. Keep-alive, ``Content-Length`` and chunked responses; no redirects,
no certificate checks (the servers under test use self-signed certificates).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["RawClient", "Response", "TransferResult", "put_many", "transfer"]

BLOCK = 1024 * 1024
_HEADER_LIMIT = 64 * 1024


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body_bytes: int  # how many body bytes were received (discarded unless kept)
    body: bytes  # the body when ``keep_body`` was asked for, else b""


class RawClient:
    """One keep-alive connection to ``base_url`` (``http://`` or ``https://``)."""

    def __init__(
        self, base_url: str, headers: Mapping[str, str] | None = None, timeout: float = 120.0
    ) -> None:
        parts = urlsplit(base_url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._pending = bytearray()
        self._buffer = bytearray(BLOCK)
        self._view = memoryview(self._buffer)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._pending.clear()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                context.set_alpn_protocols(["http/1.1"])
                sock = context.wrap_socket(sock, server_hostname=self.host)
            self._sock = sock
        return self._sock

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        body_size: int | None = None,
        headers: Mapping[str, str] | None = None,
        keep_body: bool = False,
    ) -> Response:
        """Send one request and read the whole response.

        ``body_size`` (instead of ``body``): send that many bytes generated from one
        random 1 MiB block (each block stamped with its index so no two are equal).
        """
        sock = self._connect()
        size = len(body) if body_size is None else body_size
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        merged = {**self.headers, **(headers or {})}
        lines += [f"{name}: {value}" for name, value in merged.items()]
        if method in ("PUT", "POST") or size:
            lines.append(f"Content-Length: {size}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if body_size is None:
                sock.sendall(head + body)
            else:
                sock.sendall(head)
                _send_generated(sock, body_size)
            return self._read_response(sock, head_only=method == "HEAD", keep_body=keep_body)
        except BaseException:
            self.close()
            raise

    def _fill(self, sock: socket.socket) -> None:
        received = sock.recv_into(self._view)
        if received == 0:
            raise ConnectionError("the server closed the connection")
        self._pending += self._view[:received]

    def _read_line(self, sock: socket.socket) -> bytes:
        while b"\r\n" not in self._pending:
            if len(self._pending) > _HEADER_LIMIT:
                raise ConnectionError("response header too long")
            self._fill(sock)
        line, _, rest = bytes(self._pending).partition(b"\r\n")
        self._pending = bytearray(rest)
        return line

    def _read_response(self, sock: socket.socket, head_only: bool, keep_body: bool) -> Response:
        while b"\r\n\r\n" not in self._pending:
            if len(self._pending) > _HEADER_LIMIT:
                raise ConnectionError("response header too long")
            self._fill(sock)
        raw_head, _, rest = bytes(self._pending).partition(b"\r\n\r\n")
        self._pending = bytearray(rest)
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        kept = bytearray()
        received = 0
        if head_only or status in (204, 304) or 100 <= status < 200:
            pass
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._read_line(sock).split(b";")[0], 16)
                if size == 0:
                    while self._read_line(sock):  # trailers, then the empty line
                        pass
                    break
                received += self._read_exactly(sock, size, kept if keep_body else None)
                self._read_exactly(sock, 2, None)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            received = self._read_exactly(sock, length, kept if keep_body else None)
        else:  # until the server closes the connection
            received = self._read_to_close(sock, kept if keep_body else None)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, received, bytes(kept))

    def _read_exactly(self, sock: socket.socket, size: int, kept: bytearray | None) -> int:
        remaining = size
        if self._pending:
            taken = self._pending[:remaining]
            del self._pending[: len(taken)]
            remaining -= len(taken)
            if kept is not None:
                kept += taken
        while remaining:
            received = sock.recv_into(self._view, min(remaining, BLOCK))
            if received == 0:
                raise ConnectionError(f"the server closed the connection, {remaining} B short")
            if kept is not None:
                kept += self._view[:received]
            remaining -= received
        return size

    def _read_to_close(self, sock: socket.socket, kept: bytearray | None) -> int:
        total = len(self._pending)
        if kept is not None:
            kept += self._pending
        self._pending.clear()
        while True:
            received = sock.recv_into(self._view)
            if received == 0:
                self.close()
                return total
            if kept is not None:
                kept += self._view[:received]
            total += received


def _send_generated(sock: socket.socket, size: int) -> None:
    block = bytearray(os.urandom(BLOCK))
    view = memoryview(block)
    sent, index = 0, 0
    while sent < size:
        block[:8] = index.to_bytes(8, "big")
        part = min(BLOCK, size - sent)
        sock.sendall(view[:part])
        sent += part
        index += 1


@dataclass
class TransferResult:
    transfers: int
    bytes: int
    seconds: float
    failures: int

    @property
    def mb_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


def transfer(
    base_url: str,
    headers: Mapping[str, str],
    method: str,
    path: str,
    size: int,
    count: int,
    time_limit: float,
) -> TransferResult:
    """``count`` sequential GETs of ``path`` (or PUTs of ``size`` bytes to it) on one
    connection; starts no new transfer after ``time_limit`` seconds. Only transfers with
    a 2xx status and the full ``size`` count towards the bytes."""
    done, moved, failures = 0, 0, 0
    with RawClient(base_url, headers) as client:
        start = time.perf_counter()
        while done < count and time.perf_counter() - start < time_limit:
            if method == "PUT":
                response = client.request("PUT", path, body_size=size)
                ok = 200 <= response.status < 300
            else:
                response = client.request(method, path)
                ok = 200 <= response.status < 300 and response.body_bytes == size
            done += 1
            if ok:
                moved += size
            else:
                failures += 1
        seconds = time.perf_counter() - start
    return TransferResult(done, moved, seconds, failures)


def put_many(
    base_url: str,
    headers: Mapping[str, str],
    paths: Iterable[str],
    body: bytes,
    connections: int = 8,
    time_limit: float = 300.0,
) -> int:
    """PUT ``body`` to every path over ``connections`` keep-alive connections (threads);
    gives up after ``time_limit`` seconds. Returns how many PUTs did not get a 2xx."""
    pending = iter(list(paths))
    lock = threading.Lock()
    failures = [0]
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        with RawClient(base_url, headers) as client:
            while time.monotonic() < deadline:
                with lock:
                    path = next(pending, None)
                if path is None:
                    return
                try:
                    status = client.request("PUT", path, body).status
                except OSError:
                    status = 0
                if not 200 <= status < 300:
                    with lock:
                        failures[0] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with lock:
        left = sum(1 for _ in pending)
    return failures[0] + left
