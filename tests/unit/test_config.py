"""Configuration loading and validation (api.md §6.1–§6.3).

Every test passes `environ=` and `cwd=` explicitly: nothing here reads the real
process environment or working folder.
"""

import json
from pathlib import Path

import pytest

from callfs_cli.config import (
    ConfigError,
    LoadedConfig,
    ServerSettings,
    Settings,
    load_settings,
    mask_dsn,
    validate,
    validate_settings,
)

VALID = {
    "CALLFS_AUTH_API_KEYS": "key-0123456789abcdef",
    "CALLFS_AUTH_INTERNAL_PROXY_SECRET": "proxy-secret",
    "CALLFS_AUTH_SINGLE_USE_LINK_SECRET": "link-secret",
}
KEY_A = "alpha-key-0123456789"
KEY_B = "bravo-key-0123456789"


def load(tmp_path: Path, env: dict[str, str] | None = None, **kwargs: str) -> LoadedConfig:
    return load_settings(environ=env or {}, cwd=str(tmp_path), **kwargs)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def validation_error(tmp_path: Path, env: dict[str, str]) -> str:
    loaded = load(tmp_path, env)
    with pytest.raises(ConfigError) as caught:
        validate(loaded)
    return str(caught.value)


# --- defaults ----------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    s = loaded.settings
    assert loaded.source is None
    assert loaded.warnings == ()
    assert s.server.listen_addr == ":8443"
    assert s.server.protocol == "https"
    assert s.server.external_url == "localhost:8443"
    assert (s.server.cert_file, s.server.key_file) == ("server.crt", "server.key")
    assert (s.server.read_timeout, s.server.write_timeout) == (30.0, 30.0)
    assert (s.server.file_op_timeout, s.server.metadata_op_timeout) == (10.0, 5.0)
    assert s.server.data_dir == "./callfs-data"
    assert s.server.workers >= 1
    assert s.server.http2 is False
    assert s.server.max_upload_bytes == 10737418240
    assert s.server.enable_quic is False
    assert s.server.quic_listen_addr == ":8443"
    assert s.auth.api_keys == ()
    assert s.auth.api_key_users == {}
    assert s.auth.internal_proxy_secret == "change-me-internal-secret"
    assert s.auth.single_use_link_secret == "change-me-link-secret"
    assert (s.auth.groups, s.auth.admin_users) == ({}, ())
    assert (s.log.level, s.log.format) == ("info", "json")
    assert s.metrics.listen_addr == ":9090"
    assert s.backend.default_backend == "localfs"
    assert s.backend.localfs_root_path == "./callfs-data/files"
    assert s.backend.s3_region == "us-east-1"
    assert s.backend.s3_server_side_encryption == "AES256"
    assert s.backend.s3_acl == "private"
    assert s.backend.internal_proxy_skip_tls_verify is False
    assert s.metadata_store.type == "sqlite"
    assert s.metadata_store.dsn == "postgres://callfs:callfs@localhost/callfs?sslmode=require"
    assert s.metadata_store.sqlite_path == "./callfs-data/callfs.sqlite3"
    assert s.metadata_store.redis_addr == "localhost:6379"
    assert (s.metadata_store.redis_db, s.metadata_store.redis_key_prefix) == (0, "callfs:")
    assert (s.dlm.type, s.dlm.redis_addr) == ("local", "")
    assert s.instance_discovery.instance_id == "callfs-instance-1"
    assert s.instance_discovery.peer_endpoints == {}
    assert s.rate_limit.generate_rps == 100 and s.rate_limit.generate_burst == 1
    assert s.rate_limit.download_rps == 10 and s.rate_limit.download_burst == 5
    assert s.ha.replication_enabled is False and s.erasure.enabled is False


def test_the_real_environment_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLFS_SERVER_LISTEN_ADDR", ":1111")
    assert load(tmp_path).settings.server.listen_addr == ":8443"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.server.listen_addr = ":1"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("protocol", "cert", "key", "expected"),
    [
        ("https", "", "", True),
        ("http", "a.crt", "a.key", False),
        ("auto", "a.crt", "a.key", True),
        ("auto", "a.crt", "", False),
        ("auto", "", "", False),
    ],
)
def test_use_tls(protocol: str, cert: str, key: str, expected: bool) -> None:
    server = ServerSettings(protocol=protocol, cert_file=cert, key_file=key)
    assert server.use_tls is expected


# --- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("config.yaml", "server:\n  listen_addr: ':7000'\n"),
        ("config.yml", "server:\n  listen_addr: ':7000'\n"),
        ("config.json", '{"server": {"listen_addr": ":7000"}}'),
    ],
)
def test_default_config_files(tmp_path: Path, name: str, text: str) -> None:
    write(tmp_path, name, text)
    loaded = load(tmp_path)
    assert loaded.source == name
    assert loaded.settings.server.listen_addr == ":7000"


def test_default_file_order_yaml_then_yml_then_json(tmp_path: Path) -> None:
    write(tmp_path, "config.json", '{"server": {"listen_addr": ":3"}}')
    write(tmp_path, "config.yml", "server: {listen_addr: ':2'}")
    assert load(tmp_path).settings.server.listen_addr == ":2"
    write(tmp_path, "config.yaml", "server: {listen_addr: ':1'}")
    assert load(tmp_path).settings.server.listen_addr == ":1"


