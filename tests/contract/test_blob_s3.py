"""The S3 backend passes the BlobBackendPort contract against a real S3 (SeaweedFS by
default, see tests/support/s3_service.py), mirrors paths as keys under its prefix
without markers or temporary objects, never leaves an incomplete multipart upload,
sends its encryption and ACL with every object it writes, streams in bounded
memory, and reports credentials, missing buckets and unreachable endpoints as
BackendUnavailable within its timeout."""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import pytest
import s3_service
import urllib3
from minio import Minio

from callfs_adapters.s3_blob import PROBE_PREFIX, MinioBlobBackend, make_http_client
from callfs_core.errors import BackendUnavailable, NotFound
from callfs_core.model import ByteRange
from callfs_core.paths import FsPath
from callfs_core.testing import BlobBackendContract
from callfs_core.testing._support import split, stream

MiB = 1024 * 1024
PART = 5 * MiB  # the smallest part S3 allows: multipart with little data


@pytest.fixture(scope="module")
def service() -> s3_service.S3Service:
    return s3_service.shared_service()


@pytest.fixture
def bucket(service: s3_service.S3Service) -> Iterator[str]:
    name = service.new_bucket()
    yield name
    service.remove_bucket(name)


@pytest.fixture
def sdk(service: s3_service.S3Service) -> Minio:
    """A client independent of the backend, to look at the bucket."""
    return service.client()


def make_backend(service: s3_service.S3Service, bucket: str, **settings: Any) -> MinioBlobBackend:
    """The backend as the server builds it (production defaults: AES256, private)."""
    values: dict[str, Any] = {
        "bucket": bucket,
        "endpoint": service.endpoint,
        "region": service.region,
        "access_key": service.access_key,
        "secret_key": service.secret_key,
        "timeout": 10.0,
    }
    values.update(settings)
    return MinioBlobBackend.from_settings(**values)


class TestS3Blobs(BlobBackendContract):
    @pytest.fixture
    async def backend(
        self, service: s3_service.S3Service, bucket: str
    ) -> AsyncIterator[MinioBlobBackend]:
        backend = make_backend(service, bucket)
        yield backend
        await backend.close()

    @pytest.fixture
    def detects_directories(self) -> bool:
        return False  # directories live in the metadata store only


class TestS3BlobsUnderAPrefixWithSmallParts(BlobBackendContract):
    """A key prefix, and 5 MiB parts so that the contract's 5 MiB+ files go multipart."""

    @pytest.fixture
    async def backend(
        self, service: s3_service.S3Service, bucket: str
    ) -> AsyncIterator[MinioBlobBackend]:
        backend = make_backend(service, bucket, prefix="callfs/", part_size=PART)
        yield backend
        await backend.close()

    @pytest.fixture
    def detects_directories(self) -> bool:
        return False


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- helpers -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Sent:
    method: str
    key: str  # the object key (path-style URL without the bucket), "" for bucket calls
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names


