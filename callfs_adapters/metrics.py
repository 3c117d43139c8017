"""Prometheus metrics (api.md §5) and the decorators that record them around ports.

The decorators wrap any adapter of a port: they add the per-call metrics and,
for the metadata store, the ``server.metadata_op_timeout`` bound (a call that
takes longer becomes BackendUnavailable, so no handler waits forever on a
stuck database).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Final, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from callfs_core.errors import BackendUnavailable, LockTimeout, ServiceError
from callfs_core.model import ByteRange, EntryChanges, Inode, Link
from callfs_core.paths import FsPath
from callfs_core.ports import BlobBackendPort, BlobReader, LockPort, MetadataPort, StagedBlob

__all__ = [
    "InstrumentedBackend",
    "InstrumentedLocks",
    "InstrumentedMetadata",
    "Metrics",
    "error_component",
]

T = TypeVar("T")


# api.md §2.3 and §5: text format 0.0.4 and these histogram buckets.
EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The attribute naming the component a ServiceError came from (``callfs_errors_total``).
_COMPONENT_ATTRIBUTE = "callfs_component"


def multiprocess_enabled() -> bool:
    """Whether metric values go to files shared by the worker processes.

    prometheus_client decides this when it is imported, from the
    ``PROMETHEUS_MULTIPROC_DIR`` environment variable that the supervisor of a
    multi-worker server sets before starting the workers.
    """
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition_registry(supervisor_pid: int) -> CollectorRegistry:
    """A registry that reads the values of every worker process, with the
    standard process metrics of the whole server (``supervisor_pid`` and its
    workers)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(ServerProcessCollector(supervisor_pid))
    PlatformCollector(registry=registry)
    return registry


# Not summed: the server started when its supervisor did; the limit is per process.
_SUPERVISOR_ONLY: Final = ("process_start_time_seconds", "process_max_fds")


def _child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except OSError:
        return []


class ServerProcessCollector:
    """The client library's ``process_*`` metrics for a multi-worker server as a
    whole: memory, CPU time and open descriptors summed over the supervisor
    and its workers; start time and descriptor limit of the supervisor.

    A per-process collector would describe whichever worker answered the scrape.
    """

    def __init__(self, supervisor_pid: int) -> None:
        self.supervisor_pid = supervisor_pid

    def collect(self) -> Iterator[Metric]:
        pids = [self.supervisor_pid, *_child_pids(self.supervisor_pid)]
        merged: dict[str, Metric] = {}
        for pid in pids:
            collector = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for family in collector.collect():
                total = merged.setdefault(family.name, family)
                if total is family or family.name in _SUPERVISOR_ONLY:
                    continue
                total.samples = [
                    mine._replace(value=mine.value + theirs.value)
                    for mine, theirs in zip(total.samples, family.samples, strict=True)
                ]
        yield from merged.values()


