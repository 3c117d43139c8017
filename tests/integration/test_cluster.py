"""Three instances, one namespace (api.md §1.10): each keeps its files on its own disk,
any instance serves any request, forwarding changes to the owning instance.

Three real server processes share one PostgreSQL database and one Redis; each
has its own port, local storage folder and instance id, and lists the others
in ``instance_discovery.peer_endpoints``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cluster import READ_TIMEOUT, start_cluster, stop_cluster
from conftest import STACK, Server
from helpers import assert_error, put_concurrently

pytestmark = pytest.mark.skipif(
    STACK != "postgres-redis",
    reason="a cluster test: it runs once, in the postgres-redis stack (CALLFS_TEST_STACK)",
)

NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    servers = start_cluster(tmp_path_factory, NAMES)
    yield servers
    stop_cluster(servers)


@pytest.fixture
def clients(cluster: dict[str, Server]) -> Iterator[dict[str, httpx.Client]]:
    opened = {name: server.client("alice") for name, server in cluster.items()}
    yield opened
    for client in opened.values():
        client.close()


def listings(clients: dict[str, httpx.Client], directory: str) -> list[object]:
    answers = []
    for client in clients.values():
        response = client.get(f"/v1/directories/{directory}", params={"recursive": "true"})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert answers[0] == answers[1] == answers[2], "the instances disagree"
    return answers[0]["items"]


def test_a_file_of_one_instance_is_served_and_changed_through_the_others(
    cluster: dict[str, Server], clients: dict[str, httpx.Client], unique: str
) -> None:
    a, b, c = (clients[n] for n in NAMES)
    held_by_a = cluster["a"].local_storage
    data = os.urandom(300_000)
    assert a.put(f"/v1/files/{unique}/f.bin", content=data).status_code == 201
    for client in (b, c):
        head = client.head(f"/v1/files/{unique}/f.bin")
        assert head.status_code == 200
        assert head.headers["x-callfs-instance-id"] == "instance-a"
        got = client.get(f"/v1/files/{unique}/f.bin")
        assert got.status_code == 200
        assert got.content == data
        assert got.headers["x-callfs-sha256"] == hashlib.sha256(data).hexdigest()
        part = client.get(f"/v1/files/{unique}/f.bin", headers={"Range": "bytes=1000-1999"})
        assert (part.status_code, part.content) == (206, data[1000:2000])
        assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    listings(clients, unique)

    # Overwrite through B: the bytes stay on A's disk, every instance serves them.
    replaced = b.put(f"/v1/files/{unique}/f.bin", content=b"second version")
    assert replaced.status_code == 200, replaced.text
    assert replaced.headers["etag"] == f'"{hashlib.sha256(b"second version").hexdigest()}"'
    assert held_by_a.read(f"{unique}/f.bin") == b"second version"
    assert not (cluster["b"].files_root / unique / "f.bin").exists()
    for client in (a, b, c):
        assert client.get(f"/v1/files/{unique}/f.bin").content == b"second version"
    assert listings(clients, unique)[0]["size"] == len(b"second version")

    # Rename through C, delete through B.
    renamed = c.patch(f"/v1/files/{unique}/f.bin", json={"name": "g.bin"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json() == {"path": f"/{unique}/g.bin"}
    assert held_by_a.read(f"{unique}/g.bin") == b"second version"
    assert [item["name"] for item in listings(clients, unique)] == ["g.bin"]
    assert b.get(f"/v1/files/{unique}/g.bin").content == b"second version"
    assert b.delete(f"/v1/files/{unique}/g.bin").status_code == 204
    assert held_by_a.read(f"{unique}/g.bin") is None
    for client in (a, b, c):
        assert_error(client.get(f"/v1/files/{unique}/g.bin"), 404, "FILE_NOT_FOUND")
    assert listings(clients, unique) == []


def test_permissions_are_checked_for_the_real_caller(
    cluster: dict[str, Server], clients: dict[str, httpx.Client], unique: str
) -> None:
    assert clients["a"].put(f"/v1/files/{unique}/mine.txt", content=b"alice's").status_code == 201
    for name, server in cluster.items():
        with server.client("bob") as bob:
            assert bob.get(f"/v1/files/{unique}/mine.txt").content == b"alice's", name
            assert_error(
                bob.put(f"/v1/files/{unique}/mine.txt", content=b"bob's"), 403, "PERMISSION_DENIED"
            )
            assert_error(bob.delete(f"/v1/files/{unique}/mine.txt"), 403, "PERMISSION_DENIED")
            assert_error(
                bob.patch(f"/v1/files/{unique}/mine.txt", json={"name": "x"}),
                403,
                "PERMISSION_DENIED",
            )
    assert cluster["a"].local_storage.read(f"{unique}/mine.txt") == b"alice's"

    # A file bob creates through C, forwarded nowhere: his, on C's disk.
    with cluster["c"].client("bob") as bob:
        assert bob.put(f"/v1/files/{unique}-bob/b.txt", content=b"bob").status_code == 201
    head = clients["a"].head(f"/v1/files/{unique}-bob/b.txt")
    assert head.headers["x-callfs-owner"] == "bob"
    assert head.headers["x-callfs-instance-id"] == "instance-c"
    # Replaced through A on bob's behalf (forwarded to C): still bob's file.
    with cluster["a"].client("bob") as bob:
        assert bob.put(f"/v1/files/{unique}-bob/b.txt", content=b"bob 2").status_code == 200
    assert cluster["c"].local_storage.read(f"{unique}-bob/b.txt") == b"bob 2"
    assert clients["b"].head(f"/v1/files/{unique}-bob/b.txt").headers["x-callfs-owner"] == "bob"


def test_concurrent_puts_through_every_instance(
    cluster: dict[str, Server], clients: dict[str, httpx.Client], unique: str
) -> None:
    path = f"/v1/files/{unique}/contended.bin"
    assert clients["b"].put(path, content=b"first").status_code == 201  # held by B
    count = 30
    uploads = [os.urandom(50_000 + 997 * i) for i in range(count)]
    digests = {hashlib.sha256(u).hexdigest() for u in uploads}
    results = put_concurrently([cluster[name] for name in NAMES], path, uploads)
    assert [status for status, _ in results] == [200] * count, results
    answers = [client.get(path) for client in clients.values()]
    assert answers[0].content == answers[1].content == answers[2].content
    final = hashlib.sha256(answers[0].content).hexdigest()
    assert final in digests, "the final content is not one complete upload"
    assert (cluster["b"].files_root / unique / "contended.bin").read_bytes() == answers[0].content
    for answer in answers:
        assert answer.headers["x-callfs-sha256"] == final


def test_post_onto_an_entry_of_another_instance_is_a_cross_server_conflict(
    cluster: dict[str, Server], clients: dict[str, httpx.Client], unique: str
) -> None:
    a, b, c = (clients[n] for n in NAMES)
    assert a.put(f"/v1/files/{unique}/f.txt", content=b"on a").status_code == 201
    assert a.post(f"/v1/files/{unique}/d/").status_code == 201
    conflict = b.post(f"/v1/files/{unique}/f.txt", content=b"again")
    assert conflict.status_code == 409
    a_url = f"https://{cluster['a'].config['server']['listen_addr']}"
    assert list(conflict.json().items()) == [
        ("error", "Resource exists on another server"),
        ("existing_path", f"/{unique}/f.txt"),
        ("instance_id", "instance-a"),
        ("backend_type", "localfs"),
        ("suggestion", "File already exists on another server. Use PUT to update it."),
        ("update_url", f"{a_url}/v1/files/{unique}/f.txt"),
    ]
    directory = c.post(f"/v1/files/{unique}/d/")
    assert directory.status_code == 409
    assert directory.json()["suggestion"] == (
        "Directory already exists on another server. Use GET to access it."
    )
    assert "update_url" not in directory.json()
    file_on_dir = c.post(f"/v1/files/{unique}/d", content=b"x")
    assert file_on_dir.json()["suggestion"] == (
        "Path exists as directory on another server, cannot create file"
    )
    # On the owning instance it is the ordinary conflict.
    assert_error(a.post(f"/v1/files/{unique}/f.txt", content=b"x"), 409, "FILE_ALREADY_EXISTS")
    assert a.get(f"/v1/files/{unique}/f.txt").content == b"on a"


def test_a_link_generated_on_one_instance_downloads_from_another(
    clients: dict[str, httpx.Client], cluster: dict[str, Server], unique: str
) -> None:
    assert clients["a"].put(f"/v1/files/{unique}/shared.txt", content=b"shared").status_code == 201
    generated = clients["b"].post(
        "/v1/links/generate", json={"path": f"/{unique}/shared.txt", "expiry_seconds": 60}
    )
    assert generated.status_code == 201, generated.text
    token = generated.json()["token"]
    with cluster["c"].client(None) as anonymous:
        got = anonymous.get(f"/download/{token}")
        assert got.status_code == 200, got.text
        assert got.content == b"shared"
        assert_error(anonymous.get(f"/download/{token}"), 410, "LINK_ALREADY_USED")


def test_a_stopped_instance_gives_502_for_its_files_only(
    cluster: dict[str, Server], clients: dict[str, httpx.Client], unique: str
) -> None:
    a, b, c = (clients[n] for n in NAMES)
    assert b.put(f"/v1/files/{unique}/on-b.txt", content=b"held by b").status_code == 201
    assert a.put(f"/v1/files/{unique}/on-a.txt", content=b"held by a").status_code == 201
    cluster["b"].stop()
    try:
        for client in (a, c):
            for method, body in (("GET", None), ("PUT", b"new"), ("DELETE", None)):
                start = time.monotonic()
                response = client.request(method, f"/v1/files/{unique}/on-b.txt", content=body)
                assert_error(response, 502, "PEER_UNAVAILABLE")
                assert time.monotonic() - start < READ_TIMEOUT + 5
            # Metadata answers without B; everything else works.
            assert client.head(f"/v1/files/{unique}/on-b.txt").status_code == 200
            assert client.get(f"/v1/files/{unique}/on-a.txt").content == b"held by a"
        assert c.put(f"/v1/files/{unique}/on-c.txt", content=b"held by c").status_code == 201
        assert a.get(f"/v1/files/{unique}/on-c.txt").content == b"held by c"
        assert c.put(f"/v1/files/{unique}/on-a.txt", content=b"changed").status_code == 200
    finally:
        cluster["b"].start()
    clients["b"].close()
    for client in (a, c):
        assert client.get(f"/v1/files/{unique}/on-b.txt").content == b"held by b"
    with cluster["b"].client("alice") as again:
        assert again.get(f"/v1/files/{unique}/on-a.txt").content == b"changed"


def test_a_recursive_delete_removes_the_bytes_on_every_instance(
    cluster: dict[str, Server], clients: dict[str, httpx.Client], unique: str
) -> None:
    for name in NAMES:
        path = f"/v1/files/{unique}/tree/sub-{name}/f-{name}.txt"
        assert clients[name].put(path, content=name.encode()).status_code == 201
    assert len(listings(clients, f"{unique}/tree")) == 6
    assert (
        clients["b"].delete(f"/v1/files/{unique}/tree", params={"recursive": "true"}).status_code
        == 204
    )
    for name in NAMES:
        assert listings(clients, unique) == []
        folder = cluster[name].files_root / unique / "tree"
        assert not (folder / f"sub-{name}" / f"f-{name}.txt").exists(), name
        assert not folder.exists() or not any(folder.rglob("*")), name
    # Only instances may ask for a clean-up.
    with cluster["a"].client("alice", headers={"X-CallFS-Discard": "bytes"}) as alice:
        assert_error(alice.delete(f"/v1/files/{unique}/x"), 400, "BAD_REQUEST")


def test_a_forwarded_read_continues_the_callers_trace(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from test_observability import FakeCollector

    collector = FakeCollector()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SDK_DISABLED": "false",
    }
    servers = start_cluster(tmp_path_factory, ("x", "y"), env)
    try:
        with servers["x"].client("alice") as x, servers["y"].client("alice") as y:
            assert x.put("/v1/files/traced/f.txt", content=b"traced").status_code == 201
            trace_id = "0af7651916cd43dd8448eb211c80319c"
            got = y.get(
                "/v1/files/traced/f.txt",
                headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
            )
            assert got.content == b"traced"

        def spans_of(instance: str) -> list[Any]:
            return [
                span
                for resource, span in collector.spans()
                if span.trace_id.hex() == trace_id and resource["service.instance.id"] == instance
            ]

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            any(s.name == "GET /v1/files/*" for s in spans_of("instance-x"))
            and any(s.name == "GET /v1/files/*" for s in spans_of("instance-y"))
        ):
            time.sleep(0.1)
        on_y = spans_of("instance-y")
        owner_server_spans = [s for s in spans_of("instance-x") if s.name == "GET /v1/files/*"]
        assert len(owner_server_spans) == 1, "the owner did not continue the trace"
        # The owner's server span is a child of a span of the receiving instance.
        assert owner_server_spans[0].parent_span_id in {s.span_id for s in on_y}
        assert any(s.name == "engine.read" for s in on_y)
    finally:
        stop_cluster(servers)
        collector.close()