def test_explicit_file_wins_over_default_files(tmp_path: Path) -> None:
    write(tmp_path, "config.yaml", "server: {listen_addr: ':1'}")
    write(tmp_path, "custom.json", '{"server": {"listen_addr": ":9"}}')
    loaded = load(tmp_path, config_file="custom.json")
    assert (loaded.source, loaded.settings.server.listen_addr) == ("custom.json", ":9")


def test_explicit_absolute_path(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yml", "log: {level: debug}")
    assert load_settings(str(path), environ={}, cwd="/").settings.log.level == "debug"


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, config_file="missing.yaml")
    assert str(caught.value) == (
        "specified config file missing.yaml not found: No such file or directory"
    )


@pytest.mark.parametrize("name", ["config.toml", "config", "config.ini"])
def test_other_extensions_are_an_error(tmp_path: Path, name: str) -> None:
    write(tmp_path, name, "server: {}")
    with pytest.raises(ConfigError, match=r"\.yaml, \.yml or \.json"):
        load(tmp_path, config_file=name)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("config.yaml", "server: [unclosed"),
        ("config.json", "{not json"),
        ("config.yaml", "- a\n- b\n"),
        ("config.yaml", "server: 5\n"),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, text: str) -> None:
    write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=f"^failed to load config file {name}: "):
        load(tmp_path)


def test_empty_file_and_empty_section(tmp_path: Path) -> None:
    write(tmp_path, "config.yaml", "")
    loaded = load(tmp_path)
    assert loaded.source == "config.yaml"
    assert loaded.settings == Settings(
        server=ServerSettings(workers=loaded.settings.server.workers)
    )
    write(tmp_path, "config.yaml", "server:\nauth:\n")
    assert load(tmp_path).settings.server.listen_addr == ":8443"


def test_unknown_file_keys_are_ignored_with_a_warning(tmp_path: Path) -> None:
    write(tmp_path, "config.yaml", "server:\n  listen_adr: ':1'\nservr:\n  x: 1\n")
    loaded = load(tmp_path)
    assert loaded.settings.server.listen_addr == ":8443"
    assert loaded.warnings == (
        'unknown configuration key "server.listen_adr" in config.yaml ignored; '
        'did you mean "server.listen_addr"?',
        'unknown configuration section "servr" in config.yaml ignored; did you mean "server"?',
    )


def test_ignored_sections_are_accepted_silently(tmp_path: Path) -> None:
    write(
        tmp_path,
        "config.yaml",
        "raft:\n  enabled: true\n  node_id: n1\n  peers: [a, b]\n  apply_timeout: 5s\n"
        "ha:\n  replica_backend: s3\n  require_replica_success: true\n"
        "erasure:\n  data_shards: 4\n",
    )
    loaded = load(tmp_path)
    assert loaded.warnings == ()
    assert loaded.settings.raft.node_id == "n1"


def test_typed_file_values(tmp_path: Path) -> None:
    write(
        tmp_path,
        "config.yaml",
        """
server:
  read_timeout: 45
  write_timeout: 1m
  workers: 3
  http2: true
  max_upload_bytes: 1024
auth:
  api_keys: [one-key-0123456789, 12345678901234567]
  api_key_users: {alice: alice-key-0123456789}
  groups: {devs: [alice, api-user-0], ops: "alice, api-user-1"}
  admin_users: alice
instance_discovery:
  instance_id: 7
  peer_endpoints: {node-2: "https://node2:8443"}
rate_limit:
  generate_rps: 0.5
""",
    )
    s = load(tmp_path).settings
    assert (s.server.read_timeout, s.server.write_timeout) == (45.0, 60.0)
    assert (s.server.workers, s.server.http2, s.server.max_upload_bytes) == (3, True, 1024)
    assert s.auth.api_keys == ("one-key-0123456789", "12345678901234567")
    assert s.auth.api_key_users == {"alice": "alice-key-0123456789"}
    assert s.auth.groups == {"devs": ("alice", "api-user-0"), "ops": ("alice", "api-user-1")}
    assert s.auth.admin_users == ("alice",)
    assert s.instance_discovery.instance_id == "7"
    assert s.instance_discovery.peer_endpoints == {"node-2": "https://node2:8443"}
    assert s.rate_limit.generate_rps == 0.5


# --- environment -------------------------------------------------------------------------------


def test_precedence_defaults_then_file_then_environment(tmp_path: Path) -> None:
    write(tmp_path, "config.yaml", "server:\n  listen_addr: ':1'\n  workers: 3\n")
    loaded = load(tmp_path, {"CALLFS_SERVER_LISTEN_ADDR": ":2"})
    assert loaded.settings.server.listen_addr == ":2"  # environment over file
    assert loaded.settings.server.workers == 3  # file over default
    assert loaded.settings.server.external_url == "localhost:8443"  # default