class Metrics:
    """Every metric of api.md §5, in a registry of its own.

    Single process: ``registry`` also holds the standard process and platform
    collectors and is what ``/metrics`` serves. With several workers
    (:func:`multiprocess_enabled`), values are shared through files and
    ``registry`` aggregates all workers; per-process collectors would describe
    only the answering worker and are left out.
    """

    def __init__(self) -> None:
        # Only the series of api.md §5: no "<name>_created" companions.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = CollectorRegistry()
        self.shared = multiprocess_enabled()
        if self.shared:
            self.registry = exposition_registry(os.getppid())
        else:
            self.registry = r
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self.http_requests = Counter(
            "callfs_http_requests_total",
            "HTTP requests",
            ["method", "path", "status_code"],
            registry=r,
        )
        self.http_duration = Histogram(
            "callfs_http_request_duration_seconds",
            "HTTP request duration",
            ["method", "path"],
            registry=r,
            buckets=BUCKETS,
        )
        self.backend_ops = Counter(
            "callfs_backend_ops_total",
            "Storage backend calls",
            ["backend_type", "operation"],
            registry=r,
        )
        self.backend_duration = Histogram(
            "callfs_backend_op_duration_seconds",
            "Storage backend call duration",
            ["backend_type", "operation"],
            registry=r,
            buckets=BUCKETS,
        )
        self.metadata_queries = Counter(
            "callfs_metadata_db_queries_total", "Metadata store calls", ["operation"], registry=r
        )
        self.metadata_duration = Histogram(
            "callfs_metadata_db_query_duration_seconds",
            "Metadata store call duration",
            ["operation"],
            registry=r,
            buckets=BUCKETS,
        )
        self.link_generations = Counter(
            "callfs_single_use_link_generations_total", "Links generated", registry=r
        )
        self.link_consumptions = Counter(
            "callfs_single_use_link_consumptions_total", "Link downloads", ["status"], registry=r
        )
        self.lock_ops = Counter(
            "callfs_lock_operations_total", "Lock operations", ["operation", "status"], registry=r
        )
        self.lock_duration = Histogram(
            "callfs_lock_operation_duration_seconds",
            "Lock operation duration",
            ["operation"],
            registry=r,
            buckets=BUCKETS,
        )
        self.active_locks = Gauge(
            "callfs_active_locks",
            "Locks held by this process",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.file_ops = Counter(
            "callfs_file_operations_total",
            "Successful file operations",
            ["operation", "backend_type"],
            registry=r,
        )
        self.errors = Counter(
            "callfs_errors_total",
            "5xx responses and failed background tasks",
            ["component", "error_type"],
            registry=r,
        )


def error_component(exc: BaseException) -> str | None:
    """The component (``metadata``, ``backend``, ``lock``) whose port call raised ``exc``,
    as noted by the decorators below; None when no decorated port raised it."""
    component = getattr(exc, _COMPONENT_ATTRIBUTE, None)
    return component if isinstance(component, str) else None


def _note_component(exc: BaseException, component: str) -> None:
    # The innermost decorator names the component: a metadata failure seen
    # again by an outer layer keeps "metadata".
    if isinstance(exc, ServiceError) and error_component(exc) is None:
        setattr(exc, _COMPONENT_ATTRIBUTE, component)


class _OperationMetrics:
    """The counter and histogram children of each operation, looked up once
    (``labels()`` takes a lock and builds a key on every call)."""

    def __init__(self, counter: Counter, histogram: Histogram, *prefix: str) -> None:
        self._counter = counter
        self._histogram = histogram
        self._prefix = prefix
        self._children: dict[str, tuple[Counter, Histogram]] = {}

    def __call__(self, operation: str) -> tuple[Counter, Histogram]:
        children = self._children.get(operation)
        if children is None:
            labels = (*self._prefix, operation)
            children = (self._counter.labels(*labels), self._histogram.labels(*labels))
            self._children[operation] = children
        return children


async def _bounded(
    call: Callable[[], Awaitable[T]],
    limit: float,
    timeout_message: str,
    component: str,
    counter: Counter,
    histogram: Histogram,
) -> T:
    """Run one port call within ``limit`` seconds, counting and timing it."""
    start = time.perf_counter()
    try:
        # asyncio's own timeout: a fraction of the cost of an anyio cancel scope,
        # paid on every metadata and storage call.
        async with asyncio.timeout(limit):
            return await call()
    except TimeoutError:
        error = BackendUnavailable(timeout_message)
        _note_component(error, component)
        raise error from None
    except ServiceError as exc:
        _note_component(exc, component)
        raise
    finally:
        counter.inc()
        histogram.observe(time.perf_counter() - start)


class InstrumentedMetadata:
    """A MetadataPort decorator: metrics per call and the metadata operation timeout."""

    def __init__(self, inner: MetadataPort, metrics: Metrics, timeout: float) -> None:
        self.inner = inner
        self._metrics = metrics
        self._timeout = timeout
        self._operations = _OperationMetrics(metrics.metadata_queries, metrics.metadata_duration)

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        return await _bounded(
            call,
            self._timeout,
            "the metadata store did not answer in time",
            "metadata",
            *self._operations(operation),
        )

    async def get(self, path: FsPath) -> Inode | None:
        return await self._call("get", lambda: self.inner.get(path))

    async def get_many(self, paths: Sequence[FsPath]) -> dict[FsPath, Inode]:
        return await self._call("get", lambda: self.inner.get_many(paths))

    async def list_children(
        self, parent: FsPath, *, after: tuple[bool, str] | None = None, limit: int | None = None
    ) -> list[Inode]:
        return await self._call(
            "list_children", lambda: self.inner.list_children(parent, after=after, limit=limit)
        )

    async def list_subtree(self, root: FsPath) -> list[Inode]:
        return await self._call("list_children", lambda: self.inner.list_subtree(root))

    async def create(self, inode: Inode, *, content: bytes | None = None) -> Inode:
        return await self._call("create", lambda: self.inner.create(inode, content=content))

    async def update(
        self,
        inode: Inode,
        *,
        expected_version: int | None = None,
        content: bytes | None = None,
    ) -> Inode:
        return await self._call(
            "update",
            lambda: self.inner.update(inode, expected_version=expected_version, content=content),
        )

    async def read_content(self, path: FsPath, version: int) -> bytes | None:
        return await self._call("get", lambda: self.inner.read_content(path, version))

    async def delete(self, path: FsPath, *, recursive: bool = False) -> list[Inode]:
        return await self._call("delete", lambda: self.inner.delete(path, recursive=recursive))

    async def rename(
        self,
        source: FsPath,
        destination: FsPath,
        *,
        replace: bool = False,
        changes: EntryChanges | None = None,
    ) -> Inode | None:
        return await self._call(
            "rename",
            lambda: self.inner.rename(source, destination, replace=replace, changes=changes),
        )

    async def create_link(self, link: Link) -> None:
        await self._call("create_link", lambda: self.inner.create_link(link))

    async def get_link(self, token_id: str) -> Link | None:
        return await self._call("get_link", lambda: self.inner.get_link(token_id))

    async def consume_link(self, token_id: str, *, used_at: datetime, client_ip: str) -> bool:
        return await self._call(
            "consume_link",
            lambda: self.inner.consume_link(token_id, used_at=used_at, client_ip=client_ip),
        )

    async def cleanup_links(self, *, now: datetime, used_before: datetime) -> int:
        return await self._call(
            "cleanup_links", lambda: self.inner.cleanup_links(now=now, used_before=used_before)
        )

    async def health(self) -> None:
        await self._call("get", self.inner.health)

    async def close(self) -> None:
        await self.inner.close()


class InstrumentedBackend:
    """A BlobBackendPort decorator recording backend metrics; storage calls other
    than body transfers are bounded by ``server.file_op_timeout``."""

    def __init__(self, inner: BlobBackendPort, metrics: Metrics, timeout: float) -> None:
        self.inner = inner
        self.name = inner.name
        self._metrics = metrics
        self._timeout = timeout
        self._operations = _OperationMetrics(
            metrics.backend_ops, metrics.backend_duration, inner.name
        )

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        return await _bounded(
            call,
            self._timeout,
            "the storage backend did not answer in time",
            "backend",
            *self._operations(operation),
        )

    async def open(self, path: FsPath, byte_range: ByteRange | None = None) -> BlobReader:
        return await self._call("open", lambda: self.inner.open(path, byte_range))

    async def stage(self, path: FsPath, chunks: AsyncIterable[bytes]) -> StagedBlob:
        # The body transfer is bounded by the idle timeouts, not by file_op_timeout.
        start = time.perf_counter()
        try:
            return await self.inner.stage(path, chunks)
        except ServiceError as exc:
            _note_component(exc, "backend")
            raise
        finally:
            counter, histogram = self._operations("create")
            counter.inc()
            histogram.observe(time.perf_counter() - start)

    async def delete(self, path: FsPath) -> None:
        await self._call("delete", lambda: self.inner.delete(path))

    async def move(self, source: FsPath, destination: FsPath) -> None:
        await self._call("move", lambda: self.inner.move(source, destination))

    async def stat(self, path: FsPath) -> int | None:
        return await self._call("stat", lambda: self.inner.stat(path))

    async def make_directory(self, path: FsPath) -> None:
        await self._call("mkdir", lambda: self.inner.make_directory(path))

    async def remove_directory(self, path: FsPath) -> None:
        await self._call("delete", lambda: self.inner.remove_directory(path))

    async def health(self) -> None:
        await self._call("stat", self.inner.health)


class InstrumentedLocks:
    """A LockPort decorator: lock operation metrics and the active-locks gauge."""

    def __init__(self, inner: LockPort, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    def _record(self, operation: str, status: str, start: float) -> None:
        self._metrics.lock_ops.labels(operation, status).inc()
        self._metrics.lock_duration.labels(operation).observe(time.perf_counter() - start)

    @asynccontextmanager
    async def _hold(self, names: tuple[str, ...], wait: float) -> AsyncIterator[None]:
        start = time.perf_counter()
        manager = self.inner.hold(*names, timeout=wait)
        try:
            await manager.__aenter__()
        except LockTimeout:
            self._record("acquire", "timeout", start)
            raise
        except BaseException as exc:
            self._record("acquire", "error", start)
            _note_component(exc, "lock")
            raise
        self._record("acquire", "success", start)
        count = len(set(names))
        self._metrics.active_locks.inc(count)
        try:
            yield
        except BaseException as exc:
            if not await self._release(manager, count, exc):
                raise
        else:
            await self._release(manager, count, None)

    async def _release(
        self, manager: AbstractAsyncContextManager[None], count: int, exc: BaseException | None
    ) -> bool:
        """Release, recording it; whether the lock manager suppressed ``exc``."""
        released = time.perf_counter()
        self._metrics.active_locks.dec(count)
        try:
            if exc is None:
                suppressed = await manager.__aexit__(None, None, None)
            else:
                suppressed = await manager.__aexit__(type(exc), exc, exc.__traceback__)
        except BaseException as error:
            self._record("release", "error", released)
            _note_component(error, "lock")
            raise
        self._record("release", "success", released)
        return bool(suppressed)

    def hold(self, *names: str, timeout: float) -> AbstractAsyncContextManager[None]:
        return self._hold(names, timeout)

    async def health(self) -> None:
        await self.inner.health()
