"""S3 beside the local disk on the real server (issue: S3 storage backend).

The whole suite also runs with S3 as the default backend (``CALLFS_TEST_STACK=s3``);
these tests cover what only S3 has: mixed trees, relocation between backends,
the start-up check, an S3 outage, and memory and clean-up on a 1 GiB upload.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import s3_service
from conftest import KEYS, STACK, Server, s3_backend_config
from helpers import assert_error
from test_memory import load_bench

pytestmark = pytest.mark.skipif(
    STACK != "s3", reason="S3-specific tests run once, in the s3 stack (CALLFS_TEST_STACK)"
)

MIB = 1024 * 1024


def test_mixed_tree_and_relocation(make_server: Any) -> None:
    srv: Server = make_server()
    local = srv.local_storage  # localfs, beside the default backend S3
    with srv.client("alice") as alice:
        assert alice.put("/v1/files/mixed/in-s3.txt", content=b"object").status_code == 201
        assert srv.storage.read("mixed/in-s3.txt") == b"object"
        assert local.read("mixed/in-s3.txt") is None

        # Relocate to the local disk: same path, other backend.
        moved = alice.patch(
            "/v1/files/mixed/in-s3.txt",
            json={"destination": "/mixed/on-disk.txt", "backend": "localfs"},
        )
        assert moved.status_code == 200, moved.text
        assert local.read("mixed/on-disk.txt") == b"object"
        assert srv.storage.absent("mixed/in-s3.txt")
        assert srv.storage.absent("mixed/on-disk.txt")

        # New files still go to S3; both kinds live side by side in one directory.
        assert alice.put("/v1/files/mixed/new.txt", content=b"new").status_code == 201
        assert srv.storage.read("mixed/new.txt") == b"new"
        listing = alice.get("/v1/directories/mixed").json()["items"]
        assert [(i["name"], i["size"]) for i in listing] == [("new.txt", 3), ("on-disk.txt", 6)]
        # Overwriting keeps a file on its backend.
        assert alice.put("/v1/files/mixed/on-disk.txt", content=b"still local").status_code == 200
        assert local.read("mixed/on-disk.txt") == b"still local"
        assert srv.storage.absent("mixed/on-disk.txt")
        ranged = alice.get("/v1/files/mixed/new.txt", headers={"Range": "bytes=1-"})
        assert (ranged.status_code, ranged.content) == (206, b"ew")

        # And back to S3.
        back = alice.patch(
            "/v1/files/mixed/on-disk.txt",
            json={"destination": "/mixed/on-disk.txt", "backend": "s3"},
        )
        assert back.status_code == 200, back.text
        assert srv.storage.read("mixed/on-disk.txt") == b"still local"
        assert local.read("mixed/on-disk.txt") is None

        deleted = alice.delete("/v1/files/mixed", params={"recursive": "true"})
        assert deleted.status_code == 204
        assert srv.storage.absent("mixed")
        assert srv.storage.children("") == []


def _start_failure(make_server: Any, backend: dict[str, Any]) -> str:
    with pytest.raises(RuntimeError, match="server exited early") as raised:
        make_server({"backend": backend})
    return str(raised.value)


def test_start_up_check_names_bucket_endpoint_and_cause(make_server: Any) -> None:
    good = s3_backend_config()
    wrong_key = {**good, "s3_secret_key": "wrong-secret-key-123456"}
    output = _start_failure(make_server, wrong_key)
    assert "Error: cannot start the server" in output
    assert good["s3_bucket_name"] in output
    assert good["s3_endpoint"] in output
    assert "wrong-secret-key-123456" not in output
    assert good["s3_secret_key"] not in output

    missing = {**good, "s3_bucket_name": "callfs-no-such-bucket"}
    output = _start_failure(make_server, missing)
    assert "callfs-no-such-bucket" in output
    assert "NoSuchBucket" in output or "does not exist" in output

    unreachable = {**good, "s3_endpoint": "http://127.0.0.1:9"}  # discard port: refused
    output = _start_failure(make_server, unreachable)
    assert "127.0.0.1:9" in output


@pytest.fixture
def private_s3() -> Iterator[s3_service.ThrowawayS3]:
    server = s3_service.start_private()
    yield server
    server.close()


def test_s3_outage_gives_503_and_local_files_keep_working(
    make_server: Any, private_s3: s3_service.ThrowawayS3
) -> None:
    service = private_s3.service
    backend = {
        "default_backend": "s3",
        "s3_bucket_name": service.new_bucket(),
        "s3_endpoint": service.endpoint,
        "s3_access_key": service.access_key,
        "s3_secret_key": service.secret_key,
    }
    timeout = 3.0
    srv: Server = make_server({"backend": backend, "server": {"file_op_timeout": f"{timeout}s"}})
    with srv.client("alice") as alice:
        assert alice.put("/v1/files/o/remote.txt", content=b"in s3").status_code == 201
        assert alice.put("/v1/files/o/local.txt", content=b"on disk").status_code == 201
        relocated = alice.patch(
            "/v1/files/o/local.txt", json={"destination": "/o/local.txt", "backend": "localfs"}
        )
        assert relocated.status_code == 200, relocated.text

        private_s3.stop()
        # (A DELETE would succeed: the metadata is authoritative and a failed
        # removal of the bytes is only logged, api.md §2.8.)
        for method, body in (("GET", None), ("PUT", b"new")):
            start = time.monotonic()
            response = alice.request(method, "/v1/files/o/remote.txt", content=body)
            elapsed = time.monotonic() - start
            assert_error(response, 503, "BACKEND_UNAVAILABLE")
            assert elapsed < timeout + 2.0, (method, elapsed)
        start = time.monotonic()
        assert_error(alice.put("/v1/files/o/fresh.txt", content=b"x"), 503, "BACKEND_UNAVAILABLE")
        assert time.monotonic() - start < timeout + 2.0
        # The metadata answers without S3, and local files are untouched by the outage.
        assert alice.head("/v1/files/o/remote.txt").status_code == 200
        assert alice.get("/v1/files/o/local.txt").content == b"on disk"
        assert alice.put("/v1/files/o/local.txt", content=b"changed").status_code == 200
        assert alice.get("/v1/files/o/local.txt").content == b"changed"
        ready = alice.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["backend:s3"] in ("unavailable", "timeout")
        assert ready.json()["checks"]["backend:localfs"] == "ok"

        private_s3.start()
        # Back without a restart of CallFS. A restarted SeaweedFS lists buckets
        # before its volumes serve reads: until then the answer is 503, never 500.
        deadline = time.monotonic() + 30
        while True:
            back = alice.get("/v1/files/o/remote.txt")
            if back.status_code == 200 or time.monotonic() > deadline:
                break
            assert_error(back, 503, "BACKEND_UNAVAILABLE")
            time.sleep(0.2)
        assert back.content == b"in s3"
        # The failed writes changed nothing.
        assert alice.get("/v1/files/o/fresh.txt").status_code == 404
        assert alice.put("/v1/files/o/fresh.txt", content=b"x").status_code == 201
        assert alice.get("/ready").status_code == 200


# --------------------------------------------------------------------------- large files


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_peak_rss_streaming_1_gib_through_s3(tmp_path: Path) -> None:
    bench = load_bench()
    backend = s3_backend_config()
    result = bench.measure(1024, folder=tmp_path, backend=backend)
    print(result.report())
    assert result.size_bytes == 1024 * MIB
    assert result.samples >= 20
    assert result.peak_rss_bytes < 200 * MIB, result.report()


def _raw_put(srv: Server, path: str, length: int) -> ssl.SSLSocket:
    host, _, port = srv.config["server"]["listen_addr"].rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = context.wrap_socket(
        socket.create_connection((host, int(port)), timeout=30), server_hostname=host
    )
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEYS['alice']}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    conn.sendall(head.encode())
    return conn


def test_client_abort_halfway_leaves_no_multipart_upload(make_server: Any) -> None:
    srv: Server = make_server()
    with srv.client("alice") as alice:
        assert alice.put("/v1/files/big/keep.bin", content=b"previous").status_code == 201
        for path in ("/v1/files/big/keep.bin", "/v1/files/big/new.bin"):
            conn = _raw_put(srv, path, 200 * MIB)
            block = b"A" * MIB
            for _ in range(100):  # half of it: a dozen parts are uploaded by now
                conn.sendall(block)
            deadline = time.monotonic() + 10
            while not srv.storage.leftovers() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert srv.storage.leftovers(), "the upload never reached S3"
            conn.close()
            deadline = time.monotonic() + 10
            while srv.storage.leftovers() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert srv.storage.leftovers() == []
        assert alice.get("/v1/files/big/keep.bin").content == b"previous"
        assert srv.storage.read("big/keep.bin") == b"previous"
        assert alice.get("/v1/files/big/new.bin").status_code == 404
        assert srv.storage.absent("big/new.bin")


def test_ranged_reads_of_a_large_object(make_server: Any) -> None:
    srv: Server = make_server()
    data = bytes(range(256)) * (40 * 4096 + 3)  # ~40 MiB: a multipart object
    with srv.client("alice") as alice:
        assert alice.put("/v1/files/r/big.bin", content=data).status_code == 201
        size = len(data)
        for start, end in ((0, 0), (5, 1000), (8 * MIB - 2, 8 * MIB + 2), (size - 10, size - 1)):
            got = alice.get("/v1/files/r/big.bin", headers={"Range": f"bytes={start}-{end}"})
            assert got.status_code == 206
            assert got.content == data[start : end + 1]
            assert got.headers["content-range"] == f"bytes {start}-{end}/{size}"
        suffix = alice.get("/v1/files/r/big.bin", headers={"Range": "bytes=-7"})
        assert suffix.content == data[-7:]
        with alice.stream("GET", "/v1/files/r/big.bin") as whole:
            assert b"".join(whole.iter_bytes()) == data
