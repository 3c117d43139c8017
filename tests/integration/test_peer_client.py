"""The peer client against a real server process, and the owner's side of forwarding:
``X-CallFS-Acting-User`` counts only with the internal proxy secret (api.md §1.10)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import httpx
import pytest
from conftest import INTERNAL_SECRET, KEYS, Server
from helpers import assert_error

from callfs_adapters.metrics import Metrics
from callfs_adapters.peer_client import PeerClient
from callfs_core.errors import NotFound, PeerUnavailable
from callfs_core.model import ByteRange
from callfs_core.paths import FsPath

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def P(text: str) -> FsPath:
    return FsPath.parse(text)


class _Failing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def failing_peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def silent_peer() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.fixture
async def peers(
    server: Server, failing_peer: str, silent_peer: str
) -> AsyncIterator[tuple[PeerClient, Metrics]]:
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    closed_port = refused.getsockname()[1]
    refused.close()
    metrics = Metrics()
    client = PeerClient(
        {
            "owner": server.base_url,
            "gone": f"http://127.0.0.1:{closed_port}",
            "failing": failing_peer,
            "silent": silent_peer,
        },
        INTERNAL_SECRET,
        read_timeout=1.0,
        verify_tls=False,
        metrics=metrics,
    )
    yield client, metrics
    await client.aclose()


async def _read(client: PeerClient, path: str, byte_range: ByteRange | None = None) -> bytes:
    reader = await client.open("owner", P(path), byte_range, "alice")
    try:
        data = b"".join([chunk async for chunk in reader])
    finally:
        await reader.aclose()
    assert reader.size == len(data)
    return data


DATA = bytes(range(256)) * 5000


@pytest.fixture
def stored(alice: httpx.Client, unique: str) -> str:
    """A file on the server; its folder."""
    assert alice.put(f"/v1/files/{unique}/é a.bin", content=DATA).status_code == 201
    return unique


async def test_open_reads_whole_files_and_ranges(
    peers: tuple[PeerClient, Metrics], stored: str
) -> None:
    client, metrics = peers
    unique, data = stored, DATA
    assert await _read(client, f"/{unique}/é a.bin") == data
    assert await _read(client, f"/{unique}/é a.bin", ByteRange(1000, 1999)) == data[1000:2000]
    with pytest.raises(NotFound):
        await client.open("owner", P(f"/{unique}/missing"))
    assert client.knows("owner") and not client.knows("nobody")
    counted = metrics.registry.get_sample_value(
        "callfs_backend_ops_total", {"backend_type": "internalproxy", "operation": "open"}
    )
    assert counted == 3


async def test_unreachable_peers_are_unavailable_quickly(peers: tuple[PeerClient, Metrics]) -> None:
    client, _ = peers
    for name, match in (
        ("nobody", "not a known peer"),
        ("gone", "cannot be reached"),
        ("failing", "failed \\(500\\)"),
        ("silent", "did not answer in time"),
    ):
        start = time.monotonic()
        with pytest.raises(PeerUnavailable, match=match):
            with anyio.fail_after(10):
                await client.open(name, P("/f"))
        assert time.monotonic() - start < 3.0, name


def test_acting_user_counts_only_with_the_internal_secret(
    server: Server, alice: httpx.Client, unique: str
) -> None:
    assert alice.put(f"/v1/files/{unique}/alice.txt", content=b"alice's").status_code == 201
    # A user naming someone else gains nothing.
    with server.client("bob", headers={"X-CallFS-Acting-User": "boss"}) as bob:
        response = bob.put(f"/v1/files/{unique}/alice.txt", content=b"bob's")
        assert_error(response, 403, "PERMISSION_DENIED")
    # The internal secret acts for the named user: admin rights, that user's ownership.
    headers = {"Authorization": f"Bearer {INTERNAL_SECRET}", "X-CallFS-Acting-User": "bob"}
    with server.client(None, headers=headers) as proxy:
        assert proxy.put(f"/v1/files/{unique}/alice.txt", content=b"replaced").status_code == 200
        assert proxy.put(f"/v1/files/{unique}/new.txt", content=b"bob's").status_code == 201
    head = alice.head(f"/v1/files/{unique}/new.txt")
    assert head.headers["x-callfs-owner"] == "bob"
    assert alice.head(f"/v1/files/{unique}/alice.txt").headers["x-callfs-owner"] == "alice"
    assert KEYS["bob"] not in head.headers.values()
