"""Fixtures that run the real ``callfs server`` process (Hypercorn, TLS); tests use httpx."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openapi_check
import pytest

from callfs_cli.quickstart import _new_certificate

KEYS = {
    "alice": "alice-key-0123456789abcdef",
    "bob": "bob-key-0123456789abcdef00",
    "carol": "carol-key-0123456789abcdef",
    "boss": "boss-key-0123456789abcdef0",
}
POSITIONAL_KEY = "positional-key-0123456789"
INTERNAL_SECRET = "internal-secret-for-tests"
LINK_SECRET = "link-secret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a killed test run leaves no server behind.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)


def write_certificate(folder: Path) -> tuple[Path, Path]:
    cert_pem, key_pem = _new_certificate()
    cert, key = folder / "test.crt", folder / "test.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    return cert, key


def base_config(folder: Path) -> dict[str, Any]:
    cert, key = write_certificate(folder)
    port = free_port()
    return {
        "server": {
            "listen_addr": f"127.0.0.1:{port}",
            "external_url": f"https://127.0.0.1:{port}",
            "cert_file": str(cert),
            "key_file": str(key),
            "data_dir": str(folder / "data"),
            "workers": 1,
        },
        "auth": {
            "api_keys": [POSITIONAL_KEY],
            "api_key_users": dict(KEYS),
            "internal_proxy_secret": INTERNAL_SECRET,
            "single_use_link_secret": LINK_SECRET,
            "groups": {"team": ["alice", "carol"]},
            "admin_users": ["boss"],
        },
        "metrics": {"listen_addr": f"127.0.0.1:{free_port()}"},
        "rate_limit": {"generate_rps": 0, "download_rps": 0},
        "log": {"level": "info", "format": "console"},
    }


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


@dataclass
class Server:
    """A running ``callfs server`` process."""

    folder: Path
    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        scheme = "http" if self.config["server"].get("protocol") == "http" else "https"
        return f"{scheme}://{self.config['server']['listen_addr']}"

    @property
    def data_dir(self) -> Path:
        return Path(self.config["server"]["data_dir"])

    @property
    def files_root(self) -> Path:
        return Path(
            self.config.get("backend", {}).get("localfs_root_path") or self.data_dir / "files"
        )

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    def start(self, timeout: float = 20.0) -> None:
        config_path = self.folder / "config.yaml"
        config_path.write_text(json.dumps(self.config))  # JSON is valid YAML
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLFS_")}
        env.update(self.env)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "callfs_cli", "server", "--config", str(config_path)],
            cwd=self.folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                httpx.get(f"{self.base_url}/health", verify=False, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def client(self, user: str | None = "alice", **kwargs: Any) -> httpx.Client:
        """An httpx client; ``user`` picks the API key (None: no key).

        Every response is checked against the server's OpenAPI document
        (``check_openapi=False`` turns that off).
        """
        headers = dict(kwargs.pop("headers", {}))
        if kwargs.pop("check_openapi", True):
            kwargs["event_hooks"] = openapi_check.hooks()
        if user is not None:
            key = POSITIONAL_KEY if user == "api-user-0" else KEYS[user]
            headers["Authorization"] = f"Bearer {key}"
        return httpx.Client(
            base_url=self.base_url, verify=False, headers=headers, timeout=60.0, **kwargs
        )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by the tests of a session; tests use unique paths."""
    folder = tmp_path_factory.mktemp("server")
    handle = Server(folder, base_config(folder))
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """Start a dedicated server with extra configuration: ``make_server({...}, env={...})``."""
    started: list[Server] = []

    def factory(
        extra: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Server:
        folder = tmp_path / f"server{len(started)}"
        folder.mkdir()
        handle = Server(folder, merge(base_config(folder), extra or {}), dict(env or {}))
        handle.start()
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        handle.stop()


_counter = iter(range(1_000_000))


@pytest.fixture
def unique() -> str:
    """A fresh top-level name for a test's files on the shared server."""
    return f"t{os.getpid()}-{next(_counter)}-{time.monotonic_ns() % 10**6}"


@pytest.fixture
def alice(server: Server) -> Iterator[httpx.Client]:
    with server.client("alice") as c:
        yield c


@pytest.fixture
def bob(server: Server) -> Iterator[httpx.Client]:
    with server.client("bob") as c:
        yield c


@pytest.fixture
def anon(server: Server) -> Iterator[httpx.Client]:
    with server.client(None) as c:
        yield c
