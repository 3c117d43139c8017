"""The shape of the code: dependencies point inward, public names are pinned."""

from __future__ import annotations

import json
import subprocess
import sys

import callfs_core

FORBIDDEN = [
    "callfs_adapters",
    "callfs_http",
    "callfs_cli",
    "starlette",
    "hypercorn",
    "dependency_injector",
    "sqlite3",
    "psycopg",
    "redis",
    "minio",
    "httpx",
    "prometheus_client",
]
CORE_MODULES = [
    "callfs_core",
    "callfs_core.engine",
    "callfs_core.engine_base",
    "callfs_core.moves",
    "callfs_core.patching",
    "callfs_core.ratelimit",
    "callfs_core.testing",
    "callfs_core.paths",
    "callfs_core.model",
    "callfs_core.errors",
    "callfs_core.ports",
    "callfs_core.permissions",
    "callfs_core.conditions",
    "callfs_core.listing",
    "callfs_core.content_types",
]


def test_core_imports_no_adapter_framework_or_driver() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for m in {CORE_MODULES!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    offenders = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_public_names_are_pinned() -> None:
    assert sorted(callfs_core.__all__) == [
        "BlobBackendPort",
        "BlobInfo",
        "BlobReader",
        "ByteRange",
        "Clock",
        "Digests",
        "Engine",
        "EngineConfig",
        "FsPath",
        "IdGenerator",
        "Identity",
        "Inode",
        "Kind",
        "Link",
        "LinkSigner",
        "LinkStatus",
        "Listing",
        "LockPort",
        "MetadataPort",
        "Preconditions",
        "ROOT",
        "ReadOptions",
        "ReadResult",
        "StagedBlob",
        "WriteMode",
        "WriteResult",
    ]
    for name in callfs_core.__all__:
        assert getattr(callfs_core, name) is not None
