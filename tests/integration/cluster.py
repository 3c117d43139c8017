"""A cluster of real server processes for the integration tests (api.md §1.10)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pg_service
import pytest
import redis_service
from conftest import Server, base_config, merge

__all__ = ["READ_TIMEOUT", "start_cluster", "stop_cluster"]

READ_TIMEOUT = 5.0  # server.read_timeout: also the idle timeout of calls between instances


def start_cluster(
    tmp_path_factory: pytest.TempPathFactory,
    names: tuple[str, ...],
    env: dict[str, str] | None = None,
    backend: dict[str, Any] | None = None,
) -> dict[str, Server]:
    """Start one instance per name (``instance-<name>``) on one fresh PostgreSQL
    database and one Redis, each listing the others as peers.

    ``backend``: the ``backend`` settings (default: local disks only).
    """
    redis = urlsplit(redis_service.redis_url())
    shared = {
        "metadata_store": {"type": "postgres", "dsn": pg_service.new_database()},
        "dlm": {
            "type": "redis",
            "redis_addr": f"{redis.hostname}:{redis.port}",
            "redis_password": redis.password or "",
        },
        "backend": {
            "default_backend": "localfs",
            "s3_bucket_name": "",
            "internal_proxy_skip_tls_verify": True,  # self-signed test certificates
            **(backend or {}),
        },
        "server": {"read_timeout": f"{READ_TIMEOUT}s"},
    }
    configs = {}
    for name in names:
        folder = tmp_path_factory.mktemp(f"instance-{name}")
        configs[name] = (folder, merge(base_config(folder), shared))
    endpoints = {
        f"instance-{n}": f"https://{c['server']['listen_addr']}" for n, (_, c) in configs.items()
    }
    servers = {}
    for name, (folder, config) in configs.items():
        config["instance_discovery"] = {
            "instance_id": f"instance-{name}",
            "peer_endpoints": endpoints,
        }
        servers[name] = Server(folder, config, dict(env or {}))
    try:
        for server in servers.values():
            server.start()
    except BaseException:
        stop_cluster(servers)
        raise
    return servers


def stop_cluster(servers: dict[str, Server]) -> None:
    for server in servers.values():
        server.stop()
