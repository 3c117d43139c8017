"""The README's first command on a fresh folder: a bare ``callfs server`` (api.md §6.2
"Quickstart", §6.4), run for real, with the printed ``curl`` examples executed as printed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from conftest import dies_with_parent, free_port
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from storage import InlineContents

BIN = Path(sys.executable).parent


def callfs_command() -> list[str]:
    script = BIN / "callfs"
    return [str(script)] if script.exists() else [sys.executable, "-m", "callfs_cli"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLFS_")}
    env.update(extra)
    return env


class Quickstart:
    """``callfs server`` in an empty folder with no configuration."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.metrics_port = free_port()
        # The only deviation from a bare `callfs server`: the defaults bind :8443 and :9090,
        # which may be taken on a test machine (or by a parallel run), so the two listen
        # addresses are moved to free loopback ports. Nothing else is configured: no file,
        # no other CALLFS_* variable.
        self.env = clean_env(
            CALLFS_SERVER_LISTEN_ADDR=f"127.0.0.1:{self.port}",
            CALLFS_METRICS_LISTEN_ADDR=f"127.0.0.1:{self.metrics_port}",
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.output_path = folder.parent / f"{folder.name}-output.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        """Start, wait for ``/health`` over HTTPS, return the output of this start."""
        offset = self.output_path.stat().st_size if self.output_path.exists() else 0
        with self.output_path.open("ab") as output:
            self.process = subprocess.Popen(
                [*callfs_command(), "server"],
                cwd=self.folder,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=dies_with_parent(),
                start_new_session=True,  # its own process group, as in a terminal
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.output()}")
            try:
                response = httpx.get(f"{self.url}/health", verify=False, timeout=1.0)
                if response.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"no /health within {timeout}s:\n{self.output()}")
        # The banner is printed before the listeners start; it is complete by now.
        return self.output()[offset:]

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0, ctrl_c: bool = False) -> int:
        """SIGTERM to the server process, or (``ctrl_c``) SIGINT to its whole process group
        as a terminal's Ctrl-C does; returns the exit code."""
        assert self.process is not None
        if ctrl_c:
            os.killpg(self.process.pid, signal.SIGINT)
        else:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"no graceful shutdown within {timeout}s") from None
        # No worker process outlives the server.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("processes of the server are still running after it exited")
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


@pytest.fixture
def quickstart(tmp_path: Path) -> Iterator[Quickstart]:
    folder = tmp_path / "fresh"
    folder.mkdir()
    handle = Quickstart(folder)
    yield handle
    handle.kill()


def banner_key(output: str) -> str:
    match = re.search(r'API key \(user "admin", admin\): (\S+)', output)
    assert match, output
    return match.group(1)


def try_it_commands(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Try it:")
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        commands.append(line.strip())
    return commands


def with_port(command: str, port: int) -> str:
    """Point the command's URL at the port the server really listens on."""
    words = shlex.split(command)
    for index, word in enumerate(words):
        if word.startswith(("http://", "https://")):
            parts = urlsplit(word)
            words[index] = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))
    return shlex.join(words)


