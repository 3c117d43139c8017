"""The settings objects of the `callfs` server (api.md §6.2).

Frozen attrs classes, one per configuration section, with the documented
defaults.  Defaults that depend on other keys (`backend.localfs_root_path`,
`metadata_store.sqlite_path`, `metadata_store.type`, `dlm.type`,
`dlm.redis_addr`) are resolved by `config.load_settings`; the static defaults
here match an unconfigured server with `server.data_dir=./callfs-data`.
"""

import os
from typing import Any

import attrs

from callfs_cli.config_values import GroupMap, Seconds, StrMap

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_DSN",
    "DEFAULT_INTERNAL_PROXY_SECRET",
    "DEFAULT_LINK_SECRET",
    "DEFAULT_REDIS_ADDR",
    "AuthSettings",
    "BackendSettings",
    "DlmSettings",
    "ErasureSettings",
    "HaSettings",
    "InstanceDiscoverySettings",
    "LoadedConfig",
    "LogSettings",
    "MetadataStoreSettings",
    "MetricsSettings",
    "RaftSettings",
    "RateLimitSettings",
    "ServerSettings",
    "Settings",
]

DEFAULT_DSN = "postgres://callfs:callfs@localhost/callfs?sslmode=require"
DEFAULT_INTERNAL_PROXY_SECRET = "change-me-internal-secret"
DEFAULT_LINK_SECRET = "change-me-link-secret"
DEFAULT_API_KEY = "default-api-key"
DEFAULT_REDIS_ADDR = "localhost:6379"
_LOG_LEVELS = ("debug", "info", "warn", "error")
_IDLE_TIMEOUT = Seconds(30.0)
_FILE_OP_TIMEOUT = Seconds(10.0)
_METADATA_OP_TIMEOUT = Seconds(5.0)
_CACHE_TTL = Seconds(300.0)


def _cpu_count() -> int:
    return os.cpu_count() or 1


def _lower(value: str) -> str:
    return value.strip().lower()


def _protocol(value: str) -> str:
    return value.strip().lower() or "https"


def _log_level(value: str) -> str:
    level = value.strip().lower()
    return level if level in _LOG_LEVELS else "info"


def _default_backend(value: str) -> str:
    name = value.strip().lower()
    if name in ("", "localfs"):
        return "localfs"
    if name == "s3":
        return "s3"
    return value  # kept verbatim so that validation can quote it


@attrs.frozen
class ServerSettings:
    listen_addr: str = ":8443"
    protocol: str = attrs.field(default="https", converter=_protocol)
    external_url: str = "localhost:8443"
    cert_file: str = "server.crt"
    key_file: str = "server.key"
    read_timeout: Seconds = _IDLE_TIMEOUT
    write_timeout: Seconds = _IDLE_TIMEOUT
    file_op_timeout: Seconds = _FILE_OP_TIMEOUT
    metadata_op_timeout: Seconds = _METADATA_OP_TIMEOUT
    data_dir: str = "./callfs-data"
    workers: int = attrs.field(factory=_cpu_count)
    http2: bool = False
    max_upload_bytes: int = 10737418240
    enable_quic: bool = False
    quic_listen_addr: str = ":8443"

    @property
    def use_tls(self) -> bool:
        """Whether the API listener speaks TLS (`auto`: when both PEM files are named)."""
        if self.protocol == "https":
            return True
        if self.protocol == "auto":
            return bool(self.cert_file) and bool(self.key_file)
        return False


@attrs.frozen
class AuthSettings:
    api_keys: tuple[str, ...] = ()
    api_key_users: StrMap = attrs.field(factory=dict)
    internal_proxy_secret: str = DEFAULT_INTERNAL_PROXY_SECRET
    single_use_link_secret: str = DEFAULT_LINK_SECRET
    groups: GroupMap = attrs.field(factory=dict)
    admin_users: tuple[str, ...] = ()


@attrs.frozen
class LogSettings:
    level: str = attrs.field(default="info", converter=_log_level)
    format: str = "json"


@attrs.frozen
class MetricsSettings:
    listen_addr: str = ":9090"


