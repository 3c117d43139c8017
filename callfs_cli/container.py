"""The composition root: the only place that knows which adapter serves which port."""

from __future__ import annotations

import os
from pathlib import Path

from dependency_injector import containers, providers

from callfs_adapters.file_lock import FileLockManager
from callfs_adapters.hmac_signer import HmacLinkSigner
from callfs_adapters.local_lock import LocalLockManager
from callfs_adapters.localfs import LocalFsBackend
from callfs_adapters.memory_ratelimit import InMemoryRateLimiter
from callfs_adapters.metadata_cache import CachingMetadataStore
from callfs_adapters.metrics import (
    InstrumentedBackend,
    InstrumentedLocks,
    InstrumentedMetadata,
    Metrics,
)
from callfs_adapters.peer_client import PeerClient
from callfs_adapters.sqlite_metadata import SqliteMetadataStore
from callfs_adapters.sqlite_ratelimit import SqliteRateLimiter
from callfs_adapters.system import RandomIdGenerator, SystemClock
from callfs_adapters.tracing import (
    active_tracer,
    traced_backends,
    traced_engine,
    traced_locks,
    traced_metadata,
)
from callfs_cli.config import known_users
from callfs_cli.config_model import Settings
from callfs_core.engine import Engine, EngineConfig
from callfs_core.ports import BlobBackendPort, LockPort, MetadataPort, RateLimitPort
from callfs_http.app import create_app
from callfs_http.auth import Authenticator, build_identities
from callfs_http.common import HttpSettings

__all__ = [
    "Container",
    "UnsupportedConfiguration",
    "check_storage",
    "close_resources",
    "open_resources",
    "rate_limit_path",
    "shared_state_dir",
]

VERSION = "0.1.0"


class UnsupportedConfiguration(Exception):
    """The configuration names an adapter this build cannot provide yet."""


def _metadata_store(settings: Settings) -> MetadataPort:
    meta = settings.metadata_store
    if meta.type == "sqlite":
        return SqliteMetadataStore(meta.sqlite_path)
    if meta.type == "postgres":
        from callfs_adapters.postgres_metadata import PostgresMetadataStore

        return PostgresMetadataStore(
            meta.dsn,
            max_size=meta.pool_max_size,
            statement_timeout=settings.server.metadata_op_timeout,
            pool_timeout=settings.server.metadata_op_timeout,
        )
    raise UnsupportedConfiguration(
        f'metadata_store.type "{meta.type}" is not available in this release; '
        'use "postgres" or "sqlite"'
    )


def _cached(settings: Settings, store: MetadataPort, raw: MetadataPort) -> MetadataPort:
    """The cache sits in front of the (instrumented) store where it can know of
    every change: SQLite, where one worker makes every change itself and
    several workers learn of each other's commits from ``PRAGMA data_version``
    (checked before each lookup). Instances sharing PostgreSQL have no such
    signal: no cache there."""
    meta = settings.metadata_store
    if meta.type != "sqlite" or meta.cache_ttl <= 0 or meta.cache_entries <= 0:
        return store
    version = None
    if settings.server.workers > 1:
        assert isinstance(raw, SqliteMetadataStore)
        version = raw.data_version
    return CachingMetadataStore(
        store, ttl=meta.cache_ttl, entries=meta.cache_entries, version=version
    )


def shared_state_dir(settings: Settings) -> str:
    """Where the workers of one instance keep the state they share (locks, rate limits)."""
    return os.path.join(settings.server.data_dir, "run")


def _lock_manager(settings: Settings, metrics: Metrics) -> LockPort:
    if settings.dlm.type == "redis":
        from callfs_adapters.redis_lock import RedisLockManager

        def renewed(status: str, seconds: float) -> None:
            metrics.lock_ops.labels("renew", status).inc()
            metrics.lock_duration.labels("renew").observe(seconds)

        return RedisLockManager.from_settings(
            settings.dlm.redis_addr, settings.dlm.redis_password, on_renew=renewed
        )
    return _instance_locks(settings)