def served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as plain,
        context.wrap_socket(plain) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_quickstart_fresh_folder(quickstart: Quickstart, tmp_path: Path) -> None:
    assert list(quickstart.folder.iterdir()) == []
    output = quickstart.start()

    # --- the banner: URL, generated key, certificate, ready curl examples
    assert f"CallFS is listening on {quickstart.url}" in output
    key = banner_key(output)
    assert len(key) >= 16
    assert "Credentials (generated)" in output
    assert "Self-signed certificate (generated)" in output
    assert re.search(r"SHA-256 fingerprint: ([0-9A-F]{2}:){31}[0-9A-F]{2}\b", output), output
    commands = try_it_commands(output)
    assert commands[0] == "echo hello > hello.txt"
    upload = next(c for c in commands if " -T hello.txt " in c)
    download = next(c for c in commands if c.startswith("curl ") and c != upload)
    for command in (upload, download):
        assert " -k " in command
        assert f'-H "Authorization: Bearer {key}"' in command

    # --- run the printed commands for real, in a separate client folder
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    for command in commands:
        if command.startswith("curl "):
            command = with_port(command, quickstart.port)
        result = subprocess.run(
            command, shell=True, cwd=client_dir, capture_output=True, timeout=30, check=False
        )
        assert result.returncode == 0, (command, result.stderr)
        if command.startswith("curl ") and " -T " not in command:
            assert result.stdout == b"hello\n", result.stdout
    with httpx.Client(
        base_url=quickstart.url, verify=False, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        head = client.head("/v1/files/hello.txt")
        assert head.status_code == 200
        assert head.headers["x-callfs-owner"] == "admin"
        assert head.headers["x-callfs-sha256"] == hashlib.sha256(b"hello\n").hexdigest()
        assert client.get("/metrics").status_code == 200

    # --- the data folder
    data = quickstart.folder / "callfs-data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    credentials = data / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    stored = json.loads(credentials.read_text())
    assert stored["api_key"] == key
    assert stored["internal_proxy_secret"] and stored["single_use_link_secret"]
    assert key not in (stored["internal_proxy_secret"], stored["single_use_link_secret"])
    cert = data / "tls" / "server.crt"
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert (data / "tls" / "server.key").exists()
    assert stat.S_IMODE((data / "tls" / "server.key").stat().st_mode) & 0o077 == 0
    # A small file: kept with its entry in the metadata database, not as a file.
    assert not (data / "files" / "hello.txt").exists()
    assert InlineContents({}, data).read("hello.txt") == b"hello\n"
    # The served certificate is the generated one.
    generated = x509.load_pem_x509_certificate(cert.read_bytes())
    assert served_certificate(quickstart.port) == generated.public_bytes(Encoding.DER)
    cert_before = cert.read_bytes()
    credentials_before = credentials.read_bytes()

    # --- graceful shutdown
    assert quickstart.stop() == 0

    # --- second start: everything is reused
    output = quickstart.start()
    assert banner_key(output) == key
    assert "Credentials (reused)" in output
    assert "Self-signed certificate (reused)" in output
    assert cert.read_bytes() == cert_before
    assert credentials.read_bytes() == credentials_before
    with httpx.Client(
        base_url=quickstart.url, verify=False, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        response = client.get("/v1/files/hello.txt")
        assert response.status_code == 200
        assert response.content == b"hello\n"
    # The printed download command still works.
    download = with_port(download, quickstart.port)
    result = subprocess.run(
        download, shell=True, cwd=client_dir, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert result.stdout == b"hello\n"
    # The README says "Stop it with Ctrl-C": graceful as well.
    assert quickstart.stop(ctrl_c=True) == 0


def test_quickstart_graceful_shutdown_finishes_in_flight_upload(quickstart: Quickstart) -> None:
    output = quickstart.start()
    key = banner_key(output)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    body = b"in flight\n" * 100_000
    half = len(body) // 2
    with (
        socket.create_connection(("127.0.0.1", quickstart.port), timeout=20) as plain,
        context.wrap_socket(plain) as conn,
    ):
        conn.sendall(
            (
                "PUT /v1/files/inflight.txt HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{quickstart.port}\r\n"
                f"Authorization: Bearer {key}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body[:half]
        )
        time.sleep(0.3)
        assert quickstart.process is not None
        quickstart.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert quickstart.process.poll() is None, "exited with a request in flight"
        conn.sendall(body[half:])
        reply = conn.recv(65536)
    assert reply.startswith(b"HTTP/1.1 201"), reply[:200]
    process = quickstart.process
    assert process.wait(timeout=30) == 0
    quickstart.process = None
    assert (quickstart.folder / "callfs-data" / "files" / "inflight.txt").read_bytes() == body


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*callfs_command(), *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args", [("--help",), ("-h",), ("server", "--help"), ("config", "validate", "--help")]
)
def test_cli_help(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "server" in result.stdout
    assert "config validate" in result.stdout
    assert "--config" in result.stdout
    assert result.stderr == ""


def test_console_script_installed() -> None:
    assert (BIN / "callfs").exists()


def test_config_validate_in_empty_folder(tmp_path: Path) -> None:
    result = run_cli("config", "validate", cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0] == "Validating configuration..."
    # Quickstart: nothing configured is a valid configuration (the server generates the rest).
    assert result.returncode == 0, result.stdout
    assert lines[1] == "Configuration is valid"
    assert "Instance ID: callfs-instance-1" in lines
    assert "Listen Address: :8443" in lines


def test_cli_unknown_command(tmp_path: Path) -> None:
    result = run_cli("bogus", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ")
