"""Resumable downloads and lost-update protection, end to end (api.md §1.7)."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import httpx
from conftest import Server


def test_resume_an_interrupted_download(alice: httpx.Client, unique: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)
    alice.put(f"/v1/files/{unique}/big.bin", content=data)
    received = bytearray()
    with alice.stream("GET", f"/v1/files/{unique}/big.bin") as response:
        etag = response.headers["etag"]
        for chunk in response.iter_bytes():
            received += chunk
            if len(received) > 1024 * 1024:
                break  # the connection drops here
    del received[1024 * 1024 :]
    resumed = alice.get(
        f"/v1/files/{unique}/big.bin",
        headers={"Range": f"bytes={len(received)}-", "If-Range": etag},
    )
    assert resumed.status_code == 206
    assert resumed.headers["content-range"] == f"bytes {len(received)}-{len(data) - 1}/{len(data)}"
    received += resumed.content
    assert hashlib.sha256(received).hexdigest() == resumed.headers["x-callfs-sha256"]
    assert bytes(received) == data


def test_resume_after_the_file_changed_restarts(alice: httpx.Client, unique: str) -> None:
    alice.put(f"/v1/files/{unique}/f", content=b"first version")
    etag = alice.head(f"/v1/files/{unique}/f").headers["etag"]
    alice.put(f"/v1/files/{unique}/f", content=b"second version!")
    again = alice.get(f"/v1/files/{unique}/f", headers={"Range": "bytes=5-", "If-Range": etag})
    assert again.status_code == 200  # If-Range no longer matches: the whole new file
    assert again.content == b"second version!"


def test_read_modify_write_never_loses_an_update(server: Server, unique: str) -> None:
    path = f"/v1/files/{unique}/counter"
    with server.client("alice") as setup:
        setup.put(path, content=b"0")

    def increment(_: int) -> int:
        """Retry until the conditional write wins; return the number of 412s seen."""
        conflicts = 0
        with server.client("alice") as client:
            while True:
                current = client.get(path)
                value = int(current.content)
                written = client.put(
                    path,
                    content=str(value + 1).encode(),
                    headers={"If-Match": current.headers["etag"]},
                )
                if written.status_code == 200:
                    return conflicts
                assert written.status_code == 412, written.text
                conflicts += 1

    with ThreadPoolExecutor(6) as pool:
        conflicts = sum(pool.map(increment, range(30)))
    with server.client("alice") as client:
        assert client.get(path).content == b"30"  # every increment survived
    assert conflicts >= 0