class RecordingPool(urllib3.PoolManager):
    """A urllib3 pool that records every request the SDK sends (method, key, headers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[Sent] = []

    # Same signature as PoolManager.urlopen, which itself differs from its base class's.
    def urlopen(  # type: ignore[override]
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> urllib3.BaseHTTPResponse:
        parts = urlsplit(url)
        path = unquote(parts.path).lstrip("/")
        key = path.partition("/")[2]
        headers = {str(k).lower(): str(v) for k, v in (kw.get("headers") or {}).items()}
        query = parse_qs(parts.query, keep_blank_values=True)
        self.sent.append(Sent(method, key, query, headers))
        return super().urlopen(method, url, redirect=redirect, **kw)

    def object_writes(self) -> list[Sent]:
        """Requests that create an object: PUT (not a part), copy, multipart create."""
        return [
            sent
            for sent in self.sent
            if (sent.method == "PUT" and "partNumber" not in sent.query and sent.key)
            or (sent.method == "POST" and "uploads" in sent.query)
        ]


def recording_backend(
    service: s3_service.S3Service, bucket: str, **settings: Any
) -> tuple[MinioBlobBackend, RecordingPool]:
    pool = make_http_client(timeout=10.0, pool_class=RecordingPool)
    assert isinstance(pool, RecordingPool)
    return make_backend(service, bucket, http_client=pool, **settings), pool


def p(text: str) -> FsPath:
    return FsPath.parse(text)


def data_of(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


async def write(backend: MinioBlobBackend, path: str, data: bytes, piece: int = MiB) -> None:
    staged = await backend.stage(p(path), stream(split(data, [piece]) or [b""]))
    await staged.commit()


async def read(backend: MinioBlobBackend, path: str, byte_range: ByteRange | None = None) -> bytes:
    reader = await backend.open(p(path), byte_range)
    try:
        chunks = [chunk async for chunk in reader]
    finally:
        await reader.aclose()
    assert all(0 < len(chunk) <= MiB for chunk in chunks)
    assert reader.size == sum(len(chunk) for chunk in chunks)
    return b"".join(chunks)


def keys(sdk: Minio, bucket: str) -> set[str]:
    return {item.object_name or "" for item in sdk.list_objects(bucket, recursive=True)}


def incomplete_uploads(sdk: Minio, bucket: str) -> list[str]:
    # minio-py lists multipart uploads only through this underscore method.
    return [upload.object_name or "" for upload in sdk._list_multipart_uploads(bucket).uploads]


class Boom(Exception):
    """A body iterator failing (a client that went away)."""


# -- layout ------------------------------------------------------------------------------
async def test_keys_mirror_paths_under_the_prefix(
    service: s3_service.S3Service, bucket: str, sdk: Minio
) -> None:
    sdk.put_object(bucket, "other/keep.txt", io.BytesIO(b"not ours"), 8)
    backend = make_backend(service, bucket, prefix="callfs", part_size=PART)  # slash added
    assert backend.prefix == "callfs/"
    await write(backend, "/a/b.txt", b"b")
    await write(backend, "/dir with space/é ａ+&.txt", b"unicode")
    await write(backend, "/d/e/f", b"f")
    await write(backend, "/d/g", data_of(6 * MiB))  # multipart
    await backend.make_directory(p("/empty/dir"))
    await backend.move(p("/d"), p("/z/d"))
    aborted = await backend.stage(p("/aborted"), stream([data_of(6 * MiB)]))
    await aborted.abort()
    with pytest.raises(Boom):
        await backend.stage(p("/failed"), _failing([data_of(11 * MiB)], Boom()))
    await backend.remove_directory(p("/empty/dir"))
    await backend.check_writable()

    assert keys(sdk, bucket) == {
        "other/keep.txt",
        "callfs/a/b.txt",
        "callfs/dir with space/é ａ+&.txt",
        "callfs/z/d/e/f",
        "callfs/z/d/g",
    }
    assert incomplete_uploads(sdk, bucket) == []
    response = sdk.get_object(bucket, "callfs/dir with space/é ａ+&.txt")
    try:
        assert response.read() == b"unicode"
    finally:
        response.close()
        response.release_conn()
    await backend.close()


async def test_root_bucket_layout_without_prefix(
    service: s3_service.S3Service, bucket: str, sdk: Minio
) -> None:
    backend = make_backend(service, bucket, prefix="")
    await write(backend, "/top.txt", b"top")
    await write(backend, "/x/y", b"y")
    assert keys(sdk, bucket) == {"top.txt", "x/y"}
    await backend.close()


# -- multipart ---------------------------------------------------------------------------
async def test_large_upload_is_multipart_and_invisible_until_commit(
    service: s3_service.S3Service, bucket: str, sdk: Minio
) -> None:
    backend, pool = recording_backend(service, bucket, prefix="callfs/", part_size=PART)
    data = data_of(20 * MiB)
    staged = await backend.stage(p("/big.bin"), stream(split(data, [MiB + 17])))
    assert staged.info.size == len(data)
    assert staged.info.sha256 == hashlib.sha256(data).hexdigest()
    parts = [sent for sent in pool.sent if "partNumber" in sent.query]
    assert [sent.query["partNumber"] for sent in parts] == [["1"], ["2"], ["3"], ["4"]]
    assert incomplete_uploads(sdk, bucket) == ["callfs/big.bin"]
    assert await backend.stat(p("/big.bin")) is None  # not visible before commit
    await staged.commit()
    assert incomplete_uploads(sdk, bucket) == []
    etag = sdk.stat_object(bucket, "callfs/big.bin").etag or ""
    assert etag.endswith("-4")  # S3's ETag of a 4-part upload
    assert await read(backend, "/big.bin") == data
    await backend.close()


async def test_body_failing_after_parts_aborts_the_upload(
    service: s3_service.S3Service, bucket: str, sdk: Minio
) -> None:
    backend, pool = recording_backend(service, bucket, part_size=PART)
    await write(backend, "/f", b"previous")
    error = Boom("client went away")
    with pytest.raises(Boom) as raised:
        await backend.stage(p("/f"), _failing(split(data_of(12 * MiB), [MiB]), error))
    assert raised.value is error
    assert sum("partNumber" in sent.query for sent in pool.sent) == 2  # the path under test
    assert [sent.method for sent in pool.sent if "uploadId" in sent.query][-1] == "DELETE"
    assert incomplete_uploads(sdk, bucket) == []
    assert await read(backend, "/f") == b"previous"
    assert keys(sdk, bucket) == {"f"}
    await backend.close()


async def test_cancelled_stage_after_parts_aborts_the_upload(
    service: s3_service.S3Service, bucket: str, sdk: Minio
) -> None:
    backend, pool = recording_backend(service, bucket, part_size=PART)
    await write(backend, "/f", b"previous")
    reached = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        for piece in split(data_of(12 * MiB), [MiB]):
            yield piece
        reached.set()
        await anyio.sleep_forever()
        yield b"never"  # pragma: no cover

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:

            async def cancel_when_parts_are_sent() -> None:
                await reached.wait()
                scope.cancel()

            group.start_soon(cancel_when_parts_are_sent)
            await backend.stage(p("/f"), body())
    assert scope.cancelled_caught
    assert sum("partNumber" in sent.query for sent in pool.sent) == 2
    # The abort is shielded: sent although the stage was cancelled.
    assert [sent.method for sent in pool.sent if "uploadId" in sent.query][-1] == "DELETE"
    assert incomplete_uploads(sdk, bucket) == []
    assert await read(backend, "/f") == b"previous"
    await backend.close()


async def test_staged_multipart_abort_and_second_commit(
    service: s3_service.S3Service, bucket: str, sdk: Minio
) -> None:
    backend = make_backend(service, bucket, part_size=PART)
    staged = await backend.stage(p("/f"), stream([data_of(6 * MiB)]))
    assert incomplete_uploads(sdk, bucket) == ["f"]
    await staged.abort()
    await staged.abort()
    assert incomplete_uploads(sdk, bucket) == []
    assert keys(sdk, bucket) == set()
    committed = await backend.stage(p("/g"), stream([b"small"]))
    await committed.commit()
    with pytest.raises(RuntimeError):
        await committed.commit()
    await backend.close()


# -- reading -----------------------------------------------------------------------------
async def test_ranged_reads_are_exact_across_parts(
    service: s3_service.S3Service, bucket: str
) -> None:
    backend = make_backend(service, bucket, part_size=PART)
    data = data_of(11 * MiB + 3)
    await write(backend, "/r", data)
    last = len(data) - 1
    for start, end in [
        (0, 0),
        (PART - 1, PART),  # across the first part boundary
        (PART - 10, 2 * PART + 10),  # spans a whole part
        (3 * MiB, 3 * MiB + MiB - 1),
        (last, last),
        (last - 5, last + 1000),  # an end past the last byte is clipped
    ]:
        assert await read(backend, "/r", ByteRange(start, end)) == data[start : end + 1]
    # A range starting past the end yields nothing (the engine resolves ranges
    # first; the backend stays well-defined like the local one).
    assert await read(backend, "/r", ByteRange(len(data), len(data) + 5)) == b""
    await backend.close()


async def test_readers_release_connections(service: s3_service.S3Service, bucket: str) -> None:
    backend, pool = recording_backend(service, bucket)
    await write(backend, "/f", data_of(3 * MiB))
    for _ in range(10):  # whole reads: the connection goes back to the pool and is reused
        assert len(await read(backend, "/f")) == 3 * MiB
    connections = pool.connection_from_url(service.endpoint)
    assert connections.num_connections <= 2
    for _ in range(5):  # partial reads: the connection is closed, not reused mid-body
        reader = await backend.open(p("/f"))
        async for _chunk in reader:
            break
        await reader.aclose()
        await reader.aclose()
    assert await backend.stat(p("/f")) == 3 * MiB  # the pool still works

    received: list[int] = []
    first = anyio.Event()
    reader = await backend.open(p("/f"))

    async def consume() -> None:
        async for chunk in reader:
            received.append(len(chunk))
            first.set()
            await anyio.sleep(0.2)

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await first.wait()
        await reader.aclose()  # from another task, while the consumer is mid-stream
    assert received == [MiB]  # stopped after the first of three chunks
    await backend.close()


# -- encryption and ACL ------------------------------------------------------------------
async def test_every_object_written_carries_encryption_and_acl(
    service: s3_service.S3Service, bucket: str, sdk: Minio
) -> None:
    backend, pool = recording_backend(service, bucket, sse="AES256", acl="private", part_size=PART)
    await write(backend, "/small", b"single put")
    await write(backend, "/large", data_of(6 * MiB))
    await backend.move(p("/small"), p("/moved"))
    writes = pool.object_writes()
    kinds = {("copy" if "x-amz-copy-source" in sent.headers else sent.method) for sent in writes}
    assert kinds == {"PUT", "POST", "copy"}
    for sent in writes:
        assert sent.headers.get("x-amz-server-side-encryption") == "AES256", sent
        assert sent.headers.get("x-amz-acl") == "private", sent
    # SeaweedFS stores SSE-S3 and reports it (its GET ?acl ignores canned ACLs, so
    # the ACL is checked on the wire above only).
    for key in ("moved", "large"):
        metadata = sdk.stat_object(bucket, key).metadata or {}
        assert metadata.get("X-Amz-Server-Side-Encryption") == "AES256", key
    await backend.close()


async def test_no_encryption_and_no_acl_when_empty(
    service: s3_service.S3Service, bucket: str, sdk: Minio
) -> None:
    backend, pool = recording_backend(service, bucket, sse="", acl="", part_size=PART)
    await write(backend, "/small", b"plain")
    await write(backend, "/large", data_of(6 * MiB))
    await backend.move(p("/small"), p("/moved"))
    assert len(pool.object_writes()) == 3
    for sent in pool.object_writes():
        assert "x-amz-server-side-encryption" not in sent.headers
        assert "x-amz-acl" not in sent.headers
    metadata = sdk.stat_object(bucket, "moved").metadata or {}
    assert "X-Amz-Server-Side-Encryption" not in metadata
    assert metadata.get("Content-Length") == "5"  # the stat did answer
    await backend.close()


async def test_kms_headers_are_sent(service: s3_service.S3Service, bucket: str) -> None:
    backend, pool = recording_backend(
        service, bucket, sse="aws:kms", kms_key_id="alias/callfs", acl="bucket-owner-full-control"
    )
    # SeaweedFS without a KMS answers 500 (BackendUnavailable); an S3 with one stores it.
    with contextlib.suppress(BackendUnavailable):
        await write(backend, "/k", b"kms")
    (sent,) = pool.object_writes()
    assert sent.headers["x-amz-server-side-encryption"] == "aws:kms"
    assert sent.headers["x-amz-server-side-encryption-aws-kms-key-id"] == "alias/callfs"
    assert sent.headers["x-amz-acl"] == "bucket-owner-full-control"
    await backend.close()


# -- failures ----------------------------------------------------------------------------
async def test_wrong_secret_key_is_backend_unavailable(
    service: s3_service.S3Service, bucket: str
) -> None:
    wrong = "wrong-secret-" + "x" * 20
    backend = make_backend(service, bucket, secret_key=wrong)
    for action in (
        backend.health(),
        backend.check_writable(),
        backend.open(p("/f")),
        _stage_and_commit(backend, "/f", b"data"),
    ):
        with pytest.raises(BackendUnavailable) as raised:
            await action
        message = str(raised.value)
        assert f'"{bucket}"' in message
        assert "AccessDenied" in message or "SignatureDoesNotMatch" in message, message
        assert wrong not in message and service.secret_key not in message
    await backend.close()


async def test_unknown_access_key_is_backend_unavailable(
    service: s3_service.S3Service, bucket: str
) -> None:
    backend = make_backend(service, bucket, access_key="AKUNKNOWN", secret_key="whatever-secret")
    with pytest.raises(BackendUnavailable) as raised:
        await _stage_and_commit(backend, "/f", b"data")
    message = str(raised.value)
    assert f'"{bucket}"' in message and "check the access key" in message, message
    assert "whatever-secret" not in message
    await backend.close()


async def test_missing_bucket_is_backend_unavailable(service: s3_service.S3Service) -> None:
    missing = "callfs-test-missing-" + str(time.time_ns())
    backend = make_backend(service, missing, part_size=PART)
    with pytest.raises(BackendUnavailable, match="does not exist"):
        await backend.health()
    for action in (
        backend.check_writable(),
        backend.open(p("/f")),
        _stage_and_commit(backend, "/f", b"small"),
        backend.stage(p("/g"), stream([data_of(6 * MiB)])),  # multipart create
    ):
        with pytest.raises(BackendUnavailable) as raised:
            await action
        assert "NoSuchBucket" in str(raised.value) and missing in str(raised.value)
    # The stat of an object answers a HEAD without a body: a missing bucket reads
    # as a missing object there (documented); health and start-up catch it.
    await backend.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections are accepted (by the kernel backlog) and never answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def _unreachable(endpoint: str, **settings: Any) -> MinioBlobBackend:
    return MinioBlobBackend.from_settings(
        bucket="callfs-unreachable",
        endpoint=endpoint,
        access_key="AKTEST",
        secret_key="secret-never-shown",
        **settings,
    )


async def test_refused_connection_fails_at_once() -> None:
    from procutil import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    backend = _unreachable(endpoint, timeout=5.0)
    for action in (backend.health(), backend.stat(p("/f")), backend.open(p("/f"))):
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as raised:
            await action
        assert time.monotonic() - started < 1.0
        assert str(raised.value).startswith(f"S3 at {endpoint} did not answer: ")
        assert "refused" in str(raised.value)
        assert "secret-never-shown" not in str(raised.value)
    await backend.close()


async def test_silent_server_fails_within_the_timeout(silent_port: int) -> None:
    endpoint = f"http://127.0.0.1:{silent_port}"
    backend = _unreachable(endpoint, timeout=1.0)
    for action in (
        backend.health(),
        backend.open(p("/f")),
        _stage_and_commit(backend, "/f", b"data"),
        backend.check_writable(),
    ):
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as raised:
            await action
        elapsed = time.monotonic() - started
        # One read timeout, not several (no retries), plus scheduling slack.
        assert 0.9 <= elapsed < 1.8, elapsed
        message = str(raised.value)
        assert "did not answer: no response in time" in message, message
        assert endpoint in message and "callfs-unreachable" in message
    await backend.close()


async def test_cancelled_reads_do_not_wait_for_a_stuck_server(silent_port: int) -> None:
    backend = _unreachable(f"http://127.0.0.1:{silent_port}", timeout=5.0)
    for action in (backend.health, lambda: backend.open(p("/f")), lambda: backend.stat(p("/f"))):
        started = time.monotonic()
        with anyio.move_on_after(0.2) as scope:
            await action()
        assert scope.cancelled_caught
        assert time.monotonic() - started < 1.0  # the worker thread was abandoned
    await backend.close()


async def test_check_writable_leaves_no_probe(
    service: s3_service.S3Service, bucket: str, sdk: Minio
) -> None:
    backend, pool = recording_backend(service, bucket, prefix="callfs/")
    await backend.check_writable()
    (probe,) = pool.object_writes()
    assert probe.key.startswith("callfs/" + PROBE_PREFIX)
    assert probe.headers["x-amz-server-side-encryption"] == "AES256"
    assert any(sent.method == "DELETE" and sent.key == probe.key for sent in pool.sent)
    assert keys(sdk, bucket) == set()
    await backend.close()


# -- memory ------------------------------------------------------------------------------
async def test_large_upload_streams_in_bounded_memory(
    service: s3_service.S3Service, bucket: str
) -> None:
    total = 200 * MiB
    piece = data_of(MiB)  # one chunk object reused: the body itself allocates nothing
    backend = make_backend(service, bucket)  # the default 8 MiB parts

    async def body() -> AsyncIterator[bytes]:
        for _ in range(total // MiB):
            await anyio.lowlevel.checkpoint()
            yield piece

    expected = hashlib.sha256()
    for _ in range(total // MiB):
        expected.update(piece)
    tracemalloc.start()
    try:
        staged = await backend.stage(p("/huge"), body())
        await staged.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # About 11 MiB: one 8 MiB part (and the bytearray's slack) plus the chunk
    # being added. Bounded by the part size, not by the 200 MiB streamed; 20 MiB
    # would be exceeded if a second part were kept (e.g. pinned by a worker thread).
    assert peak < 20 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert staged.info.size == total
    assert staged.info.sha256 == expected.hexdigest()
    assert await backend.stat(p("/huge")) == total
    await backend.close()


# -- settings ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("endpoint", "shown"),
    [
        ("", "https://s3.amazonaws.com"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("HTTPS://minio.example:9000/", "https://minio.example:9000"),
        ("minio.example:9000", "https://minio.example:9000"),
    ],
)
async def test_endpoints(endpoint: str, shown: str) -> None:
    backend = MinioBlobBackend.from_settings(bucket="some-bucket", endpoint=endpoint)
    assert backend.endpoint == shown
    await backend.close()


@pytest.mark.parametrize(
    "settings",
    [
        {"endpoint": "http://host:9000/path"},
        {"sse": "DES"},
        {"prefix": "a//b"},
        {"prefix": "a/../b"},
        {"bucket": "x"},
        {"part_size": MiB},
        {"access_key": "AK"},
        {"timeout": 0},
    ],
)
async def test_invalid_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MinioBlobBackend.from_settings(**{"bucket": "some-bucket", **settings})


async def test_prefixes() -> None:
    for given, normalised in [("", ""), ("/", ""), ("callfs", "callfs/"), ("/a/b/", "a/b/")]:
        backend = MinioBlobBackend.from_settings(bucket="some-bucket", prefix=given)
        assert backend.prefix == normalised


async def test_move_refuses_root_and_into_itself(
    service: s3_service.S3Service, bucket: str
) -> None:
    from callfs_core.errors import InvalidRequest

    backend = make_backend(service, bucket)
    await write(backend, "/d/x", b"x")
    with pytest.raises(InvalidRequest):
        await backend.move(p("/"), p("/elsewhere"))
    with pytest.raises(InvalidRequest):
        await backend.move(p("/d"), p("/d/inside"))
    await backend.move(p("/d"), p("/d"))  # onto itself: nothing to do
    assert await read(backend, "/d/x") == b"x"
    with pytest.raises(NotFound):
        await backend.move(p("/missing"), p("/missing"))
    await backend.close()


# -- bodies ------------------------------------------------------------------------------
async def _failing(pieces: list[bytes], error: BaseException) -> AsyncIterator[bytes]:
    for piece in pieces:
        await anyio.lowlevel.checkpoint()
        yield piece
    raise error


async def _stage_and_commit(backend: MinioBlobBackend, path: str, data: bytes) -> None:
    staged = await backend.stage(p(path), stream([data]))
    await staged.commit()
