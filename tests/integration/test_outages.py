"""What clients see when the lock service or the database goes away, and comes back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pg_service
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


@pytest.fixture
def private_postgres() -> Iterator[pg_service.ThrowawayPostgres]:
    server = pg_service.ThrowawayPostgres()  # our own: this test stops it
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def test_postgres_restart_gives_503_then_recovers(
    make_server: Any, private_postgres: pg_service.ThrowawayPostgres
) -> None:
    srv = make_server(
        {
            "server": {"metadata_op_timeout": "2s"},
            "metadata_store": {"type": "postgres", "dsn": private_postgres.dsn},
            "dlm": {"type": "local"},
        }
    )
    with srv.client("alice") as alice:
        assert alice.put("/v1/files/pg.txt", content=b"stored").status_code == 201
        private_postgres.stop()
        for method, path in [("GET", "/v1/files/pg.txt"), ("PUT", "/v1/files/pg.txt")]:
            started = time.monotonic()
            response = alice.request(method, path, content=b"x" if method == "PUT" else None)
            assert time.monotonic() - started < 10  # bounded by the metadata timeout
            assert_error(response, 503, "BACKEND_UNAVAILABLE")
            assert str(private_postgres.port) not in response.text  # no DSN, host or port
        assert alice.get("/ready").json()["checks"]["metadata_store"] in ("unavailable", "timeout")
        private_postgres.start()  # same port, same data: a server restart
        deadline = time.monotonic() + 20
        while True:  # no CallFS restart: the pool reconnects by itself
            response = alice.get("/v1/files/pg.txt")
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (response.status_code, response.content) == (200, b"stored")
        assert alice.put("/v1/files/pg.txt", content=b"again").status_code == 200
        assert alice.get("/ready").status_code == 200