@pytest.mark.parametrize(
    ("variable", "value", "path", "expected"),
    [
        ("CALLFS_SERVER_LISTEN_ADDR", ":9000", ("server", "listen_addr"), ":9000"),
        ("CALLFS_SERVER__LISTEN_ADDR", ":9000", ("server", "listen_addr"), ":9000"),
        ("CALLFS_METADATA_STORE_DSN", "postgres://x", ("metadata_store", "dsn"), "postgres://x"),
        ("CALLFS_METADATA_STORE__DSN", "postgres://x", ("metadata_store", "dsn"), "postgres://x"),
        ("CALLFS_BACKEND_S3_ACCESS_KEY", "AKIA", ("backend", "s3_access_key"), "AKIA"),
        ("CALLFS_BACKEND__S3_ACCESS_KEY", "AKIA", ("backend", "s3_access_key"), "AKIA"),
        ("CALLFS_METADATA_STORE_REDIS_DB", "3", ("metadata_store", "redis_db"), 3),
        ("CALLFS_RATE_LIMIT_DOWNLOAD_BURST", "9", ("rate_limit", "download_burst"), 9),
        (
            "CALLFS_BACKEND_LOCALFS_INLINE_MAX_BYTES",
            "0",
            ("backend", "localfs_inline_max_bytes"),
            0,
        ),
        ("CALLFS_RATE_LIMIT__GENERATE_RPS", "2.5", ("rate_limit", "generate_rps"), 2.5),
        (
            "CALLFS_INSTANCE_DISCOVERY_INSTANCE_ID",
            "node-1",
            ("instance_discovery", "instance_id"),
            "node-1",
        ),
        (
            "CALLFS_BACKEND_INTERNAL_PROXY_SKIP_TLS_VERIFY",
            "TRUE",
            ("backend", "internal_proxy_skip_tls_verify"),
            True,
        ),
        ("CALLFS_AUTH_API_KEYS", "a, b,,c", ("auth", "api_keys"), ("a", "b", "c")),
        ("CALLFS_AUTH_API_KEYS", '["a,1", "b"]', ("auth", "api_keys"), ("a,1", "b")),
        ("CALLFS_AUTH_ADMIN_USERS", "alice,bob", ("auth", "admin_users"), ("alice", "bob")),
        ("CALLFS_AUTH_ADMIN_USERS", "", ("auth", "admin_users"), ()),
        (
            "CALLFS_AUTH_API_KEY_USERS",
            '{"Alice": "k"}',
            ("auth", "api_key_users"),
            {"Alice": "k"},
        ),
        (
            "CALLFS_AUTH_GROUPS",
            '{"devs": ["alice", "bob"]}',
            ("auth", "groups"),
            {"devs": ("alice", "bob")},
        ),
        (
            "CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS",
            '{"node-2": "https://node2:8443", "node-3": "http://node3"}',
            ("instance_discovery", "peer_endpoints"),
            {"node-2": "https://node2:8443", "node-3": "http://node3"},
        ),
        (
            "CALLFS_AUTH__API_KEY_USERS__ALICE",
            "alice-key",
            ("auth", "api_key_users"),
            {"alice": "alice-key"},
        ),
        (
            "CALLFS_INSTANCE_DISCOVERY__PEER_ENDPOINTS__NODE_2",
            "https://n2",
            ("instance_discovery", "peer_endpoints"),
            {"node_2": "https://n2"},
        ),
        ("CALLFS_AUTH__GROUPS__DEVS", "alice,bob", ("auth", "groups"), {"devs": ("alice", "bob")}),
    ],
)
def test_environment_spellings(
    tmp_path: Path, variable: str, value: str, path: tuple[str, str], expected: object
) -> None:
    loaded = load(tmp_path, {variable: value})
    section, key = path
    assert getattr(getattr(loaded.settings, section), key) == expected
    assert loaded.warnings == ()
    assert f"{section}.{key}" in loaded.configured


def test_nested_map_entries_merge_with_file_and_json(tmp_path: Path) -> None:
    write(tmp_path, "config.yaml", "auth:\n  api_key_users:\n    bob: bob-key\n")
    loaded = load(
        tmp_path,
        {"CALLFS_AUTH__API_KEY_USERS__ALICE": "alice-key", "CALLFS_AUTH__API_KEY_USERS__BOB": "b2"},
    )
    assert loaded.settings.auth.api_key_users == {"bob": "b2", "alice": "alice-key"}
    loaded = load(
        tmp_path,
        {
            "CALLFS_AUTH_API_KEY_USERS": '{"carol": "c"}',
            "CALLFS_AUTH__API_KEY_USERS__DAVE": "d",
        },
    )
    assert loaded.settings.auth.api_key_users == {"carol": "c", "dave": "d"}


def test_documented_spelling_wins_over_nested_with_a_warning(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"CALLFS_SERVER_LISTEN_ADDR": ":1", "CALLFS_SERVER__LISTEN_ADDR": ":2"})
    assert loaded.settings.server.listen_addr == ":1"
    assert loaded.warnings == (
        "CALLFS_SERVER_LISTEN_ADDR and CALLFS_SERVER__LISTEN_ADDR both set server.listen_addr "
        "to different values; using CALLFS_SERVER_LISTEN_ADDR",
    )


