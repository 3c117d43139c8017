"""HEAD load generator: wrk cannot measure HEAD (its parser then waits for a body of the
response's ``Content-Length`` and no request ever completes), so the stat figure comes
from this small asyncio client: ``connections`` keep-alive connections, each sending
the next HEAD as soon as the previous response's headers are in, for ``duration``
seconds. Its own ceiling (one Python process) is far above CallFS's figures; the
nginx figure shows where it lies on the machine.
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["HeadResult", "head_load"]


@dataclass
class HeadResult:
    requests: int  # responses with a 2xx status
    errors: int  # other statuses and broken connections
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


class _HeadProtocol(asyncio.Protocol):
    def __init__(self, request: bytes, deadline: float, result: _Tally) -> None:
        self.request = request
        self.deadline = deadline
        self.tally = result
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.sent_at = 0.0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if time.perf_counter() >= self.deadline:
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:  # a HEAD response is its header
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            now = time.perf_counter()
            status = head[9:12]
            if status[:1] == b"2":
                self.tally.latencies.append(now - self.sent_at)
            else:
                self.tally.errors += 1
            if b"connection: close" in head.lower():
                assert self.transport is not None
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.tally.errors += 1
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass
class _Tally:
    latencies: list[float]
    errors: int = 0


async def _run(
    base_url: str, path: str, headers: Mapping[str, str], connections: int, duration: float
) -> HeadResult:
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context: ssl.SSLContext | None = None
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])
    lines = [f"HEAD {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    loop = asyncio.get_running_loop()
    tally = _Tally(latencies=[])
    start = time.perf_counter()
    deadline = start + duration

    async def worker() -> None:
        # Reconnects when the server closes the connection (e.g. after N requests).
        while time.perf_counter() < deadline:
            try:
                transport, protocol = await loop.create_connection(
                    lambda: _HeadProtocol(request, deadline, tally), host, port, ssl=context
                )
            except OSError:
                tally.errors += 1
                await asyncio.sleep(0.05)
                continue
            try:
                await asyncio.wait_for(protocol.closed, deadline - time.perf_counter() + 15)
            except TimeoutError:
                tally.errors += 1
            finally:
                transport.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    seconds = time.perf_counter() - start
    latencies = sorted(tally.latencies)
    p50 = statistics.median(latencies) if latencies else 0.0
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return HeadResult(len(latencies), tally.errors, seconds, p50 * 1e3, p99 * 1e3)


def head_load(
    base_url: str, path: str, headers: Mapping[str, str], connections: int, duration: float
) -> HeadResult:
    """HEAD ``path`` over ``connections`` connections for ``duration`` seconds."""
    return asyncio.run(_run(base_url, path, headers, connections, duration))
