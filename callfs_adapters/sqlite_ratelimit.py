"""Per-client-IP token buckets shared by the worker processes of one instance.

The buckets live in a small SQLite file (WAL) so that every worker admits
against the same state; each decision is one short ``BEGIN IMMEDIATE``
transaction run in a worker thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import anyio.to_thread

from callfs_adapters.memory_ratelimit import EVICT_BATCH, IDLE_EXPIRY, MAX_TRACKED
from callfs_core.errors import BackendUnavailable
from callfs_core.ports import RateLimitPort
from callfs_core.ratelimit import take_token

__all__ = ["SqliteRateLimiter"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    limiter TEXT NOT NULL,
    key TEXT NOT NULL,
    tokens REAL NOT NULL,
    last REAL NOT NULL,
    PRIMARY KEY (limiter, key)
);
CREATE INDEX IF NOT EXISTS buckets_last ON buckets (limiter, last);
"""


class SqliteRateLimiter:
    """A token bucket per key in ``path``; ``name`` separates limiters sharing the file."""

    def __init__(
        self, path: str, name: str, rate: float, burst: int, *, max_tracked: int = MAX_TRACKED
    ) -> None:
        self.path = path
        self.name = name
        self.rate = rate
        self.burst = burst
        self._max = max_tracked
        self._conn: sqlite3.Connection | None = None
        # One connection, used by one thread at a time.
        self._guard = threading.Lock()

    @staticmethod
    def initialize(path: str) -> None:
        """Create the file, its schema and WAL mode once, before the workers start:
        switching the journal mode needs the database to itself, which several
        workers opening it at the same moment do not give it."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        finally:
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if not os.path.exists(self.path):
                self.initialize(self.path)
            conn = sqlite3.connect(
                self.path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA synchronous=OFF")
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._guard:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def acquire(self, key: str) -> float | None:
        if self.rate <= 0:
            return None
        return await anyio.to_thread.run_sync(self._acquire, key)

    def _acquire(self, key: str) -> float | None:
        with self._guard:
            return self._acquire_locked(key)

    def _acquire_locked(self, key: str) -> float | None:
        now = time.time()
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT tokens, last FROM buckets WHERE limiter = ? AND key = ?",
                    (self.name, key),
                ).fetchone()
                if row is None:
                    self._make_room(conn, now)
                tokens, last = row if row is not None else (float(self.burst), now)
                tokens, wait = take_token(tokens, last, now, rate=self.rate, burst=self.burst)
                conn.execute(
                    "INSERT OR REPLACE INTO buckets (limiter, key, tokens, last)"
                    " VALUES (?, ?, ?, ?)",
                    (self.name, key, tokens, now),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise BackendUnavailable("the rate limiter state cannot be used") from exc
        return wait

    def _make_room(self, conn: sqlite3.Connection, now: float) -> None:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM buckets WHERE limiter = ?", (self.name,)
        ).fetchone()
        if count < self._max:
            return
        removed = conn.execute(
            "DELETE FROM buckets WHERE limiter = ? AND last < ?", (self.name, now - IDLE_EXPIRY)
        ).rowcount
        if removed == 0:
            conn.execute(
                "DELETE FROM buckets WHERE limiter = ? AND key IN (SELECT key FROM buckets"
                " WHERE limiter = ? ORDER BY last LIMIT ?)",
                (self.name, self.name, EVICT_BATCH),
            )

    async def sweep(self) -> None:
        await anyio.to_thread.run_sync(self._sweep)

    def _sweep(self) -> None:
        with self._guard:
            self._connection().execute(
                "DELETE FROM buckets WHERE limiter = ? AND last < ?",
                (self.name, time.time() - IDLE_EXPIRY),
            )


_check: type[RateLimitPort] = SqliteRateLimiter
