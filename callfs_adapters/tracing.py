"""OpenTelemetry traces: set-up from the standard ``OTEL_*`` variables, and the
decorators that put a span around each use case and each port call.

The core stays free of OpenTelemetry: like the metrics decorators of
:mod:`callfs_adapters.metrics`, these wrap the ports (:class:`TracedMetadata`,
:class:`TracedLocks`, :class:`TracedBackend`) and the engine
(:class:`TracedEngine`). The composition root installs them only when tracing
is on (:func:`active_tracer` is not None); when it is off nothing of this
module runs on a request.

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, unless ``OTEL_SDK_DISABLED`` is
true or ``OTEL_TRACES_EXPORTER`` is ``none``. Spans go to an OTLP/HTTP
(protobuf) exporter through a batch processor; every other detail (headers,
timeout, sampler, batch sizes, resource attributes) comes from the standard
``OTEL_*`` variables the SDK reads itself. Each process (each worker) sets up
its own provider.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from opentelemetry.trace import Span, Status, StatusCode, Tracer

from callfs_core.engine import Engine
from callfs_core.errors import CallFSError, ServiceError
from callfs_core.model import ByteRange, EntryChanges, Inode, Link
from callfs_core.paths import FsPath
from callfs_core.ports import BlobBackendPort, BlobReader, LockPort, MetadataPort, StagedBlob

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "SERVICE_NAME",
    "TracedBackend",
    "TracedEngine",
    "TracedLocks",
    "TracedMetadata",
    "active_tracer",
    "inject_trace_context",
    "record_error",
    "setup_tracing",
    "shutdown_tracing",
    "traced_backends",
    "traced_engine",
    "traced_locks",
    "traced_metadata",
    "tracing_requested",
]

T = TypeVar("T")
log = logging.getLogger("callfs.tracing")

SERVICE_NAME = "callfs"
TRACER_NAME = "callfs"
_SUPPORTED_PROTOCOL = "http/protobuf"

# The provider of this process, set by setup_tracing (None: tracing is off).
_provider: TracerProvider | None = None


# --------------------------------------------------------------------------- set-up


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the ``OTEL_*`` environment asks for traces (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(
        environ.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup_tracing(instance_id: str, *, exporter: SpanExporter | None = None) -> bool:
    """Start tracing in this process if the environment asks for it; whether it is on.

    Args:
        instance_id: ``instance_discovery.instance_id``, the resource's
            ``service.instance.id``.
        exporter: send spans here, one by one, instead of to the OTLP endpoint
            (tests: an in-memory exporter); tracing is then on whatever the
            environment says.
    """
    global _provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    processor: SpanProcessor
    if exporter is not None:
        processor = SimpleSpanProcessor(exporter)
    elif tracing_requested():
        processor = BatchSpanProcessor(_otlp_exporter())
    else:
        return False
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create.
    resource = Resource.create({"service.instance.id": instance_id, "process.pid": os.getpid()})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    shutdown_tracing()
    _provider = provider
    return True


def _otlp_exporter() -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = os.environ.get(name, "").strip()
        if protocol and protocol != _SUPPORTED_PROTOCOL:
            log.warning("%s=%s is not supported; spans are sent as %s", name, protocol, "http")
    # Endpoint, headers, timeout, compression and certificates: the OTEL_* variables.
    return OTLPSpanExporter()


def shutdown_tracing() -> None:
    """Send the spans still queued and stop tracing in this process."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


def active_tracer() -> Tracer | None:
    """The tracer of this process, or None when tracing is off."""
    if _provider is None:
        return None
    return _provider.get_tracer(TRACER_NAME)


