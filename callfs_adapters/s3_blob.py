"""File bytes in an S3 bucket, through the ``minio`` SDK: ``/a/b.txt`` is the object
``<prefix>a/b.txt``.

Layout. One object per file, keyed by its canonical path without the leading
slash, under ``backend.s3_prefix`` (``callfs/`` → ``callfs/a/b.txt``; a prefix
is given a trailing slash; empty means the bucket root). Directories exist only
in the metadata store: no ``a/`` marker objects are written (api.md §1.10 makes
them optional), so a bucket browser shows a folder only while a file lies below
it. Every object written — single PUT, multipart upload or server-side copy —
carries the configured server-side encryption (``AES256`` → SSE-S3,
``aws:kms`` → SSE-KMS with ``kms_key_id`` or the account's default key) and the
canned ACL (``x-amz-acl``), unless they are empty.

Atomicity. S3 makes an object visible only when its PUT or its
CompleteMultipartUpload succeeds, and a reader sees either the previous content
or the new one. ``stage`` buffers the body up to one part (``part_size``,
default 8 MiB): a body that ends within one part is kept in memory (so each
staged small write holds up to one part until it is committed) and PUT by
``commit``; a longer one becomes a multipart upload on the final key, its parts
uploaded while the body streams in (at most one part buffered plus the one
being sent), and ``commit`` completes it. ``abort``, a failing or cancelled
body, or a failed commit aborts the multipart upload, so no temporary objects
exist. Only a process that dies mid-upload leaves an incomplete multipart
upload behind (invisible to listings, but billed): give the bucket a lifecycle
rule "AbortIncompleteMultipartUpload after 1 day" as a safety net.

Threads. The SDK is synchronous: every call runs in an anyio worker thread
under this backend's own :class:`anyio.CapacityLimiter` (``max_threads``,
default 16), over a urllib3 pool with room for all of them, explicit connect
and read timeouts (``timeout``, default 10 s) and no retries except one for a
pooled keep-alive connection the server had closed, so an unreachable S3 fails
within the timeout instead of hanging. Reads (GET, HEAD, list, each chunk of a
download) are abandoned when the awaiting task is cancelled; writes and
deletes are not, so none of them can land after the caller gave up (and,
say, released its lock).

Errors. ``NoSuchKey`` is :class:`~callfs_core.errors.NotFound`; every other S3
error, HTTP failure or timeout is
:class:`~callfs_core.errors.BackendUnavailable` naming the bucket, the endpoint
and the S3 error code — never a key or secret. A HEAD answer has no body, so a
``stat`` in a missing bucket reads as "no object" (``None``); ``health`` and
:meth:`MinioBlobBackend.check_writable` report the missing bucket.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar, cast

import anyio
import anyio.abc
import anyio.to_thread
import certifi
import urllib3
from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.datatypes import Part
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import check_bucket_name
from minio.sse import Sse, SseKMS, SseS3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.response import BaseHTTPResponse

from callfs_core.errors import (
    BackendUnavailable,
    CallFSError,
    InvalidPath,
    InvalidRequest,
    IsADirectory,
    NotFound,
)
from callfs_core.model import BlobInfo, ByteRange
from callfs_core.paths import FsPath
from callfs_core.ports import BlobBackendPort, BlobReader, StagedBlob

__all__ = [
    "DEFAULT_MAX_THREADS",
    "DEFAULT_PART_SIZE",
    "DEFAULT_TIMEOUT",
    "PROBE_PREFIX",
    "MinioBlobBackend",
    "make_http_client",
]

log = logging.getLogger("callfs.s3")

MiB: Final = 1024 * 1024
DEFAULT_PART_SIZE: Final = 8 * MiB
MIN_PART_SIZE: Final = 5 * MiB  # S3: every part but the last is at least 5 MiB
MAX_PART_SIZE: Final = 5 * 1024 * MiB  # S3: largest part, and largest CopyObject source
DEFAULT_MAX_THREADS: Final = 16
DEFAULT_TIMEOUT: Final = 10.0  # seconds, connect and each read
READ_CHUNK_SIZE: Final = MiB
MAX_KEY_BYTES: Final = 1024  # S3 object key limit
INLINE_HASH_LIMIT: Final = 256 * 1024  # hash at most this much on the event loop
MOVE_CONCURRENCY: Final = 8  # objects copied at once when a directory moves
PROBE_PREFIX: Final = ".callfs-probe-"
"""Name prefix (under the key prefix) of the object ``check_writable`` writes and removes."""

_AWS_HOST: Final = "s3.amazonaws.com"
_CREDENTIAL_CODES: Final = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
)

T = TypeVar("T")


# -- HTTP client ---------------------------------------------------------------------
class _RetryDroppedConnection(urllib3.Retry):
    """Retry once, and only when a pooled keep-alive connection turned out to be closed
    by the server (a ``ProtocolError`` before any answer), for idempotent methods.

    urllib3 also counts a read timeout as a "read error"; retrying it would double the
    time an unresponsive S3 takes to fail, so timeouts are never retried.
    """

    def _is_read_error(self, err: Exception) -> bool:
        return isinstance(err, ProtocolError)


def make_http_client(
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_connections: int = 2 * DEFAULT_MAX_THREADS,
    pool_class: type[urllib3.PoolManager] = urllib3.PoolManager,
) -> urllib3.PoolManager:
    """The urllib3 pool for the SDK: explicit timeouts, (almost) no retries, TLS verified.

    Args:
        timeout: seconds to connect, and to wait for each read.
        max_connections: kept connections per host; at least the worker threads.
        pool_class: a ``PoolManager`` subclass (tests record requests with one).
    """
    return pool_class(
        num_pools=4,
        maxsize=max_connections,
        block=False,
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        retries=_RetryDroppedConnection(
            total=1, connect=0, read=1, redirect=0, status=0, other=0, raise_on_status=False
        ),
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


def _parse_endpoint(endpoint: str) -> tuple[str, bool]:
    """``backend.s3_endpoint`` → (``host[:port]``, use TLS). Empty means AWS."""
    text = endpoint.strip()
    if not text:
        return _AWS_HOST, True
    lowered = text.lower()
    secure = True
    if lowered.startswith("http://"):
        secure, text = False, text[len("http://") :]
    elif lowered.startswith("https://"):
        text = text[len("https://") :]
    text = text.rstrip("/")
    if not text or any(ch in text for ch in "/?#@ "):
        raise ValueError(
            "backend.s3_endpoint must be host[:port], optionally after http:// or https://"
        )
    return text, secure


class _SseKmsDefaultKey(Sse):
    """SSE-KMS with the account's default key (``aws:kms`` without a key id)."""

    def headers(self) -> dict[str, str]:
        return {"X-Amz-Server-Side-Encryption": "aws:kms"}


