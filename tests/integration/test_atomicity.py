"""Uploads are atomic against the real server (api.md §1.9): disconnects, oversized bodies and
concurrent writers never expose partial content, never leave temporary files, never answer 500."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import DEFAULT_BACKEND, KEYS, Server
from helpers import put, run_concurrently
from storage import Storage

# More than one S3 part (8 MiB): an upload this far along has reached the
# backend's staging area on every backend (a temporary file, a multipart upload).
IN_PROGRESS = 9_000_000


def wait_no_temp_files(storage: Storage, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while storage.leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert storage.leftovers() == []


def wait_temp_file(storage: Storage, timeout: float = 10.0) -> None:
    """The upload is really in progress: its staging data (a temporary file, a
    multipart upload) exists."""
    deadline = time.monotonic() + timeout
    while not storage.leftovers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert storage.leftovers(), "no staging data appeared during the upload"


def raw_connection(srv: Server) -> socket.socket:
    host, _, port = srv.config["server"]["listen_addr"].rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    plain = socket.create_connection((host, int(port)), timeout=10)
    return context.wrap_socket(plain, server_hostname=host)


def request_head(srv: Server, method: str, path: str, headers: dict[str, str]) -> bytes:
    host = srv.config["server"]["listen_addr"]
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {KEYS['alice']}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_content(client: httpx.Client, path: str, expected: bytes | None) -> None:
    response = client.get(f"/v1/files/{path}")
    if expected is None:
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "FILE_NOT_FOUND"
        return
    assert response.status_code == 200, response.text
    assert response.content == expected
    digest = hashlib.sha256(expected).hexdigest()
    assert response.headers["x-callfs-sha256"] == digest
    assert response.headers["x-callfs-size"] == str(len(expected))
    assert response.headers["etag"] == f'"{digest}"'


# --------------------------------------------------------------------------- disconnects


def test_disconnect_mid_upload_keeps_old_content(
    server: Server, alice: httpx.Client, unique: str
) -> None:
    old = b"the old content\n" * 1000
    put(alice, f"{unique}/file.bin", old)
    before = alice.head(f"/v1/files/{unique}/file.bin").headers

    with raw_connection(server) as conn:
        conn.sendall(
            request_head(
                server,
                "PUT",
                f"/v1/files/{unique}/file.bin",
                {"Content-Length": "20000000", "Content-Type": "text/x-new"},
            )
        )
        conn.sendall(b"N" * IN_PROGRESS)
        wait_temp_file(server.storage)
        # While the body is still arriving, readers see the old content only.
        assert_content(alice, f"{unique}/file.bin", old)
    # Closed with 11 MB still missing.

    wait_no_temp_files(server.storage)
    assert_content(alice, f"{unique}/file.bin", old)
    after = alice.head(f"/v1/files/{unique}/file.bin").headers
    for name in ("x-callfs-mtime", "content-type", "last-modified", "x-callfs-size"):
        assert after[name] == before[name], name
    # The stored file is the old one too.
    assert server.storage.read(f"{unique}/file.bin") == old


def test_disconnect_mid_upload_of_new_file_leaves_nothing(
    server: Server, alice: httpx.Client, unique: str
) -> None:
    put(alice, f"{unique}/other.txt", b"x")  # the directory exists
    with raw_connection(server) as conn:
        conn.sendall(
            request_head(
                server, "PUT", f"/v1/files/{unique}/new.bin", {"Content-Length": "20000000"}
            )
        )
        conn.sendall(b"N" * IN_PROGRESS)
        wait_temp_file(server.storage)
        assert_content(alice, f"{unique}/new.bin", None)
    wait_no_temp_files(server.storage)
    assert_content(alice, f"{unique}/new.bin", None)
    assert server.storage.absent(f"{unique}/new.bin")
    names = [i["name"] for i in alice.get(f"/v1/directories/{unique}").json()["items"]]
    assert names == ["other.txt"]


def test_disconnect_mid_chunked_upload_keeps_old_content(
    server: Server, alice: httpx.Client, unique: str
) -> None:
    old = b"old chunked"
    put(alice, f"{unique}/c.bin", old)
    with raw_connection(server) as conn:
        conn.sendall(
            request_head(
                server, "PUT", f"/v1/files/{unique}/c.bin", {"Transfer-Encoding": "chunked"}
            )
        )
        chunk = b"C" * 65536
        for _ in range(20):
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        time.sleep(0.2)
        assert_content(alice, f"{unique}/c.bin", old)
        # No terminating zero-length chunk: the body never completes.
    wait_no_temp_files(server.storage)
    assert_content(alice, f"{unique}/c.bin", old)


def test_disconnect_with_post_creates_nothing(
    server: Server, alice: httpx.Client, unique: str
) -> None:
    with raw_connection(server) as conn:
        conn.sendall(
            request_head(server, "POST", f"/v1/files/{unique}/p.bin", {"Content-Length": "5000000"})
        )
        conn.sendall(b"P" * 500_000)
        time.sleep(0.2)
    wait_no_temp_files(server.storage)
    assert_content(alice, f"{unique}/p.bin", None)
    # And the path is free for a real POST afterwards.
    created = alice.post(f"/v1/files/{unique}/p.bin", content=b"real")
    assert created.status_code == 201, created.text
    assert_content(alice, f"{unique}/p.bin", b"real")


# --------------------------------------------------------------------------- size limit

LIMIT = 65536


def _chunks(total: int, size: int = 8192, fill: bytes = b"L") -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield fill * n


def _assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.content)
    assert list(body) == ["code", "message"]
    assert body["code"] == "PAYLOAD_TOO_LARGE"


def _send_or_disconnect(send: Callable[[], httpx.Response]) -> httpx.Response | None:
    """The server MAY close the connection after an early error (§1.9)."""
    try:
        return send()
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        return None


def test_chunked_body_over_limit_is_rejected(make_server: Any) -> None:
    srv = make_server({"server": {"max_upload_bytes": LIMIT}})
    with srv.client("alice") as client:
        old = b"old" * 100
        put(client, "lim/f.bin", old)
        # Chunked (no Content-Length): rejected when the limit is crossed.
        response = client.put("/v1/files/lim/f.bin", content=_chunks(4 * LIMIT))
        _assert_too_large(response)
        wait_no_temp_files(srv.storage)
        assert_content(client, "lim/f.bin", old)

        # One byte over, chunked, for a new file: nothing is created.
        response = client.put("/v1/files/lim/new.bin", content=_chunks(LIMIT + 1))
        _assert_too_large(response)
        response = client.post("/v1/files/lim/new2.bin", content=_chunks(LIMIT + 1))
        _assert_too_large(response)
        wait_no_temp_files(srv.storage)
        assert_content(client, "lim/new.bin", None)
        assert_content(client, "lim/new2.bin", None)

        # Exactly the limit is fine, chunked or not.
        exact = os.urandom(LIMIT)
        response = client.put("/v1/files/lim/f.bin", content=iter([exact[:1000], exact[1000:]]))
        assert response.status_code == 200, response.text
        assert_content(client, "lim/f.bin", exact)
        response = client.put("/v1/files/lim/g.bin", content=exact)
        assert response.status_code == 201, response.text
        assert_content(client, "lim/g.bin", exact)


def test_content_length_over_limit_is_rejected_at_once(make_server: Any) -> None:
    srv = make_server({"server": {"max_upload_bytes": LIMIT}})
    with srv.client("alice") as client:
        old = b"old"
        put(client, "lim/f.bin", old)
        response = _send_or_disconnect(
            lambda: client.put("/v1/files/lim/f.bin", content=b"x" * (LIMIT + 1))
        )
        if response is not None:
            _assert_too_large(response)
        assert_content(client, "lim/f.bin", old)

    # "At once": the 413 arrives although not a single body byte was sent.
    with raw_connection(srv) as conn:
        conn.sendall(
            request_head(srv, "PUT", "/v1/files/lim/f.bin", {"Content-Length": str(10 * LIMIT)})
        )
        conn.settimeout(5)
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = conn.recv(65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    wait_no_temp_files(srv.storage)
    with srv.client("alice") as client:
        assert_content(client, "lim/f.bin", old)


# --------------------------------------------------------------------------- concurrent writers


INLINE_LIMIT = 16384  # backend.localfs_inline_max_bytes, the default


def _upload_sizes(kind: str, count: int) -> list[int]:
    if kind == "large":
        return [256 * 1024 + 977 * i for i in range(count)]
    if kind == "small":  # kept inline with their entry (backend.localfs_inline_max_bytes)
        return [1000 + 97 * i for i in range(count)]
    # Every other body small: the file moves between its entry and the disk.
    return [1000 + 97 * i if i % 2 else 256 * 1024 + 977 * i for i in range(count)]


@pytest.mark.parametrize("kind", ["large", "small", "mixed"])
def test_concurrent_puts_to_one_path(
    server: Server, alice: httpx.Client, unique: str, kind: str
) -> None:
    count = 50
    uploads = [os.urandom(size) for size in _upload_sizes(kind, count)]
    digests = {hashlib.sha256(u).hexdigest(): u for u in uploads}
    assert len(digests) == count
    path = f"{unique}/contended.bin"
    assert alice.post(f"/v1/files/{unique}/").status_code == 201
    clients = [server.client("alice") for _ in range(count)]
    try:
        for client in clients:
            client.get("/health")  # connections open before the race

        def upload(index: int) -> tuple[int, str, str]:
            response = clients[index].put(f"/v1/files/{path}", content=uploads[index])
            return response.status_code, response.headers.get("x-callfs-sha256", ""), response.text

        results = run_concurrently(count, upload)
    finally:
        for client in clients:
            client.close()

    statuses = [status for status, _, _ in results]
    assert all(s in (200, 201) for s in statuses), results
    # Existence is re-checked under the lock: exactly one PUT created the file.
    assert statuses.count(201) == 1, statuses
    for index, (_, digest, _) in enumerate(results):
        assert digest == hashlib.sha256(uploads[index]).hexdigest()

    final = alice.get(f"/v1/files/{path}")
    assert final.status_code == 200
    content = final.content
    digest = hashlib.sha256(content).hexdigest()
    assert digests.get(digest) == content, "the final content is not one of the uploads"
    assert final.headers["x-callfs-sha256"] == digest
    assert final.headers["x-callfs-size"] == str(len(content))
    assert final.headers["content-length"] == str(len(content))
    assert final.headers["etag"] == f'"{digest}"'
    # Metadata and storage agree, and only one copy is kept.
    assert server.storage.read(f"{unique}/contended.bin") == content
    if DEFAULT_BACKEND == "localfs":
        on_disk = server.files_root / unique / "contended.bin"
        assert on_disk.exists() == (len(content) > INLINE_LIMIT), len(content)
    listing = alice.get(f"/v1/directories/{unique}").json()
    assert [(i["name"], i["size"], i["sha256"]) for i in listing["items"]] == [
        ("contended.bin", len(content), digest)
    ]
    wait_no_temp_files(server.storage)


def test_concurrent_posts_of_one_new_file(server: Server, alice: httpx.Client, unique: str) -> None:
    count = 20
    uploads = [f"post number {i}\n".encode() * (1000 + i) for i in range(count)]
    path = f"{unique}/created-once.txt"
    clients = [server.client("alice") for _ in range(count)]
    try:
        for client in clients:
            client.get("/health")

        def create(index: int) -> tuple[int, str, str]:
            response = clients[index].post(f"/v1/files/{path}", content=uploads[index])
            return response.status_code, response.headers.get("x-callfs-sha256", ""), response.text

        results = run_concurrently(count, create)
    finally:
        for client in clients:
            client.close()

    statuses = sorted(status for status, _, _ in results)
    assert statuses == [201] + [409] * (count - 1), results
    winner = next(i for i, (status, _, _) in enumerate(results) if status == 201)
    assert results[winner][1] == hashlib.sha256(uploads[winner]).hexdigest()
    for status, _, text in results:
        if status == 409:
            assert json.loads(text) == {
                "code": "FILE_ALREADY_EXISTS",
                "message": "file already exists, use PUT to update",
            }
    assert_content(alice, path, uploads[winner])
    assert server.storage.read(f"{unique}/created-once.txt") == uploads[winner]
    wait_no_temp_files(server.storage)


def test_concurrent_posts_of_one_new_directory(
    server: Server, alice: httpx.Client, unique: str
) -> None:
    count = 10
    clients = [server.client("alice") for _ in range(count)]
    try:
        results = run_concurrently(
            count, lambda i: clients[i].post(f"/v1/files/{unique}/dir/").status_code
        )
    finally:
        for client in clients:
            client.close()
    # One creates it; for the others the directory exists already: 200, nothing changes.
    assert sorted(results) == [200] * (count - 1) + [201], results
    head = alice.head(f"/v1/files/{unique}/dir")
    assert head.headers["x-callfs-type"] == "directory"