@attrs.frozen
class BackendSettings:
    default_backend: str = attrs.field(default="localfs", converter=_default_backend)
    localfs_root_path: str = "./callfs-data/files"
    localfs_inline_max_bytes: int = 16384
    s3_bucket_name: str = ""
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_endpoint: str = ""
    s3_server_side_encryption: str = "AES256"
    s3_kms_key_id: str = ""
    s3_acl: str = "private"
    internal_proxy_skip_tls_verify: bool = False


@attrs.frozen
class MetadataStoreSettings:
    type: str = attrs.field(default="sqlite", converter=_lower)
    dsn: str = DEFAULT_DSN
    sqlite_path: str = "./callfs-data/callfs.sqlite3"
    redis_addr: str = DEFAULT_REDIS_ADDR
    redis_password: str = ""
    redis_db: int = 0
    redis_key_prefix: str = "callfs:"
    # (new) connections of the PostgreSQL pool, per worker process
    pool_max_size: int = 10
    # (new) metadata cache: entry lifetime (0 disables) and size; used only
    # where it cannot go stale (one process owning an SQLite database)
    cache_ttl: Seconds = _CACHE_TTL
    cache_entries: int = 1000


@attrs.frozen
class DlmSettings:
    type: str = attrs.field(default="local", converter=_lower)
    redis_addr: str = ""
    redis_password: str = ""


@attrs.frozen
class InstanceDiscoverySettings:
    instance_id: str = "callfs-instance-1"
    peer_endpoints: StrMap = attrs.field(factory=dict)


@attrs.frozen
class RateLimitSettings:
    generate_rps: float = 100.0
    generate_burst: int = 1
    download_rps: float = 10.0
    download_burst: int = 5


@attrs.frozen
class RaftSettings:
    """Accepted for compatibility with CallFS 1.6 and ignored (api.md §7)."""

    enabled: Any = None
    node_id: Any = None
    bind_addr: Any = None
    data_dir: Any = None
    bootstrap: Any = None
    peers: Any = None
    api_peer_endpoints: Any = None
    apply_timeout: Any = None
    forward_timeout: Any = None
    snapshot_interval: Any = None
    snapshot_threshold: Any = None
    retain_snapshot_count: Any = None


@attrs.frozen
class HaSettings:
    """Replication is not supported: `replication_enabled` must stay false."""

    replication_enabled: bool = False
    replica_backend: Any = None
    require_replica_success: Any = None


@attrs.frozen
class ErasureSettings:
    """Accepted and ignored: files are stored whole (warning when `enabled`)."""

    enabled: bool = False
    data_shards: Any = None
    parity_shards: Any = None
    min_file_size: Any = None
    shard_backend: Any = None
    shard_path: Any = None


@attrs.frozen
class Settings:
    server: ServerSettings = attrs.field(factory=ServerSettings)
    auth: AuthSettings = attrs.field(factory=AuthSettings)
    log: LogSettings = attrs.field(factory=LogSettings)
    metrics: MetricsSettings = attrs.field(factory=MetricsSettings)
    backend: BackendSettings = attrs.field(factory=BackendSettings)
    metadata_store: MetadataStoreSettings = attrs.field(factory=MetadataStoreSettings)
    dlm: DlmSettings = attrs.field(factory=DlmSettings)
    instance_discovery: InstanceDiscoverySettings = attrs.field(factory=InstanceDiscoverySettings)
    rate_limit: RateLimitSettings = attrs.field(factory=RateLimitSettings)
    raft: RaftSettings = attrs.field(factory=RaftSettings)
    ha: HaSettings = attrs.field(factory=HaSettings)
    erasure: ErasureSettings = attrs.field(factory=ErasureSettings)


@attrs.frozen
class LoadedConfig:
    """The result of :func:`load_settings`.

    Attributes:
        settings: the structured settings, derived defaults resolved.
        warnings: unknown keys and variables, keys accepted but ignored.
        quickstart: no API key, no `auth.api_key_users` and neither secret was
            configured (file or environment): `callfs server` generates them.
        source: the configuration file that was read, if any.
        tls_configured: `server.cert_file` or `server.key_file` was configured.
        configured: dotted names of every key set by the file or the environment.
        log_mode: `CALLFS_LOG_MODE` (`production`, `development` or `debug`).
    """

    settings: Settings
    warnings: tuple[str, ...] = ()
    quickstart: bool = False
    source: str | None = None
    tls_configured: bool = False
    configured: frozenset[str] = frozenset()
    log_mode: str = "production"