def _server_side_encryption(sse: str, kms_key_id: str) -> Sse | None:
    if sse == "":
        return None
    if sse == "AES256":
        return SseS3()
    if sse == "aws:kms":
        return SseKMS(kms_key_id, {}) if kms_key_id else _SseKmsDefaultKey()
    raise ValueError(
        f'backend.s3_server_side_encryption must be "AES256", "aws:kms" or empty, not "{sse}"'
    )


def _normalise_prefix(prefix: str) -> str:
    text = prefix.lstrip("/")
    if not text:
        return ""
    text = text if text.endswith("/") else text + "/"
    if any(segment in ("", ".", "..") for segment in text[:-1].split("/")):
        raise ValueError("backend.s3_prefix must not contain empty, '.' or '..' segments")
    return text


class _OneShot(Generic[T]):
    """``func(*args)`` callable once, dropping its references when called.

    An idle anyio worker thread keeps the last callable it ran (and its result)
    in local variables until it gets new work: a ``functools.partial`` there
    would pin the last part buffer sent — per thread, up to ``max_threads``
    parts — long after the upload.
    """

    __slots__ = ("_call",)

    def __init__(self, func: Callable[..., T], args: tuple[object, ...]) -> None:
        self._call: tuple[Callable[..., T], tuple[object, ...]] | None = (func, args)

    def __call__(self) -> T:
        call, self._call = self._call, None
        if call is None:
            raise RuntimeError("already called")
        func, args = call
        del call
        try:
            return func(*args)
        finally:
            del func, args


