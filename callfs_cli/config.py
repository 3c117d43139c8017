"""Configuration of the `callfs` server: frozen settings, loading and validation (api.md §6).

Sources, lowest precedence first: the defaults below, a YAML or JSON file, and
`CALLFS_*` environment variables.  :func:`load_settings` reads them once into
frozen attrs objects; :func:`validate` applies the rules of api.md §6.3 in their
documented order and stops at the first error.  Nothing here runs at import
time: the environment and the disk are read only when `load_settings` is called.
"""

import difflib
import functools
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import cattrs
import yaml

from callfs_cli.config_env import EnvAssignment, read_environment
from callfs_cli.config_model import (
    DEFAULT_API_KEY,
    DEFAULT_INTERNAL_PROXY_SECRET,
    DEFAULT_LINK_SECRET,
    DEFAULT_REDIS_ADDR,
    AuthSettings,
    BackendSettings,
    DlmSettings,
    ErasureSettings,
    HaSettings,
    InstanceDiscoverySettings,
    LoadedConfig,
    LogSettings,
    MetadataStoreSettings,
    MetricsSettings,
    RaftSettings,
    RateLimitSettings,
    ServerSettings,
    Settings,
)
from callfs_cli.config_values import (
    GroupMap,
    StrMap,
    ValueFormError,
    make_converter,
    parse_group_map,
    parse_str_map,
)

__all__ = [
    "AuthSettings",
    "BackendSettings",
    "ConfigError",
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
    "known_users",
    "load_settings",
    "mask_dsn",
    "validate",
    "validate_settings",
]

CONFIG_FILE_NAMES = ("config.yaml", "config.yml", "config.json")
LOG_MODES = ("production", "development", "debug")


class ConfigError(Exception):
    """The configuration cannot be loaded or does not pass validation."""


def _schema() -> dict[str, dict[str, Any]]:
    """Section name -> key name -> declared type, taken from the attrs classes."""
    schema: dict[str, dict[str, Any]] = {}
    for section in attrs.fields(Settings):
        section_type = section.type
        assert isinstance(section_type, type)
        schema[section.name] = {key.name: key.type for key in attrs.fields(section_type)}
    return schema


_AUTH_KEYS = (
    "auth.api_keys",
    "auth.api_key_users",
    "auth.internal_proxy_secret",
    "auth.single_use_link_secret",
)


def _closest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _find_file(config_file: str | None, cwd: str) -> str | None:
    if config_file:
        try:
            os.stat(os.path.join(cwd, config_file))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(f"specified config file {config_file} not found: {reason}") from exc
        return config_file
    for name in CONFIG_FILE_NAMES:
        if os.path.isfile(os.path.join(cwd, name)):
            return name
    return None


def _read_file(path: str, cwd: str) -> Mapping[Any, Any]:
    suffix = Path(path).suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ConfigError(
            f"unsupported config file {path}: the name must end in .yaml, .yml or .json"
        )
    try:
        with open(os.path.join(cwd, path), encoding="utf-8") as stream:
            data = json.load(stream) if suffix == ".json" else yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"failed to load config file {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"failed to load config file {path}: the top level must be a mapping of sections"
        )
    return data


