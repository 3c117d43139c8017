"""The Redis lock manager passes the LockPort contract, across clients and processes,
renews its leases, survives dead holders and reports an unreachable Redis."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
import redis_service
from redis.asyncio import Redis

from callfs_adapters.redis_lock import RedisLockManager, _split_addr
from callfs_core.errors import BackendUnavailable, LockTimeout
from callfs_core.testing import LockContract

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def url() -> str:
    return redis_service.redis_url()


@pytest.fixture
def prefix(url: str) -> Iterator[str]:
    chosen = redis_service.unique_prefix("lock")
    yield chosen
    redis_service.delete_prefixed(url, chosen)


@pytest.fixture
async def client(url: str) -> AsyncIterator[Redis]:
    connection = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    yield connection
    await connection.aclose()


class TestRedisLocks(LockContract):
    @pytest.fixture
    async def locks(self, url: str, prefix: str) -> AsyncIterator[RedisLockManager]:
        manager = RedisLockManager(url, key_prefix=prefix)
        yield manager
        await manager.close()


async def test_key_layout_ttl_and_held_count(url: str, client: Redis) -> None:
    name = f"/layout-{secrets.token_hex(4)}"
    key = f"callfs:lock:{name}"
    manager = RedisLockManager(url)
    try:
        assert manager.held_count == 0
        async with manager.hold(name, f"{name}/b", timeout=1):
            assert manager.held_count == 2
            token = await client.get(key)
            assert token is not None and len(token) == 32
            assert await client.get(f"{key}/b") == token
            assert 29_000 < await client.pttl(key) <= 30_000
        assert manager.held_count == 0
        assert await client.exists(key, f"{key}/b") == 0
    finally:
        await manager.close()


async def test_renewal_keeps_a_lock_past_its_ttl(url: str, prefix: str, client: Redis) -> None:
    renewals: list[str] = []
    holder = RedisLockManager(
        url,
        key_prefix=prefix,
        ttl=0.5,
        renew_every=0.1,
        on_renew=lambda status, _: renewals.append(status),
    )
    other = RedisLockManager(url, key_prefix=prefix)
    try:
        async with holder.hold("/long", timeout=1):
            started = time.monotonic()
            with pytest.raises(LockTimeout):
                async with other.hold("/long", timeout=1.5):
                    pytest.fail("obtained a lock whose holder keeps renewing it")
            assert time.monotonic() - started >= 1.5
            assert 0 < await client.pttl(prefix + "/long") <= 500
        assert len(renewals) >= 10 and set(renewals) == {"success"}
        async with other.hold("/long", timeout=0):
            pass
    finally:
        await holder.close()
        await other.close()


async def test_lock_of_a_dead_holder_expires(url: str, prefix: str, client: Redis) -> None:
    await client.set(prefix + "/orphan", "token-of-a-dead-process", px=400)
    manager = RedisLockManager(url, key_prefix=prefix)
    try:
        with pytest.raises(LockTimeout):
            async with manager.hold("/orphan", timeout=0.05):
                pass
        started = time.monotonic()
        async with manager.hold("/orphan", timeout=5):
            waited = time.monotonic() - started
        assert 0.2 < waited < 3.0  # the 0.4 s lease ran out; generous for a busy machine
    finally:
        await manager.close()


async def test_only_the_holder_releases(
    url: str, prefix: str, client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    holder = RedisLockManager(url, key_prefix=prefix, ttl=0.5, renew_every=0.1)
    other = RedisLockManager(url, key_prefix=prefix)
    key = prefix + "/mine"
    try:
        async with holder.hold("/mine", timeout=1):
            token = await client.get(key)
            await other._release([key], "not-the-token")
            assert await client.get(key) == token
            # The lease is lost (as after a long pause) and a successor takes the lock:
            await client.delete(key)
            async with other.hold("/mine", timeout=1):
                successor = await client.get(key)
                assert successor not in (None, token)
                with caplog.at_level(logging.ERROR, "callfs.locks"):
                    await anyio.sleep(0.3)  # the holder's renewal finds the lock lost
        assert any("was lost" in record.getMessage() for record in caplog.records)
        assert await client.exists(key) == 0
    finally:
        await holder.close()
        await other.close()


async def test_previous_holder_does_not_release_a_successor(
    url: str, prefix: str, client: Redis
) -> None:
    first = RedisLockManager(url, key_prefix=prefix)
    second = RedisLockManager(url, key_prefix=prefix)
    key = prefix + "/handover"
    taken, leave = anyio.Event(), anyio.Event()

    async def first_holder() -> None:
        async with first.hold("/handover", timeout=1):
            taken.set()
            await leave.wait()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(first_holder)
            await taken.wait()
            await client.delete(key)  # the first holder's lease ended (a long pause)
            async with second.hold("/handover", timeout=1):
                successor = await client.get(key)
                leave.set()
                await anyio.sleep(0.05)  # the first holder exits and releases
                assert await client.get(key) == successor
        assert await client.exists(key) == 0
    finally:
        await first.close()
        await second.close()


async def test_two_instances_exclude_each_other(url: str, prefix: str) -> None:
    managers = [RedisLockManager(url, key_prefix=prefix) for _ in range(2)]
    inside = most = entered = 0

    async def worker(manager: RedisLockManager) -> None:
        nonlocal inside, most, entered
        async with manager.hold("/shared", "/other", timeout=10):
            inside += 1
            entered += 1
            most = max(most, inside)
            await anyio.sleep(0.002)
            inside -= 1

    try:
        async with anyio.create_task_group() as group:
            for number in range(20):
                group.start_soon(worker, managers[number % 2])
        assert (most, entered) == (1, 20)
        with pytest.raises(LockTimeout):
            async with managers[0].hold("/x", timeout=1), managers[1].hold("/x", timeout=0.05):
                pass
    finally:
        for manager in managers:
            await manager.close()


async def test_many_waiters_finish_quickly(url: str, prefix: str) -> None:
    managers = [RedisLockManager(url, key_prefix=prefix) for _ in range(4)]
    figures: dict[str, float] = {}

    async def worker(manager: RedisLockManager) -> None:
        async with manager.hold("/hot", timeout=10):
            await anyio.sleep(0.002)

    try:
        for label, count in (("one client", 1), ("four clients", 4)):
            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                for number in range(20):
                    group.start_soon(worker, managers[number % count])
            figures[label] = time.perf_counter() - started
    finally:
        for manager in managers:
            await manager.close()
    print(
        "20 waiters on one lock, 2 ms critical sections: "
        + ", ".join(f"{label} {seconds * 1000:.0f} ms" for label, seconds in figures.items())
    )
    # Bounded waiting with a 5-100 ms backoff: a few hundred ms here; the bound only
    # catches pathological polling (seconds per waiter), not a slow machine.
    assert max(figures.values()) < 5.0


async def test_unreachable_redis_fails_fast(caplog: pytest.LogCaptureFixture) -> None:
    server = redis_service.start_server()
    manager = RedisLockManager(server.url, ttl=0.5, renew_every=0.1)
    try:
        async with manager.hold("/a", timeout=1):
            pass
        with caplog.at_level(logging.ERROR, "callfs.locks"):
            async with manager.hold("/held", timeout=1):
                server.stop()  # while held: renewals and the release fail, the holder goes on
                await anyio.sleep(0.25)
        assert manager.held_count == 0
        messages = [record.getMessage() for record in caplog.records]
        assert any("could not renew" in message for message in messages)
        assert any("could not release" in message for message in messages)

        attempts: dict[str, Callable[[], Awaitable[None]]] = {
            "health": manager.health,
            "hold": functools.partial(_take, manager, "/a", 10),
        }
        for label, attempt in attempts.items():
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match="lock service"):
                await attempt()
            waited = time.monotonic() - started
            print(f"stopped Redis: {label} fails after {waited * 1000:.1f} ms")
            assert waited < 3
        server.start()  # the same manager recovers once Redis is back
        await manager.health()
        await _take(manager, "/a", 1)
    finally:
        await manager.close()
        server.close()

    closed = RedisLockManager(f"redis://127.0.0.1:{_closed_port()}/0")
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="unreachable"):
            await _take(closed, "/a", 10)
        assert time.monotonic() - started < 3
    finally:
        await closed.close()


async def test_unresponsive_redis_fails_within_the_socket_timeout() -> None:
    server = redis_service.start_server()
    manager = RedisLockManager(server.url)
    try:
        await _take(manager, "/a", 1)
        server.pause()
        waited: list[float] = []
        for attempt in (manager.health, functools.partial(_take, manager, "/a", 10)):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match="did not answer"):
                await attempt()
            waited.append(time.monotonic() - started)
        print(f"frozen Redis: health fails after {waited[0]:.1f} s, hold after {waited[1]:.1f} s")
        assert max(waited) < 8  # 2 s socket timeout (+ 2 s release cap for hold)
        server.resume()
        await _take(manager, "/a", 1)
    finally:
        await manager.close()
        server.close()


async def test_password(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-" + secrets.token_hex(8)
    server = redis_service.start_server(password=secret)
    try:
        for manager in (
            RedisLockManager.from_settings(server.addr, secret),
            RedisLockManager(server.url),
        ):
            try:
                await manager.health()
                await _take(manager, "/p", 1)
            finally:
                await manager.close()
        for password in ("wrong-" + secret, ""):
            manager = RedisLockManager.from_settings(server.addr, password)
            try:
                for attempt in (manager.health, functools.partial(_take, manager, "/p", 1)):
                    with pytest.raises(BackendUnavailable) as caught:
                        await attempt()
                    assert "lock service" in str(caught.value)
                    assert secret not in str(caught.value)
                    assert secret not in str(caught.value.__cause__)
            finally:
                await manager.close()
    finally:
        server.close()
    assert not any(secret in record.getMessage() for record in caplog.records)


def test_from_settings_addresses() -> None:
    assert _split_addr("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert _split_addr("redis.internal:6380") == ("redis.internal", 6380)
    assert _split_addr("[::1]:6379") == ("::1", 6379)
    for bad in ("localhost", ":6379", "host:port"):
        with pytest.raises(ValueError):
            _split_addr(bad)


async def _take(manager: RedisLockManager, name: str, wait: float) -> None:
    async with manager.hold(name, timeout=wait):
        pass


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _read(counter: str) -> int:
    return int(Path(counter).read_text())


def _write(counter: str, value: int) -> None:
    Path(counter).write_text(str(value))


def _count_in_child(url: str, prefix: str, counter: str, rounds: int) -> None:
    async def main() -> None:
        manager = RedisLockManager(url, key_prefix=prefix)
        try:
            for _ in range(rounds):
                async with manager.hold("/counter", timeout=30):
                    # A read-modify-write that loses updates without mutual exclusion.
                    value = _read(counter)
                    await anyio.lowlevel.checkpoint()
                    _write(counter, value + 1)
        finally:
            await manager.close()

    anyio.run(main)


def test_no_lost_updates_across_processes(url: str, prefix: str, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_count_in_child, args=(url, prefix, str(counter), 100))
        for _ in range(3)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert counter.read_text() == "300"
