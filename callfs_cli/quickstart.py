"""The embedded default: generated credentials and certificate (api.md §6.2 "Quickstart").

When nothing about authentication is configured, `callfs server` generates an
API key for the admin user `admin` and the two secrets, keeps them in
`<server.data_dir>/credentials.json` (0600) and reuses them on every later
start.  When the server speaks HTTPS and no certificate was configured and the
default files do not exist, it generates a self-signed certificate in
`<server.data_dir>/tls/`.  Everything here runs at start-up, never at import.
"""

import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import socket
import tempfile
from collections.abc import Mapping

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from callfs_cli.config import Settings

__all__ = [
    "ADMIN_USER",
    "QuickstartError",
    "QuickstartInfo",
    "banner",
    "prepare_quickstart",
    "server_url",
]

ADMIN_USER = "admin"
CREDENTIALS_FILE = "credentials.json"
TLS_DIR = "tls"
CERT_FILE = "server.crt"
KEY_FILE = "server.key"
_CERT_VALIDITY = datetime.timedelta(days=3650)
_SECRET_FIELDS = ("api_key", "internal_proxy_secret", "single_use_link_secret")


class QuickstartError(Exception):
    """Generated state in the data folder cannot be created or read."""


@attrs.frozen
class QuickstartInfo:
    """What `prepare_quickstart` generated or reused, for the start-up banner.

    Attributes:
        api_key: the key of the `admin` user, or None outside quickstart mode.
        generated_credentials: quickstart credentials are in use (new or reused).
        credentials_created: they were created by this start.
        credentials_path: the `credentials.json` file, when credentials are in use.
        cert_file, key_file: the generated certificate and key, when in use.
        cert_fingerprint: SHA-256 of the generated certificate (DER), `AB:CD:…`.
        cert_created: the certificate was created by this start.
        url: the base URL clients on this machine can use.
    """

    url: str
    api_key: str | None = None
    generated_credentials: bool = False
    credentials_created: bool = False
    credentials_path: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_fingerprint: str | None = None
    cert_created: bool = False


def server_url(settings: Settings) -> str:
    """`https://localhost:<port>` (or `http://…`, or the configured host)."""
    scheme = "https" if settings.server.use_tls else "http"
    host, _, port = settings.server.listen_addr.strip().rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def _ensure_dir(path: str) -> None:
    if os.path.isdir(path):
        return
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise QuickstartError(f"cannot create folder {path}: {exc.strerror or exc}") from exc


def _write_new(path: str, content: bytes, mode: int) -> bool:
    """Create `path` atomically with `content`; False if it already exists."""
    folder = os.path.dirname(path) or "."
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        try:
            os.link(temporary, path)  # fails if another process created it first
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _load_credentials(path: str) -> Mapping[str, str]:
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError) as exc:
        raise QuickstartError(
            f"cannot read generated credentials {path}: {exc}; "
            "fix the file or delete it to generate new credentials"
        ) from exc
    if not isinstance(data, dict) or not all(
        isinstance(data.get(name), str) and data.get(name) for name in _SECRET_FIELDS
    ):
        raise QuickstartError(
            f"generated credentials {path} are incomplete (expected "
            f"{', '.join(_SECRET_FIELDS)}); delete the file to generate new credentials"
        )
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)
    return data


def _credentials(data_dir: str) -> tuple[Mapping[str, str], str, bool]:
    path = os.path.join(data_dir, CREDENTIALS_FILE)
    if os.path.exists(path):
        return _load_credentials(path), path, False
    fresh = {
        "user": ADMIN_USER,
        "api_key": secrets.token_urlsafe(32),
        "internal_proxy_secret": secrets.token_urlsafe(32),
        "single_use_link_secret": secrets.token_urlsafe(32),
    }
    content = (json.dumps(fresh, indent=2) + "\n").encode("utf-8")
    try:
        created = _write_new(path, content, 0o600)
    except OSError as exc:
        raise QuickstartError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if not created:
        return _load_credentials(path), path, False
    return fresh, path, True


def _fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def _subject_names() -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    hostname = socket.gethostname().strip()
    if hostname and hostname.lower() != "localhost":
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(hostname)))
        except ValueError:
            with contextlib.suppress(ValueError, UnicodeError):
                names.append(x509.DNSName(hostname))
    return names