class _Raw:
    """Raw values gathered from the file and the environment, before structuring."""

    def __init__(self, schema: Mapping[str, Mapping[str, Any]]) -> None:
        self.schema = schema
        self.values: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, str] = {}
        self.configured: set[str] = set()
        self.warnings: list[str] = []

    def set(self, section: str, key: str, value: Any, source: str) -> None:
        self.values.setdefault(section, {})[key] = value
        self.sources[f"{section}.{key}"] = source
        self.configured.add(f"{section}.{key}")

    def add_file(self, data: Mapping[Any, Any], path: str) -> None:
        sections = list(self.schema)
        for raw_section, body in data.items():
            section = str(raw_section)
            if section not in self.schema:
                self.warnings.append(
                    f'unknown configuration section "{section}" in {path} ignored'
                    + _closest(section, sections)
                )
                continue
            if body is None:
                continue
            if not isinstance(body, Mapping):
                raise ConfigError(
                    f'failed to load config file {path}: "{section}" must be a mapping of keys'
                )
            names = [f"{section}.{name}" for name in self.schema[section]]
            for raw_key, value in body.items():
                key = str(raw_key)
                if key not in self.schema[section]:
                    self.warnings.append(
                        f'unknown configuration key "{section}.{key}" in {path} ignored'
                        + _closest(f"{section}.{key}", names)
                    )
                    continue
                self.set(section, key, value, path)

    def add_environment(self, assignments: list[EnvAssignment]) -> None:
        for item in assignments:
            if item.entry is None:
                self.set(item.section, item.key, item.value, item.variable)
                continue
            current = self.values.get(item.section, {}).get(item.key)
            is_groups = self.schema[item.section][item.key] == GroupMap
            parse = parse_group_map if is_groups else parse_str_map
            try:
                merged: dict[str, Any] = dict(parse(current))
            except ValueFormError as exc:
                dotted = f"{item.section}.{item.key}"
                raise ConfigError(_invalid(self.describe(dotted), dotted, exc)) from exc
            merged[item.entry] = item.value
            self.set(item.section, item.key, merged, item.variable)

    def describe(self, dotted: str) -> str:
        source = self.sources.get(dotted)
        return f"{dotted} (from {source})" if source else dotted


_PATH = re.compile(r"^\$\.?")
_SENSITIVE = re.compile(r"secret|password|api_key|dsn")


def _invalid(described: str, dotted: str, error: ValueFormError) -> str:
    # Values of keys and secrets are never repeated in messages, which end up in logs.
    problem = error.redacted() if _SENSITIVE.search(dotted) else str(error)
    return f"invalid value for {described}: {problem}"


@functools.cache
def _converter() -> cattrs.Converter:
    return make_converter()  # built on first use, not at import


def _structure(raw: _Raw) -> Settings:
    converter = _converter()
    try:
        return converter.structure(raw.values, Settings)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        if not isinstance(exc, cattrs.BaseValidationError):
            raise ConfigError(f"invalid configuration value: {exc}") from exc

        errors: list[ValueFormError] = []

        def describe(error: BaseException, _type: Any) -> str:
            if isinstance(error, ValueFormError):
                errors.append(error)
                return f"#{len(errors) - 1}"
            return f"invalid value ({type(error).__name__})"

        problems = []
        for line in cattrs.transform_error(exc, path="$", format_exception=describe):
            message, _, path = line.rpartition(" @ ")
            dotted = _PATH.sub("", path)
            if message.startswith("#"):
                error = errors[int(message[1:])]
                problems.append(_invalid(raw.describe(dotted), dotted, error))
            else:
                problems.append(f"{message} for {raw.describe(dotted)}")
        raise ConfigError("; ".join(problems)) from exc


def _resolve_defaults(settings: Settings, configured: set[str]) -> Settings:
    data_dir = settings.server.data_dir
    backend = settings.backend
    if "backend.localfs_root_path" not in configured:
        backend = attrs.evolve(backend, localfs_root_path=os.path.join(data_dir, "files"))
    store = settings.metadata_store
    if "metadata_store.sqlite_path" not in configured:
        store = attrs.evolve(store, sqlite_path=os.path.join(data_dir, "callfs.sqlite3"))
    if not store.type or "metadata_store.type" not in configured:
        dsn_set = "metadata_store.dsn" in configured and bool(store.dsn.strip())
        store = attrs.evolve(store, type="postgres" if dsn_set else "sqlite")
    dlm = settings.dlm
    if not dlm.type or "dlm.type" not in configured:
        addr_set = "dlm.redis_addr" in configured and bool(dlm.redis_addr.strip())
        dlm = attrs.evolve(dlm, type="redis" if addr_set else "local")
    if dlm.type == "redis" and "dlm.redis_addr" not in configured:
        dlm = attrs.evolve(dlm, redis_addr=DEFAULT_REDIS_ADDR)
    return attrs.evolve(settings, backend=backend, metadata_store=store, dlm=dlm)


