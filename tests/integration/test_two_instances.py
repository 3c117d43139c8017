"""Two server processes on one PostgreSQL, one Redis and one S3 bucket (api.md §1.9, §1.10).

Files live in S3, which every instance reads and writes directly, so these
tests need no forwarding between instances: they check that the shared
metadata store and the Redis locks make the two processes behave as one
server. Each check alternates between the two instances.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cluster import start_cluster, stop_cluster
from conftest import STACK, Server, s3_backend_config
from helpers import put_concurrently, run_concurrently

pytestmark = pytest.mark.skipif(
    STACK != "postgres-redis",
    reason="a cluster test: it runs once, in the postgres-redis stack (CALLFS_TEST_STACK)",
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    servers = start_cluster(tmp_path_factory, ("a", "b"), backend=s3_backend_config())
    yield servers["a"], servers["b"]
    stop_cluster(servers)


@pytest.fixture
def clients(pair: tuple[Server, Server]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with pair[0].client("alice") as a, pair[1].client("alice") as b:
        yield a, b


def test_concurrent_puts_split_across_instances(
    pair: tuple[Server, Server], clients: tuple[httpx.Client, httpx.Client], unique: str
) -> None:
    count = 50
    uploads = [os.urandom(64 * 1024 + 991 * i) for i in range(count)]
    digests = {hashlib.sha256(u).hexdigest(): u for u in uploads}
    path = f"/v1/files/{unique}/contended.bin"
    assert clients[0].post(f"/v1/files/{unique}/").status_code == 201
    # Every other upload goes through the other instance.
    results = put_concurrently(list(pair), path, uploads)

    statuses = [status for status, _ in results]
    assert all(status in (200, 201) for status in statuses), results
    assert statuses.count(201) == 1, statuses
    answers = [client.get(path) for client in clients]
    for answer in answers:
        assert answer.status_code == 200
        digest = hashlib.sha256(answer.content).hexdigest()
        assert digests.get(digest) == answer.content, "not one complete upload"
        assert answer.headers["etag"] == f'"{digest}"'
    assert answers[0].content == answers[1].content
    assert pair[0].storage.read(f"{unique}/contended.bin") == answers[0].content
    assert pair[0].storage.leftovers() == []


def _listing(client: httpx.Client, directory: str) -> list[tuple[str, int | None, str | None]]:
    response = client.get(f"/v1/directories/{directory}")
    assert response.status_code == 200, response.text
    return [(i["name"], i["size"], i["sha256"]) for i in response.json()["items"]]


def test_changes_are_visible_through_the_other_instance_at_once(
    clients: tuple[httpx.Client, httpx.Client], unique: str
) -> None:
    for round_number in range(10):
        writer, reader = clients[round_number % 2], clients[(round_number + 1) % 2]
        data = f"version {round_number}\n".encode() * (round_number + 1)
        path = f"/v1/files/{unique}/f.txt"
        assert writer.put(path, content=data).status_code in (200, 201)
        # Read right after the write: no cache may answer with the old version.
        got = reader.get(path)
        assert got.content == data
        assert got.headers["x-callfs-sha256"] == hashlib.sha256(data).hexdigest()
        assert _listing(reader, unique) == _listing(writer, unique)

    a, b = clients
    assert a.patch(f"/v1/files/{unique}/f.txt", json={"name": "g.txt"}).status_code == 200
    assert b.head(f"/v1/files/{unique}/f.txt").status_code == 404
    assert b.get(f"/v1/files/{unique}/g.txt").status_code == 200
    assert b.patch(f"/v1/files/{unique}/g.txt", json={"mode": "0600"}).status_code == 200
    assert a.head(f"/v1/files/{unique}/g.txt").headers["x-callfs-mode"] == "0600"
    assert b.delete(f"/v1/files/{unique}/g.txt").status_code == 204
    assert a.head(f"/v1/files/{unique}/g.txt").status_code == 404
    assert _listing(a, unique) == _listing(b, unique) == []


def test_a_link_is_redeemed_once_across_instances(
    pair: tuple[Server, Server], clients: tuple[httpx.Client, httpx.Client], unique: str
) -> None:
    a, _ = clients
    assert a.put(f"/v1/files/{unique}/shared.txt", content=b"once").status_code == 201
    response = a.post(
        "/v1/links/generate", json={"path": f"/{unique}/shared.txt", "expiry_seconds": 60}
    )
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    count = 20
    downloaders = [pair[i % 2].client(None) for i in range(count)]
    try:

        def download(index: int) -> tuple[int, bytes]:
            got = downloaders[index].get(f"/download/{token}")
            return got.status_code, got.content

        results: list[Any] = run_concurrently(count, download)
    finally:
        for downloader in downloaders:
            downloader.close()
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [410] * (count - 1), statuses
    assert [content for status, content in results if status == 200] == [b"once"]
