"""What clients see when the lock service or the database goes away, and comes back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis_service
from helpers import assert_error


@pytest.fixture
def private_redis() -> Iterator[redis_service.RedisServer]:
    server = redis_service.start_server(password="outage-test-password")
    yield server
    server.close()


def test_redis_down_blocks_writes_not_reads(
    make_server: Any, private_redis: redis_service.RedisServer
) -> None:
    srv = make_server(
        {
            "metadata_store": {"type": "sqlite"},
            "dlm": {
                "type": "redis",
                "redis_addr": private_redis.addr,
                "redis_password": private_redis.password,
            },
        }
    )
    with srv.client("alice") as alice:
        assert alice.put("/v1/files/kept.txt", content=b"before").status_code == 201
        private_redis.stop()
        started = time.monotonic()
        refused = alice.put("/v1/files/kept.txt", content=b"during")
        assert time.monotonic() - started < 10  # never hangs past the timeouts
        assert_error(refused, 503, "BACKEND_UNAVAILABLE")
        assert refused.headers["retry-after"] == "5"
        assert "outage-test-password" not in refused.text
        read = alice.get("/v1/files/kept.txt")
        assert (read.status_code, read.content) == (200, b"before")
        ready = alice.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["lock_service"] in ("unavailable", "timeout")
        private_redis.start()
        assert alice.put("/v1/files/kept.txt", content=b"after").status_code == 200
        assert alice.get("/v1/files/kept.txt").content == b"after"
        assert alice.get("/ready").status_code == 200
