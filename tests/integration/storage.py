"""What a server under test really stored, read behind its back.

Tests check more than the API's answers: that bytes landed where api.md §1.10
says, and that a failed upload left nothing behind. Each backend has its own
view with the same questions, so the same tests run with ``localfs`` or
``s3`` as the default backend:

* ``localfs``: ``/a/b.txt`` is ``<root>/a/b.txt``, or, for a small file
  (``backend.localfs_inline_max_bytes``), a row of the metadata store (SQLite
  ``contents``, PostgreSQL ``inodes.content``); leftovers are staging files
  (``.callfs-tmp-*``).
* ``s3``: ``/a/b.txt`` is the object ``<prefix>a/b.txt``; directories live in
  the metadata store only (no marker objects); leftovers are incomplete
  multipart uploads.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from minio import Minio
from minio.error import S3Error

__all__ = ["LocalStorage", "S3Storage", "Storage", "storage_for"]

TEMP_PATTERN = ".callfs-tmp-*"


class Storage(Protocol):
    def read(self, rel: str) -> bytes | None:
        """The bytes stored for the file ``rel`` (no leading slash), or None."""
        ...

    def children(self, rel: str) -> list[str]:
        """Sorted names stored directly below the directory ``rel``."""
        ...

    def holds_directory(self, rel: str) -> bool:
        """The backend holds ``rel`` as a directory (a folder; on S3: no object in its way)."""
        ...

    def absent(self, rel: str) -> bool:
        """Nothing at all is stored at or below ``rel``."""
        ...

    def leftovers(self) -> list[str]:
        """Staging data of uploads that are in progress or were not cleaned up."""
        ...


class InlineContents:
    """The small files a server keeps in its metadata store, read behind its back."""

    def __init__(self, metadata: dict[str, Any], data_dir: Path) -> None:
        self.dsn: str = metadata.get("dsn", "") if metadata.get("type") == "postgres" else ""
        self.database = Path(metadata.get("sqlite_path") or data_dir / "callfs.sqlite3")

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self.dsn:
            import psycopg

            with psycopg.connect(self.dsn) as conn:
                return list(conn.execute(sql.replace("?", "%s"), params).fetchall())
        if not self.database.exists():
            return []
        conn = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def read(self, rel: str) -> bytes | None:
        if self.dsn:
            sql = "SELECT content FROM inodes WHERE path = ? AND inline"
        else:
            sql = "SELECT data FROM contents WHERE path = ?"
        rows = self._query(sql, ("/" + rel,))
        return bytes(rows[0][0]) if rows else None

    def names(self, rel: str) -> list[str]:
        parent = "/" + rel.strip("/")
        return [
            row[0]
            for row in self._query("SELECT name FROM inodes WHERE parent = ? AND inline", (parent,))
        ]

    def any_at_or_below(self, rel: str) -> bool:
        path = "/" + rel.strip("/")
        rows = self._query(
            "SELECT 1 FROM inodes WHERE inline AND (path = ? OR (path > ? AND path < ?))",
            (path, path + "/", path + "0"),
        )
        return bool(rows)


class LocalStorage:
    def __init__(self, root: Path, inline: InlineContents | None = None) -> None:
        self.root = root
        self.inline = inline

    def read(self, rel: str) -> bytes | None:
        path = self.root / rel
        if path.is_file():
            return path.read_bytes()
        return self.inline.read(rel) if self.inline is not None else None

    def children(self, rel: str) -> list[str]:
        names = {p.name for p in (self.root / rel).iterdir()}
        if self.inline is not None:
            names.update(self.inline.names(rel))
        return sorted(names)

    def holds_directory(self, rel: str) -> bool:
        return (self.root / rel).is_dir()

    def absent(self, rel: str) -> bool:
        if self.inline is not None and self.inline.any_at_or_below(rel):
            return False
        return not (self.root / rel).exists()

    def leftovers(self) -> list[str]:
        return sorted(str(p) for p in self.root.rglob(TEMP_PATTERN))


class S3Storage:
    def __init__(self, backend: dict[str, Any]) -> None:
        endpoint = urlsplit(backend["s3_endpoint"])
        self.client = Minio(
            endpoint.netloc,
            access_key=backend["s3_access_key"],
            secret_key=backend["s3_secret_key"],
            secure=endpoint.scheme == "https",
            region=backend.get("s3_region", "us-east-1"),
        )
        self.bucket: str = backend["s3_bucket_name"]
        prefix = backend.get("s3_prefix", "")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def read(self, rel: str) -> bytes | None:
        try:
            response = self.client.get_object(self.bucket, self.prefix + rel)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                return None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _keys(self, rel: str, *, recursive: bool) -> list[str]:
        below = self.prefix + rel.rstrip("/") + "/" if rel else self.prefix
        objects = self.client.list_objects(self.bucket, prefix=below, recursive=recursive)
        return [obj.object_name[len(below) :] for obj in objects if obj.object_name]

    def children(self, rel: str) -> list[str]:
        # From the object keys: SeaweedFS lists emptied folders as common prefixes.
        return sorted({key.split("/", 1)[0] for key in self._keys(rel, recursive=True)})

    def holds_directory(self, rel: str) -> bool:
        # Directories are metadata only: nothing may be stored at the path itself.
        return self.read(rel) is None and self.read(rel + "/") is None

    def absent(self, rel: str) -> bool:
        return self.read(rel) is None and not self._keys(rel, recursive=True)

    def leftovers(self) -> list[str]:
        result = self.client._list_multipart_uploads(self.bucket, prefix=self.prefix)
        return sorted(upload.object_name for upload in result.uploads)


def storage_for(config: dict[str, Any], files_root: Path, data_dir: Path) -> Storage:
    """The view of the default backend of a server started with ``config``."""
    backend = config.get("backend", {})
    if backend.get("default_backend") == "s3":
        return S3Storage(backend)
    return LocalStorage(files_root, InlineContents(config.get("metadata_store", {}), data_dir))