def _commit_locks(settings: Settings) -> LockPort:
    """Locks of this instance ordering commits and reads of the same bytes.

    Always a lock manager of its own, without metrics: these short internal
    locks are taken by every read, and ``callfs_lock_operations_total`` counts
    the writers' path locks (as with Redis, where they are separate anyway).
    """
    return _instance_locks(settings)


def _instance_locks(settings: Settings) -> LockPort:
    if settings.dlm.type not in ("local", "redis"):
        raise UnsupportedConfiguration(f'dlm.type "{settings.dlm.type}" is not available')
    if settings.server.workers <= 1:
        return LocalLockManager()
    # Several worker processes: "local" must still mean one lock per instance.
    manager = FileLockManager(os.path.join(shared_state_dir(settings), "locks"))
    manager.open()
    return manager


def _rate_limiter(settings: Settings, name: str) -> RateLimitPort:
    rate = getattr(settings.rate_limit, f"{name}_rps")
    burst = getattr(settings.rate_limit, f"{name}_burst")
    if settings.server.workers <= 1:
        return InMemoryRateLimiter(rate, burst)
    return SqliteRateLimiter(rate_limit_path(settings), name, rate, burst)


def rate_limit_path(settings: Settings) -> str:
    """The SQLite file holding the rate-limit buckets all workers share."""
    return os.path.join(shared_state_dir(settings), "ratelimit.sqlite3")


def _backends(settings: Settings, metrics: Metrics) -> dict[str, BlobBackendPort]:
    backends: dict[str, BlobBackendPort] = {}
    timeout = settings.server.file_op_timeout
    if settings.backend.localfs_root_path:
        local = LocalFsBackend(str(Path(settings.backend.localfs_root_path)))
        backends["localfs"] = InstrumentedBackend(local, metrics, timeout)
    if settings.backend.s3_bucket_name:
        backends["s3"] = InstrumentedBackend(_s3_backend(settings), metrics, timeout)
    if settings.backend.default_backend not in backends:
        setting = (
            "backend.s3_bucket_name"
            if settings.backend.default_backend == "s3"
            else "backend.localfs_root_path"
        )
        raise UnsupportedConfiguration(
            f"backend.default_backend is {settings.backend.default_backend!r} but that backend "
            f"is disabled (set {setting})"
        )
    return backends


def _s3_backend(settings: Settings) -> BlobBackendPort:
    from callfs_adapters.s3_blob import MinioBlobBackend

    backend = settings.backend
    return MinioBlobBackend.from_settings(
        bucket=backend.s3_bucket_name,
        prefix=backend.s3_prefix,
        endpoint=backend.s3_endpoint,
        region=backend.s3_region,
        access_key=backend.s3_access_key,
        secret_key=backend.s3_secret_key,
        sse=backend.s3_server_side_encryption,
        kms_key_id=backend.s3_kms_key_id,
        acl=backend.s3_acl,
        timeout=settings.server.file_op_timeout,
    )


def _peer_client(settings: Settings, metrics: Metrics) -> PeerClient | None:
    """The way to the other instances (api.md §1.10); None without peers."""
    discovery = settings.instance_discovery
    endpoints = {
        name: url for name, url in discovery.peer_endpoints.items() if name != discovery.instance_id
    }
    if not endpoints:
        return None
    return PeerClient(
        endpoints,
        settings.auth.internal_proxy_secret,
        read_timeout=settings.server.read_timeout or None,
        verify_tls=not settings.backend.internal_proxy_skip_tls_verify,
        metrics=metrics,
    )


def _engine_config(settings: Settings) -> EngineConfig:
    # api.md §3.4: known users are those who can log in plus root; known
    # groups are their primary groups, the configured groups and root.
    users = known_users(settings.auth) | {"root"}
    return EngineConfig(
        instance_id=settings.instance_discovery.instance_id,
        default_backend=settings.backend.default_backend,
        file_op_timeout=settings.server.file_op_timeout,
        max_upload_bytes=settings.server.max_upload_bytes,
        inline_max_bytes=settings.backend.localfs_inline_max_bytes,
        users=users,
        groups=users | frozenset(settings.auth.groups),
        peers=frozenset(settings.instance_discovery.peer_endpoints),
    )


