"""How listing and path resolution scale with the metadata store.

Fills a store with one directory of N children (default 100,000) and a chain
of directories 30 levels deep, then times, through the engine (permission
checks included):

* a full listing of the big directory, and a first page of 1,000;
* ``stat`` of the deepest path (one ``get_many`` for the path and its ancestors).

Usage::

    python bench/metadata_scale.py                       # SQLite in a temp folder
    python bench/metadata_scale.py --postgres postgresql://postgres@127.0.0.1/postgres
    python bench/metadata_scale.py --children 20000 --repeat 5

With ``--postgres`` a fresh database ``callfs_bench_<random>`` is created on
that server and dropped afterwards. Prints the figures; not a pass/fail test.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio

from callfs_adapters.hmac_signer import HmacLinkSigner
from callfs_adapters.local_lock import LocalLockManager
from callfs_adapters.memory_blob import InMemoryBlobBackend
from callfs_adapters.system import RandomIdGenerator, SystemClock
from callfs_core.engine import Engine, EngineConfig
from callfs_core.model import Identity, Inode, Kind
from callfs_core.paths import ROOT, FsPath

NOW = datetime.now(UTC)
USER = Identity("bench")
DEPTH = 30


def inode(path: str, kind: Kind) -> Inode:
    return Inode(
        FsPath.parse(path),
        kind,
        "bench",
        "bench",
        0o755,
        NOW,
        NOW,
        size=0,
        sha256="0" * 64 if kind is Kind.FILE else None,
    )


async def fill(store: Any, children: int, concurrency: int) -> float:
    start = time.perf_counter()
    await store.create(inode("/", Kind.DIRECTORY))
    await store.create(inode("/big", Kind.DIRECTORY))
    path = ""
    for level in range(DEPTH):
        path += f"/d{level}"
        await store.create(inode(path, Kind.DIRECTORY))
    names = iter(range(children))

    async def worker() -> None:
        for number in names:
            kind = Kind.DIRECTORY if number % 10 == 0 else Kind.FILE
            await store.create(inode(f"/big/entry-{number:07d}", kind))

    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    return time.perf_counter() - start


async def timed(call: Callable[[], Awaitable[object]], repeat: int) -> tuple[float, object]:
    durations, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await call()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations), result


async def measure(
    store: Any,
    label: str,
    children: int,
    repeat: int,
    concurrency: int,
    after_fill: Callable[[], Awaitable[None]] | None = None,
) -> None:
    filled = await fill(store, children, concurrency)
    if after_fill is not None:
        await after_fill()
    engine = Engine(
        metadata=store,
        backends={"localfs": InMemoryBlobBackend("localfs")},
        locks=LocalLockManager(),
        signer=HmacLinkSigner("bench"),
        clock=SystemClock(),
        ids=RandomIdGenerator(),
        config=EngineConfig(instance_id="bench"),
    )
    deep = FsPath.parse("".join(f"/d{level}" for level in range(DEPTH)))
    full, listing = await timed(lambda: engine.list(USER, FsPath.parse("/big")), repeat)
    page, _ = await timed(lambda: engine.list(USER, FsPath.parse("/big"), limit=1000), repeat)
    stat, _ = await timed(lambda: engine.stat(USER, deep), max(repeat, 20))
    root, _ = await timed(lambda: engine.stat(USER, ROOT), max(repeat, 20))
    count = len(listing.items)  # type: ignore[attr-defined]
    print(f"{label}: filled {children} children + {DEPTH} levels in {filled:.1f} s")
    rate = count / full
    print(f"  list /big (all {count} entries):  {full * 1000:9.1f} ms  ({rate:,.0f} entries/s)")
    print(f"  list /big (first 1,000):          {page * 1000:9.1f} ms")
    print(f"  stat of a path {DEPTH} levels deep:   {stat * 1000:9.2f} ms")
    print(f"  stat of /:                        {root * 1000:9.2f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", metavar="DSN", help="an admin DSN of a PostgreSQL server")
    args = parser.parse_args()
    if args.postgres:
        import psycopg

        from callfs_adapters.postgres_metadata import PostgresMetadataStore

        name = f"callfs_bench_{secrets.token_hex(4)}"
        admin = await psycopg.AsyncConnection.connect(args.postgres, autocommit=True)
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = psycopg.conninfo.make_conninfo(args.postgres, dbname=name)
        store = PostgresMetadataStore(dsn, max_size=16, statement_timeout=60, pool_timeout=60)
        await store.open()

        async def analyze() -> None:
            # Fresh statistics, as autovacuum would gather after a bulk load: with
            # none, the planner guesses a few rows and sorts instead of reading
            # the (parent, is_dir, name) index in order.
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute("ANALYZE inodes")

        try:
            await measure(
                store, "postgres", args.children, args.repeat, concurrency=16, after_fill=analyze
            )
        finally:
            await store.close()
            await admin.execute(f'DROP DATABASE "{name}"')
            await admin.close()
        return
    from callfs_adapters.sqlite_metadata import SqliteMetadataStore

    with tempfile.TemporaryDirectory() as folder:
        store = SqliteMetadataStore(f"{folder}/callfs.sqlite3")
        await store.open()
        try:
            await measure(store, "sqlite", args.children, args.repeat, concurrency=1)
        finally:
            await store.close()


if __name__ == "__main__":
    anyio.run(main)