def _new_certificate() -> tuple[bytes, bytes]:
    """A self-signed EC P-256 certificate for this machine, valid for ten years."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_subject_names()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def _certificate(data_dir: str) -> tuple[str, str, str, bool]:
    folder = os.path.join(data_dir, TLS_DIR)
    cert_path = os.path.join(folder, CERT_FILE)
    key_path = os.path.join(folder, KEY_FILE)
    _ensure_dir(folder)
    created = False
    if not (os.path.exists(cert_path) and os.path.exists(key_path)):
        cert_pem, key_pem = _new_certificate()
        try:
            # Key first: a certificate without its key must never be left behind.
            for path in (key_path, cert_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            _write_new(key_path, key_pem, 0o600)
            _write_new(cert_path, cert_pem, 0o644)
        except OSError as exc:
            raise QuickstartError(f"cannot write certificate in {folder}: {exc}") from exc
        created = True
    try:
        with open(cert_path, "rb") as stream:
            certificate = x509.load_pem_x509_certificate(stream.read())
    except (OSError, ValueError) as exc:
        raise QuickstartError(
            f"cannot read generated certificate {cert_path}: {exc}; "
            f"delete {folder} to generate a new one"
        ) from exc
    return cert_path, key_path, _fingerprint(certificate), created


def prepare_quickstart(
    settings: Settings, quickstart: bool, tls_configured: bool = True
) -> tuple[Settings, QuickstartInfo | None]:
    """Create the data folder and generate or reuse quickstart state.

    Args:
        settings: validated settings.
        quickstart: `LoadedConfig.quickstart` – no key, user key or secret configured.
        tls_configured: `LoadedConfig.tls_configured` – `server.cert_file` or
            `server.key_file` was configured; no certificate is generated then.

    Returns:
        The settings to run with (generated credentials and certificate paths
        filled in) and what was generated, or None when nothing was.

    Raises:
        QuickstartError: the data folder or generated files cannot be written or read.
    """
    server = settings.server
    _ensure_dir(server.data_dir)
    info = QuickstartInfo(url=server_url(settings))
    used = False

    if quickstart:
        credentials, path, created = _credentials(server.data_dir)
        admins = settings.auth.admin_users
        auth = attrs.evolve(
            settings.auth,
            api_key_users={ADMIN_USER: credentials["api_key"]},
            admin_users=admins if ADMIN_USER in admins else (*admins, ADMIN_USER),
            internal_proxy_secret=credentials["internal_proxy_secret"],
            single_use_link_secret=credentials["single_use_link_secret"],
        )
        settings = attrs.evolve(settings, auth=auth)
        info = attrs.evolve(
            info,
            api_key=credentials["api_key"],
            generated_credentials=True,
            credentials_created=created,
            credentials_path=path,
        )
        used = True

    defaults_exist = os.path.exists(server.cert_file) or os.path.exists(server.key_file)
    if server.protocol == "https" and not tls_configured and not defaults_exist:
        cert_path, key_path, fingerprint, created = _certificate(server.data_dir)
        settings = attrs.evolve(
            settings,
            server=attrs.evolve(settings.server, cert_file=cert_path, key_file=key_path),
        )
        info = attrs.evolve(
            info,
            cert_file=cert_path,
            key_file=key_path,
            cert_fingerprint=fingerprint,
            cert_created=created,
        )
        used = True

    return settings, (info if used else None)


def banner(settings: Settings, info: QuickstartInfo) -> str:
    """The start-up text: URL, API key, certificate fingerprint and `curl` examples."""
    url = info.url or server_url(settings)
    insecure = "-k " if info.cert_fingerprint else ""
    lines = [f"CallFS is listening on {url}"]
    if info.api_key is not None:
        state = "generated" if info.credentials_created else "reused"
        lines += [
            f'  API key (user "{ADMIN_USER}", admin): {info.api_key}',
            f"  Credentials ({state}): {info.credentials_path}",
        ]
    if info.cert_fingerprint is not None:
        state = "generated" if info.cert_created else "reused"
        lines += [
            f"  Self-signed certificate ({state}): {info.cert_file}",
            f"  SHA-256 fingerprint: {info.cert_fingerprint}",
        ]
    key = info.api_key if info.api_key is not None else "<your API key>"
    auth = f'-H "Authorization: Bearer {key}"'
    lines += [
        "Try it:",
        "  echo hello > hello.txt",
        f"  curl {insecure}{auth} -T hello.txt {url}/v1/files/hello.txt",
        f"  curl {insecure}{auth} {url}/v1/files/hello.txt",
    ]
    return "\n".join(lines)
