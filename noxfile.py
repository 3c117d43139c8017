"""Test and quality sessions. ``nox`` runs them all (the README's test command).

Sessions run in the current environment (the project's virtualenv, created by
the README command), so nothing is installed twice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "unit", "contract", "integration"]
nox.options.error_on_missing_interpreters = True

# The tools of the environment nox itself runs in (the project's virtualenv).
BIN = Path(sys.executable).parent
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]


def tool(name: str) -> str:
    return str(BIN / name)


CONTRACTS = {
    ("metadata", "memory"): "tests/contract/test_metadata_memory.py",
    ("metadata", "sqlite"): "tests/contract/test_metadata_sqlite.py",
    ("metadata", "cached"): "tests/contract/test_metadata_cached.py",
    ("metadata", "postgres"): "tests/contract/test_metadata_postgres.py",
    ("blob", "memory"): "tests/contract/test_blob_memory.py",
    ("blob", "localfs"): "tests/contract/test_blob_localfs.py",
    ("blob", "s3"): "tests/contract/test_blob_s3.py",
    ("lock", "local"): "tests/contract/test_lock_local.py",
    ("signer", "hmac"): "tests/contract/test_signer_hmac.py",
    ("lock", "file"): "tests/contract/test_lock_file.py",
    ("lock", "redis"): "tests/contract/test_lock_redis.py",
    ("ratelimit", "memory-and-sqlite"): "tests/contract/test_ratelimit.py",
    ("engine", "memory-vs-sqlite-localfs"): "tests/contract/test_engine_equivalence.py",
}


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, and the import contracts (the core imports no adapter or framework)."""
    session.run(tool("ruff"), "check", ".", external=True)
    session.run(tool("ruff"), "format", "--check", ".", external=True)
    session.run(tool("lint-imports"), external=True)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy (strict on callfs_core)."""
    packages = ["callfs_core", "callfs_adapters", "callfs_http", "callfs_cli"]
    session.run(tool("mypy"), *[f"-p={p}" for p in packages], external=True)


@nox.session
def unit(session: nox.Session) -> None:
    session.run(*PYTEST, "tests/unit", *session.posargs, external=True)


@nox.session
@nox.parametrize("port,adapter", list(CONTRACTS))
def contract(session: nox.Session, port: str, adapter: str) -> None:
    """One port's contract suite against one adapter.

    Example: ``nox -s "contract(port='metadata', adapter='sqlite')"``.
    """
    session.run(*PYTEST, CONTRACTS[(port, adapter)], *session.posargs, external=True)


@nox.session
@nox.parametrize("stack", ["embedded", "embedded-2-workers", "postgres-redis", "s3"])
def integration(session: nox.Session, stack: str) -> None:
    """The real ``callfs server`` process over TLS, driven with httpx.

    ``embedded``: SQLite and local locks. ``embedded-2-workers``: the same with
    ``server.workers: 2`` (cross-process locks, cache and metrics).
    ``postgres-redis``: PostgreSQL metadata and Redis locks, from
    CALLFS_TEST_POSTGRES_DSN and CALLFS_TEST_REDIS_URL when set, else from
    throwaway servers the tests start. ``s3``: embedded, with new files in S3
    (CALLFS_TEST_S3_ENDPOINT when set, else a throwaway SeaweedFS).
    """
    name, workers = stack, "1"
    if stack == "embedded-2-workers":
        name, workers = "embedded", "2"
    session.run(
        *PYTEST,
        "tests/integration",
        *session.posargs,
        env={"CALLFS_TEST_STACK": name, "CALLFS_TEST_WORKERS": workers},
        external=True,
    )
