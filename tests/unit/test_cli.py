"""The `callfs` command line (api.md §6.4) and quickstart generation (§6.2).

`main` gets `environ=` explicitly and runs in a temporary working folder; the
server itself is replaced by a fake `callfs_cli.server` module.
"""

import contextlib
import json
import os
import ssl
import stat
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

import callfs_cli
from callfs_cli.config import Settings, load_settings, validate, validate_settings
from callfs_cli.main import main
from callfs_cli.quickstart import QuickstartInfo, banner, prepare_quickstart, server_url

VALID_YAML = """
server:
  listen_addr: "127.0.0.1:9443"
auth:
  api_keys: [key-0123456789abcdef]
  internal_proxy_secret: proxy-secret
  single_use_link_secret: link-secret
instance_discovery:
  instance_id: node-a
metadata_store:
  dsn: postgres://callfs:secret@db.example.com:5432/callfs
dlm:
  redis_addr: redis.example.com:6379
backend:
  localfs_root_path: /srv/files
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- help and errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["-h"],
        ["server", "--help"],
        ["config", "--help"],
        ["config", "validate", "--help"],
        ["config", "validate", "-h"],
    ],
)
def test_help_exits_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv, environ={}) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: callfs")
    for word in ("server", "config validate", "--config"):
        assert word in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate"], 'Error: unknown command "frobnicate" for "callfs"'),
        (["cluster", "join"], 'Error: unknown command "cluster" for "callfs"'),
        (["-c", "x.yaml", "nope"], 'Error: unknown command "nope" for "callfs"'),
        (["config"], "Error: the following arguments are required: validate"),
        (["config", "check"], "Error: argument validate: invalid choice: 'check'"),
        (["server", "--bogus"], "Error: unrecognized arguments: --bogus"),
        (["server", "--config"], "Error: argument -c/--config: expected one argument"),
    ],
)
def test_usage_errors_exit_one(
    argv: list[str], message: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, environ={}) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message)


# --- config validate ---------------------------------------------------------------------------


def test_config_validate_success(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "config.yaml").write_text(VALID_YAML)
    assert main(["config", "validate"], environ={}) == 0
    captured = capsys.readouterr()
    assert captured.out == (
        "Validating configuration...\n"
        "Configuration is valid\n"
        "Instance ID: node-a\n"
        "Listen Address: 127.0.0.1:9443\n"
        "Metadata Store DSN: postgres:/***/callfs\n"
        "Redis Address: redis.example.com:6379\n"
        "Local FS Root: /srv/files\n"
    )
    assert captured.err == ""


def test_config_validate_prints_s3_lines(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "other.yml").write_text(VALID_YAML)
    env = {"CALLFS_BACKEND_S3_BUCKET_NAME": "files", "CALLFS_BACKEND_S3_REGION": "eu-west-1"}
    assert main(["config", "validate", "--config", "other.yml"], environ=env) == 0
    assert capsys.readouterr().out.endswith(
        "Local FS Root: /srv/files\nS3 Bucket: files\nS3 Region: eu-west-1\n"
    )


def test_config_option_before_the_command(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "other.json").write_text(json.dumps({"auth": {"api_keys": []}}))
    assert main(["-c", "other.json", "config", "validate"], environ={}) == 1
    assert "must contain at least one key" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "env", "error"),
    [
        (
            ["config", "validate"],
            {"CALLFS_SERVER_LISTEN_ADDR": ""},
            "config validation failed: server.listen_addr is required",
        ),
        (
            ["config", "validate", "-c", "missing.yaml"],
            {},
            "specified config file missing.yaml not found: No such file or directory",
        ),
        (
            ["config", "validate"],
            {"CALLFS_SERVER_READ_TIMEOUT": "soon"},
            "invalid value for server.read_timeout (from CALLFS_SERVER_READ_TIMEOUT): "
            '"soon" is not a duration; use a duration such as 300ms, 30s, 5m or 1h30m, '
            "or a number of seconds",
        ),
    ],
)
def test_config_validate_failure(
    argv: list[str],
    env: dict[str, str],
    error: str,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(argv, environ=env) == 1
    assert capsys.readouterr().out == (
        f"Validating configuration...\nConfiguration validation failed: {error}\n"
    )


def test_config_validate_reports_warnings_on_stderr(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "config.yaml").write_text(VALID_YAML)
    assert main(["config", "validate"], environ={"CALLFS_SERVER_LISTN_ADDR": ":1"}) == 0
    captured = capsys.readouterr()
    assert "Configuration is valid" in captured.out
    assert captured.err == (
        "Warning: unknown environment variable CALLFS_SERVER_LISTN_ADDR ignored; "
        "did you mean CALLFS_SERVER_LISTEN_ADDR (server.listen_addr)?\n"
    )


def test_config_validate_in_quickstart_mode(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "validate"], environ={}) == 0
    captured = capsys.readouterr()
    assert captured.out == (
        "Validating configuration...\n"
        "Configuration is valid\n"
        "Instance ID: callfs-instance-1\n"
        "Listen Address: :8443\n"
        "Metadata Store DSN: postgres:/***require\n"
        "Redis Address: \n"
        "Local FS Root: ./callfs-data/files\n"
    )
    assert "quickstart" in captured.err
    assert not (workdir / "callfs-data").exists()  # validation touches no disk


# --- server ------------------------------------------------------------------------------------


@attrs.define
class FakeServer:
    calls: list[tuple[Settings, QuickstartInfo | None, tuple[str, ...]]] = attrs.Factory(list)
    status: int = 0

    def run(self, settings: Settings, info: QuickstartInfo | None, warnings: Any) -> int:
        self.calls.append((settings, info, tuple(warnings)))
        return self.status


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    module = types.ModuleType("callfs_cli.server")
    module.run = fake.run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "callfs_cli.server", module)
    monkeypatch.setattr(callfs_cli, "server", module, raising=False)
    return fake


def test_server_is_the_default_command(workdir: Path, fake_server: FakeServer) -> None:
    fake_server.status = 3
    assert main([], environ={}) == 3
    assert len(fake_server.calls) == 1


def test_server_validation_failure(
    workdir: Path, fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"CALLFS_AUTH_API_KEYS": "short"}
    assert main(["server"], environ=env) == 1
    assert capsys.readouterr().err == (
        "failed to load configuration: config validation failed: "
        "auth.api_keys: each key must be at least 16 characters\n"
    )
    assert fake_server.calls == []


def test_server_missing_config_file(
    workdir: Path, fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["server", "-c", "nope.yml"], environ={}) == 1
    assert capsys.readouterr().err == (
        "failed to load configuration: specified config file nope.yml not found: "
        "No such file or directory\n"
    )
    assert fake_server.calls == []


def test_server_with_configured_keys_generates_no_credentials(
    workdir: Path, fake_server: FakeServer
) -> None:
    (workdir / "config.yaml").write_text(VALID_YAML.replace("127.0.0.1:9443", ":9443"))
    env = {"CALLFS_SERVER_PROTOCOL": "http", "CALLFS_SERVER_DATA_DIR": "state"}
    assert main(["server"], environ=env) == 0
    settings, info, _ = fake_server.calls[0]
    assert info is None
    assert settings.auth.api_keys == ("key-0123456789abcdef",)
    assert settings.auth.api_key_users == {}
    assert stat.S_IMODE(os.stat(workdir / "state").st_mode) == 0o700
    assert not (workdir / "state" / "credentials.json").exists()
    assert not (workdir / "state" / "tls").exists()


def test_server_quickstart_generates_and_reuses_credentials_and_certificate(
    workdir: Path, fake_server: FakeServer
) -> None:
    env = {"CALLFS_SERVER_DATA_DIR": "data", "CALLFS_ERASURE_ENABLED": "true"}
    assert main(["server"], environ=env) == 0
    settings, info, warnings = fake_server.calls[0]
    assert info is not None and info.api_key is not None
    assert warnings and warnings[0].startswith("erasure.enabled=true is ignored")

    data = workdir / "data"
    credentials = data / "credentials.json"
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    stored = json.loads(credentials.read_text())
    assert stored["api_key"] == info.api_key
    assert settings.auth.api_key_users == {"admin": info.api_key}
    assert settings.auth.admin_users == ("admin",)
    assert settings.auth.internal_proxy_secret == stored["internal_proxy_secret"]
    assert settings.auth.single_use_link_secret == stored["single_use_link_secret"]
    assert (
        len({info.api_key, stored["internal_proxy_secret"], stored["single_use_link_secret"]}) == 3
    )
    validate_settings(settings)  # the generated credentials pass the full rules

    cert, key = data / "tls" / "server.crt", data / "tls" / "server.key"
    assert settings.server.cert_file == os.path.join("data", "tls", "server.crt")
    assert settings.server.key_file == os.path.join("data", "tls", "server.key")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    assert info.cert_fingerprint == certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    assert info.credentials_created and info.cert_created
    cert_bytes = cert.read_bytes()

    assert main(["server"], environ=env) == 0
    settings2, info2, _ = fake_server.calls[1]
    assert info2 is not None
    assert info2.api_key == info.api_key
    assert settings2.auth == settings.auth
    assert info2.cert_fingerprint == info.cert_fingerprint
    assert not info2.credentials_created and not info2.cert_created
    assert cert.read_bytes() == cert_bytes


def test_corrupt_credentials_are_an_error(
    workdir: Path, fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "data").mkdir(mode=0o700)
    (workdir / "data" / "credentials.json").write_text("{}")
    env = {"CALLFS_SERVER_DATA_DIR": "data", "CALLFS_SERVER_PROTOCOL": "http"}
    assert main(["server"], environ=env) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: generated credentials data/credentials.json are incomplete")
    assert fake_server.calls == []


def test_unexpected_errors_print_error(
    workdir: Path, fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    def explode(*_: object) -> int:
        raise RuntimeError("port 8443 is already in use")

    sys.modules["callfs_cli.server"].run = explode  # type: ignore[attr-defined]
    assert main(["server"], environ={"CALLFS_SERVER_PROTOCOL": "http"}) == 1
    assert capsys.readouterr().err == "Error: port 8443 is already in use\n"


# --- prepare_quickstart ------------------------------------------------------------------------


def quickstart(
    tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[Settings, QuickstartInfo | None]:
    loaded = load_settings(
        environ={"CALLFS_SERVER_DATA_DIR": str(tmp_path / "data"), **(env or {})},
        cwd=str(tmp_path),
    )
    validate(loaded)
    return prepare_quickstart(
        loaded.settings, loaded.quickstart, tls_configured=loaded.tls_configured
    )


@pytest.mark.parametrize(
    "env",
    [
        {"CALLFS_SERVER_PROTOCOL": "http"},
        {"CALLFS_SERVER_PROTOCOL": "auto"},
        {"CALLFS_SERVER_CERT_FILE": "mine.crt"},
        {"CALLFS_SERVER__KEY_FILE": "mine.key"},
    ],
)
def test_no_certificate_unless_https_with_default_files(
    tmp_path: Path, workdir: Path, env: dict[str, str]
) -> None:
    _, info = quickstart(tmp_path, env)
    assert info is not None and info.cert_fingerprint is None
    assert not (tmp_path / "data" / "tls").exists()


def test_no_certificate_when_the_default_files_exist(tmp_path: Path, workdir: Path) -> None:
    (workdir / "server.crt").write_text("mine")
    settings, info = quickstart(tmp_path)
    assert info is not None and info.cert_fingerprint is None
    assert settings.server.cert_file == "server.crt"


def test_certificate_without_quickstart_credentials(tmp_path: Path, workdir: Path) -> None:
    env = {
        "CALLFS_AUTH_API_KEYS": "key-0123456789abcdef",
        "CALLFS_AUTH_INTERNAL_PROXY_SECRET": "p",
        "CALLFS_AUTH_SINGLE_USE_LINK_SECRET": "l",
    }
    settings, info = quickstart(tmp_path, env)
    assert info is not None and info.api_key is None and info.cert_fingerprint is not None
    assert settings.auth.api_key_users == {}
    assert not (tmp_path / "data" / "credentials.json").exists()
    assert "<your API key>" in banner(settings, info)


def test_quickstart_keeps_configured_admins_and_groups(tmp_path: Path, workdir: Path) -> None:
    env = {
        "CALLFS_SERVER_PROTOCOL": "http",
        "CALLFS_AUTH_ADMIN_USERS": "internal-proxy",
        "CALLFS_AUTH_GROUPS": '{"ops": ["admin"]}',
    }
    settings, _ = quickstart(tmp_path, env)
    assert settings.auth.admin_users == ("internal-proxy", "admin")
    assert settings.auth.groups == {"ops": ("admin",)}


def test_banner(tmp_path: Path, workdir: Path) -> None:
    settings, info = quickstart(tmp_path)
    assert info is not None and info.api_key is not None
    text = banner(settings, info)
    assert "https://localhost:8443" in text
    assert info.api_key in text
    assert str(info.cert_fingerprint) in text
    assert (
        f'curl -k -H "Authorization: Bearer {info.api_key}" -T hello.txt '
        "https://localhost:8443/v1/files/hello.txt"
    ) in text
    assert (
        f'curl -k -H "Authorization: Bearer {info.api_key}" '
        "https://localhost:8443/v1/files/hello.txt"
    ) in text


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "https://localhost:8443"),
        ({"CALLFS_SERVER_PROTOCOL": "http", "CALLFS_SERVER_LISTEN_ADDR": ":8080"}, "http://localhost:8080"),
        ({"CALLFS_SERVER_LISTEN_ADDR": "0.0.0.0:443"}, "https://localhost:443"),
        ({"CALLFS_SERVER_LISTEN_ADDR": "[::]:443"}, "https://localhost:443"),
        ({"CALLFS_SERVER_LISTEN_ADDR": "[::1]:443"}, "https://[::1]:443"),
        ({"CALLFS_SERVER_LISTEN_ADDR": "files.example.com:8443"}, "https://files.example.com:8443"),
    ],
)  # fmt: skip
def test_server_url(tmp_path: Path, env: dict[str, str], url: str) -> None:
    settings = load_settings(environ=env, cwd=str(tmp_path)).settings
    assert server_url(settings) == url


def test_importing_touches_no_disk(tmp_path: Path) -> None:
    code = "import callfs_cli.main, callfs_cli.quickstart, callfs_cli.config, callfs_cli.__main__"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, env={})
    assert list(tmp_path.iterdir()) == []


def test_python_dash_m(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callfs_cli", "--help"],
        cwd=tmp_path,
        env={},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: callfs")


def test_db_migrate_creates_the_sqlite_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    monkeypatch.chdir(tmp_path)
    assert main(["db", "migrate"], environ={}) == 0
    assert capsys.readouterr().out.strip() == "Metadata schema is up to date (sqlite)"
    database = tmp_path / "callfs-data" / "callfs.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"inodes", "links"} <= tables
    assert main(["db", "migrate"], environ={}) == 0  # idempotent


def test_db_migrate_reports_an_unusable_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-a-dir").write_text("x")
    env = {"CALLFS_METADATA_STORE_SQLITE_PATH": str(tmp_path / "not-a-dir" / "db.sqlite3")}
    assert main(["db", "migrate"], environ=env) == 1
    assert "cannot migrate the metadata store" in capsys.readouterr().err