def _notices(settings: Settings) -> list[str]:
    notices = []
    if settings.server.enable_quic:
        notices.append(
            "server.enable_quic=true is ignored: this server does not support HTTP/3 or QUIC "
            "and listens on TCP only"
        )
    if settings.erasure.enabled:
        notices.append("erasure.enabled=true is ignored: files are stored whole")
    if settings.metadata_store.type == "redis":
        notices.append(
            'metadata_store.type "redis" is not available in this release; '
            'use "postgres" or "sqlite"'
        )
    return notices


def load_settings(
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> LoadedConfig:
    """Read the configuration: defaults < file < environment (api.md §6.1).

    Args:
        config_file: the `--config` file, which must exist; without it the first
            of `config.yaml`, `config.yml`, `config.json` found in `cwd` is read.
        environ: the environment (default: `os.environ`).
        cwd: the folder in which the config file is looked up and a relative
            `config_file` is resolved (default: the working directory).  Paths
            inside the configuration are not rewritten.

    Raises:
        ConfigError: the file is missing, unreadable or has another extension, or
            a value is malformed (the message names the key and the expected form).
    """
    environment = os.environ if environ is None else environ
    folder = os.getcwd() if cwd is None else cwd
    schema = _schema()
    raw = _Raw(schema)

    source = _find_file(config_file, folder)
    if source is not None:
        raw.add_file(_read_file(source, folder), source)

    map_keys = [
        (section, key)
        for section, keys in schema.items()
        for key, declared in keys.items()
        if declared in (StrMap, GroupMap)
    ]
    assignments, env_warnings = read_environment(environment, schema, map_keys)
    raw.add_environment(assignments)
    raw.warnings.extend(env_warnings)

    settings = _resolve_defaults(_structure(raw), raw.configured)
    warnings = [*raw.warnings, *_notices(settings)]

    log_mode = environment.get("CALLFS_LOG_MODE", "").strip().lower() or "production"
    if log_mode not in LOG_MODES:
        warnings.append(
            f'CALLFS_LOG_MODE "{log_mode}" is not one of production, development, debug; '
            "using production"
        )
        log_mode = "production"

    return LoadedConfig(
        settings=settings,
        warnings=tuple(warnings),
        quickstart=not any(key in raw.configured for key in _AUTH_KEYS),
        source=source,
        tls_configured="server.cert_file" in raw.configured or "server.key_file" in raw.configured,
        configured=frozenset(raw.configured),
        log_mode=log_mode,
    )


# --- validation (api.md §6.3) -------------------------------------------------------------------


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _check_server(server: ServerSettings) -> str | None:
    if not server.listen_addr.strip():
        return "server.listen_addr is required"
    if server.protocol not in ("http", "https", "auto"):
        return "server.protocol must be one of: http, https, auto"
    if server.protocol == "https" and not (server.cert_file.strip() and server.key_file.strip()):
        return "server.cert_file and server.key_file are required when server.protocol=https"
    for name in ("file_op_timeout", "metadata_op_timeout", "max_upload_bytes"):
        if getattr(server, name) <= 0:
            return f"server.{name} must be > 0"
    for name in ("read_timeout", "write_timeout"):
        if getattr(server, name) < 0:
            return f"server.{name} must not be negative"
    if server.workers <= 0:
        return "server.workers must be > 0"
    return None


def _check_metadata_store(store: MetadataStoreSettings) -> str | None:
    if store.type == "raft":
        return (
            'metadata_store.type "raft" is not supported by this server; use "postgres" '
            '(recommended, also for multi-instance deployments), "sqlite" or "redis"'
        )
    required = {"postgres": "dsn", "sqlite": "sqlite_path", "redis": "redis_addr"}
    if store.type not in required:
        return "metadata_store.type must be one of: postgres, sqlite, redis"
    key = required[store.type]
    if not str(getattr(store, key)).strip():
        return f"metadata_store.{key} is required when metadata_store.type={store.type}"
    if store.pool_max_size < 1:
        return "metadata_store.pool_max_size must be > 0"
    if store.cache_ttl < 0:
        return "metadata_store.cache_ttl must not be negative"
    if store.cache_entries < 0:
        return "metadata_store.cache_entries must not be negative"
    return None


def _check_dlm(dlm: DlmSettings) -> str | None:
    if dlm.type not in ("redis", "local"):
        return "dlm.type must be one of: redis, local"
    if dlm.type == "redis" and not dlm.redis_addr.strip():
        return "dlm.redis_addr is required when dlm.type=redis"
    return None


def _check_instances(discovery: InstanceDiscoverySettings) -> str | None:
    if not discovery.instance_id.strip():
        return "instance_discovery.instance_id is required"
    for instance, url in discovery.peer_endpoints.items():
        scheme, sep, rest = url.strip().partition("://")
        host = rest.split("/", 1)[0]
        if not sep or scheme.lower() not in ("http", "https") or not host:
            return (
                f"instance_discovery.peer_endpoints.{instance} must be an http:// or https:// URL"
            )
    return None


_RESERVED_USER = re.compile(r"^(root|internal-proxy|api-user-\d+)$")


def _check_auth(auth: AuthSettings, quickstart: bool) -> str | None:
    listed = [(index, key) for index, key in enumerate(auth.api_keys) if key]
    users = list(auth.api_key_users.items())
    if not quickstart and not listed and not users:
        return "auth.api_keys or auth.api_key_users must contain at least one key"
    if any(key == DEFAULT_API_KEY for _, key in listed):
        return f"auth.api_keys must not use default value '{DEFAULT_API_KEY}'"
    if any(key == DEFAULT_API_KEY for _, key in users):
        return f"auth.api_key_users must not use default value '{DEFAULT_API_KEY}'"
    if any(len(key.encode("utf-8")) < 16 for _, key in listed):
        return "auth.api_keys: each key must be at least 16 characters"
    if any(len(key.encode("utf-8")) < 16 for _, key in users):
        return "auth.api_key_users: each key must be at least 16 characters"
    owners: dict[str, str] = {}
    for index, key in listed:
        if key in owners:
            return f"auth.api_keys: key at index {index} is already configured for {owners[key]}"
        owners[key] = f"api_keys index {index}"
    if any(not user.strip() for user, _ in users):
        return "auth.api_key_users: user ID must not be empty"
    for user, _ in users:
        if _RESERVED_USER.match(user):
            return f"auth.api_key_users: user ID {_q(user)} is reserved"
    for user, key in users:
        if key in owners:
            return f"auth.api_key_users: key for {_q(user)} is already configured for {owners[key]}"
        owners[key] = f"api_key_users {_q(user)}"
    if auth.internal_proxy_secret and auth.internal_proxy_secret in owners:
        return "auth.internal_proxy_secret must not be reused as an API key"
    if not quickstart:
        if auth.internal_proxy_secret in ("", DEFAULT_INTERNAL_PROXY_SECRET):
            return "auth.internal_proxy_secret must be set and not use default value"
        if auth.single_use_link_secret in ("", DEFAULT_LINK_SECRET):
            return "auth.single_use_link_secret must be set and not use default value"
    return None


def known_users(auth: AuthSettings, quickstart: bool = False) -> frozenset[str]:
    """User names that can authenticate (api.md §1.4); `admin` in quickstart mode."""
    count = sum(1 for key in auth.api_keys if key)
    names = {f"api-user-{n}" for n in range(count)} | set(auth.api_key_users) | {"internal-proxy"}
    if quickstart:
        names.add("admin")
    return frozenset(names)


def _check_groups(auth: AuthSettings, quickstart: bool) -> str | None:
    if any(not group.strip() for group in auth.groups):
        return "auth.groups: group name must not be empty"
    if "root" in auth.groups:
        return 'auth.groups: group name "root" is reserved'
    users = known_users(auth, quickstart)
    for group, members in auth.groups.items():
        for member in members:
            if member not in users:
                return f"auth.groups.{group}: unknown user {_q(member)}"
    for user in auth.admin_users:
        if user not in users:
            return f"auth.admin_users: unknown user {_q(user)}"
    return None


def _check_backend(backend: BackendSettings) -> str | None:
    if backend.default_backend not in ("localfs", "s3"):
        got = _q(backend.default_backend)
        return f"backend.default_backend must be one of: localfs, s3 (got {got})"
    if backend.default_backend == "s3" and not backend.s3_bucket_name:
        return "backend.s3_bucket_name is required when backend.default_backend=s3"
    if backend.s3_server_side_encryption not in _SSE_VALUES:
        got = _q(backend.s3_server_side_encryption)
        return (
            "backend.s3_server_side_encryption must be one of: AES256, aws:kms or empty "
            f"(got {got})"
        )
    if backend.s3_kms_key_id and backend.s3_server_side_encryption != "aws:kms":
        return "backend.s3_kms_key_id is only used with backend.s3_server_side_encryption=aws:kms"
    if not 0 <= backend.localfs_inline_max_bytes <= MAX_INLINE_BYTES:
        return (
            f"backend.localfs_inline_max_bytes must be between 0 and {MAX_INLINE_BYTES}"
            f" (got {backend.localfs_inline_max_bytes})"
        )
    if backend.s3_endpoint and not _valid_endpoint(backend.s3_endpoint):
        # The value is not echoed: a URL with user:password@ would leak a secret.
        return "backend.s3_endpoint must be an http:// or https:// URL or host:port"
    return None


_SSE_VALUES: Final = ("", "AES256", "aws:kms")
MAX_INLINE_BYTES: Final = 1024 * 1024  # a database row, not a file system


def _valid_endpoint(endpoint: str) -> bool:
    """``http(s)://host[:port]`` (no path, query or credentials) or a bare ``host[:port]``."""
    text = endpoint if "://" in endpoint else f"https://{endpoint}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
        and parts.username is None
    )