@pytest.mark.parametrize(
    ("variable", "warning"),
    [
        (
            "CALLFS_SERVER_LISTN_ADDR",
            "unknown environment variable CALLFS_SERVER_LISTN_ADDR ignored; "
            "did you mean CALLFS_SERVER_LISTEN_ADDR (server.listen_addr)?",
        ),
        (
            "CALLFS_METADATA__DSN",
            "unknown environment variable CALLFS_METADATA__DSN ignored; "
            "did you mean CALLFS_METADATA_STORE_DSN (metadata_store.dsn)?",
        ),
        (
            "CALLFS_SERVER__LISTEN_ADDR__X",
            "unknown environment variable CALLFS_SERVER__LISTEN_ADDR__X ignored; "
            "did you mean CALLFS_SERVER_LISTEN_ADDR (server.listen_addr)?",
        ),
        (
            "CALLFS_ZZZZZZZZZZZZZZZZZZZZ",
            "unknown environment variable CALLFS_ZZZZZZZZZZZZZZZZZZZZ ignored: "
            "no such configuration key",
        ),
    ],
)
def test_unknown_variables_name_the_closest_key(
    tmp_path: Path, variable: str, warning: str
) -> None:
    assert load(tmp_path, {variable: "x"}).warnings == (warning,)


def test_variables_that_are_not_keys_are_not_reported(tmp_path: Path) -> None:
    env = {"CALLFS_LOG_MODE": "debug", "CALLFS_TEST_POSTGRES_DSN": "x", "HOME": "/root"}
    loaded = load(tmp_path, env)
    assert loaded.warnings == ()
    assert loaded.log_mode == "debug"


def test_log_mode(tmp_path: Path) -> None:
    assert load(tmp_path).log_mode == "production"
    assert load(tmp_path, {"CALLFS_LOG_MODE": "Development"}).log_mode == "development"
    loaded = load(tmp_path, {"CALLFS_LOG_MODE": "loud"})
    assert loaded.log_mode == "production"
    assert loaded.warnings and "CALLFS_LOG_MODE" in loaded.warnings[0]


# --- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("2h45m30.5s", 9930.5),
        ("10ns", 1e-8),
        ("250us", 2.5e-4),
        ("250µs", 2.5e-4),
        ("0", 0.0),
        ("45", 45.0),
        ("0.25", 0.25),
        (" 30s ", 30.0),
        ("-1s", -1.0),
    ],
)
def test_durations(tmp_path: Path, text: str, seconds: float) -> None:
    loaded = load(tmp_path, {"CALLFS_SERVER_READ_TIMEOUT": text})
    assert loaded.settings.server.read_timeout == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["abc", "5x", "1h 30m", "", "s", "true", "1d", "5m-3s"])
def test_bad_durations(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"CALLFS_SERVER_FILE_OP_TIMEOUT": text})
    message = str(caught.value)
    assert message.startswith(
        "invalid value for server.file_op_timeout (from CALLFS_SERVER_FILE_OP_TIMEOUT): "
    )
    assert "is not a duration; use a duration such as 300ms, 30s, 5m or 1h30m" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
    ],
)
def test_booleans(tmp_path: Path, text: str, expected: bool) -> None:
    assert load(tmp_path, {"CALLFS_SERVER_HTTP2": text}).settings.server.http2 is expected


@pytest.mark.parametrize("text", ["yes", "on", "2", ""])
def test_bad_booleans(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"server\.http2 .*use true, false, 1 or 0"):
        load(tmp_path, {"CALLFS_SERVER_HTTP2": text})


@pytest.mark.parametrize("text", ["1.5", "ten", "", "1e3"])
def test_bad_integers(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"server\.max_upload_bytes .*is not an integer"):
        load(tmp_path, {"CALLFS_SERVER_MAX_UPLOAD_BYTES": text})


@pytest.mark.parametrize("text", ["1.5", "true", "[1]"])
def test_bad_integers_in_files(tmp_path: Path, text: str) -> None:
    write(tmp_path, "config.yaml", f"rate_limit:\n  generate_burst: {text}\n")
    with pytest.raises(ConfigError, match=r"rate_limit\.generate_burst \(from config\.yaml\)"):
        load(tmp_path)


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS", "{bad json"),
        ("CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS", '["a"]'),
        ("CALLFS_AUTH_GROUPS", '{"devs": 5}'),
        ("CALLFS_AUTH_ADMIN_USERS", "[unclosed"),
    ],
)
def test_bad_json_values(tmp_path: Path, variable: str, text: str) -> None:
    with pytest.raises(ConfigError, match=f"\\(from {variable}\\): .*use a"):
        load(tmp_path, {variable: text})


def test_several_bad_values_are_reported_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"CALLFS_SERVER_WORKERS": "x", "CALLFS_RATE_LIMIT_DOWNLOAD_RPS": "fast"})
    assert "server.workers" in str(caught.value)
    assert "rate_limit.download_rps" in str(caught.value)


@pytest.mark.parametrize(
    "variable",
    [
        "CALLFS_AUTH_API_KEY_USERS",
        "CALLFS_AUTH_API_KEYS",
        "CALLFS_AUTH__API_KEY_USERS__ALICE",
    ],
)
def test_key_values_are_not_repeated_in_errors(tmp_path: Path, variable: str) -> None:
    secret = '["super-secret-key-value", {"x": 1}]'
    env = {variable: secret, "CALLFS_AUTH_API_KEY_USERS": '{"x": "super-secret-key-value"'}
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env)
    assert "super-secret" not in str(caught.value)
    assert "the value is not" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("HTTP", "http"), ("Auto", "auto"), ("", "https"), ("  https ", "https")],
)
def test_protocol_is_normalised(tmp_path: Path, value: str, expected: str) -> None:
    loaded = load(tmp_path, {"CALLFS_SERVER_PROTOCOL": value})
    assert loaded.settings.server.protocol == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("DEBUG", "debug"), ("warn", "warn"), ("error", "error"), ("verbose", "info"), ("", "info")],
)
def test_log_level_is_normalised(tmp_path: Path, value: str, expected: str) -> None:
    assert load(tmp_path, {"CALLFS_LOG_LEVEL": value}).settings.log.level == expected


