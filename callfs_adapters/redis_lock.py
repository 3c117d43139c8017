"""Named locks shared by every instance, in Redis (``dlm.type=redis``, api.md §1.9).

Each held name is a key ``<prefix><name>`` (``callfs:lock:<name>``) set with
``SET key token NX PX ttl`` to a random token of the holder. Waiters poll with
a short exponential backoff and jitter (redis-py's own lock polls every 100 ms,
which makes a queue of waiters slow, design.md §5). Release and renewal are
Lua scripts that act only while the key still holds the caller's token, so a
holder whose lease expired never deletes or extends a successor's lock. While
held, a background task renews the lease, so a long operation never loses it;
a holder that dies leaves keys that expire after the TTL.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

import anyio
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from callfs_core.errors import BackendUnavailable, LockTimeout
from callfs_core.ports import LockPort

__all__ = ["RedisLockManager"]

log = logging.getLogger("callfs.locks")

SOCKET_TIMEOUT = 2.0  # seconds, connect and each reply: a dead Redis fails fast

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


@contextmanager
def _translated() -> Iterator[None]:
    """Redis client errors -> ``BackendUnavailable`` (never naming the address or password)."""
    try:
        yield
    except redis_errors.AuthenticationError as exc:
        raise BackendUnavailable("the lock service (Redis) refused the credentials") from exc
    except redis_errors.TimeoutError as exc:
        raise BackendUnavailable("the lock service (Redis) did not answer in time") from exc
    except redis_errors.ConnectionError as exc:
        raise BackendUnavailable("the lock service (Redis) is unreachable") from exc
    except redis_errors.RedisError as exc:
        raise BackendUnavailable("the lock service (Redis) returned an error") from exc


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"the Redis address must be host:port, not {addr!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _retry() -> Retry:
    # One immediate retry replaces a pooled connection the server closed. No
    # retry after a timeout, and not redis-py's default (10 retries with
    # backoff), which would hide an outage for seconds.
    return Retry(NoBackoff(), 1, supported_errors=(redis_errors.ConnectionError,))


class RedisLockManager:
    """A LockPort shared by every process and instance using one Redis.

    ``url_or_client`` is a ``redis://`` URL (the manager then owns and closes
    its client) or a ready ``redis.asyncio.Redis`` client (the caller closes
    it; give it socket timeouts). ``on_renew(status, seconds)`` is called after
    each lease renewal with ``"success"`` or ``"error"`` (for the lock metrics).
    """

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        key_prefix: str = "callfs:lock:",
        ttl: float = 30.0,
        renew_every: float = 10.0,
        poll_min: float = 0.005,
        poll_max: float = 0.1,
        on_renew: Callable[[str, float], None] | None = None,
    ) -> None:
        if not 0 < renew_every < ttl:
            raise ValueError("renew_every must be positive and shorter than the ttl")
        if not 0 < poll_min <= poll_max:
            raise ValueError("poll_min must be positive and at most poll_max")
        if isinstance(url_or_client, str):
            self._client: Redis = Redis.from_url(
                url_or_client,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_TIMEOUT,
                retry=_retry(),
            )
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self.key_prefix = key_prefix
        self._ttl_ms = max(int(ttl * 1000), 1)
        self._renew_every = renew_every
        self._poll_min = poll_min
        self._poll_max = poll_max
        self._on_renew = on_renew
        self._release_script = self._client.register_script(_RELEASE)
        self._renew_script = self._client.register_script(_RENEW)
        self._held = 0

    @classmethod
    def from_settings(cls, addr: str, password: str, **options: Any) -> RedisLockManager:
        """A manager with a client of its own for ``addr`` (``host:port``), database 0."""
        host, port = _split_addr(addr)
        client = Redis(
            host=host,
            port=port,
            db=0,
            password=password or None,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=_retry(),
        )
        manager = cls(client, **options)
        manager._owns_client = True
        return manager

    @property
    def held_count(self) -> int:
        """The number of locks this manager holds right now (for a metrics gauge)."""
        return self._held

    def hold(self, *names: str, timeout: float) -> AbstractAsyncContextManager[None]:
        return self._hold(sorted(set(names)), timeout)

    @asynccontextmanager
    async def _hold(self, names: list[str], seconds: float) -> AsyncIterator[None]:
        token = secrets.token_hex(16)
        deadline = time.monotonic() + max(seconds, 0.0)
        # Every key a SET was sent for: a SET cut short by cancellation may
        # still have succeeded, and releasing with our token is always safe.
        tried: list[str] = []
        try:
            with _translated():
                for name in names:
                    key = self.key_prefix + name
                    tried.append(key)
                    await self._acquire(key, token, deadline)
            self._held += len(names)
            failure: Exception | None = None
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._renew_while_held, tried, token)
                    try:
                        yield
                    except Exception as exc:
                        # Raised after the task group, so that it is not
                        # wrapped in an exception group.
                        failure = exc
                    finally:
                        group.cancel_scope.cancel()
            finally:
                self._held -= len(names)
            if failure is not None:
                raise failure
        finally:
            if tried:
                # Shielded so that a cancelled holder still releases; bounded
                # so that an unresponsive Redis does not hold up the caller
                # (the leases then end by themselves after the TTL).
                with anyio.move_on_after(SOCKET_TIMEOUT, shield=True) as scope:
                    await self._release(tried, token)
                if scope.cancelled_caught:
                    log.error("releasing locks %s timed out", ", ".join(tried))

    async def _acquire(self, key: str, token: str, deadline: float) -> None:
        delay = self._poll_min
        while True:
            if await self._client.set(key, token, nx=True, px=self._ttl_ms):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout()
            await anyio.sleep(min(delay * random.uniform(1.0, 1.5), remaining))
            delay = min(delay * 2, self._poll_max)

    async def _release(self, keys: list[str], token: str) -> None:
        for key in reversed(keys):
            try:
                await self._release_script(keys=[key], args=[token])
            except redis_errors.RedisError as exc:
                # The lease then ends by itself after the TTL.
                log.error("could not release lock %s: %s", key, exc)

    async def _renew_while_held(self, keys: list[str], token: str) -> None:
        keys = list(keys)
        while keys:
            await anyio.sleep(self._renew_every)
            for key in list(keys):
                start = time.perf_counter()
                try:
                    renewed = await self._renew_script(keys=[key], args=[token, self._ttl_ms])
                except redis_errors.RedisError as exc:
                    self._report_renewal("error", start)
                    log.error("could not renew lock %s: %s", key, exc)
                    continue
                if renewed:
                    self._report_renewal("success", start)
                else:
                    self._report_renewal("error", start)
                    keys.remove(key)
                    log.error("lock %s was lost: its lease expired before it was renewed", key)

    def _report_renewal(self, status: str, start: float) -> None:
        if self._on_renew is not None:
            self._on_renew(status, time.perf_counter() - start)

    async def health(self) -> None:
        with _translated():
            await self._client.ping()

    async def close(self) -> None:
        """Close the client if this manager created it."""
        if self._owns_client:
            await self._client.aclose()


_check: type[LockPort] = RedisLockManager
