"""Fixtures that run the real ``callfs server`` process (Hypercorn, TLS); tests use httpx."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openapi_check
import pytest
from procutil import dies_with_parent, free_port
from serverproc import ServerProcess
from storage import InlineContents, LocalStorage, Storage, storage_for

from callfs_cli.quickstart import _new_certificate

# Imported by the test modules (``from conftest import ...``).
__all__ = [
    "DEFAULT_BACKEND",
    "INTERNAL_SECRET",
    "KEYS",
    "LINK_SECRET",
    "OWNING_INSTANCE",
    "POSITIONAL_KEY",
    "STACK",
    "STACKS",
    "Server",
    "base_config",
    "dies_with_parent",
    "free_port",
    "merge",
    "s3_backend_config",
    "write_certificate",
]

KEYS = {
    "alice": "alice-key-0123456789abcdef",
    "bob": "bob-key-0123456789abcdef00",
    "carol": "carol-key-0123456789abcdef",
    "boss": "boss-key-0123456789abcdef0",
}
POSITIONAL_KEY = "positional-key-0123456789"
INTERNAL_SECRET = "internal-secret-for-tests"
LINK_SECRET = "link-secret-for-tests"


def write_certificate(folder: Path) -> tuple[Path, Path]:
    cert_pem, key_pem = _new_certificate()
    cert, key = folder / "test.crt", folder / "test.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    return cert, key


# Which stores the servers under test use: "embedded" (SQLite, local locks),
# "postgres-redis" (a fresh PostgreSQL database per server and Redis locks, from
# CALLFS_TEST_POSTGRES_DSN / CALLFS_TEST_REDIS_URL or throwaway servers) or "s3"
# (embedded, but new files go to a fresh bucket per server on the S3 server of
# CALLFS_TEST_S3_ENDPOINT or a throwaway SeaweedFS; localfs stays configured).
STACK = os.environ.get("CALLFS_TEST_STACK", "embedded")
STACKS = ("embedded", "postgres-redis", "s3")
# X-CallFS-Instance-ID of new entries (api.md §1.10): local files belong to the
# instance that holds them, S3 entries to none.
OWNING_INSTANCE = None if STACK == "s3" else "callfs-instance-1"
# server.workers of the servers under test (CALLFS_TEST_WORKERS, default 1): the
# suite also runs with 2, the default on these 2-core machines (issue: performance).
WORKERS = int(os.environ.get("CALLFS_TEST_WORKERS", "1"))
DEFAULT_BACKEND = "s3" if STACK == "s3" else "localfs"


def stack_config() -> dict[str, Any]:
    if STACK == "embedded":
        return {}
    if STACK == "postgres-redis":
        import pg_service
        import redis_service

        redis = urlsplit(redis_service.redis_url())
        return {
            "metadata_store": {"type": "postgres", "dsn": pg_service.new_database()},
            "dlm": {
                "type": "redis",
                "redis_addr": f"{redis.hostname}:{redis.port}",
                "redis_password": redis.password or "",
            },
        }
    if STACK == "s3":
        return {"backend": s3_backend_config()}
    raise ValueError(f"CALLFS_TEST_STACK={STACK!r}: use one of {', '.join(STACKS)}")


def s3_backend_config(prefix: str = "callfs/") -> dict[str, Any]:
    """``backend`` settings for S3 as the default backend, in a fresh bucket."""
    import s3_service

    service = s3_service.shared_service()
    return {
        "default_backend": "s3",
        "s3_bucket_name": service.new_bucket(),
        "s3_prefix": prefix,
        "s3_endpoint": service.endpoint,
        "s3_region": service.region,
        "s3_access_key": service.access_key,
        "s3_secret_key": service.secret_key,
    }


def base_config(folder: Path) -> dict[str, Any]:
    cert, key = write_certificate(folder)
    port = free_port()
    return merge(_base_config(folder, cert, key, port), stack_config())


def _base_config(folder: Path, cert: Path, key: Path, port: int) -> dict[str, Any]:
    return {
        "server": {
            "listen_addr": f"127.0.0.1:{port}",
            "external_url": f"https://127.0.0.1:{port}",
            "cert_file": str(cert),
            "key_file": str(key),
            "data_dir": str(folder / "data"),
            "workers": WORKERS,
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


class Server(ServerProcess):
    """A running ``callfs server`` process (start and stop: :mod:`serverproc`)."""

    @property
    def data_dir(self) -> Path:
        return Path(self.config["server"]["data_dir"])

    @property
    def files_root(self) -> Path:
        return Path(
            self.config.get("backend", {}).get("localfs_root_path") or self.data_dir / "files"
        )

    @property
    def storage(self) -> Storage:
        """What the default backend really holds (files on disk or objects in a bucket)."""
        return storage_for(self.config, self.files_root, self.data_dir)

    @property
    def local_storage(self) -> LocalStorage:
        """What ``localfs`` holds: files on disk, small ones with their metadata entry."""
        return LocalStorage(
            self.files_root, InlineContents(self.config.get("metadata_store", {}), self.data_dir)
        )

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
    numbers = iter(range(1000))  # counts failed starts too

    def factory(
        extra: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Server:
        folder = tmp_path / f"server{next(numbers)}"
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


def _client_fixture(user: str | None, name: str | None = None) -> Any:
    """A fixture (named ``user`` unless ``name`` is given): the shared server's client for
    ``user`` (None: no API key)."""

    def fixture(server: Server) -> Iterator[httpx.Client]:
        with server.client(user) as c:
            yield c

    return pytest.fixture(name=name or user)(fixture)


alice = _client_fixture("alice")
bob = _client_fixture("bob")
carol = _client_fixture("carol")
boss = _client_fixture("boss")
anon = _client_fixture(None, name="anon")