@pytest.mark.parametrize(("value", "expected"), [("", "localfs"), ("S3", "s3"), ("gcs", "gcs")])
def test_default_backend_is_normalised(tmp_path: Path, value: str, expected: str) -> None:
    loaded = load(tmp_path, {"CALLFS_BACKEND_DEFAULT_BACKEND": value})
    assert loaded.settings.backend.default_backend == expected


# --- derived defaults --------------------------------------------------------------------------


def test_paths_follow_the_data_folder(tmp_path: Path) -> None:
    s = load(tmp_path, {"CALLFS_SERVER_DATA_DIR": "/srv/callfs"}).settings
    assert s.backend.localfs_root_path == "/srv/callfs/files"
    assert s.metadata_store.sqlite_path == "/srv/callfs/callfs.sqlite3"


def test_explicit_paths_are_kept_and_empty_localfs_root_disables_it(tmp_path: Path) -> None:
    env = {
        "CALLFS_SERVER_DATA_DIR": "/srv/callfs",
        "CALLFS_BACKEND_LOCALFS_ROOT_PATH": "",
        "CALLFS_METADATA_STORE_SQLITE_PATH": "/db/x.sqlite3",
    }
    s = load(tmp_path, env).settings
    assert s.backend.localfs_root_path == ""
    assert s.metadata_store.sqlite_path == "/db/x.sqlite3"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "sqlite"),
        ({"CALLFS_METADATA_STORE_DSN": "postgres://u@h/db"}, "postgres"),
        ({"CALLFS_METADATA_STORE_DSN": ""}, "sqlite"),
        (
            {
                "CALLFS_METADATA_STORE_DSN": "postgres://u@h/db",
                "CALLFS_METADATA_STORE_TYPE": "sqlite",
            },
            "sqlite",
        ),
        ({"CALLFS_METADATA_STORE_TYPE": "Postgres"}, "postgres"),
        ({"CALLFS_METADATA_STORE_TYPE": ""}, "sqlite"),
    ],
)
def test_metadata_store_type_default(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    assert load(tmp_path, env).settings.metadata_store.type == expected


@pytest.mark.parametrize(
    ("env", "expected_type", "expected_addr"),
    [
        ({}, "local", ""),
        ({"CALLFS_DLM_REDIS_ADDR": "redis:6379"}, "redis", "redis:6379"),
        ({"CALLFS_DLM_TYPE": "redis"}, "redis", "localhost:6379"),
        (
            {"CALLFS_DLM_TYPE": "local", "CALLFS_DLM_REDIS_ADDR": "redis:6379"},
            "local",
            "redis:6379",
        ),
        ({"CALLFS_DLM_TYPE": "redis", "CALLFS_DLM_REDIS_ADDR": ""}, "redis", ""),
    ],
)
def test_dlm_type_default(
    tmp_path: Path, env: dict[str, str], expected_type: str, expected_addr: str
) -> None:
    dlm = load(tmp_path, env).settings.dlm
    assert (dlm.type, dlm.redis_addr) == (expected_type, expected_addr)


# --- warnings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "start"),
    [
        ("CALLFS_SERVER_ENABLE_QUIC", "server.enable_quic=true is ignored"),
        ("CALLFS_ERASURE_ENABLED", "erasure.enabled=true is ignored"),
    ],
)
def test_ignored_features_warn(tmp_path: Path, variable: str, start: str) -> None:
    warnings = load(tmp_path, {variable: "true"}).warnings
    assert len(warnings) == 1 and warnings[0].startswith(start)
    assert load(tmp_path, {variable: "false"}).warnings == ()


def test_redis_metadata_store_warns(tmp_path: Path) -> None:
    warnings = load(tmp_path, {"CALLFS_METADATA_STORE_TYPE": "redis"}).warnings
    assert warnings and 'metadata_store.type "redis"' in warnings[0]


# --- quickstart detection ------------------------------------------------------------------------


def test_quickstart_when_nothing_about_keys_is_configured(tmp_path: Path) -> None:
    write(tmp_path, "config.yaml", "auth:\n  admin_users: [admin]\n  groups: {ops: [admin]}\n")
    loaded = load(tmp_path)
    assert loaded.quickstart is True
    validate(loaded)  # the generated `admin` user is known


@pytest.mark.parametrize(
    "env",
    [
        {"CALLFS_AUTH_API_KEYS": "k" * 20},
        {"CALLFS_AUTH_API_KEYS": ""},
        {"CALLFS_AUTH_API_KEY_USERS": '{"a": "bbbbbbbbbbbbbbbbbbbb"}'},
        {"CALLFS_AUTH__API_KEY_USERS__ALICE": "a" * 20},
        {"CALLFS_AUTH_INTERNAL_PROXY_SECRET": "s"},
        {"CALLFS_AUTH__SINGLE_USE_LINK_SECRET": "s"},
    ],
)
def test_no_quickstart_once_a_key_or_secret_is_configured(
    tmp_path: Path, env: dict[str, str]
) -> None:
    assert load(tmp_path, env).quickstart is False