def _check_rate_limit(limits: RateLimitSettings) -> str | None:
    for name in ("generate_rps", "download_rps"):
        if getattr(limits, name) < 0:
            return f"rate_limit.{name} must be >= 0"
    for name in ("generate_burst", "download_burst"):
        if getattr(limits, name) < 1:
            return f"rate_limit.{name} must be >= 1"
    return None


def validate_settings(settings: Settings, quickstart: bool = False) -> None:
    """Apply api.md §6.3 in order; the first error stops.

    With `quickstart`, the checks for a missing key and for the two secrets are
    skipped (the server generates them) and `admin` is a known user.

    Raises:
        ConfigError: `config validation failed: <rule message>`.
    """
    for problem in _problems(settings, quickstart):
        if problem is not None:
            raise ConfigError(f"config validation failed: {problem}")


def _problems(settings: Settings, quickstart: bool) -> Iterator[str | None]:
    # A generator, so that checking stops at the first problem (rule order of §6.3).
    yield _check_server(settings.server)
    yield _check_metadata_store(settings.metadata_store)
    yield _check_dlm(settings.dlm)
    if settings.ha.replication_enabled:
        yield "ha.replication_enabled=true is not supported by this server"
    yield _check_instances(settings.instance_discovery)
    yield _check_auth(settings.auth, quickstart)
    yield _check_groups(settings.auth, quickstart)
    yield _check_backend(settings.backend)
    yield _check_rate_limit(settings.rate_limit)


def validate(loaded: LoadedConfig) -> None:
    """Validate loaded settings (api.md §6.3), honouring quickstart mode."""
    validate_settings(loaded.settings, quickstart=loaded.quickstart)


def mask_dsn(dsn: str) -> str:
    """Mask a DSN for display: empty stays empty; over 20 characters keep 10 + `***` + 7."""
    if not dsn:
        return ""
    if len(dsn) > 20:
        return f"{dsn[:10]}***{dsn[-7:]}"
    return "***"