# -- error translation ---------------------------------------------------------------
def _network_reason(error: BaseException) -> str:
    """A short description of a transport failure, without URLs or keys."""
    if isinstance(error, MaxRetryError) and error.reason is not None:
        error = error.reason
    # NewConnectionError subclasses ConnectTimeoutError: a refusal is not a timeout.
    if isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError):
        return "connecting timed out"
    if isinstance(error, ReadTimeoutError | TimeoutError):
        return "no response in time"
    if isinstance(error, NameResolutionError):
        return "the host name does not resolve"
    if isinstance(error, SSLError):
        return "the TLS handshake failed"
    cause: BaseException | None = error
    while cause is not None:  # e.g. NewConnectionError caused by ConnectionRefusedError
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, ProtocolError):
        return "the connection was lost"
    return type(error).__name__


def _s3_hint(code: str) -> str:
    if code == "NoSuchBucket":
        return " (the bucket does not exist)"
    if code in _CREDENTIAL_CODES:
        return " (check the access key, the secret key and the bucket policy)"
    return ""


_SDK_ERRORS: Final = (MinioException, HTTPError, OSError)
"""What SDK calls raise: S3 answers, other HTTP answers, transport failures."""


def _cause(error: BaseException) -> str:
    """The short cause of an SDK failure: the S3 error code (with a hint), the HTTP
    status, or why the endpoint did not answer. Never a key, URL or secret."""
    if isinstance(error, S3Error):
        code = error.code or "UnknownError"
        return f"{code}{_s3_hint(code)}"
    if isinstance(error, ServerError):
        return f"HTTP status {error.status_code}"
    if isinstance(error, InvalidResponseError):
        return "an answer that is not S3 XML"
    if isinstance(error, HTTPError | OSError):
        return f"did not answer: {_network_reason(error)}"
    return type(error).__name__


# -- multipart uploads ---------------------------------------------------------------
@dataclass
class _Upload:
    key: str
    upload_id: str
    parts: list[Part] = field(default_factory=list)


class _Multipart:
    """The S3 multipart-upload calls, on one bucket (blocking; run in a worker thread).

    minio-py exposes them only as underscore methods of ``Minio``: its public
    ``put_object`` drives them itself from a blocking stream and completes the
    upload at once, while ``stage`` must feed parts from an async body and leave
    the upload open until ``commit``. Isolated here so that an SDK change is
    fixed in one place.
    """

    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def create(self, key: str, headers: dict[str, str]) -> _Upload:
        upload_id = self._client._create_multipart_upload(self._bucket, key, dict(headers))
        return _Upload(key, upload_id)

    def upload_part(self, upload: _Upload, data: bytes) -> None:
        number = len(upload.parts) + 1
        etag = self._client._upload_part(
            self._bucket, upload.key, data, None, upload.upload_id, number
        )
        upload.parts.append(Part(number, etag))

    def complete(self, upload: _Upload) -> None:
        self._client._complete_multipart_upload(
            self._bucket, upload.key, upload.upload_id, upload.parts
        )

    def abort(self, upload: _Upload) -> None:
        self._client._abort_multipart_upload(self._bucket, upload.key, upload.upload_id)


# -- reading -------------------------------------------------------------------------
def _release(response: BaseHTTPResponse, *, fully_read: bool) -> None:
    """Give the connection back: reusable after a complete body, else closed first."""
    if not fully_read:
        response.close()
    response.release_conn()