def test_no_quickstart_when_the_file_configures_a_secret(tmp_path: Path) -> None:
    write(tmp_path, "config.json", json.dumps({"auth": {"single_use_link_secret": "x"}}))
    loaded = load(tmp_path)
    assert loaded.quickstart is False
    with pytest.raises(ConfigError, match="must contain at least one key"):
        validate(loaded)


def test_quickstart_still_applies_the_other_rules(tmp_path: Path) -> None:
    assert validation_error(tmp_path, {"CALLFS_SERVER_LISTEN_ADDR": ""}) == (
        "config validation failed: server.listen_addr is required"
    )
    assert validation_error(tmp_path, {"CALLFS_AUTH_ADMIN_USERS": "bob"}) == (
        'config validation failed: auth.admin_users: unknown user "bob"'
    )


def test_tls_configured(tmp_path: Path) -> None:
    assert load(tmp_path).tls_configured is False
    assert load(tmp_path, {"CALLFS_SERVER_CERT_FILE": "a.crt"}).tls_configured is True
    assert load(tmp_path, {"CALLFS_SERVER__KEY_FILE": "a.key"}).tls_configured is True


# --- validation (api.md §6.3) ---------------------------------------------------------------


def test_a_valid_configuration(tmp_path: Path) -> None:
    env = {
        **VALID,
        "CALLFS_AUTH_API_KEY_USERS": json.dumps({"alice": KEY_A, "bob": "ééééééééé"}),
        "CALLFS_AUTH_GROUPS": json.dumps({"devs": ["alice", "api-user-0"], "alice": ["bob"]}),
        "CALLFS_AUTH_ADMIN_USERS": "alice,internal-proxy",
        "CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS": json.dumps({"n2": "HTTPS://n2:8443/"}),
        "CALLFS_SERVER_READ_TIMEOUT": "0",
        "CALLFS_RATE_LIMIT_GENERATE_RPS": "0",
    }
    loaded = load(tmp_path, env)
    assert loaded.quickstart is False
    validate(loaded)


def test_empty_list_entries_are_skipped(tmp_path: Path) -> None:
    env = {
        **VALID,
        "CALLFS_AUTH_API_KEYS": json.dumps(["", KEY_A]),
        "CALLFS_AUTH_ADMIN_USERS": "api-user-0",
    }
    validate(load(tmp_path, env))