def inject_trace_context(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context (W3C ``traceparent``/``tracestate``, or what
    ``OTEL_PROPAGATORS`` names) to the headers of an outgoing request, so that
    a peer continues the same trace. Does nothing when tracing is off."""
    if _provider is None:
        return
    from opentelemetry import propagate

    propagate.inject(headers)


# --------------------------------------------------------------------------- spans


def _is_expected(exc: BaseException) -> bool:
    """Errors that are an answer (not found, denied, …), not a failure of CallFS;
    and cancellation, which is the client going away."""
    if isinstance(exc, CallFSError):
        return not isinstance(exc, ServiceError)
    return not isinstance(exc, Exception)


def record_error(span: Span, exc: BaseException) -> None:
    """Note ``exc`` on ``span``: ``error.type`` always; status ERROR and an
    exception event for failures (a 5xx-class error or a bug)."""
    span.set_attribute("error.type", type(exc).__qualname__)
    if _is_expected(exc):
        return
    if isinstance(exc, CallFSError):
        # The message is safe to show by contract; the chained causes
        # (driver messages) are not recorded.
        span.add_event(
            "exception",
            {"exception.type": type(exc).__qualname__, "exception.message": exc.message},
        )
        span.set_status(Status(StatusCode.ERROR, exc.message))
    else:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))


@contextmanager
def _span(tracer: Tracer, name: str, attributes: dict[str, Any] | None = None) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as exc:
            record_error(span, exc)
            raise


def _path_attributes(path: FsPath) -> dict[str, Any]:
    return {"callfs.path": str(path)}


# --------------------------------------------------------------------------- ports


class TracedMetadata:
    """A MetadataPort decorator: one ``metadata.<method>`` span per store call."""

    def __init__(self, inner: MetadataPort, tracer: Tracer) -> None:
        self.inner = inner
        self._tracer = tracer

    async def _call(
        self, name: str, call: Callable[[], Awaitable[T]], path: FsPath | None = None
    ) -> T:
        with _span(self._tracer, name, _path_attributes(path) if path is not None else None):
            return await call()

    async def get(self, path: FsPath) -> Inode | None:
        return await self._call("metadata.get", lambda: self.inner.get(path), path)

    async def get_many(self, paths: Sequence[FsPath]) -> dict[FsPath, Inode]:
        target = paths[-1] if paths else None
        return await self._call("metadata.get_many", lambda: self.inner.get_many(paths), target)

    async def list_children(
        self, parent: FsPath, *, after: tuple[bool, str] | None = None, limit: int | None = None
    ) -> list[Inode]:
        return await self._call(
            "metadata.list_children",
            lambda: self.inner.list_children(parent, after=after, limit=limit),
            parent,
        )

    async def list_subtree(self, root: FsPath) -> list[Inode]:
        return await self._call(
            "metadata.list_subtree", lambda: self.inner.list_subtree(root), root
        )

    async def create(self, inode: Inode, *, content: bytes | None = None) -> Inode:
        return await self._call(
            "metadata.create", lambda: self.inner.create(inode, content=content), inode.path
        )

    async def update(
        self,
        inode: Inode,
        *,
        expected_version: int | None = None,
        content: bytes | None = None,
    ) -> Inode:
        return await self._call(
            "metadata.update",
            lambda: self.inner.update(inode, expected_version=expected_version, content=content),
            inode.path,
        )

    async def read_content(self, path: FsPath, version: int) -> bytes | None:
        return await self._call(
            "metadata.read_content", lambda: self.inner.read_content(path, version), path
        )

    async def delete(self, path: FsPath, *, recursive: bool = False) -> list[Inode]:
        return await self._call(
            "metadata.delete", lambda: self.inner.delete(path, recursive=recursive), path
        )

    async def rename(
        self,
        source: FsPath,
        destination: FsPath,
        *,
        replace: bool = False,
        changes: EntryChanges | None = None,
    ) -> Inode | None:
        return await self._call(
            "metadata.rename",
            lambda: self.inner.rename(source, destination, replace=replace, changes=changes),
            source,
        )

    # Link calls carry no token attribute: a token id is half of a download URL.
    async def create_link(self, link: Link) -> None:
        await self._call("metadata.create_link", lambda: self.inner.create_link(link))

    async def get_link(self, token_id: str) -> Link | None:
        return await self._call("metadata.get_link", lambda: self.inner.get_link(token_id))

    async def consume_link(self, token_id: str, *, used_at: datetime, client_ip: str) -> bool:
        return await self._call(
            "metadata.consume_link",
            lambda: self.inner.consume_link(token_id, used_at=used_at, client_ip=client_ip),
        )

    async def cleanup_links(self, *, now: datetime, used_before: datetime) -> int:
        return await self._call(
            "metadata.cleanup_links",
            lambda: self.inner.cleanup_links(now=now, used_before=used_before),
        )

    async def health(self) -> None:
        await self._call("metadata.health", self.inner.health)

    async def close(self) -> None:
        await self.inner.close()


class _TracedStaged:
    """A staged blob whose commit and abort are spans too."""

    def __init__(self, inner: StagedBlob, tracer: Tracer, attributes: dict[str, Any]) -> None:
        self.inner = inner
        self.info = inner.info
        self._tracer = tracer
        self._attributes = attributes

    async def commit(self) -> None:
        with _span(self._tracer, "backend.commit", self._attributes):
            await self.inner.commit()

    async def abort(self) -> None:
        with _span(self._tracer, "backend.abort", self._attributes):
            await self.inner.abort()


class TracedBackend:
    """A BlobBackendPort decorator: one ``backend.<method>`` span per storage call
    (``backend.stage`` covers the upload of the body; ``backend.open`` only the
    opening, the transfer follows in the response)."""

    def __init__(self, inner: BlobBackendPort, tracer: Tracer) -> None:
        self.inner = inner
        self.name = inner.name
        self._tracer = tracer

    def _attributes(self, path: FsPath | None = None) -> dict[str, Any]:
        attributes: dict[str, Any] = {"callfs.backend": self.name}
        if path is not None:
            attributes["callfs.path"] = str(path)
        return attributes

    async def open(self, path: FsPath, byte_range: ByteRange | None = None) -> BlobReader:
        with _span(self._tracer, "backend.open", self._attributes(path)):
            return await self.inner.open(path, byte_range)

    async def stage(self, path: FsPath, chunks: AsyncIterable[bytes]) -> StagedBlob:
        attributes = self._attributes(path)
        with _span(self._tracer, "backend.stage", attributes) as span:
            staged = await self.inner.stage(path, chunks)
            span.set_attribute("callfs.size", staged.info.size)
        return _TracedStaged(staged, self._tracer, attributes)

    async def delete(self, path: FsPath) -> None:
        with _span(self._tracer, "backend.delete", self._attributes(path)):
            await self.inner.delete(path)

    async def move(self, source: FsPath, destination: FsPath) -> None:
        attributes = self._attributes(source)
        attributes["callfs.destination"] = str(destination)
        with _span(self._tracer, "backend.move", attributes):
            await self.inner.move(source, destination)

    async def stat(self, path: FsPath) -> int | None:
        with _span(self._tracer, "backend.stat", self._attributes(path)):
            return await self.inner.stat(path)

    async def make_directory(self, path: FsPath) -> None:
        with _span(self._tracer, "backend.make_directory", self._attributes(path)):
            await self.inner.make_directory(path)

    async def remove_directory(self, path: FsPath) -> None:
        with _span(self._tracer, "backend.remove_directory", self._attributes(path)):
            await self.inner.remove_directory(path)

    async def health(self) -> None:
        with _span(self._tracer, "backend.health", self._attributes()):
            await self.inner.health()


class TracedLocks:
    """A LockPort decorator: a ``lock.hold`` span from the request for the locks
    to their release (what runs under the locks are its children), with a
    ``lock.acquire`` child for the wait."""

    def __init__(self, inner: LockPort, tracer: Tracer) -> None:
        self.inner = inner
        self._tracer = tracer

    @asynccontextmanager
    async def _hold(self, names: tuple[str, ...], wait: float) -> AsyncIterator[None]:
        attributes = {"callfs.lock.names": list(names)}
        with _span(self._tracer, "lock.hold", attributes):
            manager = self.inner.hold(*names, timeout=wait)
            with _span(self._tracer, "lock.acquire", attributes):
                await manager.__aenter__()
            try:
                yield
            except BaseException as exc:
                if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
                    raise
            else:
                await manager.__aexit__(None, None, None)

    def hold(self, *names: str, timeout: float) -> AbstractAsyncContextManager[None]:
        return self._hold(names, timeout)

    async def health(self) -> None:
        with _span(self._tracer, "lock.health"):
            await self.inner.health()


# --------------------------------------------------------------------------- engine


class TracedEngine:
    """The engine with an ``engine.<method>`` span around each public coroutine
    method (the use cases); everything else is the engine's own."""

    def __init__(self, inner: Engine, tracer: Tracer) -> None:
        self.inner = inner
        self._tracer = tracer
        for name, _ in inspect.getmembers(type(inner), inspect.iscoroutinefunction):
            if not name.startswith("_"):
                setattr(self, name, self._traced(f"engine.{name}", getattr(inner, name)))

    def _traced(
        self, span_name: str, method: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        tracer = self._tracer

        async def traced(*args: Any, **kwargs: Any) -> Any:
            path = next((a for a in args if isinstance(a, FsPath)), None)
            with _span(tracer, span_name, _path_attributes(path) if path is not None else None):
                return await method(*args, **kwargs)

        traced.__name__ = method.__name__
        traced.__doc__ = method.__doc__
        return traced

    def __getattr__(self, name: str) -> Any:
        # Only reached for what __init__ did not wrap (attributes, plain methods).
        return getattr(self.inner, name)


# --------------------------------------------------------------------------- wiring


def traced_metadata(inner: MetadataPort, tracer: Tracer | None) -> MetadataPort:
    """``inner`` itself when tracing is off, else wrapped in :class:`TracedMetadata`."""
    return inner if tracer is None else TracedMetadata(inner, tracer)


def traced_locks(inner: LockPort, tracer: Tracer | None) -> LockPort:
    """``inner`` itself when tracing is off, else wrapped in :class:`TracedLocks`."""
    return inner if tracer is None else TracedLocks(inner, tracer)


def traced_backends(
    backends: Mapping[str, BlobBackendPort], tracer: Tracer | None
) -> dict[str, BlobBackendPort]:
    """The backends, each wrapped in :class:`TracedBackend` when tracing is on."""
    if tracer is None:
        return dict(backends)
    return {name: TracedBackend(backend, tracer) for name, backend in backends.items()}


def traced_engine(engine: Engine, tracer: Tracer | None) -> Engine:
    """``engine`` itself when tracing is off, else behind a :class:`TracedEngine`."""
    return engine if tracer is None else cast(Engine, TracedEngine(engine, tracer))