def _http_settings(settings: Settings) -> HttpSettings:
    rl = settings.rate_limit
    return HttpSettings(
        external_url=settings.server.external_url,
        max_upload_bytes=settings.server.max_upload_bytes,
        generate_rps=rl.generate_rps,
        generate_burst=rl.generate_burst,
        download_rps=rl.download_rps,
        download_burst=rl.download_burst,
        version=VERSION,
        read_timeout=settings.server.read_timeout or None,
        write_timeout=settings.server.write_timeout or None,
    )


def _authenticator(settings: Settings) -> Authenticator:
    auth = settings.auth
    return Authenticator(
        build_identities(
            api_keys=auth.api_keys,
            api_key_users=auth.api_key_users,
            internal_proxy_secret=auth.internal_proxy_secret,
            groups=auth.groups,
            admin_users=auth.admin_users,
        )
    )


class Container(containers.DeclarativeContainer):
    """Builds the object graph from one validated :class:`Settings`."""

    settings = providers.Dependency(instance_of=Settings)
    metrics = providers.Singleton(Metrics)
    # None unless this process set up tracing: then no Traced* decorator is installed.
    tracer = providers.Callable(active_tracer)
    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(RandomIdGenerator)
    raw_metadata = providers.Singleton(_metadata_store, settings)
    metadata = providers.Singleton(
        _cached,
        settings,
        providers.Singleton(
            traced_metadata,
            providers.Singleton(
                InstrumentedMetadata,
                raw_metadata,
                metrics,
                providers.Callable(lambda s: s.server.metadata_op_timeout, settings),
            ),
            tracer,
        ),
        raw_metadata,
    )
    raw_locks = providers.Singleton(_lock_manager, settings, metrics)
    locks = providers.Singleton(
        traced_locks, providers.Singleton(InstrumentedLocks, raw_locks, metrics), tracer
    )
    commit_locks = providers.Singleton(_commit_locks, settings)
    backends = providers.Singleton(
        traced_backends, providers.Singleton(_backends, settings, metrics), tracer
    )
    signer = providers.Singleton(
        HmacLinkSigner, providers.Callable(lambda s: s.auth.single_use_link_secret, settings)
    )
    peers = providers.Singleton(_peer_client, settings, metrics)
    engine = providers.Singleton(
        traced_engine,
        providers.Singleton(
            Engine,
            metadata=metadata,
            backends=backends,
            locks=locks,
            signer=signer,
            clock=clock,
            ids=ids,
            config=providers.Callable(_engine_config, settings),
            commit_locks=commit_locks,
            peers=peers,
        ),
        tracer,
    )
    authenticator = providers.Singleton(_authenticator, settings)
    app = providers.Singleton(
        create_app,
        engine,
        providers.Callable(_http_settings, settings),
        authenticator=authenticator,
        metrics=metrics,
        generate_limiter=providers.Singleton(_rate_limiter, settings, "generate"),
        download_limiter=providers.Singleton(_rate_limiter, settings, "download"),
        tracer=tracer,
        peers=peers,
    )


async def open_resources(container: Container) -> None:
    """Open what needs opening before the engine runs (the metadata store)."""
    store = container.raw_metadata()
    await store.open()  # type: ignore[attr-defined]


async def check_storage(container: Container) -> None:
    """The start-up check of api.md §6.2: every object store is reachable and writable.

    Raises:
        BackendUnavailable: naming the bucket, the endpoint and the cause.
    """
    for backend in container.backends().values():
        check = getattr(_innermost(backend), "check_writable", None)
        if check is not None:
            await check()


def _innermost(port: object) -> object:
    """The adapter under its decorators (metrics, traces), which keep it as ``inner``."""
    while hasattr(port, "inner"):
        port = port.inner
    return port


async def close_resources(container: Container) -> None:
    """Close the metadata store, the lock service connection and the object stores."""
    try:
        await container.raw_metadata().close()
    finally:
        close = getattr(container.raw_locks(), "close", None)
        if close is not None:
            await close()
        for backend in container.backends().values():
            close_backend = getattr(_innermost(backend), "close", None)
            if close_backend is not None:
                await close_backend()
        peers = container.peers()
        if peers is not None:
            await peers.aclose()