NO_KEY = "auth.api_keys or auth.api_key_users must contain at least one key"
RULES: list[tuple[dict[str, str], str]] = [
    # 1
    ({"CALLFS_SERVER_LISTEN_ADDR": ""}, "server.listen_addr is required"),
    ({"CALLFS_SERVER_LISTEN_ADDR": "   "}, "server.listen_addr is required"),
    # 2
    ({"CALLFS_SERVER_PROTOCOL": "ftp"}, "server.protocol must be one of: http, https, auto"),
    # 3
    (
        {"CALLFS_SERVER_CERT_FILE": ""},
        "server.cert_file and server.key_file are required when server.protocol=https",
    ),
    (
        {"CALLFS_SERVER_PROTOCOL": "HTTPS", "CALLFS_SERVER_KEY_FILE": ""},
        "server.cert_file and server.key_file are required when server.protocol=https",
    ),
    # 4
    ({"CALLFS_SERVER_FILE_OP_TIMEOUT": "0"}, "server.file_op_timeout must be > 0"),
    ({"CALLFS_SERVER_METADATA_OP_TIMEOUT": "-1s"}, "server.metadata_op_timeout must be > 0"),
    ({"CALLFS_SERVER_MAX_UPLOAD_BYTES": "0"}, "server.max_upload_bytes must be > 0"),
    ({"CALLFS_SERVER_READ_TIMEOUT": "-1ms"}, "server.read_timeout must not be negative"),
    ({"CALLFS_SERVER_WRITE_TIMEOUT": "-5"}, "server.write_timeout must not be negative"),
    (
        {"CALLFS_BACKEND_LOCALFS_INLINE_MAX_BYTES": "-1"},
        "backend.localfs_inline_max_bytes must be between 0 and 1048576 (got -1)",
    ),
    (
        {"CALLFS_BACKEND_LOCALFS_INLINE_MAX_BYTES": "2097152"},
        "backend.localfs_inline_max_bytes must be between 0 and 1048576 (got 2097152)",
    ),
    ({"CALLFS_SERVER_WORKERS": "0"}, "server.workers must be > 0"),
    # 5
    (
        {"CALLFS_METADATA_STORE_TYPE": "raft"},
        'metadata_store.type "raft" is not supported by this server; use "postgres" '
        '(recommended, also for multi-instance deployments), "sqlite" or "redis"',
    ),
    (
        {"CALLFS_METADATA_STORE_TYPE": "mongodb"},
        "metadata_store.type must be one of: postgres, sqlite, redis",
    ),
    (
        {"CALLFS_METADATA_STORE_TYPE": "postgres", "CALLFS_METADATA_STORE_DSN": ""},
        "metadata_store.dsn is required when metadata_store.type=postgres",
    ),
    (
        {"CALLFS_METADATA_STORE_SQLITE_PATH": ""},
        "metadata_store.sqlite_path is required when metadata_store.type=sqlite",
    ),
    (
        {"CALLFS_METADATA_STORE_TYPE": "redis", "CALLFS_METADATA_STORE_REDIS_ADDR": ""},
        "metadata_store.redis_addr is required when metadata_store.type=redis",
    ),
    ({"CALLFS_METADATA_STORE_POOL_MAX_SIZE": "0"}, "metadata_store.pool_max_size must be > 0"),
    ({"CALLFS_METADATA_STORE_CACHE_TTL": "-1s"}, "metadata_store.cache_ttl must not be negative"),
    (
        {"CALLFS_METADATA_STORE__CACHE_ENTRIES": "-3"},
        "metadata_store.cache_entries must not be negative",
    ),
    # 6
    ({"CALLFS_DLM_TYPE": "etcd"}, "dlm.type must be one of: redis, local"),
    (
        {"CALLFS_DLM_TYPE": "redis", "CALLFS_DLM_REDIS_ADDR": ""},
        "dlm.redis_addr is required when dlm.type=redis",
    ),
    # 7
    (
        {"CALLFS_HA_REPLICATION_ENABLED": "true"},
        "ha.replication_enabled=true is not supported by this server",
    ),
    # 8
    ({"CALLFS_INSTANCE_DISCOVERY_INSTANCE_ID": ""}, "instance_discovery.instance_id is required"),
    (
        {"CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS": '{"n2": "n2:8443"}'},
        "instance_discovery.peer_endpoints.n2 must be an http:// or https:// URL",
    ),
    (
        {"CALLFS_INSTANCE_DISCOVERY__PEER_ENDPOINTS__N3": "ftp://n3"},
        "instance_discovery.peer_endpoints.n3 must be an http:// or https:// URL",
    ),
    (
        {"CALLFS_INSTANCE_DISCOVERY__PEER_ENDPOINTS__N4": "https://"},
        "instance_discovery.peer_endpoints.n4 must be an http:// or https:// URL",
    ),
    # 9
    ({"CALLFS_AUTH_API_KEYS": ""}, NO_KEY),
    ({"CALLFS_AUTH_API_KEYS": ","}, NO_KEY),
    (
        {"CALLFS_AUTH_API_KEYS": f"{KEY_A},default-api-key"},
        "auth.api_keys must not use default value 'default-api-key'",
    ),
    (
        {"CALLFS_AUTH__API_KEY_USERS__ALICE": "default-api-key"},
        "auth.api_key_users must not use default value 'default-api-key'",
    ),
    ({"CALLFS_AUTH_API_KEYS": "short"}, "auth.api_keys: each key must be at least 16 characters"),
    (
        {"CALLFS_AUTH_API_KEYS": f"{KEY_A},ééééééé"},  # 7 characters, 14 bytes
        "auth.api_keys: each key must be at least 16 characters",
    ),
    (
        {"CALLFS_AUTH__API_KEY_USERS__ALICE": "fifteen-chars.."},
        "auth.api_key_users: each key must be at least 16 characters",
    ),
    (
        {"CALLFS_AUTH__API_KEY_USERS__ALICE": ""},
        "auth.api_key_users: each key must be at least 16 characters",
    ),
    (
        {"CALLFS_AUTH_API_KEYS": f"{KEY_A},{KEY_B},{KEY_A}"},
        "auth.api_keys: key at index 2 is already configured for api_keys index 0",
    ),
    (
        {"CALLFS_AUTH_API_KEY_USERS": json.dumps({" ": KEY_B})},
        "auth.api_key_users: user ID must not be empty",
    ),
    (
        {"CALLFS_AUTH_API_KEY_USERS": json.dumps({"": KEY_B})},
        "auth.api_key_users: user ID must not be empty",
    ),
    ({"CALLFS_AUTH__API_KEY_USERS__ROOT": KEY_B}, 'auth.api_key_users: user ID "root" is reserved'),
    (
        {"CALLFS_AUTH__API_KEY_USERS__INTERNAL-PROXY": KEY_B},
        'auth.api_key_users: user ID "internal-proxy" is reserved',
    ),
    (
        {"CALLFS_AUTH__API_KEY_USERS__API-USER-12": KEY_B},
        'auth.api_key_users: user ID "api-user-12" is reserved',
    ),
    (
        {"CALLFS_AUTH_API_KEYS": KEY_A, "CALLFS_AUTH__API_KEY_USERS__ALICE": KEY_A},
        'auth.api_key_users: key for "alice" is already configured for api_keys index 0',
    ),
    (
        {"CALLFS_AUTH_API_KEY_USERS": json.dumps({"alice": KEY_B, "bob": KEY_B})},
        'auth.api_key_users: key for "bob" is already configured for api_key_users "alice"',
    ),
    (
        {"CALLFS_AUTH_API_KEYS": KEY_A, "CALLFS_AUTH_INTERNAL_PROXY_SECRET": KEY_A},
        "auth.internal_proxy_secret must not be reused as an API key",
    ),
    (
        {"CALLFS_AUTH_INTERNAL_PROXY_SECRET": "change-me-internal-secret"},
        "auth.internal_proxy_secret must be set and not use default value",
    ),
    (
        {"CALLFS_AUTH_INTERNAL_PROXY_SECRET": ""},
        "auth.internal_proxy_secret must be set and not use default value",
    ),
    (
        {"CALLFS_AUTH_SINGLE_USE_LINK_SECRET": "change-me-link-secret"},
        "auth.single_use_link_secret must be set and not use default value",
    ),
    (
        {"CALLFS_AUTH_SINGLE_USE_LINK_SECRET": ""},
        "auth.single_use_link_secret must be set and not use default value",
    ),
    # 10
    ({"CALLFS_AUTH_GROUPS": '{"": ["api-user-0"]}'}, "auth.groups: group name must not be empty"),
    ({"CALLFS_AUTH_GROUPS": '{"root": []}'}, 'auth.groups: group name "root" is reserved'),
    ({"CALLFS_AUTH__GROUPS__DEVS": "api-user-0,bob"}, 'auth.groups.devs: unknown user "bob"'),
    ({"CALLFS_AUTH__GROUPS__DEVS": "api-user-1"}, 'auth.groups.devs: unknown user "api-user-1"'),
    ({"CALLFS_AUTH__GROUPS__DEVS": "admin"}, 'auth.groups.devs: unknown user "admin"'),
    ({"CALLFS_AUTH_ADMIN_USERS": "api-user-0,carol"}, 'auth.admin_users: unknown user "carol"'),
    # 11
    (
        {"CALLFS_BACKEND_DEFAULT_BACKEND": "gcs"},
        'backend.default_backend must be one of: localfs, s3 (got "gcs")',
    ),
    (
        {"CALLFS_BACKEND_DEFAULT_BACKEND": "s3"},
        "backend.s3_bucket_name is required when backend.default_backend=s3",
    ),
    (
        {"CALLFS_BACKEND_S3_SERVER_SIDE_ENCRYPTION": "aes256"},
        'backend.s3_server_side_encryption must be one of: AES256, aws:kms or empty (got "aes256")',
    ),
    (
        {"CALLFS_BACKEND_S3_KMS_KEY_ID": "key-1"},
        "backend.s3_kms_key_id is only used with backend.s3_server_side_encryption=aws:kms",
    ),
    *(
        (
            {"CALLFS_BACKEND_S3_ENDPOINT": endpoint},
            "backend.s3_endpoint must be an http:// or https:// URL or host:port",
        )
        for endpoint in (
            "ftp://minio:9000",
            "http://",
            "http://minio:9000/bucket",
            "minio:port",
            "https://key:secret@minio",
        )
    ),
    # 12
    ({"CALLFS_RATE_LIMIT_GENERATE_RPS": "-1"}, "rate_limit.generate_rps must be >= 0"),
    ({"CALLFS_RATE_LIMIT_DOWNLOAD_RPS": "-0.5"}, "rate_limit.download_rps must be >= 0"),
    ({"CALLFS_RATE_LIMIT_GENERATE_BURST": "0"}, "rate_limit.generate_burst must be >= 1"),
    ({"CALLFS_RATE_LIMIT_DOWNLOAD_BURST": "-3"}, "rate_limit.download_burst must be >= 1"),
]