class _Handoff:
    """Passes a response out of a worker thread that may be abandoned: when the
    awaiting task was cancelled, whichever side comes second releases it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.response: BaseHTTPResponse | None = None
        self.abandoned = False

    def deliver(self, response: BaseHTTPResponse) -> None:
        with self.lock:
            if not self.abandoned:
                self.response = response
                return
        _release(response, fully_read=False)

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            response, self.response = self.response, None
        if response is not None:
            _release(response, fully_read=False)


class _ObjectReader:
    """Streams ``size`` bytes of a GET response, each chunk read in a worker thread.

    Single use. The response is released when the iteration ends or stops, or on
    :meth:`aclose` — deferred, when a read is running in a worker thread, until
    that read returns, so the connection is never closed under a reader.
    """

    def __init__(
        self,
        backend: MinioBlobBackend,
        path: FsPath,
        response: BaseHTTPResponse | None,
        size: int,
        chunk_size: int,
    ) -> None:
        self._backend = backend
        self._path = path
        self._response = response
        self._chunk_size = chunk_size
        self._lock = threading.Lock()
        self._reading = False
        self._close_requested = False
        self._received = 0
        self.size = size

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            while self._received < self.size:
                want = min(self._chunk_size, self.size - self._received)
                with self._backend._errors(self._path):
                    data = await self._backend._run(self._read_blocking, want, abandon=True)
                if not data:
                    if self._close_requested:
                        return
                    raise BackendUnavailable(
                        self._backend._did_not_answer("the object ended early")
                    )
                yield data
        finally:
            await self.aclose()

    def _read_blocking(self, want: int) -> bytes:
        with self._lock:
            if self._response is None or self._close_requested:
                return b""
            self._reading = True
            response = self._response
        data = b""
        try:
            # decode_content=False: the stored bytes, even if someone set Content-Encoding.
            data = response.read(want, decode_content=False)
        finally:
            with self._lock:
                self._reading = False
                self._received += len(data)
                if self._close_requested:
                    self._release_locked()
        return data

    def _release_locked(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            _release(response, fully_read=self._received >= self.size)

    async def aclose(self) -> None:
        with self._lock:
            self._close_requested = True
            if not self._reading:
                self._release_locked()


# -- writing -------------------------------------------------------------------------
class _StagedObject:
    """A body waiting to become the object at ``key``: in memory (one PUT on commit)
    or an open multipart upload (completed on commit)."""

    def __init__(
        self,
        backend: MinioBlobBackend,
        path: FsPath,
        key: str,
        info: BlobInfo,
        *,
        data: bytes | None = None,
        upload: _Upload | None = None,
    ) -> None:
        self._backend = backend
        self._path = path
        self._key = key
        self._data = data
        self._upload = upload
        self._done = False
        self.info = info

    async def commit(self) -> None:
        if self._done:
            raise RuntimeError("the staged blob was already committed or aborted")
        self._done = True
        backend, upload = self._backend, self._upload
        try:
            with backend._errors(self._path):
                if upload is not None:
                    await backend._run(backend._multipart.complete, upload)
                else:
                    await backend._run(backend._put_blocking, self._key, self._data or b"")
        except BaseException:
            if upload is not None:
                await backend._abort_upload(upload)
            raise
        finally:
            self._data = None

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._data = None
        if self._upload is not None:
            await self._backend._abort_upload(self._upload)


# -- the backend ---------------------------------------------------------------------
class MinioBlobBackend:
    """``BlobBackendPort`` on an S3 bucket (AWS, MinIO, SeaweedFS, …) via the minio SDK.

    Build it with :meth:`from_settings` from the ``backend.s3_*`` settings; the
    constructor takes a ready client (tests, custom set-ups).

    Args:
        client: the SDK client; its ``http_client`` should have room for
            ``max_threads`` connections and explicit timeouts (see
            :func:`make_http_client`).
        bucket: the bucket (must exist).
        prefix: key prefix inside the bucket (``callfs/``); empty = bucket root.
        endpoint: the endpoint as shown in error messages (``https://host``).
        sse: server-side encryption sent with every object written, or ``None``.
        acl: canned ACL sent with every object written (``private``), or empty.
        part_size: multipart part size, and the most a small body is buffered.
        max_threads: worker threads (and so concurrent S3 calls) of this backend.
        read_chunk_size: bytes per chunk a reader yields (at most).
        name: the backend name recorded in inodes.
        http_client: the client's pool, cleared by :meth:`close`.

    Raises:
        ValueError: an invalid bucket name, prefix or size.
    """

    def __init__(
        self,
        client: Minio,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str = f"https://{_AWS_HOST}",
        sse: Sse | None = None,
        acl: str = "",
        part_size: int = DEFAULT_PART_SIZE,
        max_threads: int = DEFAULT_MAX_THREADS,
        read_chunk_size: int = READ_CHUNK_SIZE,
        name: str = "s3",
        http_client: urllib3.PoolManager | None = None,
    ) -> None:
        check_bucket_name(bucket)
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE}")
        if max_threads < 1 or read_chunk_size < 1:
            raise ValueError("max_threads and read_chunk_size must be positive")
        self.name = name
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self.endpoint = endpoint
        self._client = client
        self._http_client = http_client
        self._multipart = _Multipart(client, bucket)
        self._sse = sse
        self._acl = acl
        self._part_size = part_size
        self._read_chunk_size = read_chunk_size
        self._limiter = anyio.CapacityLimiter(max_threads)

    @classmethod
    def from_settings(
        cls,
        *,
        bucket: str,
        prefix: str = "",
        endpoint: str = "",
        region: str = "us-east-1",
        access_key: str = "",
        secret_key: str = "",
        sse: str = "AES256",
        kms_key_id: str = "",
        acl: str = "private",
        timeout: float = DEFAULT_TIMEOUT,
        name: str = "s3",
        part_size: int = DEFAULT_PART_SIZE,
        max_threads: int = DEFAULT_MAX_THREADS,
        http_client: urllib3.PoolManager | None = None,
    ) -> MinioBlobBackend:
        """Build the backend from the ``backend.s3_*`` settings (api.md §6.2).

        ``endpoint``: empty → AWS (``s3.amazonaws.com``, TLS, virtual-hosted
        addressing); ``http://host:port`` → plain HTTP; ``https://host:port`` or
        ``host:port`` → TLS; a custom endpoint uses path-style addressing.
        Credentials are static when ``access_key`` is set; otherwise requests
        are anonymous (unsigned) — environment, profile or instance-role
        credentials are not looked up.

        Raises:
            ValueError: an invalid endpoint, encryption mode, bucket, prefix or size.
        """
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if bool(access_key) != bool(secret_key):
            raise ValueError("backend.s3_access_key and backend.s3_secret_key go together")
        host, secure = _parse_endpoint(endpoint)
        encryption = _server_side_encryption(sse, kms_key_id)
        # Threads abandoned by cancelled reads no longer count against the limiter
        # but may still hold a connection: room for twice as many.
        pool = http_client or make_http_client(timeout=timeout, max_connections=2 * max_threads)
        client = Minio(
            host,
            access_key=access_key or None,
            secret_key=secret_key or None,
            secure=secure,
            region=region or None,
            http_client=pool,
        )
        if endpoint.strip():
            # Path-style for MinIO & co. (the SDK method has no annotations).
            client.disable_virtual_style_endpoint()  # type: ignore[no-untyped-call]
        return cls(
            client,
            bucket,
            prefix=prefix,
            endpoint=f"{'https' if secure else 'http'}://{host}",
            sse=encryption,
            acl=acl,
            part_size=part_size,
            max_threads=max_threads,
            name=name,
            http_client=pool,
        )

    # -- plumbing ---------------------------------------------------------------
    def _key(self, path: FsPath) -> str:
        key = self.prefix + str(path)[1:]
        if len(key.encode()) > MAX_KEY_BYTES:
            raise InvalidPath(
                str(path), f"path is too long for S3 (keys are at most {MAX_KEY_BYTES} bytes)"
            )
        return key

    def _stored_key(self, path: FsPath) -> str | None:
        """The key of ``path`` when it can hold an object (not the root, not too long)."""
        if path.is_root:
            return None
        key = self.prefix + str(path)[1:]
        return key if len(key.encode()) <= MAX_KEY_BYTES else None

    def _did_not_answer(self, reason: str) -> str:
        return f'S3 at {self.endpoint} did not answer: {reason} (bucket "{self.bucket}")'

    @contextmanager
    def _errors(self, path: FsPath | None = None) -> Iterator[None]:
        """SDK and transport errors → core errors naming the bucket and endpoint."""
        try:
            yield
        except CallFSError:
            raise
        except _SDK_ERRORS as exc:
            if isinstance(exc, S3Error) and exc.code == "NoSuchKey" and path is not None:
                raise NotFound(path) from exc
            raise BackendUnavailable(self._message(exc)) from exc

    def _message(self, error: BaseException) -> str:
        """The message of a failed call: bucket, endpoint and S3 code or transport reason."""
        if isinstance(error, S3Error):
            return (
                f'S3 bucket "{self.bucket}" at {self.endpoint} refused the request: {_cause(error)}'
            )
        if isinstance(error, HTTPError | OSError):
            return self._did_not_answer(_network_reason(error))
        return f'S3 at {self.endpoint} failed: {_cause(error)} (bucket "{self.bucket}")'

    async def _run(self, func: Callable[..., T], *args: object, abandon: bool = False) -> T:
        """Run a blocking SDK call in one of this backend's worker threads.

        ``abandon``: on cancellation, return at once and leave the thread to
        finish (only for calls without lasting effects).
        """
        return await anyio.to_thread.run_sync(
            _OneShot(func, args), abandon_on_cancel=abandon, limiter=self._limiter
        )

    def _write_headers(self) -> dict[str, str]:
        headers = self._sse.headers() if self._sse is not None else {}
        if self._acl:
            headers["x-amz-acl"] = self._acl
        headers["Content-Type"] = "application/octet-stream"
        return headers

    def _acl_metadata(self) -> dict[str, str | list[str] | tuple[str]] | None:
        return {"x-amz-acl": self._acl} if self._acl else None

    def _put_blocking(self, key: str, data: bytes) -> None:
        # A single PUT: atomic; BytesIO over bytes shares the buffer (no copy).
        self._client.put_object(
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            sse=self._sse,
            metadata=self._acl_metadata(),
        )

    async def _abort_upload(self, upload: _Upload) -> None:
        """Abort a multipart upload, shielded from cancellation; failures are logged
        (the caller is already failing; a lifecycle rule is the safety net)."""
        with anyio.CancelScope(shield=True):
            try:
                with self._errors():
                    await self._run(self._multipart.abort, upload)
            except BackendUnavailable as exc:
                log.warning("could not abort an S3 multipart upload: %s", exc.message)

    # -- reading ----------------------------------------------------------------
    async def open(self, path: FsPath, byte_range: ByteRange | None = None) -> BlobReader:
        if path.is_root:
            raise IsADirectory(path)
        key = self._stored_key(path)
        if key is None:  # too long to be stored
            raise NotFound(path)
        offset, length = (byte_range.start, byte_range.length) if byte_range else (0, 0)
        handoff = _Handoff()
        try:
            with self._errors(path):
                found = await self._run(
                    self._get_blocking, key, offset, length, handoff, abandon=True
                )
        except BaseException:
            handoff.abandon()
            raise
        if not found:  # the range starts at or after the end
            return _ObjectReader(self, path, None, 0, self._read_chunk_size)
        response = handoff.response
        assert response is not None
        size = response.length_remaining
        if size is None:
            _release(response, fully_read=False)
            raise BackendUnavailable(self._did_not_answer("the answer has no Content-Length"))
        return _ObjectReader(self, path, response, size, self._read_chunk_size)

    def _get_blocking(self, key: str, offset: int, length: int, handoff: _Handoff) -> bool:
        try:
            response = self._client.get_object(self.bucket, key, offset=offset, length=length)
        except S3Error as exc:
            if exc.code == "InvalidRange":
                return False
            raise
        handoff.deliver(response)
        return True

    async def stat(self, path: FsPath) -> int | None:
        key = self._stored_key(path)
        if key is None:
            return None
        with self._errors(path):
            try:
                found = await self._run(self._client.stat_object, self.bucket, key, abandon=True)
            except S3Error as exc:
                if exc.code == "NoSuchKey":
                    return None
                raise
        return found.size or 0

    # -- writing ----------------------------------------------------------------
    async def stage(self, path: FsPath, chunks: AsyncIterable[bytes]) -> StagedBlob:
        if path.is_root:
            raise IsADirectory(path)
        key = self._key(path)
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload: _Upload | None = None
        try:
            # Exceptions raised by ``chunks`` itself propagate untranslated.
            async for chunk in chunks:
                size += len(chunk)
                buffer += chunk
                # Strictly more than a part: only then is this part surely not the last.
                while len(buffer) > self._part_size:
                    part, buffer = buffer, buffer[self._part_size :]
                    del part[self._part_size :]
                    if upload is None:
                        upload = await self._create_upload(path, key)
                    await self._send_part(path, upload, digest, part)
                    del part
            if upload is not None:
                await self._send_part(path, upload, digest, buffer)
                info = BlobInfo(size=size, sha256=digest.hexdigest())
                return _StagedObject(self, path, key, info, upload=upload)
        except BaseException:
            if upload is not None:
                await self._abort_upload(upload)
            raise
        data = bytes(buffer)
        del buffer
        if len(data) > INLINE_HASH_LIMIT:
            await self._run(digest.update, data)
        else:
            digest.update(data)
        info = BlobInfo(size=size, sha256=digest.hexdigest())
        return _StagedObject(self, path, key, info, data=data)

    async def _create_upload(self, path: FsPath, key: str) -> _Upload:
        with self._errors(path):
            return await self._run(self._multipart.create, key, self._write_headers())

    async def _send_part(
        self, path: FsPath, upload: _Upload, digest: hashlib._Hash, part: bytearray
    ) -> None:
        def send() -> None:
            digest.update(part)  # parts are sent in order, so the digest is of the body
            self._multipart.upload_part(upload, cast(bytes, part))

        with self._errors(path):
            await self._run(send)

    async def delete(self, path: FsPath) -> None:
        key = self._stored_key(path)
        if key is None:
            return
        with self._errors(path):
            await self._run(self._client.remove_object, self.bucket, key)

    async def move(self, source: FsPath, destination: FsPath) -> None:
        if source.is_root or destination.is_root:
            raise InvalidRequest("cannot rename or move the root directory")
        if destination != source and destination.is_within(source):
            raise InvalidRequest("cannot move a path into itself")
        source_key, destination_key = self._key(source), self._key(destination)
        size = await self.stat(source)
        if size is not None:
            if source != destination:
                with self._errors(source):
                    await self._run(self._move_blocking, source_key, destination_key, size)
            return
        below = source_key + "/"
        with self._errors(source):
            found = await self._run(self._list_blocking, below, abandon=True)
        if not found:
            raise NotFound(source)
        if source == destination:
            return
        moves = [
            (key, destination_key + "/" + key[len(below) :], object_size)
            for key, object_size in found
        ]
        await self._move_many(source, moves)

    def _list_blocking(self, prefix: str) -> list[tuple[str, int]]:
        return [
            (item.object_name or "", item.size or 0)
            for item in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            if item.object_name and not item.is_dir
        ]

    def _move_blocking(self, source_key: str, destination_key: str, size: int) -> None:
        """Server-side copy (with this backend's SSE and ACL), then remove the source."""
        if size > MAX_PART_SIZE:
            # CopyObject takes at most 5 GiB; compose_object copies in 5 GiB parts.
            self._client.compose_object(
                self.bucket,
                destination_key,
                [ComposeSource(self.bucket, source_key)],
                sse=self._sse,
                metadata=self._acl_metadata(),
            )
        else:
            self._client.copy_object(
                self.bucket,
                destination_key,
                CopySource(self.bucket, source_key),
                sse=self._sse,
                metadata=self._acl_metadata(),
            )
        self._client.remove_object(self.bucket, source_key)

    async def _move_many(self, source: FsPath, moves: list[tuple[str, str, int]]) -> None:
        """Move objects, ``MOVE_CONCURRENCY`` at a time; the first failure stops the rest."""
        pending = iter(moves)
        failures: list[BaseException] = []

        async def worker(group: anyio.abc.TaskGroup) -> None:
            for source_key, destination_key, size in pending:
                try:
                    with self._errors(source):
                        await self._run(self._move_blocking, source_key, destination_key, size)
                except CallFSError as exc:
                    failures.append(exc)
                    group.cancel_scope.cancel()
                    return

        async with anyio.create_task_group() as group:
            for _ in range(min(MOVE_CONCURRENCY, len(moves))):
                group.start_soon(worker, group)
        if failures:
            raise failures[0]

    async def make_directory(self, path: FsPath) -> None:
        """Directories live in the metadata store only: nothing is written."""

    async def remove_directory(self, path: FsPath) -> None:
        """Directories live in the metadata store only: nothing is removed."""

    # -- health -----------------------------------------------------------------
    async def health(self) -> None:
        with self._errors():
            exists = await self._run(self._client.bucket_exists, self.bucket, abandon=True)
        if not exists:
            raise BackendUnavailable(f'S3 bucket "{self.bucket}" at {self.endpoint} does not exist')

    async def check_writable(self) -> None:
        """Start-up check: write and remove a small probe object under the prefix.

        Raises:
            BackendUnavailable: the bucket is missing, unreachable or not
                writable with these credentials, encryption and ACL.
        """
        key = self.prefix + PROBE_PREFIX + secrets.token_hex(8)

        def probe() -> None:
            self._put_blocking(key, b"callfs write probe\n")
            self._client.remove_object(self.bucket, key)

        try:
            await self._run(probe)
        except _SDK_ERRORS as exc:
            raise BackendUnavailable(
                f'S3 bucket "{self.bucket}" at {self.endpoint} is not usable: {_cause(exc)}'
            ) from exc

    async def close(self) -> None:
        """Close the pooled connections (idle ones; a connection in use is closed when
        its request returns). Further calls open new ones."""
        if self._http_client is not None:
            self._http_client.clear()


_check: type[BlobBackendPort] = MinioBlobBackend