@pytest.mark.parametrize(("env", "message"), RULES, ids=[message for _, message in RULES])
def test_validation_rules(tmp_path: Path, env: dict[str, str], message: str) -> None:
    assert validation_error(tmp_path, {**VALID, **env}) == f"config validation failed: {message}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CALLFS_SERVER_LISTEN_ADDR": "", "CALLFS_SERVER_PROTOCOL": "ftp"},
            "server.listen_addr is required",
        ),
        (
            {"CALLFS_BACKEND_DEFAULT_BACKEND": "gcs", "CALLFS_DLM_TYPE": "etcd"},
            "dlm.type must be one of: redis, local",
        ),
        (
            {"CALLFS_RATE_LIMIT_GENERATE_BURST": "0", "CALLFS_AUTH_API_KEYS": "short"},
            "auth.api_keys: each key must be at least 16 characters",
        ),
        (
            {
                "CALLFS_AUTH_API_KEYS": "short",
                "CALLFS_AUTH__API_KEY_USERS__ALICE": "default-api-key",
            },
            "auth.api_key_users must not use default value 'default-api-key'",
        ),
        (
            {"CALLFS_HA_REPLICATION_ENABLED": "1", "CALLFS_METADATA_STORE_TYPE": "raft"},
            'metadata_store.type "raft" is not supported by this server; use "postgres" '
            '(recommended, also for multi-instance deployments), "sqlite" or "redis"',
        ),
    ],
)
def test_the_first_error_in_rule_order_is_reported(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    assert validation_error(tmp_path, {**VALID, **env}) == f"config validation failed: {message}"


def test_validate_settings_directly() -> None:
    with pytest.raises(ConfigError, match="must contain at least one key"):
        validate_settings(Settings())
    validate_settings(Settings(), quickstart=True)


# --- mask_dsn (api.md §6.4) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("", ""),
        ("short", "***"),
        ("a" * 20, "***"),
        ("postgres://callfs:callfs@localhost/callfs?sslmode=require", "postgres:/***require"),
        ("0123456789-middle-ABCDEFG", "0123456789***ABCDEFG"),
    ],
)
def test_mask_dsn(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked


def test_public_names_are_pinned() -> None:
    import callfs_cli.config

    assert sorted(callfs_cli.config.__all__) == [
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
